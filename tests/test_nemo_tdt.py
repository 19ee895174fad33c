"""NeMo adapter, TDT (Token-and-Duration Transducer): ``loss_name: samplewise_tdt``.

Tiny TDT models (2-layer Conformer, d_model 32, durations [0, 1, 2, 3]) on the synthetic mini-LibriSpeech
corpus, CPU only. The stock reference is NeMo's pure-PyTorch TDT loss, ``loss_name: tdt_pytorch``
(``TDTLossPytorch``: NeMo's numba TDT loss has no CPU implementation). Two things keep it off a stock model
built with ``loss_name: tdt_pytorch``: it calls ``Tensor.cuda`` (patched to the identity around it here), and
NeMo 3.0 subtracts the duration outputs from the loss's ``num_classes`` (its blank index) and copies the
durations into the decoding only for ``loss_name == "tdt"``. So the stock model is built with ``tdt`` and its
``RNNTLoss`` is rebuilt with ``tdt_pytorch`` and the blank that ``tdt`` gives. ``TDTLossPytorch`` runs its
recursion in fp32 whatever the input; an fp64 truth (``tests/tdt_reference.py`` on the fp64 model) sets the
tolerance (``tests/tolerance.py``).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytest.importorskip("nemo.collections.asr")
pytest.importorskip("soundfile")

import samplewise_rnnt.nemo as swn  # noqa: E402  (installs the NeMo hooks)
from nemo.collections.asr.losses.rnnt import RNNTLoss  # noqa: E402
from nemo.collections.asr.models import EncDecRNNTBPEModel, EncDecRNNTModel  # noqa: E402
from samplewise_rnnt.data.librispeech import read_librispeech_part, write_nemo_manifest  # noqa: E402
from samplewise_rnnt.nemo.tokenizer import manifest_texts, train_sentencepiece  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from nemo_tiny import CHARS, TDT_DURATIONS, load_batch, tiny_tdt_cfg  # noqa: E402
from tdt_reference import tdt_loss_reference  # noqa: E402
from tolerance import assert_within_reference_error  # noqa: E402

SIGMA = 0.05


@pytest.fixture(scope="module")
def data(mini_librispeech, tmp_path_factory):
    out = tmp_path_factory.mktemp("nemo_tdt_data")
    train = write_nemo_manifest(read_librispeech_part(mini_librispeech / "train-clean-mini"), out / "train.json")
    dev = write_nemo_manifest(read_librispeech_part(mini_librispeech / "dev-clean-mini"), out / "dev.json")
    tok = train_sentencepiece(manifest_texts([train]), out / "tokenizer", vocab_size=40)
    return {"train": train, "dev": dev, "tokenizer": tok}


@contextmanager
def cuda_is_identity():
    """NeMo's TDTLossPytorch moves its buffers with ``.cuda()``; on the CPU that must be a no-op."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def stock_tdt_pytorch(model, reduction):
    """Give a stock model built with ``loss_name: tdt`` NeMo's ``tdt_pytorch`` loss (same blank, durations)."""
    kw = model.cfg.loss.tdt_kwargs
    model.loss = RNNTLoss(num_classes=model.loss._blank, reduction=reduction, loss_name="tdt_pytorch",
                          loss_kwargs={"durations": list(kw.durations), "sigma": float(kw.sigma)})
    return model


def short_batch(manifest, tokenize, n, seconds=1.0, tokens=12):
    """The ``n`` shortest utterances, their audio cut to ``seconds`` and their transcripts to ``tokens``
    pieces, as one batch. NeMo's ``tdt_pytorch`` is a Python loop over every lattice node whose backward
    grows faster than their number; any label sequence is a valid target of any audio for the loss."""
    rows = sorted(Path(manifest).read_text().splitlines(), key=lambda r: json.loads(r)["duration"])[:n]
    out = Path(manifest).with_name(f"shortest{n}.json")
    out.write_text("\n".join(rows) + "\n")
    sig, sig_len, tr, tr_len = load_batch(out, tokenize, n=n)
    keep = int(seconds * 16000)
    return sig[:, :keep].contiguous(), sig_len.clamp(max=keep), tr[:, :tokens].contiguous(), tr_len.clamp(max=tokens)


def test_selection_blank_decoding_and_saved_config(data):
    model = EncDecRNNTBPEModel(tiny_tdt_cfg(tokenizer_dir=data["tokenizer"], sigma=SIGMA))
    V = model.tokenizer.vocab_size
    assert type(model.joint) is swn.SampleWiseRNNTJoint and model.joint.fuse_loss_wer
    assert model.joint.samplewise_lattice == "tdt"
    assert model.joint.samplewise_kwargs["durations"] == TDT_DURATIONS
    assert model.joint.samplewise_kwargs["sigma"] == SIGMA
    assert model.loss._blank == V and isinstance(model.loss._loss, swn.SampleWiseTDTLogitsLoss)
    assert model.joint.num_classes_with_blank == V + 1 + len(TDT_DURATIONS)
    assert list(model.decoding.durations) == TDT_DURATIONS and model.decoding.blank_id == V
    # the saved config names stock NeMo; re-reading it still gives samplewise_tdt
    assert model.cfg.loss.loss_name == "tdt" and model.cfg.loss.use_samplewise_rnnt
    assert model.cfg.joint._target_ == "nemo.collections.asr.modules.RNNTJoint"
    assert list(model.cfg.loss.tdt_kwargs.durations) == TDT_DURATIONS
    name, kwargs = model.extract_rnnt_loss_cfg(model.cfg.loss)
    assert name == "samplewise_tdt" and list(kwargs.durations) == TDT_DURATIONS and kwargs.sigma == SIGMA
    # the options may also sit in samplewise_tdt_kwargs, with the engine's; the joint target spelling works too
    cfg = tiny_tdt_cfg(kwargs_key="samplewise_tdt_kwargs")
    cfg.loss.samplewise_tdt_kwargs.max_chunk_bytes = 1 << 20
    m2 = EncDecRNNTModel(cfg)
    assert m2.joint.samplewise_kwargs["max_chunk_bytes"] == 1 << 20 and m2.loss._blank == len(CHARS)
    assert list(m2.cfg.loss.tdt_kwargs.durations) == TDT_DURATIONS
    assert m2.cfg.loss.samplewise_tdt_kwargs.max_chunk_bytes == 1 << 20  # our options are kept
    cfg = tiny_tdt_cfg("tdt")
    cfg.joint._target_ = "samplewise_rnnt.nemo.SampleWiseRNNTJoint"
    m3 = EncDecRNNTModel(cfg)
    assert type(m3.joint) is swn.SampleWiseRNNTJoint and m3.joint.samplewise_lattice == "tdt"
    assert m3.cfg.joint._target_ == "nemo.collections.asr.modules.RNNTJoint" and m3.cfg.loss.loss_name == "tdt"


def test_bad_options_are_errors_at_construction():
    cfg = tiny_tdt_cfg(kwargs_key="samplewise_tdt_kwargs")
    cfg.loss.samplewise_tdt_kwargs.sigmma = 0.1
    with pytest.raises(ValueError, match=r"samplewise_tdt_kwargs: unknown option 'sigmma' \(did you mean 'sigma'\?\)"):
        EncDecRNNTModel(cfg)
    cfg = tiny_tdt_cfg(kwargs_key="samplewise_tdt_kwargs")
    del cfg.loss.samplewise_tdt_kwargs["durations"]
    with pytest.raises(ValueError, match=r"samplewise_tdt_kwargs.durations is required for TDT"):
        EncDecRNNTModel(cfg)
    cfg = tiny_tdt_cfg()
    cfg.loss.tdt_kwargs.durations = [0, 1, 2]  # the joint has 4 duration outputs
    with pytest.raises(ValueError, match=r"durations = \[0, 1, 2\] has 3 durations but "
                                         r"model.joint.num_extra_outputs = 4"):
        EncDecRNNTModel(cfg)
    cfg = tiny_tdt_cfg()
    cfg.loss.samplewise_tdt_kwargs = {"sigma": 0.1}  # tdt_kwargs says 0.0
    with pytest.raises(ValueError, match=r"samplewise_tdt_kwargs.sigma = 0.1 but model.loss.tdt_kwargs.sigma = 0.0"):
        EncDecRNNTModel(cfg)
    with pytest.raises(ValueError, match=r"durations must not repeat a duration"):
        swn.check_samplewise_tdt_kwargs({"durations": [0, 1, 1, 2]})
    for bad in ([0], [1, 2], [0, 2, 1]):
        with pytest.raises(ValueError, match=r"durations must be ascending and contain 0 and 1"):
            swn.check_samplewise_tdt_kwargs({"durations": bad})
    with pytest.raises(ValueError, match=r"omega must be in \[0, 1\]"):
        swn.check_samplewise_tdt_kwargs({"durations": [0, 1], "omega": 2.0})
    # the RNN-T loss name on a TDT joint, TDT on a plain joint, multi-blank
    with pytest.raises(ValueError, match=r"num_extra_outputs=4 \(a TDT joint\) but the loss is 'samplewise_rnnt'"):
        EncDecRNNTModel(tiny_tdt_cfg("samplewise_rnnt"))
    cfg = tiny_tdt_cfg()
    cfg.joint.num_extra_outputs = 0
    with pytest.raises(ValueError, match=r"needs a TDT joint"):
        EncDecRNNTModel(cfg)
    cfg = tiny_tdt_cfg("multiblank_rnnt")
    cfg.loss.use_samplewise_rnnt = True
    cfg.loss.multiblank_rnnt_kwargs = {"big_blank_durations": [2, 4, 8]}
    cfg.joint.num_extra_outputs = 3
    cfg.decoding = {"strategy": "greedy_batch", "model_type": "multiblank", "big_blank_durations": [2, 4, 8],
                    "greedy": {"max_symbols": 5}}
    with pytest.raises(ValueError, match=r"does not support multi-blank RNN-T"):
        EncDecRNNTModel(cfg)


def test_decoding_durations_must_match():
    model = EncDecRNNTModel(tiny_tdt_cfg())
    model.decoding.durations = [0, 1, 2, 4]
    with pytest.raises(ValueError, match=r"but the decoding's durations are \[0, 1, 2, 4\]"):
        swn.activate(model)


@pytest.mark.parametrize("reduction", ["mean_batch", "mean", "sum", "mean_volume", None])
def test_joint_reductions_equal_stock(reduction):
    """The fused step against NeMo's joint + ``tdt_pytorch`` for every NeMo reduction (sigma > 0)."""
    torch.manual_seed(3)
    stock = stock_tdt_pytorch(EncDecRNNTModel(tiny_tdt_cfg("tdt", sigma=SIGMA)), reduction)
    ours = EncDecRNNTModel(tiny_tdt_cfg(sigma=SIGMA))
    ours.load_state_dict(stock.state_dict())
    ours.loss.reduction = reduction
    B, T, U, H = 3, 9, 5, 32
    enc, dec = torch.randn(B, H, T), torch.randn(B, H, U + 1)
    tr = torch.randint(0, len(CHARS), (B, U))
    enc_len, tr_len = torch.tensor([9, 6, 4]), torch.tensor([5, 2, 5])
    results = []
    for model, mode in ((stock, "stock"), (ours, "fused"), (stock, "truth")):
        model.train()
        e, d = enc.clone().requires_grad_(), dec.clone().requires_grad_()
        params = list(model.joint.parameters())
        if mode == "fused":
            loss = model.joint(encoder_outputs=e, decoder_outputs=d, encoder_lengths=enc_len, transcripts=tr,
                               transcript_lengths=tr_len)[0]
        elif mode == "stock":
            with cuda_is_identity():
                logits = model.joint(encoder_outputs=e, decoder_outputs=d)
                loss = model.loss(log_probs=logits, targets=tr, input_lengths=enc_len, target_lengths=tr_len)
        else:
            joint64 = copy.deepcopy(model.joint).double()
            e, d = enc.double().requires_grad_(), dec.double().requires_grad_()
            logits = joint64(encoder_outputs=e, decoder_outputs=d)
            losses = tdt_loss_reference(logits, tr, enc_len, tr_len, TDT_DURATIONS, blank=len(CHARS), sigma=SIGMA)
            loss = model.loss.reduce(losses, tr_len) if reduction is not None else losses
            params = list(joint64.parameters())
        grads = torch.autograd.grad(loss.sum(), [e, d] + params)
        results.append((loss.detach(), grads))
    (l_stock, g_stock), (l_ours, g_ours), (l_truth, g_truth) = results
    assert l_ours.shape == l_stock.shape
    assert_within_reference_error(l_ours, l_stock, l_truth, what="loss")
    for i, (a, b, t) in enumerate(zip(g_ours, g_stock, g_truth)):
        assert_within_reference_error(a, b, t, what=f"gradient {i}")


SUM_WEIGHT = {"sum": lambda B, U: 1.0, "mean_batch": lambda B, U: 1.0 / B, "mean_volume": lambda B, U: 1.0 / U}


def _step(model, batch, fused, reductions, dtype=torch.float32, loss_fn=None):
    """One training step (encoder, predictor, joint + loss) per reduction: the loss and every parameter's
    gradient. Non-fused: one forward and one backward of the summed per-sample losses (NeMo's, or
    ``loss_fn``'s); these reductions are that sum times a constant."""
    model.train()
    torch.manual_seed(1)
    sig, sig_len, tr, tr_len = batch
    enc, enc_len = model.forward(input_signal=sig.to(dtype), input_signal_length=sig_len)
    dec, _, _ = model.decoder(targets=tr, target_length=tr_len)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    out = {}
    if not fused:
        logits = model.joint(encoder_outputs=enc, decoder_outputs=dec)
        if loss_fn is None:
            model.loss.reduction = None
            losses = model.loss(log_probs=logits, targets=tr, input_lengths=enc_len, target_lengths=tr_len)
        else:
            losses = loss_fn(logits, tr, enc_len, tr_len)
        sum_grads = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    for reduction in reductions:
        model.loss.reduction = reduction
        if fused:
            loss = model.joint(encoder_outputs=enc, decoder_outputs=dec, encoder_lengths=enc_len, transcripts=tr,
                               transcript_lengths=tr_len, compute_wer=False)[0]
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        else:
            loss = model.loss.reduce(losses.detach(), tr_len)
            w = SUM_WEIGHT[reduction](tr.shape[0], float(tr_len.sum()))
            grads = [None if g is None else g * w for g in sum_grads]
        out[reduction] = (loss.detach(), dict(zip(names, grads)))
    return out


def test_bpe_model_step_equals_stock_mean_volume_and_mean_batch(data):
    """A whole training step of a BPE TDT model (encoder, predictor, joint, loss; every parameter)."""
    reductions = ["mean_volume", "mean_batch"]
    torch.manual_seed(0)
    kw = dict(tokenizer_dir=data["tokenizer"], sigma=SIGMA, enc_dropout=0.0)
    stock = stock_tdt_pytorch(EncDecRNNTBPEModel(tiny_tdt_cfg("tdt", **kw)), None)
    ours = EncDecRNNTBPEModel(tiny_tdt_cfg(**kw))
    ours.load_state_dict(stock.state_dict())
    batch = short_batch(data["train"], stock.tokenizer.text_to_ids, n=3)
    with cuda_is_identity():
        ref = _step(stock, batch, fused=False, reductions=reductions)
    got = _step(ours, batch, fused=True, reductions=reductions)
    truth_model = EncDecRNNTBPEModel(tiny_tdt_cfg("tdt", **kw))
    truth_model.load_state_dict(stock.state_dict())
    truth_model.double()
    blank = stock.loss._blank
    truth = _step(truth_model, batch, fused=False, reductions=reductions, dtype=torch.float64,
                  loss_fn=lambda lg, tr, tl, ul: tdt_loss_reference(lg, tr, tl, ul, TDT_DURATIONS, blank, SIGMA))
    for reduction in reductions:
        (l_ref, g_ref), (l_ours, g_ours), (l_truth, g_truth) = ref[reduction], got[reduction], truth[reduction]
        assert_within_reference_error(l_ours, l_ref, l_truth, what=f"{reduction} loss")
        assert g_ours.keys() == g_ref.keys()
        missing = [n for n, g in g_ref.items() if g is None]
        assert not missing and all(g_ours[n] is not None for n in g_ours), missing  # every parameter
        # parameters whose true gradient is zero (the key bias of attention, a bias before BatchNorm) carry
        # rounding noise only: an absolute floor relative to the largest gradient of the model covers them
        scale = max(g.abs().max().item() for g in g_truth.values())
        for name in g_ref:
            if g_truth[name].abs().max().item() <= 1e-6 * scale:
                assert (g_ours[name].double() - g_truth[name]).abs().max().item() <= 1e-6 * scale, name
            else:
                assert_within_reference_error(g_ours[name], g_ref[name], g_truth[name],
                                              what=f"{reduction} gradient of {name}")


def _trainer(tmp_path, max_steps):
    import lightning.pytorch as pl

    class Record(pl.Callback):
        def __init__(self):
            self.losses = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))

    rec = Record()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=4, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=str(tmp_path), callbacks=[rec])
    return trainer, rec


def _hyps(model, audio):
    model.eval()
    hyps = model.transcribe(audio, batch_size=2, verbose=False)
    model.eval()  # transcribe() leaves the joint in training mode (NeMo's unfreeze)
    return [getattr(h, "text", h) for h in hyps]


def test_fit_lowers_loss_decodes_as_stock_and_round_trips_into_plain_nemo(data, tmp_path):
    rows = Path(data["train"]).read_text().splitlines()[:4]
    train4 = tmp_path / "train4.json"
    train4.write_text("\n".join(rows) + "\n")
    cfg = tiny_tdt_cfg(tokenizer_dir=data["tokenizer"], train_manifest=train4, val_manifest=data["dev"],
                       batch_size=4, enc_dropout=0.0, joint_dropout=0.1, sigma=SIGMA, reduction="mean_volume")
    cfg.train_ds.shuffle = False
    cfg.optim.lr = 2e-2
    trainer, rec = _trainer(tmp_path, max_steps=8)
    torch.manual_seed(0)
    model = EncDecRNNTBPEModel(cfg=cfg, trainer=trainer)
    audio = [json.loads(r)["audio_filepath"] for r in Path(data["dev"]).read_text().splitlines()]
    stock = EncDecRNNTBPEModel(cfg=tiny_tdt_cfg("tdt", tokenizer_dir=data["tokenizer"], sigma=SIGMA, joint_dropout=0.1,
                                                   val_manifest=data["dev"], batch_size=4))
    assert type(stock.joint) is not swn.SampleWiseRNNTJoint and stock.decoding.durations == TDT_DURATIONS
    # greedy TDT decoding of the untrained model (random tokens and durations): as stock NeMo's
    stock.load_state_dict(model.state_dict())
    untrained = _hyps(stock, audio)
    assert any(untrained) and _hyps(model, audio) == untrained
    model.train()
    trainer.fit(model)
    assert len(rec.losses) == 8
    assert rec.losses[-1] < 0.85 * rec.losses[0], rec.losses  # per-token losses (mean_volume)
    assert "training_batch_wer" in trainer.logged_metrics

    # and of the trained one
    stock.load_state_dict(model.state_dict())
    ref_hyps = _hyps(stock, audio)
    assert _hyps(model, audio) == ref_hyps
    with torch.no_grad():
        x, y = torch.randn(1, 32, 5), torch.randn(1, 32, 3)
        ref_logits = model.joint.joint(x.transpose(1, 2), y.transpose(1, 2))

    # .nemo round trip into plain NeMo (no samplewise_rnnt; the hook switched off)
    path = tmp_path / "tiny_tdt.nemo"
    model.save_to(str(path))
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
                                     "loss": type(m.loss._loss).__name__, "blank": m.loss._blank,
                                     "durations": list(m.decoding.durations),
                                     "swr_imported": any(k == "samplewise_rnnt" or k.startswith("samplewise_rnnt.")
                                                         for k in sys.modules)}}))
    """)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["SAMPLEWISE_RNNT_AUTOLOAD"] = "0"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert result["swr_imported"] is False
    assert result["joint"] == "nemo.collections.asr.modules.rnnt.RNNTJoint"
    assert (result["loss_name"], result["loss"]) == ("tdt", "TDTLossNumba")
    assert result["blank"] == model.tokenizer.vocab_size and result["durations"] == TDT_DURATIONS
    assert result["hyps"] == ref_hyps
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), ref_logits)

    # with the package imported, the restored model trains sample-wise again
    again = EncDecRNNTBPEModel.restore_from(str(path), map_location="cpu")
    assert type(again.joint) is swn.SampleWiseRNNTJoint and again.joint.samplewise_lattice == "tdt"
    assert again.loss._blank == model.tokenizer.vocab_size
    assert again.extract_rnnt_loss_cfg(again.cfg.loss)[0] == "samplewise_tdt"


def test_hybrid_tdt_ctc_model_trains_sample_wise(data):
    """NeMo's hybrid TDT-CTC model (EncDecHybridRNNTCTCBPEModel with a TDT joint): the TDT part sample-wise."""
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel

    extra = {"aux_ctc": {"ctc_loss_weight": 0.3, "use_cer": False, "ctc_reduction": "mean_batch",
                         "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": None,
                                     "num_classes": -1, "vocabulary": []},
                         "decoding": {"strategy": "greedy"}}}
    torch.manual_seed(0)
    kw = dict(tokenizer_dir=data["tokenizer"], sigma=SIGMA, enc_dropout=0.0, extra=extra)
    stock = stock_tdt_pytorch(EncDecHybridRNNTCTCBPEModel(tiny_tdt_cfg("tdt", **kw)), "mean_batch")
    ours = EncDecHybridRNNTCTCBPEModel(tiny_tdt_cfg(**kw))
    ours.load_state_dict(stock.state_dict())
    assert type(ours.joint) is swn.SampleWiseRNNTJoint and ours.loss._blank == stock.loss._blank
    batch = short_batch(data["train"], stock.tokenizer.text_to_ids, n=2, seconds=0.6)
    with cuda_is_identity():
        (l_ref, _), = _step(stock, batch, fused=False, reductions=["mean_batch"]).values()
    (l_ours, _), = _step(ours, batch, fused=True, reductions=["mean_batch"]).values()
    torch.testing.assert_close(l_ours, l_ref, rtol=1e-5, atol=0)
