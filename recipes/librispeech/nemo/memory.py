"""Peak memory of one full NeMo training step at small batch sizes, extrapolated to B = 1024.

One step = preprocessor + encoder + predictor + joint + loss + backward + AdamW step of the recipe's model
(the ``model`` section of the config: FastConformer, 1024 sentencepiece pieces -> V+1 = 1025 outputs), on
B utterances of ``--seconds`` seconds each (the duration cap: every utterance as long as the longest allowed)
with ``--tokens-per-second`` labels. Variants:

* ``stock``: NeMo's non-fused joint + RNNTLoss (numba), no checkpointing (stock NeMo)
* ``stock+ckpt``: the same with the config's encoder activation checkpointing
* ``samplewise``: the sample-wise loss (this package, the config's ``samplewise_rnnt_kwargs``), no checkpointing
* ``samplewise+ckpt``: the recipe's setting (sample-wise loss + the config's ``encoder_checkpointing``)

TDT (``--model tdt``: the default config becomes ``fastconformer_tdt_samplewise_b1024.yaml``; any config whose
joint has ``num_extra_outputs`` is measured as TDT): the joint has ``V+1+D`` outputs (1030 for 1024 pieces and
five durations) and ``samplewise`` is the sample-wise TDT loss with the config's TDT options. NeMo's own TDT
losses cannot run a step here: the numba one is CUDA only, ``tdt_pytorch`` is a Python loop over every lattice
node. So ``stock`` is NeMo's non-fused step with the loss swapped: the materialised ``[B, T, U+1, V+1+D]`` joint
output (NeMo's ``RNNTJoint``, as with NeMo's TDT loss) and this package's exact ``tdt_loss`` on it, which keeps
the logits' gradient (one tensor of their size) as NeMo's numba loss keeps its label and duration gradients.

Each (variant, B) runs in a fresh process. The step is measured in phases: ``preprocessor`` (features and
SpecAugment, whole batch), ``front end`` (the subsampling convolutions: in chunks when checkpointed),
``encoder + predictor`` (the Conformer layers and the LSTM), ``loss`` (joint + loss forward), ``backward``
(loss, predictor and layers), ``front-end backward`` and ``optimizer`` (AdamW step: its two states are
created here). Each phase's peak is recorded separately: on CUDA
``torch.cuda.max_memory_allocated`` (peak stats reset at each phase) above the memory before the step; on
the CPU the high-water mark of the resident set (reset at each phase) above the resident set before the
step (large blocks are mmap-ed so that freed memory leaves the resident set). Both count the weights and
the batch. Precision: bf16 autocast on CUDA (the recipe's bf16-mixed), fp32 on the CPU unless
``--precision bf16`` (CPU autocast: the recipe's bytes, without the CUDA context and allocator slack).
``held`` is what the forward leaves alive for backward.

Why phases: at small B the step's largest moment is the optimizer (weights, gradients and AdamW states,
independent of B) or the front end's recomputation (one chunk, independent of B), which hide the
per-utterance growth of the layers' backward. Each phase's peak is fitted by
least squares as a + b*B (at a fixed length every term grows linearly in B, or not at all) and
extrapolated to B = 1024; the step's peak there is the largest phase.

The front end's recomputation works in chunks of ``encoder_checkpointing.subsampling_chunk`` utterances,
so for the ``+ckpt`` variants the batch sizes must be at least that chunk (below it the front end grows
with B and the fit would charge every utterance of B = 1024 with it).

    python recipes/librispeech/nemo/memory.py --device cpu --variants samplewise+ckpt --batch-sizes 8 24 64 \
        --out recipes/librispeech/nemo/results/memory_cpu_fp32_recipe.json
    python recipes/librispeech/nemo/memory.py --device cpu --variants stock+ckpt --batch-sizes 8 16 \
        --out recipes/librispeech/nemo/results/memory_cpu_fp32_stock_ckpt.json
    python recipes/librispeech/nemo/memory.py --device cpu --variants stock samplewise --batch-sizes 1 2 3 \
        --out recipes/librispeech/nemo/results/memory_cpu_fp32_no_ckpt.json
    python recipes/librispeech/nemo/memory.py --device cuda --batch-sizes 8 16 32   # on a GPU (bf16 autocast)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from samplewise_rnnt.procmem import PhaseMeter, extrapolate_phases

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "conf" / "fastconformer_transducer_samplewise_b1024.yaml"
DEFAULT_CONFIGS = {"rnnt": DEFAULT_CONFIG, "tdt": HERE / "conf" / "fastconformer_tdt_samplewise_b1024.yaml"}
VARIANTS = ("stock", "stock+ckpt", "samplewise", "samplewise+ckpt")
PHASES = ("preprocessor", "front end", "encoder + predictor", "loss", "backward", "front-end backward",
          "optimizer")
GIB = 1024 ** 3


def load_model_config(config: str, overrides=()):
    """The config's ``model`` section with ``key=value`` overrides (``model.``-relative or absolute)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key = item.split("=", 1)[0]
        prefixed = item if key.startswith(("model.", "trainer.")) else "model." + item
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([prefixed]))
    return cfg.model


def checkpoint_chunk(model_cfg) -> int:
    """The front end's recomputation chunk the ``+ckpt`` variants use (0 when the front end is not checkpointed)."""
    from samplewise_rnnt.nemo.checkpointing import checkpointing_options

    opts = checkpointing_options(model_cfg.get("encoder_checkpointing", None) or True)
    return int(opts["subsampling_chunk"]) if opts and opts["subsampling"] else 0


def one_step(config: str, overrides, variant: str, batch: int, seconds: float, tps: float, device: str,
             precision: str) -> dict:
    """Run one training step in this process; return each phase's measured peak (bytes)."""
    import gc

    import torch
    from omegaconf import open_dict

    import samplewise_rnnt.nemo  # noqa: F401
    from nemo.collections.asr.models import EncDecRNNTModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    cfg = load_model_config(config, overrides)
    vocab = 1024
    tdt = is_tdt(cfg)
    with open_dict(cfg):
        for key in ("train_ds", "validation_ds", "test_ds", "tokenizer"):
            cfg.pop(key, None)
        cfg.labels = [f"p{i}" for i in range(vocab)]  # same joint size as the 1024-piece tokenizer
        if tdt:
            loss = OmegaConf.to_container(cfg.loss, resolve=True)
            tdt_opts = samplewise_rnnt.nemo.tdt_loss_kwargs(loss)
            # stock: NeMo's TDT loss name (its numba loss is built, never called; replaced below)
            cfg.loss = {"loss_name": "tdt", "tdt_kwargs": loss.get("tdt_kwargs", {})} if variant.startswith("stock") \
                else {"loss_name": "samplewise_tdt", "tdt_kwargs": loss.get("tdt_kwargs", {}),
                      "samplewise_tdt_kwargs": loss.get("samplewise_tdt_kwargs", {})}
        else:
            cfg.loss = {"loss_name": "warprnnt_numba"} if variant.startswith("stock") else \
                {"loss_name": "samplewise_rnnt", "samplewise_rnnt_kwargs": dict(cfg.loss.get("samplewise_rnnt_kwargs", {}))}
        cfg.joint.fuse_loss_wer = False
        # the config's checkpointing options (chunk included); plain ``true`` where it has none
        cfg.encoder_checkpointing = (cfg.get("encoder_checkpointing", None) or True) if variant.endswith("+ckpt") \
            else False
        cfg.decoding = {"strategy": "greedy_batch", "greedy": {"max_symbols": 5}}
        if tdt:
            cfg.decoding.model_type = "tdt"
            cfg.decoding.durations = tdt_opts["durations"]
    model = EncDecRNNTModel(cfg)
    if tdt and variant.startswith("stock"):
        from nemo.collections.asr.losses.rnnt import RNNTLoss

        # the materialised joint output and the exact TDT loss on it (NeMo's TDT losses cannot run here)
        model.loss = RNNTLoss(num_classes=model.loss._blank, reduction=model.loss.reduction,
                              loss_name="samplewise_tdt", loss_kwargs=dict(tdt_opts))
    model = model.to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_samples = int(seconds * 16000)
    U = max(1, int(round(seconds * tps)))
    sig = torch.randn(batch, n_samples, device=device) * 0.1
    sig_len = torch.full((batch,), n_samples, device=device)
    tr = torch.randint(0, vocab, (batch, U), device=device)
    tr_len = torch.full((batch,), U, device=device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    inputs = sum(t.numel() * t.element_size() for t in (sig, sig_len, tr, tr_len))
    cuda = device.startswith("cuda")
    gc.collect()
    meter = PhaseMeter(device)
    # phase boundaries inside the forward and the backward: the preprocessor and the front end run on
    # the whole batch or in chunks, the layers on the whole batch, so each gets its own fit
    meter.cut_after(model.preprocessor, "preprocessor")
    meter.cut_after(model.encoder.pre_encode, "front end")
    meter.cut_on_grad(model.encoder.pre_encode, "backward")  # complete when the layers' backward ends
    peaks = meter.peaks
    t0 = time.time()
    # the step's memory counts the weights and the batch (as on a GPU), not the process's libraries
    meter.start(counted_bytes=weights + inputs)
    with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        enc, enc_len = model.forward(input_signal=sig, input_signal_length=sig_len)
        dec, dec_len, _ = model.decoder(targets=tr, target_length=tr_len)
        meter.cut("encoder + predictor")
        if model.joint.fuse_loss_wer:
            loss = model.joint(encoder_outputs=enc, decoder_outputs=dec, encoder_lengths=enc_len, transcripts=tr,
                               transcript_lengths=tr_len, compute_wer=False)[0]
        else:
            joint = model.joint(encoder_outputs=enc, decoder_outputs=dec)
            loss = model.loss(log_probs=joint, targets=tr, input_lengths=enc_len, target_lengths=dec_len)
            del joint
        meter.cut("loss")
    held = meter.current()
    loss.backward()
    meter.cut_split("backward", "front-end backward")
    opt.step()
    meter.cut("optimizer")
    meter.remove_hooks()
    phase = max(peaks, key=peaks.get)
    return {"variant": variant, "batch": batch, "peak_bytes": int(peaks[phase]), "peak_phase": phase,
            "phase_peak_bytes": {k: int(v) for k, v in peaks.items()}, "held_bytes": int(held),
            "step_s": time.time() - t0, "T_frames": int(enc.shape[-1]), "U": U, "loss": float(loss),
            "weights_bytes": weights, "device": torch.cuda.get_device_name() if cuda else "cpu",
            "lattice": "tdt" if tdt else "rnnt", "outputs": int(model.joint.num_classes_with_blank),
            "dtype": "bf16 autocast" if precision == "bf16" else "fp32"}


def is_tdt(model_cfg) -> bool:
    """Whether the config's joint has duration outputs (a TDT model)."""
    joint = model_cfg.get("joint", None)
    return bool(joint is not None and joint.get("num_extra_outputs", 0))


def extrapolate(runs, target: int) -> dict:
    """Each phase fitted over B; the step's peak at ``target`` is the largest phase."""
    return extrapolate_phases(runs, PHASES, target)


def table(results, target=1024, budget_gb=80.0) -> str:
    first = next(iter(results.values()))  # the variants measured (any subset of VARIANTS)
    sizes = ", ".join(str(r["batch"]) for r in first["runs"])
    lines = [f"| variant | measured peak GiB at B = {sizes} (phase) | held after forward, MiB per utterance "
             f"| peak phase at B = {target}: MiB per utterance | B = {target} (GiB, extrapolated) "
             f"| fits {budget_gb:.0f} GB? |",
             "| --- | --- | --- | --- | --- | --- |"]
    budget = budget_gb * 1e9
    for v, r in results.items():
        meas = ", ".join(f"{x['peak_bytes'] / GIB:.2f} ({x['peak_phase']})" for x in r["runs"])
        est = r["extrapolated_bytes"]
        verdict = f"yes ({budget / est:.1f}x headroom)" if est <= budget else f"no ({est / budget:.1f}x too large)"
        lines.append(f"| {v} | {meas} | {r['held_slope_bytes'] / 2 ** 20:.0f} | {r['peak_phase']}: "
                     f"{r['slope_bytes'] / 2 ** 20:.0f} | {est / GIB:.1f} | {verdict} |")
    return "\n".join(lines)


def phase_table(results, target=1024) -> str:
    """Each phase's fit: the intercept, the per-utterance slope and the value at ``target``."""
    lines = [f"| variant | phase | intercept GiB | MiB per utterance | at B = {target} GiB |",
             "| --- | --- | --- | --- | --- |"]
    for v, r in results.items():
        for ph, f in r["phases"].items():
            lines.append(f"| {v} | {ph} | {f['intercept_bytes'] / GIB:.2f} | {f['slope_bytes'] / 2 ** 20:.1f} "
                         f"| {f['at_target_bytes'] / GIB:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=tuple(DEFAULT_CONFIGS), default="rnnt",
                    help="which recipe config is the default (tdt: fastconformer_tdt_samplewise_b1024.yaml)")
    ap.add_argument("--config", default=None, help="the recipe config (default: the --model's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (relative to model., e.g. "
                         "encoder_checkpointing.subsampling_chunk=4); repeatable")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                    help="at least two (default: 1 2 3 without checkpointing; chunk, 2 x chunk, 3 x chunk with it)")
    ap.add_argument("--seconds", type=float, default=None, help="utterance length (default: the config's "
                    "train_ds.max_duration)")
    ap.add_argument("--tokens-per-second", type=float, default=4.0,
                    help="labels per second of audio (LibriSpeech with 1024 BPE pieces: about 3-4)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                    help="bf16 = autocast, as the recipe's bf16-mixed (default: bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--target-batch", type=int, default=1024)
    ap.add_argument("--budget-gb", type=float, default=80.0, help="the GPU's memory in GB (10^9 bytes)")
    ap.add_argument("--out", default=None, help="write the results (JSON) and a Markdown table next to it")
    ap.add_argument("--_child", nargs=2, metavar=("VARIANT", "B"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.config = args.config or str(DEFAULT_CONFIGS[args.model])
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = args.precision or ("bf16" if device.startswith("cuda") else "fp32")
    model_cfg = load_model_config(args.config, args.overrides)
    seconds = args.seconds or float(model_cfg.train_ds.max_duration)
    if seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    if args._child:
        r = one_step(args.config, args.overrides, args._child[0], int(args._child[1]), seconds,
                     args.tokens_per_second, device, precision)
        print("RESULT " + json.dumps(r), flush=True)
        return 0
    chunk = checkpoint_chunk(model_cfg)
    ckpt = any(v.endswith("+ckpt") for v in args.variants)
    sizes = args.batch_sizes or ([chunk, 2 * chunk, 3 * chunk] if ckpt and chunk else [1, 2, 3])
    if len(set(sizes)) < 2:
        raise ValueError(f"--batch-sizes needs at least two different sizes for the fit, got {sizes}")
    for b in sizes:
        if b < 1:
            raise ValueError(f"--batch-sizes must be positive, got {b}")
        if ckpt and b < chunk:
            raise ValueError(f"--batch-sizes: {b} is below encoder_checkpointing.subsampling_chunk = {chunk}; the "
                             f"+ckpt variants need B >= the chunk (the front end's recomputation grows with B up "
                             f"to it), or lower the chunk with --set encoder_checkpointing.subsampling_chunk=N")
    results = {}
    total = len(args.variants) * len(sizes)
    done = 0
    for v in args.variants:
        runs = []
        for b in sizes:
            cmd = [sys.executable, __file__, "--config", args.config, "--device", device, "--seconds", str(seconds),
                   "--tokens-per-second", str(args.tokens_per_second), "--precision", precision, "--_child", v, str(b)]
            for item in args.overrides:
                cmd += ["--set", item]
            # large blocks through mmap: freed memory leaves the resident set at once, so the peak of the
            # resident set follows the live tensors (glibc's defaults would keep freed heap resident)
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{v} B={b} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1][7:])
            runs.append(r)
            done += 1
            phases = "  ".join(f"{k} {x / GIB:.2f}" for k, x in r["phase_peak_bytes"].items())
            print(f"[{done}/{total}] {v:16s} B={b:<4d} peak {r['peak_bytes'] / GIB:6.2f} GiB ({r['peak_phase']}); "
                  f"{phases}; held {r['held_bytes'] / GIB:.2f}; step {r['step_s']:.1f} s", flush=True)
        results[v] = extrapolate(runs, args.target_batch)
    first = next(iter(results.values()))["runs"][0]
    header = (f"device: {first['device']} ({first['dtype']}); utterances of {seconds:g} s "
              f"(T = {first['T_frames']} encoder frames), U = {first['U']} labels, "
              + (f"TDT, V+1+D = {first['outputs']}; " if first.get("lattice") == "tdt" else "V+1 = 1025; ") +
              f"config {Path(args.config).name}" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
              + (f"; front-end chunk {chunk}" if ckpt else ""))
    md = table(results, args.target_batch, args.budget_gb) + "\n\nPer phase:\n\n" + \
        phase_table(results, args.target_batch)
    print(header)
    print(md)
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps({"header": header, "seconds": seconds, "overrides": args.overrides,
                                   "results": results}, indent=1))
        out.with_suffix(".md").write_text(header + "\n\n" + md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
