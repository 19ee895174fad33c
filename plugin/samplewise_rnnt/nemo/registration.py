"""Selection by config: ``model.loss.loss_name: samplewise_rnnt`` or ``model.joint._target_: <adapter>``.

Importing :mod:`samplewise_rnnt.nemo` calls :func:`install` once, which

* registers ``samplewise_rnnt`` in NeMo's ``RNNT_LOSS_RESOLVER`` and wraps ``resolve_rnnt_loss`` (NeMo builds
  its losses in a hard-coded if/elif chain, looked up at call time) so that ``RNNTLoss(loss_name=
  "samplewise_rnnt")`` builds; its ``samplewise_rnnt_kwargs`` are validated there (a misspelled option is a
  ``ValueError`` at model construction);
* adds ``samplewise_rnnt.nemo.`` to NeMo's ``_target_`` allow-list (``ALLOWED_TARGET_PREFIXES``);
* wraps ``EncDecRNNTModel.__init__`` and every ``change_vocabulary`` of its subclasses so that a model whose
  config asks for the sample-wise loss is switched over by :func:`activate` once it is built, and one with
  ``model.encoder_checkpointing`` gets activation checkpointing (:mod:`.checkpointing`);
* wraps ``EncDecRNNTModel.extract_rnnt_loss_cfg`` so that NeMo, re-reading an activated model's loss
  config (decoding set-up, ``change_vocabulary``), still reports and builds ``samplewise_rnnt``, never the
  ``default`` that the saved config names.

With the package installed, its post-import hook (:mod:`samplewise_rnnt_hook`) calls :func:`install` as
soon as ``nemo.collections.asr`` is imported, in every process: no import in the training script.

:func:`activate` turns the model's joint into :class:`SampleWiseRNNTJoint` in place (same object, same
parameters), switches the fused loss/WER step on whatever ``fuse_loss_wer`` said, and rewrites the model's
config into stock NeMo names so that checkpoints restore in plain NeMo:

    loss.loss_name: samplewise_rnnt     ->  loss.loss_name: default      (NeMo's own exact loss)
                                            loss.use_samplewise_rnnt: true  (read by this package only)
    joint._target_: ...SampleWiseRNNTJoint -> nemo.collections.asr.modules.RNNTJoint

``loss.samplewise_rnnt_kwargs`` stays (plain NeMo ignores keys of losses it does not use).
"""
from __future__ import annotations

import functools
import logging
from typing import Optional

import torch

from .._toolkits import announce, process_tag, require

require("nemo", "samplewise_rnnt.nemo")

from .checkpointing import checkpointing_options, enable_encoder_checkpointing  # noqa: E402
from .joint import SampleWiseRNNTJoint, check_samplewise_kwargs  # noqa: E402

log = logging.getLogger("samplewise_rnnt.nemo")

LOSS_NAME = "samplewise_rnnt"
KWARGS_KEY = f"{LOSS_NAME}_kwargs"
MARKER_KEY = "use_samplewise_rnnt"
STOCK_LOSS_NAME = "default"
STOCK_JOINT_TARGET = "nemo.collections.asr.modules.RNNTJoint"
ADAPTER_TARGETS = ("samplewise_rnnt.nemo.SampleWiseRNNTJoint", "samplewise_rnnt.nemo.joint.SampleWiseRNNTJoint")
TARGET_PREFIX = "samplewise_rnnt.nemo."

_installed = False


class SampleWiseLogitsLoss(torch.nn.Module):
    """What ``RNNTLoss(loss_name="samplewise_rnnt")`` wraps: the exact loss on a materialised joint output.

    Only used where NeMo hands the loss a finished ``[B, T, U+1, V+1]`` tensor (a non-fused call); the
    memory-saving path is the joint's fused step. Per-sample losses (``reduction=None``); NeMo reduces.
    """

    def __init__(self, blank: int, clamp: float = -1.0, fastemit_lambda: float = 0.0):
        super().__init__()
        self.blank, self.clamp, self.fastemit_lambda = blank, clamp, fastemit_lambda
        self.reduction = None

    def forward(self, acts, labels, act_lens, label_lens):
        from ..ops import rnnt_loss

        return rnnt_loss(acts, labels, act_lens, label_lens, blank=self.blank, reduction="none",
                         clamp=self.clamp, fastemit_lambda=self.fastemit_lambda)


def _cfg_get(cfg, key, default=None):
    if cfg is None:
        return default
    try:
        return cfg.get(key, default)
    except AttributeError:
        return default


def requested(cfg) -> bool:
    """Whether a NeMo model config asks for the sample-wise loss (any of the three spellings)."""
    loss_cfg = _cfg_get(cfg, "loss")
    if _cfg_get(loss_cfg, "loss_name") == LOSS_NAME or bool(_cfg_get(loss_cfg, MARKER_KEY, False)):
        return True
    return _cfg_get(_cfg_get(cfg, "joint"), "_target_") in ADAPTER_TARGETS


def activate(model, samplewise_rnnt_kwargs=None):
    """Switch a built NeMo transducer model to the sample-wise loss (idempotent).

    ``samplewise_rnnt_kwargs`` defaults to ``model.cfg.loss.samplewise_rnnt_kwargs``. Returns the model.
    """
    from nemo.collections.asr.modules.rnnt import RNNTJoint
    from omegaconf import DictConfig, open_dict

    joint = model.joint
    if not isinstance(joint, RNNTJoint) or (type(joint) not in (RNNTJoint, SampleWiseRNNTJoint)):
        raise ValueError(f"samplewise_rnnt needs NeMo's RNNTJoint (or the adapter) as model.joint, got "
                         f"{type(joint).__module__}.{type(joint).__qualname__}")
    if joint.num_extra_outputs:
        raise ValueError(f"samplewise_rnnt handles standard RNN-T only; model.joint has num_extra_outputs="
                         f"{joint.num_extra_outputs} (TDT / multi-blank)")
    cfg = model.cfg
    loss_cfg = _cfg_get(cfg, "loss")
    if samplewise_rnnt_kwargs is None:
        samplewise_rnnt_kwargs = _cfg_get(loss_cfg, KWARGS_KEY)
    opts = check_samplewise_kwargs(samplewise_rnnt_kwargs)
    if type(joint) is RNNTJoint:
        joint.__class__ = SampleWiseRNNTJoint  # same object, parameters and state_dict keys
    joint.samplewise_kwargs = opts
    joint.set_fuse_loss_wer(True, model.loss, model.wer)

    # the saved config names stock NeMo only (see the module docstring)
    with open_dict(cfg):
        if loss_cfg is None:
            cfg.loss = DictConfig({})
        if cfg.loss.get("loss_name") == LOSS_NAME:
            cfg.loss.loss_name = STOCK_LOSS_NAME
        cfg.loss[MARKER_KEY] = True
        if cfg.get("joint") is not None and cfg.joint.get("_target_") in ADAPTER_TARGETS:
            cfg.joint._target_ = STOCK_JOINT_TARGET
    announce(f"NeMo {type(model).__name__} ({process_tag()}): the transducer loss is samplewise_rnnt, "
             f"computed by the sample-wise engine with {opts}, reduction "
             f"{getattr(model.loss, 'reduction', None)!r} (the saved config names NeMo's default loss, "
             f"for plain-NeMo restores)")
    return model


def _after(method, name):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        out = method(self, *args, **kwargs)
        cfg = getattr(self, "_cfg", None)
        if requested(cfg) and hasattr(self, "joint") and hasattr(self, "wer"):
            activate(self)
        ckpt = checkpointing_options(_cfg_get(cfg, "encoder_checkpointing"))
        if ckpt is not None and hasattr(self, "encoder"):
            enable_encoder_checkpointing(self.encoder, **ckpt)
        return out

    wrapper._samplewise_rnnt_wrapped = True
    return wrapper


def _subclasses(cls):
    seen, stack = [], [cls]
    while stack:
        c = stack.pop()
        if c not in seen:
            seen.append(c)
            stack.extend(c.__subclasses__())
    return seen


def install():
    """Register the loss name, the allow-list prefix and the model hooks with NeMo (idempotent)."""
    global _installed
    if _installed:
        return
    import nemo.collections.asr.models  # noqa: F401  (defines the model subclasses to hook)
    from nemo.collections.asr.losses import rnnt as nemo_rnnt
    from nemo.collections.asr.models.rnnt_models import EncDecRNNTModel
    from nemo.core.classes import common

    nemo_rnnt.RNNT_LOSS_RESOLVER[LOSS_NAME] = nemo_rnnt.RNNTLossConfig(
        loss_name=LOSS_NAME, lib_name="samplewise_rnnt", is_available=True, min_version=None,
        installation_msg="pip install samplewise-rnnt", force_float32=True)
    original_resolve = nemo_rnnt.resolve_rnnt_loss

    @functools.wraps(original_resolve)
    def resolve_rnnt_loss(loss_name, blank_idx, loss_kwargs=None):
        if loss_name == LOSS_NAME:
            opts = check_samplewise_kwargs(loss_kwargs)
            return SampleWiseLogitsLoss(blank_idx, clamp=opts["clamp"], fastemit_lambda=opts["fastemit_lambda"])
        return original_resolve(loss_name, blank_idx, loss_kwargs)

    nemo_rnnt.resolve_rnnt_loss = resolve_rnnt_loss

    original_extract = EncDecRNNTModel.extract_rnnt_loss_cfg
    if not getattr(original_extract, "_samplewise_rnnt_wrapped", False):
        @functools.wraps(original_extract)
        def extract_rnnt_loss_cfg(self, cfg=None):
            # an activated model's config says loss_name: default + use_samplewise_rnnt: true (see activate)
            if cfg is not None and _cfg_get(cfg, "loss_name") != LOSS_NAME and bool(_cfg_get(cfg, MARKER_KEY, False)):
                from omegaconf import OmegaConf, open_dict

                cfg = OmegaConf.create(OmegaConf.to_container(cfg))
                with open_dict(cfg):
                    cfg.loss_name = LOSS_NAME
            return original_extract(self, cfg)

        extract_rnnt_loss_cfg._samplewise_rnnt_wrapped = True
        EncDecRNNTModel.extract_rnnt_loss_cfg = extract_rnnt_loss_cfg

    if TARGET_PREFIX not in common.ALLOWED_TARGET_PREFIXES:
        common.ALLOWED_TARGET_PREFIXES.append(TARGET_PREFIX)

    for cls in _subclasses(EncDecRNNTModel):
        for name in ("__init__", "change_vocabulary"):
            method = cls.__dict__.get(name)
            if name == "__init__" and cls is not EncDecRNNTModel:
                continue  # subclasses reach it through super().__init__
            if method is not None and not getattr(method, "_samplewise_rnnt_wrapped", False):
                setattr(cls, name, _after(method, name))
    _installed = True
