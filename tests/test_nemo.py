"""NeMo adapter: equality with stock NeMo, selection by config, training, validation WER, .nemo round trip.

Tiny models (2-layer Conformer, d_model 32) on the synthetic mini-LibriSpeech corpus, CPU only. The
reference is stock NeMo: the non-fused RNNTJoint with NeMo's numba RNN-T loss on the same weights and batch.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("nemo.collections.asr")
pytest.importorskip("soundfile")  # tests/nemo_tiny.py reads the corpus

import samplewise_rnnt.nemo as swn  # noqa: E402  (installs the NeMo hooks)
from nemo.collections.asr.models import EncDecRNNTBPEModel, EncDecRNNTModel  # noqa: E402
from nemo.collections.asr.modules import RNNTJoint  # noqa: E402
from samplewise_rnnt.data.librispeech import read_librispeech_part, write_nemo_manifest  # noqa: E402
from samplewise_rnnt.nemo.tokenizer import manifest_texts, train_sentencepiece  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from nemo_tiny import CHARS, load_batch, tiny_model_cfg  # noqa: E402
from tolerance import assert_within_reference_error  # noqa: E402

STOCK_LOSS = "warprnnt_numba"


@pytest.fixture(scope="module")
def data(mini_librispeech, tmp_path_factory):
    """NeMo manifests of the corpus and a tiny BPE tokenizer trained on its train part."""
    out = tmp_path_factory.mktemp("nemo_data")
    train = write_nemo_manifest(read_librispeech_part(mini_librispeech / "train-clean-mini"), out / "train.json")
    dev = write_nemo_manifest(read_librispeech_part(mini_librispeech / "dev-clean-mini"), out / "dev.json")
    tok = train_sentencepiece(manifest_texts([train]), out / "tokenizer", vocab_size=40)
    return {"train": train, "dev": dev, "tokenizer": tok, "dir": out}


def char_ids(text):
    return [CHARS.index(c) for c in text]


def _pair(cls, loss_cfg_kwargs=None, **cfg_kwargs):
    """A stock model (numba loss, non-fused joint) and a sample-wise one with the same weights."""
    torch.manual_seed(0)
    stock = cls(tiny_model_cfg(STOCK_LOSS, **cfg_kwargs))
    ours = cls(tiny_model_cfg("samplewise_rnnt", **cfg_kwargs))
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def _train_step(model, batch, fused, seed=1):
    """What ``training_step`` computes (encoder, predictor, joint + loss), then backward."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the encoder's dropout draws the same masks in both models
    sig, sig_len, tr, tr_len = batch
    enc, enc_len = model.forward(input_signal=sig, input_signal_length=sig_len)
    dec, dec_len, _ = model.decoder(targets=tr, target_length=tr_len)
    if fused:
        loss, _, _, _ = model.joint(encoder_outputs=enc, decoder_outputs=dec, encoder_lengths=enc_len,
                                    transcripts=tr, transcript_lengths=tr_len, compute_wer=False)
    else:
        joint = model.joint(encoder_outputs=enc, decoder_outputs=dec)
        loss = model.loss(log_probs=joint, targets=tr, input_lengths=enc_len, target_lengths=dec_len)
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_grads_equal(g_ref, g_ours, rtol=1e-4):
    assert g_ref.keys() == g_ours.keys()
    # parameters whose true gradient is zero (a bias before BatchNorm, the key bias of attention) carry
    # rounding noise only: an absolute floor relative to the largest gradient of the model covers them
    scale = max(g.abs().max().item() for g in g_ref.values())
    for name, ref in g_ref.items():
        err = (g_ours[name] - ref).abs().max().item()
        assert err <= rtol * ref.abs().max().item() + 1e-6 * scale, f"{name}: max error {err:.3g}"


def test_char_model_step_equals_stock(data):
    stock, ours = _pair(EncDecRNNTModel)
    assert type(ours.joint) is swn.SampleWiseRNNTJoint and ours.joint.fuse_loss_wer
    assert not stock.joint.fuse_loss_wer
    batch = load_batch(data["train"], char_ids, n=4)
    l_ref, g_ref = _train_step(stock, batch, fused=False)
    l_ours, g_ours = _train_step(ours, batch, fused=True)
    torch.testing.assert_close(l_ours, l_ref, rtol=1e-5, atol=0)
    assert len(g_ref) == len(list(stock.parameters()))  # every parameter gets a gradient
    _assert_grads_equal(g_ref, g_ours)


def test_bpe_model_step_equals_stock_mean_volume_with_checkpointing(data):
    stock, ours = _pair(EncDecRNNTBPEModel, tokenizer_dir=data["tokenizer"], reduction="mean_volume",
                        extra={"encoder_checkpointing": True})
    tok = stock.tokenizer
    batch = load_batch(data["train"], tok.text_to_ids, n=4)
    swn.disable_encoder_checkpointing(stock.encoder)  # the reference runs the plain encoder
    assert "forward" in ours.encoder.layers[0].__dict__ and "forward" in ours.encoder.pre_encode.__dict__
    ours.encoder.pre_encode._swr_subsampling_chunk = 3  # two chunks for a batch of 4
    l_ref, g_ref = _train_step(stock, batch, fused=False)
    l_ours, g_ours = _train_step(ours, batch, fused=True)
    torch.testing.assert_close(l_ours, l_ref, rtol=1e-5, atol=0)
    _assert_grads_equal(g_ref, g_ours)
    # BatchNorm running statistics saw each batch once, as without checkpointing
    for (n, b_ref), b_ours in zip(stock.named_buffers(), ours.buffers()):
        torch.testing.assert_close(b_ours, b_ref, msg=n)


@pytest.mark.parametrize("reduction", ["mean_batch", "mean", "sum", "mean_volume"])
def test_joint_reductions_equal_stock(reduction):
    """The fused step against NeMo's joint + RNNTLoss for every NeMo reduction, with joint dropout off.

    NeMo's loss runs in fp32, so both are compared with an fp64 truth (the stock joint in fp64, the
    pure-PyTorch fp64 reference loss, NeMo's own reduction): ours within twice NeMo's own error."""
    from samplewise_rnnt.reference import rnnt_loss_reference

    torch.manual_seed(3)
    cfg = tiny_model_cfg(STOCK_LOSS, reduction=reduction)
    stock = EncDecRNNTModel(cfg)
    ours = EncDecRNNTModel(tiny_model_cfg("samplewise_rnnt", reduction=reduction))
    ours.load_state_dict(stock.state_dict())
    B, T, U, H = 3, 9, 5, 32
    enc = torch.randn(B, H, T)
    dec = torch.randn(B, H, U + 1)
    tr = torch.randint(0, len(CHARS), (B, U))
    enc_len = torch.tensor([9, 6, 4])
    tr_len = torch.tensor([5, 2, 5])
    results = []
    for model, mode in ((stock, "stock"), (ours, "fused"), (stock, "truth")):
        model.train()
        e, d = enc.clone().requires_grad_(), dec.clone().requires_grad_()
        if mode == "fused":
            loss = model.joint(encoder_outputs=e, decoder_outputs=d, encoder_lengths=enc_len, transcripts=tr,
                               transcript_lengths=tr_len)[0]
            params = list(model.joint.parameters())
        elif mode == "stock":
            logits = model.joint(encoder_outputs=e, decoder_outputs=d)
            loss = model.loss(log_probs=logits, targets=tr, input_lengths=enc_len, target_lengths=tr_len)
            params = list(model.joint.parameters())
        else:
            joint64 = copy.deepcopy(model.joint).double()
            e, d = enc.double().requires_grad_(), dec.double().requires_grad_()
            logits = joint64(encoder_outputs=e, decoder_outputs=d)
            losses = rnnt_loss_reference(logits, tr, enc_len, tr_len, blank=-1, reduction="none")
            loss = model.loss.reduce(losses, tr_len)
            params = list(joint64.parameters())
        grads = torch.autograd.grad(loss, [e, d] + params)
        results.append((loss.detach(), grads))
    (l_stock, g_stock), (l_ours, g_ours), (l_truth, g_truth) = results
    assert_within_reference_error(l_ours, l_stock, l_truth, what="loss")
    for i, (a, b, t) in enumerate(zip(g_ours, g_stock, g_truth)):
        assert_within_reference_error(a, b, t, what=f"gradient {i}")


def test_joint_target_selects_adapter_and_saves_stock_names():
    cfg = tiny_model_cfg(STOCK_LOSS)
    cfg.joint._target_ = "samplewise_rnnt.nemo.SampleWiseRNNTJoint"
    cfg.loss.samplewise_rnnt_kwargs = {"max_chunk_bytes": 1 << 20, "fused": False}
    model = EncDecRNNTModel(cfg)
    assert type(model.joint) is swn.SampleWiseRNNTJoint and model.joint.fuse_loss_wer
    assert model.joint.samplewise_kwargs["max_chunk_bytes"] == 1 << 20
    assert model.cfg.joint._target_ == "nemo.collections.asr.modules.RNNTJoint"
    assert model.cfg.loss.loss_name == STOCK_LOSS and model.cfg.loss.use_samplewise_rnnt
    # same parameters and state_dict keys as the stock joint
    stock = RNNTJoint(**{k: v for k, v in model.cfg.joint.items() if k != "_target_"})
    assert list(stock.state_dict()) == list(model.joint.state_dict())


def test_misspelled_option_is_a_clear_error():
    cfg = tiny_model_cfg("samplewise_rnnt")
    cfg.loss.samplewise_rnnt_kwargs = {"max_chunk_byte": 1 << 20}
    with pytest.raises(ValueError, match=r"unknown option 'max_chunk_byte' \(did you mean 'max_chunk_bytes'\?\)"):
        EncDecRNNTModel(cfg)
    with pytest.raises(ValueError, match=r"fastemit_lambda must be >= 0, got -0.5"):
        swn.check_samplewise_kwargs({"fastemit_lambda": -0.5})
    with pytest.raises(ValueError, match=r"encoder_checkpointing: unknown option 'layer'"):
        swn.checkpointing_options({"layer": True})


def _trainer(tmp_path, max_steps, log_every=1):
    import lightning.pytorch as pl

    class Record(pl.Callback):
        def __init__(self):
            self.losses = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))

    rec = Record()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=log_every, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=str(tmp_path), callbacks=[rec])
    return trainer, rec


def _validate(model, tmp_path):
    """``trainer.validate``; returns the first validation batch's outputs (val_loss, val_wer, ...)."""
    import lightning.pytorch as pl

    class Capture(pl.Callback):
        outputs = None

        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            if Capture.outputs is None:
                Capture.outputs = {k: v.detach().clone() for k, v in outputs.items()}

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[Capture()])
    trainer.validate(model, verbose=False)
    return Capture.outputs


def test_fit_lowers_loss_validates_and_round_trips_into_plain_nemo(data, tmp_path):
    # 4 utterances, one batch: a few steps must lower the training loss
    rows = Path(data["train"]).read_text().splitlines()[:4]
    train4 = tmp_path / "train4.json"
    train4.write_text("\n".join(rows) + "\n")
    cfg = tiny_model_cfg("samplewise_rnnt", tokenizer_dir=data["tokenizer"], train_manifest=train4,
                         val_manifest=data["dev"], batch_size=4, enc_dropout=0.0, joint_dropout=0.1)
    cfg.train_ds.shuffle = False
    cfg.optim.lr = 5e-3
    trainer, rec = _trainer(tmp_path, max_steps=8, log_every=4)
    torch.manual_seed(0)
    model = EncDecRNNTBPEModel(cfg=cfg, trainer=trainer)
    trainer.fit(model)
    assert len(rec.losses) == 8
    assert rec.losses[-1] < 0.8 * rec.losses[0], rec.losses
    assert "training_batch_wer" in trainer.logged_metrics  # WER in the fused training step

    # validation: the sample-wise fused step and stock NeMo's non-fused step agree on loss and WER,
    # with compute_eval_loss true and false
    stock = EncDecRNNTBPEModel(cfg=tiny_model_cfg(STOCK_LOSS, tokenizer_dir=data["tokenizer"],
                                                  val_manifest=data["dev"], batch_size=4, enc_dropout=0.0,
                                                  joint_dropout=0.1))
    stock.load_state_dict(model.state_dict())
    metrics = {}
    for name, m in (("ours", model), ("stock", stock)):
        for compute_eval_loss in (True, False):
            m.compute_eval_loss = compute_eval_loss
            metrics[name, compute_eval_loss] = _validate(m, tmp_path)
    for cel in (True, False):
        for key in ("val_wer_num", "val_wer_denom", "val_wer"):
            assert float(metrics["ours", cel][key]) == float(metrics["stock", cel][key]), key
        assert float(metrics["ours", cel]["val_wer_denom"]) > 0
    torch.testing.assert_close(metrics["ours", True]["val_loss"], metrics["stock", True]["val_loss"], rtol=1e-5,
                               atol=0)
    assert "val_loss" not in metrics["ours", False]

    # .nemo round trip: the saved config names stock NeMo only; plain NeMo (no samplewise_rnnt) restores it
    path = tmp_path / "tiny.nemo"
    model.save_to(str(path))
    audio = [json.loads(r)["audio_filepath"] for r in Path(data["dev"]).read_text().splitlines()]
    model.eval()
    ref_hyps = [h.text if hasattr(h, "text") else h for h in model.transcribe(audio, batch_size=2, verbose=False)]
    model.eval()  # transcribe() leaves the joint in training mode (NeMo's unfreeze)
    with torch.no_grad():
        x = torch.randn(1, 32, 5)
        y = torch.randn(1, 32, 3)
        ref_logits = model.joint.joint(x.transpose(1, 2), y.transpose(1, 2))
    torch.save({"x": x, "y": y}, tmp_path / "xy.pt")
    script = textwrap.dedent(f"""
        import json, sys, torch
        from nemo.collections.asr.models import ASRModel
        m = ASRModel.restore_from({str(path)!r}, map_location="cpu")
        m.eval()
        hyps = m.transcribe({audio!r}, batch_size=2, verbose=False)
        xy = torch.load({str(tmp_path / 'xy.pt')!r})
        m.eval()
        with torch.no_grad():
            logits = m.joint.joint(xy["x"].transpose(1, 2), xy["y"].transpose(1, 2))
        torch.save(logits, {str(tmp_path / 'logits.pt')!r})
        print("RESULT", json.dumps({{"hyps": [getattr(h, "text", h) for h in hyps],
                                     "joint": type(m.joint).__module__ + "." + type(m.joint).__name__,
                                     "loss_name": m.cfg.loss.loss_name,
                                     "swr_imported": any(k == "samplewise_rnnt" or k.startswith("samplewise_rnnt.")
                                                         for k in sys.modules)}}))
    """)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # no samplewise_rnnt on the path (the venv's .pth only makes it importable)
    env["SAMPLEWISE_RNNT_AUTOLOAD"] = "0"  # plain NeMo: the package's post-import hook switched off
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert result["swr_imported"] is False
    assert result["joint"] == "nemo.collections.asr.modules.rnnt.RNNTJoint"
    assert result["loss_name"] == "default"
    assert result["hyps"] == ref_hyps
    got = torch.load(tmp_path / "logits.pt")
    torch.testing.assert_close(got, ref_logits)

    # with the package imported, the restored model trains sample-wise again
    again = EncDecRNNTBPEModel.restore_from(str(path), map_location="cpu")
    assert type(again.joint) is swn.SampleWiseRNNTJoint and again.joint.fuse_loss_wer
