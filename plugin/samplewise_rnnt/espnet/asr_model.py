"""Task ``asr`` (``decoder: transducer``): ESPnet's ``ESPnetASRModel`` with the sample-wise loss.

Selected in the training YAML by ``model: samplewise_transducer`` (registered by
:func:`samplewise_rnnt.espnet.register`, which the package's post-import hook runs when
``espnet2.tasks.asr`` is imported, and the ``samplewise_rnnt.espnet.asr_*`` entry points at import). The parameters and ``state_dict`` keys are those of ``ESPnetASRModel``; everything but the
transducer loss is ESPnet's own code (CTC weight, intermediate CTC, CER/WER reporting). The
transducer loss is ESPnet's (warp-transducer ``RNNTLoss(blank=blank_id, fastemit_lambda=0)``,
reduction ``mean`` = sum of per-utterance losses / B), computed with
:func:`samplewise_rnnt.samplewise_rnnt_loss` without materialising ``[B, T, U+1, V]``.
warp-transducer is never imported.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr_transducer.utils import get_transducer_task_io

from .options import SampleWiseOptions

__all__ = ["SampleWiseESPnetASRModel"]


class SampleWiseESPnetASRModel(ESPnetASRModel):
    """``ESPnetASRModel`` (transducer decoder) whose transducer loss is computed sample-wise.

    Takes every argument of ``ESPnetASRModel`` plus the keys of
    :class:`samplewise_rnnt.espnet.options.SampleWiseOptions` (``fused``, ``max_chunk_bytes``,
    ``loss_clamp``, ``encoder_checkpointing``, ``checkpoint_chunk_size``).
    """

    def __init__(
        self,
        vocab_size: int,
        token_list: Union[Tuple[str, ...], List[str]],
        frontend, specaug, normalize, preencoder, encoder, postencoder, decoder, ctc,
        joint_network: Optional[torch.nn.Module],
        ctc_weight: float = 0.5,
        transducer_multi_blank_durations: List = [],
        fused: Optional[bool] = None,
        max_chunk_bytes: Optional[int] = None,
        loss_clamp: float = -1.0,
        encoder_checkpointing: bool = False,
        checkpoint_chunk_size: int = 16,
        checkpoint_sliced_layers: bool = False,
        **kwargs,
    ):
        self_opts = SampleWiseOptions(fused, max_chunk_bytes, loss_clamp, encoder_checkpointing,
                                      checkpoint_chunk_size, checkpoint_sliced_layers)
        if joint_network is None:
            raise ValueError("model: samplewise_transducer needs a transducer: set decoder: transducer "
                             "and joint_net_conf in the config (got no joint network)")
        if transducer_multi_blank_durations:
            raise ValueError("model: samplewise_transducer does not support transducer_multi_blank_durations "
                             f"(got {transducer_multi_blank_durations!r}); use model: espnet for multi-blank")
        report = kwargs.get("report_cer", True) or kwargs.get("report_wer", True)
        # ESPnet's constructor imports warp-transducer in its transducer branch: build the model
        # through its attention branch (same frontend ... ctc set-up; the decoder is kept because
        # ctc_weight < 1 there), then finish it as the transducer branch does, minus the import.
        super().__init__(vocab_size=vocab_size, token_list=token_list, frontend=frontend, specaug=specaug,
                         normalize=normalize, preencoder=preencoder, encoder=encoder, postencoder=postencoder,
                         decoder=decoder, ctc=ctc, joint_network=None,
                         ctc_weight=ctc_weight if ctc_weight < 1.0 else 0.5, **kwargs)
        del self.criterion_att  # attention-branch loss: no parameters, no state_dict keys
        self.ctc_weight = ctc_weight
        self.ctc = None if ctc_weight == 0.0 else ctc
        self.use_transducer_decoder = True
        self.joint_network = joint_network
        self.error_calculator = None
        if report:
            from espnet2.asr.transducer.error_calculator import ErrorCalculatorTransducer

            self.error_calculator_trans = ErrorCalculatorTransducer(
                decoder, joint_network, token_list, kwargs.get("sym_space", "<space>"),
                kwargs.get("sym_blank", "<blank>"), report_cer=kwargs.get("report_cer", True),
                report_wer=kwargs.get("report_wer", True))
        else:
            self.error_calculator_trans = None
            if self.ctc_weight != 0:
                from espnet.nets.e2e_asr_common import ErrorCalculator

                self.error_calculator = ErrorCalculator(
                    token_list, kwargs.get("sym_space", "<space>"), kwargs.get("sym_blank", "<blank>"),
                    False, False)
        self.samplewise = self_opts
        self_opts.apply_checkpointing(self.encoder)
        self_opts.announce(self)

    def _calc_transducer_loss(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor,
                              labels: torch.Tensor):
        """ESPnet's transducer branch with the sample-wise loss (returns loss, CER, WER)."""
        decoder_in, target, t_len, u_len = get_transducer_task_io(
            labels, encoder_out_lens, ignore_id=self.ignore_id, blank_id=self.blank_id)
        self.decoder.set_device(encoder_out.device)
        decoder_out = self.decoder(decoder_in)
        loss_transducer = self.samplewise.loss(encoder_out, decoder_out, self.joint_network, target, t_len,
                                               u_len, blank=self.blank_id)
        cer_transducer, wer_transducer = None, None
        if not self.training and self.error_calculator_trans is not None:
            cer_transducer, wer_transducer = self.error_calculator_trans(encoder_out, target)
        return loss_transducer, cer_transducer, wer_transducer
