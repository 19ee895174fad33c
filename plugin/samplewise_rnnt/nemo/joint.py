"""``SampleWiseRNNTJoint``: NeMo's ``RNNTJoint`` whose fused loss step runs the sample-wise engine.

Two lattices: standard RNN-T (``num_extra_outputs == 0``; :func:`samplewise_rnnt.samplewise_rnnt_loss`) and
TDT, the Token-and-Duration Transducer (``num_extra_outputs`` duration logits after the ``V+1`` token
logits; :func:`samplewise_rnnt.samplewise_tdt_loss`, selected by a ``durations`` entry in the options).

The class adds no parameter and no buffer: ``state_dict`` keys, ``joint``, ``joint_after_projection``,
``project_encoder``, ``project_prednet`` and the non-fused ``forward`` are RNNTJoint's own, so decoding and
export are unchanged. Only the fused training/validation step (``fuse_loss_wer`` set, called as
``joint(encoder_outputs, decoder_outputs, encoder_lengths, transcripts, transcript_lengths, compute_wer)``)
differs: instead of NeMo's sub-batch loop, which keeps every sub-batch's ``[b, T, U+1, V+1]`` graph alive
until backward, the loss and its gradients are computed by :func:`samplewise_rnnt.samplewise_rnnt_loss`,
one sample (or one planned group) at a time. It returns what NeMo's fused path returns:
``(loss, wer, wer_num, wer_denom)``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from nemo.collections.asr.modules.rnnt import RNNTJoint

from .._toolkits import announce, process_tag
from ..engine import samplewise_rnnt_loss
from .checkpointing import merge_options, plain_container

__all__ = ["SampleWiseRNNTJoint", "check_samplewise_kwargs", "check_samplewise_tdt_kwargs",
           "SAMPLEWISE_KWARGS_DEFAULTS", "SAMPLEWISE_TDT_KWARGS_DEFAULTS", "TDT_LOSS_KEYS", "NEMO_REDUCTIONS"]

#: the engine options ``model.loss.samplewise_rnnt_kwargs`` may carry, with their defaults
SAMPLEWISE_KWARGS_DEFAULTS: Dict[str, Any] = {
    "max_chunk_bytes": None,
    "fused": None,
    "fastemit_lambda": 0.0,
    "clamp": -1.0,
}

#: NeMo's own TDT loss options (``model.loss.tdt_kwargs``), with NeMo's defaults (``durations`` has none)
TDT_LOSS_KEYS = ("fastemit_lambda", "clamp", "durations", "sigma", "omega")

#: the options ``model.loss.samplewise_tdt_kwargs`` may carry: the engine's and NeMo's ``tdt_kwargs`` keys
SAMPLEWISE_TDT_KWARGS_DEFAULTS: Dict[str, Any] = {
    **SAMPLEWISE_KWARGS_DEFAULTS,
    "durations": None,
    "sigma": 0.0,
    "omega": 0.0,
}

#: NeMo's ``rnnt_reduction`` values (``None`` keeps per-sample losses)
NEMO_REDUCTIONS = (None, "mean_batch", "mean", "sum", "mean_volume")


def check_samplewise_kwargs(kwargs, where: str = "model.loss.samplewise_rnnt_kwargs") -> Dict[str, Any]:
    """Validate the engine options and return them completed with defaults (a new dict).

    Raises ``ValueError`` naming ``where``, the bad key or value, and the valid choices.
    """
    if kwargs is None:
        kwargs = {}
    kwargs = plain_container(kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where} must be a mapping of options, got {type(kwargs).__name__}: {kwargs!r}")
    out = merge_options(kwargs, SAMPLEWISE_KWARGS_DEFAULTS, where)
    mcb = out["max_chunk_bytes"]
    if mcb is not None and (isinstance(mcb, bool) or not isinstance(mcb, int) or mcb <= 0):
        raise ValueError(f"{where}.max_chunk_bytes must be null or a positive integer (bytes), got {mcb!r}")
    if out["fused"] is not None and not isinstance(out["fused"], bool):
        raise ValueError(f"{where}.fused must be null (automatic), true or false, got {out['fused']!r}")
    for key in ("fastemit_lambda", "clamp"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
            raise ValueError(f"{where}.{key} must be a number, got {out[key]!r}")
        out[key] = float(out[key])
    if out["fastemit_lambda"] < 0:
        raise ValueError(f"{where}.fastemit_lambda must be >= 0, got {out['fastemit_lambda']!r}")
    return out


def check_samplewise_tdt_kwargs(kwargs, where: str = "model.loss.samplewise_tdt_kwargs",
                                require_durations: bool = True) -> Dict[str, Any]:
    """Validate the TDT options (engine options plus NeMo's ``tdt_kwargs`` keys) and complete them.

    ``durations``: the durations the joint's extra outputs stand for, distinct ascending integers >= 0 that
    contain 0 and 1 (NeMo's rule; its configs: ``[0, 1, 2, 3, 4]``); ``sigma`` (logit under-normalisation) and ``omega`` (weight
    of the standard RNN-T loss) as NeMo's TDT loss. Raises ``ValueError`` naming ``where`` and the bad value.
    """
    if kwargs is None:
        kwargs = {}
    kwargs = plain_container(kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where} must be a mapping of options, got {type(kwargs).__name__}: {kwargs!r}")
    tdt_only = {k: kwargs[k] for k in ("durations", "sigma", "omega") if k in kwargs}
    rest = {k: v for k, v in kwargs.items() if k not in tdt_only}
    # unknown keys are reported against every valid TDT option
    merge_options(rest, SAMPLEWISE_TDT_KWARGS_DEFAULTS, where)
    out = check_samplewise_kwargs(rest, where)
    out.update({"durations": None, "sigma": 0.0, "omega": 0.0}, **tdt_only)
    durations = out["durations"]
    if durations is None:
        if require_durations:
            raise ValueError(f"{where}.durations is required for TDT (the durations of the joint's extra "
                             f"outputs, e.g. [0, 1, 2, 3, 4], as NeMo's tdt_kwargs.durations)")
    else:
        if isinstance(durations, (str, bytes)) or not hasattr(durations, "__iter__"):
            raise ValueError(f"{where}.durations must be a list of integers, got {durations!r}")
        durations = list(durations)
        if not durations or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in durations):
            raise ValueError(f"{where}.durations must be a non-empty list of integers >= 0, got {durations!r}")
        if len(set(durations)) != len(durations):
            raise ValueError(f"{where}.durations must not repeat a duration, got {durations!r}")
        if durations != sorted(durations) or 0 not in durations or 1 not in durations:
            raise ValueError(f"{where}.durations must be ascending and contain 0 and 1 (NeMo's TDT rule), got "
                             f"{durations!r}")
        out["durations"] = durations
    for key in ("sigma", "omega"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)):
            raise ValueError(f"{where}.{key} must be a number, got {out[key]!r}")
        out[key] = float(out[key])
    if not 0.0 <= out["omega"] <= 1.0:
        raise ValueError(f"{where}.omega must be in [0, 1] (the weight of the standard RNN-T loss), got "
                         f"{out['omega']!r}")
    return out


def _engine_function(name: str):
    """The engine's entry point ``name`` (looked up at call time)."""
    from .. import engine

    fn = getattr(engine, name, None)
    if fn is None:
        raise RuntimeError(f"this samplewise_rnnt build has no {name} (samplewise_rnnt.engine); the NeMo "
                           f"adapter needs it for this model")
    return fn


_first_step_announced = False


class _PointwiseJoint(torch.nn.Module):
    """The engine's view of an RNNTJoint: ``(enc [n,T,1,He], pred [n,1,U+1,Hp]) -> logits [n,T,U+1,V+1]``.

    It shares (does not copy) the joint's ``enc``, ``pred``, ``joint_net`` (and adapter) modules, so the
    engine's parameter gradients land on the joint's own parameters, and its dropout follows the joint's
    train/eval mode exactly as in NeMo. With ``projected=True`` the inputs are already projected
    (``project_encoder`` / ``project_prednet`` ran outside, e.g. for HAINAN's decoder masking) and only
    ``joint_net`` (and adapters) run here. No log-softmax: the engine's loss normalises the logits itself.
    """

    def __init__(self, joint: RNNTJoint, projected: bool):
        super().__init__()
        self.projected = projected
        if not projected:
            self.enc = joint.enc
            self.pred = joint.pred
        self.joint_net = joint.joint_net
        self._use_adapters = bool(joint.is_adapter_available())
        if self._use_adapters:
            self.adapter_layer = joint.adapter_layer
        object.__setattr__(self, "_owner", joint)  # not registered: no module cycle

    def forward(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if not self.projected:
            enc = self.enc(enc)
            pred = self.pred(pred)
        inp = enc + pred
        if self._use_adapters:
            inp = self._owner.forward_enabled_adapters(inp)
        return self.joint_net(inp)


class SampleWiseRNNTJoint(RNNTJoint):
    """Drop-in for ``nemo.collections.asr.modules.RNNTJoint`` with a sample-wise fused loss step.

    Same constructor, parameters, ``state_dict`` keys and decoding methods as RNNTJoint. The fused step needs
    the NeMo model's ``RNNTLoss`` (only its ``reduction`` and blank are used) and ``WER`` objects, set with
    ``set_loss`` / ``set_wer`` (or ``set_fuse_loss_wer(True, loss, wer)``), as for RNNTJoint; the model-level
    switch (:func:`samplewise_rnnt.nemo.activate`) does all of it.

    Engine options live in ``self.samplewise_kwargs`` (see :data:`SAMPLEWISE_KWARGS_DEFAULTS`).
    """

    def __init__(self, *args, samplewise_rnnt_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_extra_outputs:  # TDT: the durations may come later (activate reads the model's loss config)
            self.samplewise_kwargs = check_samplewise_tdt_kwargs(samplewise_rnnt_kwargs, where="samplewise_rnnt_kwargs",
                                                                 require_durations=False)
        else:
            self.samplewise_kwargs = check_samplewise_kwargs(samplewise_rnnt_kwargs, where="samplewise_rnnt_kwargs")

    # the class may also be assigned to an existing RNNTJoint (``activate``): tolerate a missing attribute
    def _swr_options(self) -> Dict[str, Any]:
        opts = getattr(self, "samplewise_kwargs", None)
        if opts is None:
            opts = self.samplewise_kwargs = check_samplewise_kwargs(None)
        return opts

    @property
    def samplewise_lattice(self) -> str:
        """``"tdt"`` when the options name durations (see :func:`check_samplewise_tdt_kwargs`), else ``"rnnt"``."""
        return "tdt" if self._swr_options().get("durations") is not None else "rnnt"

    def forward(self, encoder_outputs, decoder_outputs=None, encoder_lengths=None, transcripts=None,
                transcript_lengths=None, compute_wer=False, keep_hypotheses=False):
        if not self._fuse_loss_wer:
            return super().forward(encoder_outputs=encoder_outputs, decoder_outputs=decoder_outputs,
                                   encoder_lengths=encoder_lengths, transcripts=transcripts,
                                   transcript_lengths=transcript_lengths, compute_wer=compute_wer,
                                   keep_hypotheses=keep_hypotheses)
        if self._loss is None or self._wer is None:
            raise ValueError("`fuse_loss_wer` is set, but `loss` and `wer` modules were not provided! "
                             "(use set_loss/set_wer, or samplewise_rnnt.nemo.activate(model))")
        if encoder_lengths is None or transcript_lengths is None:
            raise ValueError("`fuse_loss_wer` is set, therefore encoder and target lengths must be provided as well!")
        if transcripts is None:
            raise ValueError("the fused step needs `transcripts`")

        loss = None
        if decoder_outputs is not None:
            loss = self.samplewise_loss(encoder_outputs.transpose(1, 2), decoder_outputs.transpose(1, 2),
                                        encoder_lengths, transcripts, transcript_lengths)

        wer = wer_num = wer_denom = None
        hypotheses = []
        if compute_wer:
            if self.training:
                original_sync = self.wer._to_sync
                self.wer._to_sync = False
            try:
                self.wer.update(predictions=encoder_outputs.detach(), predictions_lengths=encoder_lengths,
                                targets=transcripts.detach(), targets_lengths=transcript_lengths)
                if keep_hypotheses:
                    hypotheses = self.wer.get_hypotheses()
                wer, wer_num, wer_denom = self.wer.compute()
                self.wer.reset()
            finally:
                if self.training:
                    self.wer._to_sync = original_sync
        self.hypotheses = hypotheses if keep_hypotheses else None
        return loss, wer, wer_num, wer_denom

    def samplewise_loss(self, f: torch.Tensor, g: torch.Tensor, encoder_lengths, transcripts,
                        transcript_lengths) -> torch.Tensor:
        """The transducer loss of a batch with NeMo's reduction, computed by the sample-wise engine.

        ``f``: encoder outputs ``[B, T, He]``; ``g``: prediction-network outputs ``[B, U+1, Hp]`` (blank first);
        ``transcripts`` ``[B, U]``; lengths ``[B]``. Value and gradients equal NeMo's non-fused
        ``RNNTLoss(joint(f, g), ...)`` with the same reduction: NeMo's RNN-T loss, or for a TDT joint
        (options with ``durations``) NeMo's TDT loss, whose blank is the last token logit (index ``V``, before
        the ``num_extra_outputs`` duration logits).
        """
        opts = self._swr_options()
        tdt = opts.get("durations") is not None
        if tdt and len(opts["durations"]) != self.num_extra_outputs:
            raise ValueError(f"TDT: {len(opts['durations'])} durations {opts['durations']} but the joint has "
                             f"num_extra_outputs={self.num_extra_outputs}")
        if not tdt and self.num_extra_outputs:
            raise ValueError(f"samplewise_rnnt handles standard RNN-T joints; this joint has num_extra_outputs="
                             f"{self.num_extra_outputs}: a TDT model needs loss_name samplewise_tdt (with "
                             f"durations); multi-blank RNN-T is not supported")
        reduction = getattr(self._loss, "reduction", "mean_batch")
        if reduction not in NEMO_REDUCTIONS:
            raise ValueError(f"rnnt_reduction must be one of {list(NEMO_REDUCTIONS)}, got {reduction!r}")

        # drop the padding beyond the longest sample, as NeMo's fused step does
        T = int(encoder_lengths.max())
        U = int(transcript_lengths.max())
        f = f.narrow(1, 0, T)
        g = g.narrow(1, 0, U + 1)
        targets = transcripts.narrow(1, 0, U)

        projected = False
        if self.training and self.masking_prob > 0:
            # HAINAN decoder masking acts on the projected prediction output: project outside the engine
            f = self.project_encoder(f)
            g = self.project_prednet(g)
            keep = torch.gt(torch.rand([g.shape[0], g.shape[1], 1], device=g.device), self.masking_prob)
            g = g * keep
            projected = True
        pointwise = _PointwiseJoint(self, projected)
        global _first_step_announced
        if self.training and torch.is_grad_enabled() and not _first_step_announced:
            _first_step_announced = True
            announce(f"NeMo ({process_tag(training_step=True)}): training step on the sample-wise engine "
                     f"({'samplewise_tdt_loss' if tdt else 'samplewise_rnnt_loss'}, B={f.shape[0]}, "
                     f"reduction {reduction!r}, {opts})")
        if not torch.is_grad_enabled():
            # validation (no_grad / inference_mode): the loss only. Detached inputs and a plain callable
            # (whose parameters the engine does not see) tell the engine that no gradient is wanted.
            f, g = f.detach(), g.detach()
            module = pointwise

            def pointwise(enc, pred):
                return module(enc, pred)

        if tdt:
            from ..tdt import draw_rnnt_mode

            samplewise_tdt_loss = _engine_function("samplewise_tdt_loss")
            blank = self.num_classes_with_blank - 1 - self.num_extra_outputs  # NeMo's TDT blank: V
            # NeMo draws omega (the standard RNN-T loss instead of TDT) once per batch; the "mean" reduction
            # below makes several engine calls, so the draw is made here once and each call gets 0 or 1
            omega = 1.0 if draw_rnnt_mode(opts["omega"]) else 0.0

        def engine(sel=None, red="sum"):
            ff, gg, tt, el, tl = f, g, targets, encoder_lengths, transcript_lengths
            if sel is not None:
                ff, gg, tt, el, tl = ff[sel], gg[sel], tt[sel], el[sel], tl[sel]
            common = dict(reduction=red, clamp=opts["clamp"], fastemit_lambda=opts["fastemit_lambda"],
                          max_chunk_bytes=opts["max_chunk_bytes"], fused=opts["fused"])
            if tdt:
                return samplewise_tdt_loss(ff, gg, pointwise, tt, el, tl, durations=opts["durations"], blank=blank,
                                           sigma=opts["sigma"], omega=omega, **common)
            return samplewise_rnnt_loss(ff, gg, pointwise, tt, el, tl, blank=-1, **common)

        if reduction == "mean_batch":
            return engine(red="sum") / f.shape[0] if tdt else engine(red="mean")
        if reduction == "sum":
            return engine(red="sum")
        if reduction == "mean_volume":
            # NeMo: sum of losses / sum of target lengths
            return engine(red="sum") / transcript_lengths.sum().to(torch.float32)
        if reduction is None:
            return engine(red="none")
        # "mean": mean over the batch of loss_b / U_b. Samples with the same U_b share one weight, so one
        # scalar-reduced engine call per distinct target length keeps the gradients exact (also with
        # dropout, which a per-sample reduction would have to replay in backward).
        B = f.shape[0]
        total = None
        for u in torch.unique(transcript_lengths).tolist():
            sel = (transcript_lengths == u).nonzero().flatten()
            part = engine(sel, red="sum") / (float(u) * B)
            total = part if total is None else total + part
        return total
