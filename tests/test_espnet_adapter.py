"""ESPnet adapter: loss and every parameter gradient equal ESPnet's batched computation.

The reference is ESPnet's own code path with the joint output materialised ``[B, T, U+1, V]``
and the exact batched loss ``samplewise_rnnt.RNNTLoss`` in place of warp-transducer (which is
not installed): task ``asr`` runs ``ESPnetASRModel._calc_transducer_loss`` (ESPnet's method),
task ``asr_transducer`` runs the stock ``ESPnetASRTransducerModel.forward``.
"""
from __future__ import annotations

import copy
import importlib.util
import sys
import types

import pytest
import torch

pytest.importorskip("espnet2")

import samplewise_rnnt as swr  # noqa: E402
from samplewise_rnnt.espnet import register  # noqa: E402

register()

from espnet2.asr.espnet_model import ESPnetASRModel  # noqa: E402
from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel  # noqa: E402
from espnet2.tasks.asr import ASRTask  # noqa: E402

from samplewise_rnnt.espnet.asr_model import SampleWiseESPnetASRModel  # noqa: E402
from samplewise_rnnt.espnet.checkpointing import checkpointed_modules, enable_encoder_checkpointing  # noqa: E402
from samplewise_rnnt.espnet.transducer_model import (  # noqa: E402
    SampleWiseASRTransducerModel,
    SampleWiseASRTransducerTask,
)

TOKENS = ["<blank>", "<unk>"] + list("abcdefghijk") + ["<sos/eos>"]
FEAT = 20


def asr_args(cnn=True, dropout=0.1, **model_conf):
    conf = dict(ctc_weight=0.3, report_cer=False, report_wer=False)
    conf.update(model_conf)
    args = ASRTask.get_parser().parse_args([])
    for k, v in dict(
        token_list=list(TOKENS), input_size=FEAT, frontend=None, normalize=None, specaug=None,
        encoder="conformer",
        encoder_conf=dict(output_size=32, attention_heads=2, linear_units=48, num_blocks=2, input_layer="conv2d",
                          dropout_rate=dropout, positional_dropout_rate=dropout, attention_dropout_rate=dropout,
                          rel_pos_type="latest", pos_enc_layer_type="rel_pos",
                          selfattention_layer_type="rel_selfattn", activation_type="swish", macaron_style=True,
                          use_cnn_module=cnn, cnn_module_kernel=5),
        decoder="transducer",
        decoder_conf=dict(rnn_type="lstm", num_layers=1, hidden_size=24, dropout=0.1, dropout_embed=0.1),
        joint_net_conf=dict(joint_space_size=40),
        model="samplewise_transducer", model_conf=conf,
    ).items():
        setattr(args, k, v)
    return args


def transducer_args(model="samplewise_transducer", norm="batch_norm", dropout=0.1, **model_conf):
    conf = dict(fastemit_lambda=0.01, auxiliary_ctc_weight=0.3, auxiliary_lm_loss_weight=0.2)
    conf.update(model_conf)
    args = SampleWiseASRTransducerTask.get_parser().parse_args([])
    for k, v in dict(
        token_list=list(TOKENS), input_size=FEAT, frontend=None, normalize=None, specaug=None,
        encoder_conf=dict(
            main_conf=dict(pos_wise_act_type="swish", conv_mod_act_type="swish", pos_enc_dropout_rate=dropout,
                           conv_mod_norm_type=norm),
            input_conf=dict(conv_size=16, subsampling_factor=4, vgg_like=False, output_size=None),
            body_conf=[dict(block_type="conformer", hidden_size=32, linear_size=48, heads=2,
                            conv_mod_kernel_size=5, num_blocks=2, dropout_rate=dropout,
                            pos_wise_dropout_rate=dropout, att_dropout_rate=dropout)]),
        decoder="rnn", decoder_conf=dict(embed_size=24, hidden_size=24, dropout_rate=0.1, embed_dropout_rate=0.1),
        joint_network_conf=dict(joint_space_size=40),
        model=model, model_conf=conf,
    ).items():
        setattr(args, k, v)
    return args


def batch(seed=0, B=4):
    g = torch.Generator().manual_seed(seed)
    sl = torch.tensor([70, 61, 44, 37][:B])
    speech = torch.randn(B, int(sl.max()), FEAT, generator=g)
    ul = torch.tensor([7, 5, 3, 6][:B])
    text = torch.randint(2, len(TOKENS) - 1, (B, int(ul.max())), generator=g)
    for b in range(B):
        text[b, ul[b]:] = -1
    return speech, sl, text, ul


def run_step(model, data, seed=123):
    """One training forward/backward; returns the loss, its stats and every parameter gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    speech, sl, text, ul = data
    loss, stats, _ = model(speech.clone(), sl.clone(), text.clone(), ul.clone())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), stats, grads


def assert_same_step(got, ref):
    (l1, s1, g1), (l2, s2, g2) = got, ref
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-5)
    assert set(g1) == set(g2)
    # summation order differs (slices, per-sample accumulation): tolerance relative to the largest
    # gradient, which also covers gradients that are zero in exact arithmetic (a bias before batch norm)
    top = max(float(g.abs().max()) for g in g2.values())
    for n in g2:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-4, atol=1e-6 * top, msg=lambda m: f"{n}: {m}")
    for k in s2:
        if isinstance(s2[k], torch.Tensor):
            torch.testing.assert_close(s1[k], s2[k], rtol=1e-5, atol=1e-5)


# ---- task asr ----------------------------------------------------------------------------------
def asr_reference(model):
    """The same weights, ESPnet's own _calc_transducer_loss on materialised logits (exact loss)."""
    ref = copy.deepcopy(model)
    ref.criterion_transducer = swr.RNNTLoss(blank=ref.blank_id, reduction="mean")
    ref._calc_transducer_loss = types.MethodType(ESPnetASRModel._calc_transducer_loss, ref)
    return ref


def test_asr_model_state_dict_keys_and_no_warp_transducer():
    torch.manual_seed(0)
    model = ASRTask.build_model(asr_args())
    assert type(model) is SampleWiseESPnetASRModel and isinstance(model, ESPnetASRModel)
    expected = set()
    for name in ("frontend", "specaug", "normalize", "preencoder", "encoder", "postencoder", "decoder", "ctc",
                 "joint_network"):
        sub = getattr(model, name)
        if sub is not None:
            expected |= {f"{name}.{k}" for k in sub.state_dict()}
    assert set(model.state_dict()) == expected
    assert importlib.util.find_spec("warprnnt_pytorch") is None
    run_step(model, batch())
    assert "warprnnt_pytorch" not in sys.modules


@pytest.mark.parametrize("checkpointing,cnn,dropout,mode", [
    (False, True, 0.1, None),
    (True, True, 0.1, "whole"),      # conformer with batch norm: layers recomputed for the whole batch
    (True, False, 0.0, "sliced(3)"),  # no batch norm: layers recomputed in slices of 3 utterances
    (True, True, 0.0, "sliced_parts"),  # batch norm, attention and feed-forward sliced inside
])
def test_asr_step_equals_batched(checkpointing, cnn, dropout, mode):
    torch.manual_seed(0)
    extra = dict(checkpoint_sliced_layers=True) if mode == "sliced_parts" else {}
    model = ASRTask.build_model(asr_args(cnn=cnn, dropout=dropout, encoder_checkpointing=checkpointing,
                                         checkpoint_chunk_size=3, **extra))
    plain = ASRTask.build_model(asr_args(cnn=cnn, dropout=dropout))
    plain.load_state_dict(model.state_dict())
    assert bool(checkpointed_modules(model.encoder)) == checkpointing
    names = checkpointed_modules(model.encoder)
    if mode == "sliced_parts":
        assert {"encoders.1:whole", "encoders.1.self_attn:sliced(3)", "encoders.1.feed_forward:sliced(3)",
                "encoders.1.feed_forward_macaron:sliced(3)"} <= set(names)
    elif mode:
        assert f"encoders.1:{mode}" in names
    data = batch()
    got = run_step(model, data)
    assert_same_step(got, run_step(asr_reference(plain), data))
    assert got[1]["loss_ctc"] is not None and torch.isfinite(got[0]).all()


# ---- task asr_transducer -----------------------------------------------------------------------
@pytest.mark.parametrize("checkpointing,norm,dropout,mode", [
    (False, "batch_norm", 0.1, None),
    (True, "batch_norm", 0.1, "whole"),   # the conformer's batch norm: layers recomputed for the whole batch
    (True, "batch_norm", 0.0, "sliced_parts"),  # attention and feed-forward sliced inside the layers
])
def test_asr_transducer_step_equals_batched(checkpointing, norm, dropout, mode):
    torch.manual_seed(0)
    ref = SampleWiseASRTransducerTask.build_model(transducer_args(model="espnet", norm=norm, dropout=dropout))
    assert type(ref) is ESPnetASRTransducerModel
    ref.criterion_transducer = swr.RNNTLoss(blank=0, reduction="mean", fastemit_lambda=ref.fastemit_lambda)
    extra = dict(checkpoint_sliced_layers=True) if mode == "sliced_parts" else {}
    model = SampleWiseASRTransducerTask.build_model(
        transducer_args(norm=norm, dropout=dropout, encoder_checkpointing=checkpointing, checkpoint_chunk_size=3,
                        **extra))
    assert type(model) is SampleWiseASRTransducerModel
    names = checkpointed_modules(model.encoder)
    if mode == "sliced_parts":
        assert {"encoders.blocks.1:whole", "encoders.blocks.1.self_att:sliced(3)",
                "encoders.blocks.1.feed_forward:sliced(3)"} <= set(names)
    elif mode:
        assert f"encoders.blocks.1:{mode}" in names
    model.load_state_dict(ref.state_dict(), strict=True)  # same keys, both ways
    assert set(model.state_dict()) == set(ref.state_dict())
    data = batch(1)
    got = run_step(model, data)
    assert_same_step(got, run_step(ref, data))
    assert got[1]["loss_aux_ctc"] is not None and got[1]["loss_aux_lm"] is not None
    assert "warprnnt_pytorch" not in sys.modules


# ---- encoder checkpointing ---------------------------------------------------------------------
@pytest.mark.parametrize("input_layer", ["conv2d", "conv2d2", "conv2d6", "conv2d8"])
def test_checkpointed_front_end_equals_original(input_layer):
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.manual_seed(0)
    enc = ConformerEncoder(FEAT, output_size=16, attention_heads=2, linear_units=16, num_blocks=1,
                           input_layer=input_layer, dropout_rate=0.1, positional_dropout_rate=0.1)
    ref = copy.deepcopy(enc)
    names = enable_encoder_checkpointing(enc, chunk_size=2)
    front = "embed:whole" if input_layer == "conv2d8" else "embed:sliced(2)"
    assert front in names and "encoders.0:whole" in names
    x = torch.randn(5, 83, FEAT)
    lens = torch.tensor([83, 80, 52, 40, 31])
    outs = []
    for e in (enc, ref):
        e.train()
        torch.manual_seed(5)
        xi = x.clone().requires_grad_(True)
        y, ylens, _ = e(xi, lens)
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        outs.append((y.detach(), ylens, xi.grad, [p.grad for p in e.parameters()]))
    (y1, l1, gx1, gp1), (y2, l2, gx2, gp2) = outs
    torch.testing.assert_close(y1, y2)
    assert torch.equal(l1, l2)
    torch.testing.assert_close(gx1, gx2)
    top = max(float(b.abs().max()) for b in gp2)  # zero-in-exact-arithmetic gradients (bias before BN)
    for a, b in zip(gp1, gp2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * top)
    for a, b in zip(enc.buffers(), ref.buffers()):  # batch-norm statistics updated once, as unchecked
        torch.testing.assert_close(a, b)
    enc.eval()  # decoding runs the original code
    with torch.no_grad():
        torch.testing.assert_close(enc(x, lens)[0], ref.eval()(x, lens)[0])


# ---- errors ------------------------------------------------------------------------------------
def test_wrong_options_give_clear_errors():
    with pytest.raises(ValueError, match="fused must be null, true or false, got 'yes'"):
        ASRTask.build_model(asr_args(fused="yes"))
    with pytest.raises(ValueError, match="checkpoint_chunk_size must be a positive integer, got 0"):
        ASRTask.build_model(asr_args(encoder_checkpointing=True, checkpoint_chunk_size=0))
    with pytest.raises(ValueError, match="checkpoint_sliced_layers: true needs encoder_checkpointing: true"):
        ASRTask.build_model(asr_args(checkpoint_sliced_layers=True))
    with pytest.raises(ValueError, match="max_chunk_bytes must be null or a positive integer, got -5"):
        SampleWiseASRTransducerTask.build_model(transducer_args(max_chunk_bytes=-5))
    with pytest.raises(ValueError, match="encoder_checkpointing must be true or false, got 'on'"):
        SampleWiseASRTransducerTask.build_model(transducer_args(encoder_checkpointing="on"))
    args = asr_args()
    args.decoder, args.decoder_conf = "rnn", {}
    with pytest.raises(ValueError, match="needs a transducer: set decoder: transducer"):
        ASRTask.build_model(args)
    with pytest.raises(ValueError, match=r"need model: samplewise_transducer \(got model: espnet\)"):
        SampleWiseASRTransducerTask.build_model(transducer_args(model="espnet", encoder_checkpointing=True))
    with pytest.raises(ValueError, match="use_k2_pruned_loss: true is not supported"):
        SampleWiseASRTransducerTask.build_model(transducer_args(use_k2_pruned_loss=True))
    args = asr_args()
    args.model = "samplewise_transduce"
    with pytest.raises(ValueError, match="--model must be one of .*samplewise_transducer"):
        ASRTask.build_model(args)
    with pytest.raises(SystemExit):  # argparse: invalid choice
        SampleWiseASRTransducerTask.get_parser().parse_args(["--model", "samplewise"])


def test_asr_sh_python_wrapper_routes_the_four_programs(tmp_path):
    import subprocess

    from samplewise_rnnt.espnet import ENTRY_POINTS, write_asr_sh_python

    wrapper = write_asr_sh_python(tmp_path / "bin" / "python", python="/bin/echo")
    for src, dst in ENTRY_POINTS.items():
        out = subprocess.run([str(wrapper), "-m", src, "--config", "a b.yaml"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == f"-m {dst} --config a b.yaml\n"
    # everything else goes to the interpreter unchanged (asr.sh's other programs, scripts, -c)
    for args in (["-m", "espnet2.bin.tokenize_text", "--x"], ["-c", "print(1)"], ["script.py", "-m"]):
        out = subprocess.run([str(wrapper), *args], capture_output=True, text=True)
        assert out.stdout == " ".join(args) + "\n"
