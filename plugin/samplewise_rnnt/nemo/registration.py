"""Selection by config: ``model.loss.loss_name: samplewise_rnnt`` (``samplewise_tdt`` for a TDT model) or
``model.joint._target_: <adapter>``.

Importing :mod:`samplewise_rnnt.nemo` calls :func:`install` once, which

* registers ``samplewise_rnnt`` and ``samplewise_tdt`` in NeMo's ``RNNT_LOSS_RESOLVER`` and wraps
  ``resolve_rnnt_loss`` (NeMo builds its losses in a hard-coded if/elif chain, looked up at call time) so that
  ``RNNTLoss(loss_name="samplewise_rnnt")`` (``"samplewise_tdt"``) builds; its ``samplewise_rnnt_kwargs``
  (``samplewise_tdt_kwargs``) are validated there (a misspelled option is a ``ValueError`` at model
  construction);
* adds ``samplewise_rnnt.nemo.`` to NeMo's ``_target_`` allow-list (``ALLOWED_TARGET_PREFIXES``);
* wraps ``EncDecRNNTModel.__init__`` and every ``change_vocabulary`` of its subclasses so that a model whose
  config asks for the sample-wise loss is switched over by :func:`activate` once it is built, and one with
  ``model.encoder_checkpointing`` gets activation checkpointing (:mod:`.checkpointing`);
* wraps ``EncDecRNNTModel.extract_rnnt_loss_cfg`` so that NeMo, re-reading an activated model's loss
  config (decoding set-up, ``change_vocabulary``), still reports and builds ``samplewise_rnnt``
  (``samplewise_tdt``), never the ``default`` (``tdt``) that the saved config names;
* wraps ``EncDecRNNTModel.set_decoding_type_according_to_loss`` so that ``samplewise_tdt`` sets the
  decoding's ``durations`` exactly as NeMo does for ``tdt`` (NeMo tests the loss name literally).

TDT (Token-and-Duration Transducer): ``loss_name: samplewise_tdt`` with ``samplewise_tdt_kwargs`` (NeMo's
``tdt_kwargs`` keys ``durations``, ``sigma``, ``omega``, ``fastemit_lambda``, ``clamp`` and the engine's
``max_chunk_bytes``, ``fused``); a key missing there is taken from the config's ``tdt_kwargs``, so that in a
stock TDT config the loss name is the only line to change. The durations must match the joint's
``num_extra_outputs`` and the decoding's ``durations``. NeMo 3.0 subtracts the duration outputs from the
loss's ``num_classes`` (the blank index) only for ``loss_name == "tdt"``; :func:`activate` builds the loss
with NeMo's TDT blank (``V``). Multi-blank RNN-T (``multiblank_rnnt``) is refused: its big blanks are a
different lattice (see README).

With the package installed, its post-import hook (:mod:`samplewise_rnnt_hook`) calls :func:`install` as
soon as ``nemo.collections.asr`` is imported, in every process: no import in the training script.

:func:`activate` turns the model's joint into :class:`SampleWiseRNNTJoint` in place (same object, same
parameters), switches the fused loss/WER step on whatever ``fuse_loss_wer`` said, and rewrites the model's
config into stock NeMo names so that checkpoints restore in plain NeMo:

    loss.loss_name: samplewise_rnnt     ->  loss.loss_name: default      (NeMo's own exact loss)
                                            loss.use_samplewise_rnnt: true  (read by this package only)
    loss.loss_name: samplewise_tdt      ->  loss.loss_name: tdt          (NeMo's numba TDT loss)
                                            loss.use_samplewise_rnnt: true
                                            loss.tdt_kwargs: the options NeMo's keys resolved to
    joint._target_: ...SampleWiseRNNTJoint -> nemo.collections.asr.modules.RNNTJoint

``loss.samplewise_rnnt_kwargs`` (``samplewise_tdt_kwargs``) stays (plain NeMo ignores keys of losses it does
not use).
"""
from __future__ import annotations

import functools
import logging
from typing import Optional

import torch

from .._toolkits import announce, process_tag, require

require("nemo", "samplewise_rnnt.nemo")

from .checkpointing import checkpointing_options, enable_encoder_checkpointing  # noqa: E402
from .joint import (SampleWiseRNNTJoint, TDT_LOSS_KEYS, check_samplewise_kwargs,  # noqa: E402
                    check_samplewise_tdt_kwargs)

log = logging.getLogger("samplewise_rnnt.nemo")

LOSS_NAME = "samplewise_rnnt"
KWARGS_KEY = f"{LOSS_NAME}_kwargs"
MARKER_KEY = "use_samplewise_rnnt"
STOCK_LOSS_NAME = "default"
TDT_LOSS_NAME = "samplewise_tdt"
TDT_KWARGS_KEY = f"{TDT_LOSS_NAME}_kwargs"
STOCK_TDT_LOSS_NAME = "tdt"
STOCK_TDT_LOSS_NAMES = ("tdt", "tdt_pytorch")  # a marker / adapter joint with these selects samplewise_tdt
MULTIBLANK_LOSS_NAMES = ("multiblank_rnnt", "multiblank_rnnt_pytorch")
OUR_LOSS_NAMES = (LOSS_NAME, TDT_LOSS_NAME)
STOCK_JOINT_TARGET = "nemo.collections.asr.modules.RNNTJoint"
ADAPTER_TARGETS = ("samplewise_rnnt.nemo.SampleWiseRNNTJoint", "samplewise_rnnt.nemo.joint.SampleWiseRNNTJoint")
TARGET_PREFIX = "samplewise_rnnt.nemo."

_installed = False


class SampleWiseTDTLogitsLoss(torch.nn.Module):
    """What ``RNNTLoss(loss_name="samplewise_tdt")`` wraps: the exact TDT loss (:func:`samplewise_rnnt.tdt_loss`)
    on a materialised ``[B, T, U+1, V+1+D]`` joint output (a non-fused call only). Per-sample losses."""

    def __init__(self, blank: int, opts: dict):
        super().__init__()
        self.blank, self.opts = blank, dict(opts)
        self.reduction = None

    def forward(self, acts, labels, act_lens, label_lens):
        import samplewise_rnnt

        if self.opts.get("durations") is None:
            raise ValueError("samplewise_tdt: no durations (model.loss.samplewise_tdt_kwargs.durations)")
        o = self.opts
        return samplewise_rnnt.tdt_loss(acts, labels, act_lens, label_lens, o["durations"], blank=self.blank,
                                        reduction="none", sigma=o["sigma"], omega=o["omega"], clamp=o["clamp"],
                                        fastemit_lambda=o["fastemit_lambda"])


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
    if _cfg_get(loss_cfg, "loss_name") in OUR_LOSS_NAMES or bool(_cfg_get(loss_cfg, MARKER_KEY, False)):
        return True
    return _cfg_get(_cfg_get(cfg, "joint"), "_target_") in ADAPTER_TARGETS


def tdt_loss_kwargs(loss_cfg, explicit=None, where: str = f"model.loss.{TDT_KWARGS_KEY}", require_durations=True):
    """The TDT options of a loss config: ``samplewise_tdt_kwargs`` (or ``explicit``), NeMo's keys missing
    there taken from ``tdt_kwargs``; validated and completed (:func:`check_samplewise_tdt_kwargs`).

    A key given in both with different values is a ``ValueError``."""
    from .checkpointing import plain_container

    ours = plain_container(explicit if explicit is not None else _cfg_get(loss_cfg, TDT_KWARGS_KEY)) or {}
    stock = plain_container(_cfg_get(loss_cfg, "tdt_kwargs")) or {}
    if not isinstance(ours, dict):
        raise ValueError(f"{where} must be a mapping of options, got {type(ours).__name__}: {ours!r}")
    merged = dict(ours)
    if isinstance(stock, dict):
        for key in TDT_LOSS_KEYS:
            if key not in stock:
                continue
            if key not in ours:
                merged[key] = stock[key]
            elif ours[key] != stock[key] and not (key == "durations" and list(ours[key]) == list(stock[key])):
                raise ValueError(f"{where}.{key} = {ours[key]!r} but model.loss.tdt_kwargs.{key} = {stock[key]!r}; "
                                 f"give it once (or the same value in both)")
    return check_samplewise_tdt_kwargs(merged, where, require_durations=require_durations)


def lattice_of(model_cfg, joint=None) -> str:
    """``"tdt"`` or ``"rnnt"``: which sample-wise loss a config (and its built joint) asks for.

    ``samplewise_tdt``, or a marker / adapter joint with NeMo's ``tdt`` / ``tdt_pytorch``, is TDT;
    ``samplewise_rnnt`` or any other stock RNN-T loss name is RNN-T. Raises ``ValueError`` for a joint
    whose extra outputs do not fit (TDT durations on a plain joint, an RNN-T loss on a TDT joint) and for
    multi-blank RNN-T."""
    loss_name = _cfg_get(_cfg_get(model_cfg, "loss"), "loss_name", "default")
    extra = int(getattr(joint, "num_extra_outputs", 0) or 0) if joint is not None else None
    if loss_name in MULTIBLANK_LOSS_NAMES:
        raise ValueError(f"samplewise_rnnt does not support multi-blank RNN-T (loss_name {loss_name!r}): its big "
                         f"blanks advance time by their duration with a single softmax over all outputs, a "
                         f"lattice that neither samplewise_rnnt nor samplewise_tdt computes")
    if loss_name == TDT_LOSS_NAME or loss_name in STOCK_TDT_LOSS_NAMES:
        if extra == 0:
            raise ValueError(f"loss_name {loss_name!r} needs a TDT joint (model.joint.num_extra_outputs = the "
                             f"number of durations), got num_extra_outputs=0")
        return "tdt"
    if extra:
        raise ValueError(f"model.joint has num_extra_outputs={extra} (a TDT joint) but the loss is "
                         f"{loss_name!r}: set model.loss.loss_name: {TDT_LOSS_NAME} (with the durations in "
                         f"{TDT_KWARGS_KEY} or tdt_kwargs)")
    return "rnnt"


def _activate_tdt(model, joint, kwargs):
    """The TDT part of :func:`activate`: options, checks, NeMo's TDT blank, the config in stock names."""
    from nemo.collections.asr.losses.rnnt import RNNTLoss
    from omegaconf import DictConfig, open_dict

    cfg = model.cfg
    opts = tdt_loss_kwargs(_cfg_get(cfg, "loss"), kwargs)
    durations = opts["durations"]
    if len(durations) != joint.num_extra_outputs:
        raise ValueError(f"{TDT_KWARGS_KEY}.durations = {durations} has {len(durations)} durations but "
                         f"model.joint.num_extra_outputs = {joint.num_extra_outputs}")
    decoding = getattr(model, "decoding", None)
    dec_durations = getattr(decoding, "durations", None)
    if decoding is not None and (dec_durations is None or list(dec_durations) != durations):
        raise ValueError(f"{TDT_KWARGS_KEY}.durations = {durations} but the decoding's durations are "
                         f"{None if dec_durations is None else list(dec_durations)} (model.decoding.durations, "
                         f"with model.decoding.model_type: tdt)")
    # NeMo's TDT blank is V, before the duration outputs (NeMo subtracts them for loss_name 'tdt' only)
    blank = joint.num_classes_with_blank - 1 - joint.num_extra_outputs
    loss = getattr(model, "loss", None)
    inner = getattr(loss, "_loss", None)
    if (not isinstance(inner, SampleWiseTDTLogitsLoss) or getattr(loss, "_blank", None) != blank
            or inner.opts != opts):
        reduction = getattr(loss, "reduction", None) if loss is not None else cfg.get("rnnt_reduction", "mean_batch")
        model.loss = RNNTLoss(num_classes=blank, reduction=reduction, loss_name=TDT_LOSS_NAME, loss_kwargs=dict(opts))
    if type(joint) is not SampleWiseRNNTJoint:
        joint.__class__ = SampleWiseRNNTJoint  # same object, parameters and state_dict keys
    joint.samplewise_kwargs = opts
    joint.set_fuse_loss_wer(True, model.loss, model.wer)
    with open_dict(cfg):
        if cfg.get("loss") is None:
            cfg.loss = DictConfig({})
        if cfg.loss.get("loss_name") in (TDT_LOSS_NAME, None):
            cfg.loss.loss_name = STOCK_TDT_LOSS_NAME
        cfg.loss[MARKER_KEY] = True
        if cfg.loss.get("tdt_kwargs") is None:
            cfg.loss.tdt_kwargs = DictConfig({})
        for key in TDT_LOSS_KEYS:  # plain NeMo restores with loss_name tdt: it needs tdt_kwargs.durations
            if key not in cfg.loss.tdt_kwargs:
                cfg.loss.tdt_kwargs[key] = opts[key]
        if cfg.get("joint") is not None and cfg.joint.get("_target_") in ADAPTER_TARGETS:
            cfg.joint._target_ = STOCK_JOINT_TARGET
    announce(f"NeMo {type(model).__name__} ({process_tag()}): the transducer loss is {TDT_LOSS_NAME} (TDT, "
             f"durations {durations}), computed by the sample-wise engine with {opts}, reduction "
             f"{getattr(model.loss, 'reduction', None)!r} (the saved config names NeMo's tdt loss, for "
             f"plain-NeMo restores)")
    return model


def activate(model, samplewise_rnnt_kwargs=None):
    """Switch a built NeMo transducer model to the sample-wise loss (idempotent).

    ``samplewise_rnnt_kwargs`` defaults to ``model.cfg.loss.samplewise_rnnt_kwargs`` (for a TDT model, see
    :func:`lattice_of`: ``model.cfg.loss.samplewise_tdt_kwargs`` completed from ``tdt_kwargs``). Returns the
    model.
    """
    from nemo.collections.asr.modules.rnnt import RNNTJoint
    from omegaconf import DictConfig, open_dict

    joint = model.joint
    if not isinstance(joint, RNNTJoint) or (type(joint) not in (RNNTJoint, SampleWiseRNNTJoint)):
        raise ValueError(f"samplewise_rnnt needs NeMo's RNNTJoint (or the adapter) as model.joint, got "
                         f"{type(joint).__module__}.{type(joint).__qualname__}")
    if lattice_of(model.cfg, joint) == "tdt":
        return _activate_tdt(model, joint, samplewise_rnnt_kwargs)
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

    for name in OUR_LOSS_NAMES:
        nemo_rnnt.RNNT_LOSS_RESOLVER[name] = nemo_rnnt.RNNTLossConfig(
            loss_name=name, lib_name="samplewise_rnnt", is_available=True, min_version=None,
            installation_msg="pip install samplewise-rnnt", force_float32=True)
    original_resolve = nemo_rnnt.resolve_rnnt_loss

    @functools.wraps(original_resolve)
    def resolve_rnnt_loss(loss_name, blank_idx, loss_kwargs=None):
        if loss_name == LOSS_NAME:
            opts = check_samplewise_kwargs(loss_kwargs)
            return SampleWiseLogitsLoss(blank_idx, clamp=opts["clamp"], fastemit_lambda=opts["fastemit_lambda"])
        if loss_name == TDT_LOSS_NAME:
            # the model passes samplewise_tdt_kwargs completed from tdt_kwargs (extract_rnnt_loss_cfg below)
            return SampleWiseTDTLogitsLoss(blank_idx, check_samplewise_tdt_kwargs(loss_kwargs))
        return original_resolve(loss_name, blank_idx, loss_kwargs)

    nemo_rnnt.resolve_rnnt_loss = resolve_rnnt_loss

    original_extract = EncDecRNNTModel.extract_rnnt_loss_cfg
    if not getattr(original_extract, "_samplewise_rnnt_wrapped", False):
        @functools.wraps(original_extract)
        def extract_rnnt_loss_cfg(self, cfg=None):
            from omegaconf import OmegaConf, open_dict

            name = _cfg_get(cfg, "loss_name")
            marked = bool(_cfg_get(cfg, MARKER_KEY, False))
            # an activated model's config says loss_name: default (tdt) + use_samplewise_rnnt: true (see activate)
            if cfg is not None and (name == TDT_LOSS_NAME or (marked and name in STOCK_TDT_LOSS_NAMES)):
                opts = tdt_loss_kwargs(cfg)
                cfg = OmegaConf.create(OmegaConf.to_container(cfg))
                with open_dict(cfg):
                    cfg.loss_name = TDT_LOSS_NAME
                    cfg[TDT_KWARGS_KEY] = opts
            elif cfg is not None and name not in OUR_LOSS_NAMES and marked:
                cfg = OmegaConf.create(OmegaConf.to_container(cfg))
                with open_dict(cfg):
                    cfg.loss_name = LOSS_NAME
            return original_extract(self, cfg)

        extract_rnnt_loss_cfg._samplewise_rnnt_wrapped = True
        EncDecRNNTModel.extract_rnnt_loss_cfg = extract_rnnt_loss_cfg

    original_set_decoding = EncDecRNNTModel.set_decoding_type_according_to_loss
    if not getattr(original_set_decoding, "_samplewise_rnnt_wrapped", False):
        @functools.wraps(original_set_decoding)
        def set_decoding_type_according_to_loss(self, decoding_cfg):
            decoding_cfg = original_set_decoding(self, decoding_cfg)
            loss_name, loss_kwargs = self.extract_rnnt_loss_cfg(self.cfg.get("loss", None))
            if loss_name == TDT_LOSS_NAME:  # what NeMo does for 'tdt'
                decoding_cfg.durations = loss_kwargs.durations
            return decoding_cfg

        set_decoding_type_according_to_loss._samplewise_rnnt_wrapped = True
        EncDecRNNTModel.set_decoding_type_according_to_loss = set_decoding_type_according_to_loss

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
