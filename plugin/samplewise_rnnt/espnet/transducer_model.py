"""Task ``asr_transducer``: ``ESPnetASRTransducerModel`` with the sample-wise loss, and its task.

ESPnet's ``ASRTransducerTask`` builds ``ESPnetASRTransducerModel`` unconditionally and its
``forward`` materialises the joint output ``[B, T, U+1, V]`` itself. This module adds

* :class:`SampleWiseASRTransducerModel`: same parameters and ``state_dict`` keys; its
  ``forward`` is ESPnet's with the joint output left to the sample-wise engine (FastEmit,
  auxiliary CTC and LM losses, transducer weight and CER/WER reporting as in ESPnet);
* :func:`install` (run at import; the package's post-import hook imports this module when
  ``espnet2.tasks.asr_transducer`` is imported): ESPnet's ``ASRTransducerTask`` gets a ``--model``
  choice (``espnet``: ESPnet's class, the default; ``samplewise_transducer``: the class above), so that
  the training YAML selects it with ``model: samplewise_transducer``, as in task ``asr``.
"""
from __future__ import annotations

import argparse
import logging
from typing import Dict, List, Tuple, Union

import torch

from .._toolkits import require

require("espnet", "samplewise_rnnt.espnet")

from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel
from espnet2.asr_transducer.utils import get_transducer_task_io
from espnet2.tasks.asr_transducer import ASRTransducerTask
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.class_choices import ClassChoices

from .options import SAMPLEWISE_KEYS, SampleWiseOptions

__all__ = ["SampleWiseASRTransducerModel", "SampleWiseASRTransducerTask", "transducer_model_choices"]

log = logging.getLogger(__name__)


class SampleWiseASRTransducerModel(ESPnetASRTransducerModel):
    """``ESPnetASRTransducerModel`` whose transducer loss is computed sample-wise.

    Takes every argument of ``ESPnetASRTransducerModel`` plus the keys of
    :class:`samplewise_rnnt.espnet.options.SampleWiseOptions`.
    """

    def __init__(self, *args, fused=None, max_chunk_bytes=None, loss_clamp=-1.0, encoder_checkpointing=False,
                 checkpoint_chunk_size=16, checkpoint_sliced_layers=False, **kwargs):
        opts = SampleWiseOptions(fused, max_chunk_bytes, loss_clamp, encoder_checkpointing, checkpoint_chunk_size,
                                 checkpoint_sliced_layers)
        if kwargs.get("use_k2_pruned_loss", False):
            raise ValueError("model: samplewise_transducer computes the full transducer loss; "
                             "use_k2_pruned_loss: true is not supported with it (got use_k2_pruned_loss=True)")
        super().__init__(*args, **kwargs)
        self.samplewise = opts
        opts.apply_checkpointing(self.encoder)
        opts.announce(self)

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor,
                text_lengths: torch.Tensor, **kwargs) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ESPnet's forward (encoder, decoder, losses, stats), the joint output never materialised."""
        assert text_lengths.dim() == 1, text_lengths.shape
        assert speech.shape[0] == speech_lengths.shape[0] == text.shape[0] == text_lengths.shape[0], (
            speech.shape, speech_lengths.shape, text.shape, text_lengths.shape)
        batch_size = speech.shape[0]
        text = text[:, : text_lengths.max()]

        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        decoder_in, target, t_len, u_len = get_transducer_task_io(text, encoder_out_lens, ignore_id=self.ignore_id)
        self.decoder.set_device(encoder_out.device)
        decoder_out = self.decoder(decoder_in)

        loss_trans = self.samplewise.loss(encoder_out, decoder_out, self.joint_network, target, t_len, u_len,
                                          blank=0, fastemit_lambda=self.fastemit_lambda)

        loss_ctc, loss_lm = 0.0, 0.0
        if self.use_auxiliary_ctc:
            loss_ctc = self._calc_ctc_loss(encoder_out, target, t_len, u_len)
        if self.use_auxiliary_lm_loss:
            loss_lm = self._calc_lm_loss(decoder_out, target)
        loss = (self.transducer_weight * loss_trans + self.auxiliary_ctc_weight * loss_ctc
                + self.auxiliary_lm_loss_weight * loss_lm)

        if not self.training and (self.report_cer or self.report_wer):
            if self.error_calculator is None:
                from espnet2.asr_transducer.error_calculator import ErrorCalculator

                self.error_calculator = ErrorCalculator(
                    self.decoder, self.joint_network, self.token_list, self.sym_space, self.sym_blank,
                    nstep=self.validation_nstep, report_cer=self.report_cer, report_wer=self.report_wer)
            cer_transducer, wer_transducer = self.error_calculator(encoder_out, target, t_len)
        else:
            cer_transducer, wer_transducer = None, None

        stats = dict(
            loss=loss.detach(),
            loss_transducer=loss_trans.detach(),
            loss_aux_ctc=loss_ctc.detach() if loss_ctc > 0.0 else None,
            loss_aux_lm=loss_lm.detach() if loss_lm > 0.0 else None,
            cer_transducer=cer_transducer,
            wer_transducer=wer_transducer,
        )
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight


#: the ``--model`` choices of :class:`SampleWiseASRTransducerTask`
transducer_model_choices = ClassChoices(
    "model",
    classes=dict(espnet=ESPnetASRTransducerModel, samplewise_transducer=SampleWiseASRTransducerModel),
    type_check=ESPnetASRTransducerModel,
    default="espnet",
)


def _add_task_arguments(cls, parser: argparse.ArgumentParser):
    _STOCK_ADD_TASK_ARGUMENTS(cls, parser)
    if "--model" in parser._option_string_actions:
        return
    group = parser.add_argument_group(description="Sample-wise transducer loss (samplewise_rnnt)")
    group.add_argument(
        "--model", type=lambda x: x.lower(), default=transducer_model_choices.default,
        choices=transducer_model_choices.choices(),
        help="The model class: espnet (ESPnet's ESPnetASRTransducerModel) or samplewise_transducer "
             "(the same model with the sample-wise loss; model_conf also takes "
             + ", ".join(SAMPLEWISE_KEYS) + ")")


def _build_model(cls, args: argparse.Namespace) -> ESPnetASRTransducerModel:
    name = getattr(args, "model", "espnet") or "espnet"
    model_class = transducer_model_choices.get_class(name)
    model_conf = dict(args.model_conf)
    extra = {k: model_conf.pop(k) for k in list(model_conf) if k in SAMPLEWISE_KEYS}
    if model_class is ESPnetASRTransducerModel:
        if extra:
            raise ValueError(f"model_conf keys {sorted(extra)} need model: samplewise_transducer "
                             f"(got model: {name})")
        return _STOCK_BUILD_MODEL(cls, args)
    # ESPnet builds the frontend ... joint network and a stock model; rebuild the model class
    # around the same submodules (same parameters, same state_dict keys)
    args.model_conf = model_conf
    try:
        stock = _STOCK_BUILD_MODEL(cls, args)
    finally:
        model_conf.update(extra)
        args.model_conf = model_conf
    stock_conf = {k: v for k, v in model_conf.items() if k not in SAMPLEWISE_KEYS}
    return SampleWiseASRTransducerModel(
        vocab_size=stock.vocab_size, token_list=stock.token_list, frontend=stock.frontend,
        specaug=stock.specaug, normalize=stock.normalize, encoder=stock.encoder, decoder=stock.decoder,
        joint_network=stock.joint_network, **stock_conf, **extra)


_STOCK_ADD_TASK_ARGUMENTS = ASRTransducerTask.__dict__["add_task_arguments"].__func__
_STOCK_BUILD_MODEL = ASRTransducerTask.__dict__["build_model"].__func__


def install() -> None:
    """Give ESPnet's ``ASRTransducerTask`` a ``--model`` option (``espnet``, the default, or
    ``samplewise_transducer``), so that ``model: samplewise_transducer`` in an asr_transducer training
    config selects :class:`SampleWiseASRTransducerModel` in ESPnet's own programs
    (``espnet2.bin.asr_transducer_train`` / ``asr_transducer_inference``). Idempotent.

    ESPnet's task hard-codes its model class and has no ``--model`` option; this adds one with the
    name and the meaning that task ``asr`` gives it. Configs without ``model:`` build ESPnet's model as before.
    """
    if getattr(ASRTransducerTask, "_samplewise_rnnt_installed", False):
        return
    ASRTransducerTask.add_task_arguments = classmethod(_add_task_arguments)
    ASRTransducerTask.build_model = classmethod(_build_model)
    ASRTransducerTask._samplewise_rnnt_installed = True


install()


class SampleWiseASRTransducerTask(ASRTransducerTask):
    """``ASRTransducerTask`` with the ``--model`` choice (``espnet`` or ``samplewise_transducer``).

    Importing this module adds that choice to ``ASRTransducerTask`` itself (:func:`install`); the
    subclass stays for code that names it."""
