#!/usr/bin/env python3
"""Peak memory of one full training step (forward, backward, optimiser step) of the recipe's
model at small batch sizes, extrapolated linearly to B = 1024.

    python local/measure_memory.py --config conf/train_conformer_transducer_samplewise_b1024.yaml \
        --seconds 15 --batch-sizes 8,16,32 --precision fp32,bf16 --out exp/memory/memory.json

Methods (the same model and weights; only the loss path and checkpointing differ):

* ``espnet_batched``: ESPnet's own ``_calc_transducer_loss``: the joint output ``[B, T, U+1, V]``
  materialised and the batched exact loss (``samplewise_rnnt.RNNTLoss``, which, like
  warp-transducer, computes the gradient in forward and keeps it: logits + gradient);
  no encoder checkpointing (ESPnet as it is).
* ``espnet_batched_ckpt``: the same loss with the encoder checkpointing of this package.
* ``samplewise``: the recipe: ``model: samplewise_transducer`` with encoder checkpointing.

Each (method, B) runs in a fresh process on the CPU. Every utterance has the cap's length
(``--seconds``; the worst batch of a sorted, capped epoch) and ``--tokens-per-second`` BPE
tokens. The step is cut into phases, each with its own peak (``samplewise_rnnt.procmem.PhaseMeter``:
the resident set's high-water mark, reset at each cut, above the resident set before the step, plus
the weights and the batch): ``features`` (STFT/fbank of the whole batch), ``front end`` (the
subsampling convolutions), ``forward`` (encoder layers, CTC, decoder, joint and loss), ``backward``
(down to the front end's output), ``front-end backward`` and ``optimizer`` (Adam's states are created
here). ``held`` is what the forward leaves alive for backward. Prediction at ``--target-batch``: each
phase's peak fitted as a + b*B and extrapolated; the step's peak is the largest phase. (One fit of the
step's overall peak would not do: at small B that peak is the optimizer's or one recomputed slice's,
neither of which grows with B, and it hides the per-utterance growth of the backward.)
CPU numbers stand in for the GPU here (no GPU on this machine):
``bf16`` runs under ``torch.autocast("cpu", dtype=torch.bfloat16)`` as ESPnet's trainer runs
under CUDA autocast with ``use_amp: true``; the CUDA context and allocator slack are not in them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from samplewise_rnnt.procmem import PhaseMeter, extrapolate_phases

METHODS = ("espnet_batched", "espnet_batched_ckpt", "samplewise")
PHASES = ("features", "front end", "forward", "backward", "front-end backward", "optimizer")
GIB = 1024 ** 3


def worker(a) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.tasks.asr import ASRTask

    import samplewise_rnnt as swr
    from samplewise_rnnt.espnet import register

    register()
    args = ASRTask.get_parser().parse_args(["--config", a.config])  # ESPnet's own config parsing
    vocab = a.vocab
    args.token_list = ["<blank>", "<unk>"] + [f"tok{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    args.input_size, args.normalize = None, None
    args.model_conf = dict(args.model_conf)
    args.model_conf["encoder_checkpointing"] = a.method != "espnet_batched"
    if a.method == "espnet_batched":
        args.model_conf["checkpoint_sliced_layers"] = False
    if a.chunk is not None:
        args.model_conf["checkpoint_chunk_size"] = a.chunk
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    if a.method.startswith("espnet_batched"):
        # ESPnet's own transducer branch on the materialised joint output
        import types

        model.criterion_transducer = swr.RNNTLoss(blank=model.blank_id, reduction="mean")
        model._calc_transducer_loss = types.MethodType(ESPnetASRModel._calc_transducer_loss, model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    B = a.batch
    n = int(round(a.seconds * 16000))
    U = int(round(a.seconds * a.tokens_per_second))
    g = torch.Generator().manual_seed(1)
    speech = 0.1 * torch.randn(B, n, generator=g)
    speech_lengths = torch.full((B,), n, dtype=torch.long)
    text = torch.randint(2, vocab - 1, (B, U), generator=g)
    text_lengths = torch.full((B,), U, dtype=torch.long)
    counted = sum(p.numel() * p.element_size() for p in model.parameters()) + \
        sum(t.numel() * t.element_size() for t in (speech, speech_lengths, text, text_lengths))
    meter = PhaseMeter("cpu")
    if getattr(model, "frontend", None) is not None:
        meter.cut_after(model.frontend, "features")
    meter.cut_after(model.encoder.embed, "front end")
    meter.cut_on_grad(model.encoder.embed, "backward")  # complete when the layers' backward ends
    t0 = time.perf_counter()
    meter.start(counted_bytes=counted)  # the weights and the batch count, as on a GPU
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        loss, stats, _ = model(speech, speech_lengths, text, text_lengths)
    meter.cut("forward")
    held = meter.current()  # what the forward leaves alive for backward (plus weights and batch)
    loss.backward()
    meter.cut_split("backward", "front-end backward")
    opt.step()
    meter.cut("optimizer")
    meter.remove_hooks()
    seconds = time.perf_counter() - t0
    peaks = {ph: meter.peaks.get(ph, 0) for ph in PHASES}
    top = max(peaks, key=peaks.get)
    n_params = sum(p.numel() for p in model.parameters())
    return dict(method=a.method, batch=B, precision=a.precision, peak_bytes=peaks[top], peak_phase=top,
                phase_peak_bytes=peaks, held_bytes=held, step_seconds=seconds,
                params=n_params, loss=float(loss), tokens=U, seconds=a.seconds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/train_conformer_transducer_samplewise_b1024.yaml")
    p.add_argument("--seconds", type=float, default=16.7, help="utterance length (the length cap)")
    p.add_argument("--tokens-per-second", type=float, default=4.0)
    p.add_argument("--vocab", type=int, default=5003, help="token list size (BPE 5000 + 3)")
    p.add_argument("--batch-sizes", default="1,2,3")
    p.add_argument("--methods", default="espnet_batched,samplewise", help=f"from {', '.join(METHODS)}")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16")
    p.add_argument("--chunk", type=int, default=None,
                   help="override checkpoint_chunk_size (the front end's slice; at B <= chunk the front "
                        "end's recomputation grows with B, which a linear fit would carry to B = 1024)")
    p.add_argument("--target-batch", type=int, default=1024)
    p.add_argument("--budget-gb", type=float, default=80.0, help="the GPU's memory in GB (10^9 bytes)")
    p.add_argument("--out", default="exp/memory/memory.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a)), flush=True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (measure_memory) %(message)s")
    methods = a.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
    precisions = a.precision.split(",")
    for pr in precisions:
        if pr not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {pr!r}")
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"--batch-sizes needs at least two positive sizes, got {a.batch_sizes!r}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    runs = [r for r in runs if "phase_peak_bytes" in r]  # runs of the earlier, single-peak script: redo
    done = {(r["method"], r["precision"], r["batch"]) for r in runs}
    for pr in precisions:
        for m in methods:
            for B in sizes:
                if (m, pr, B) in done:
                    continue
                cmd = [sys.executable, __file__, "--worker", "--method", m, "--batch", str(B), "--precision", pr,
                       "--config", a.config, "--seconds", str(a.seconds), "--tokens-per-second",
                       str(a.tokens_per_second), "--vocab", str(a.vocab)]
                if a.chunk is not None:
                    cmd += ["--chunk", str(a.chunk)]
                t0 = time.time()
                # glibc keeps freed blocks below its (dynamic, up to 32 MiB) mmap threshold resident,
                # so the resident set would hold dead tensors; a fixed 128 KiB threshold returns every
                # larger block to the system when it is freed: the resident set tracks live memory.
                env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
                if r.returncode or not line:
                    raise RuntimeError(f"worker {m} B={B} {pr} failed:\n{r.stderr[-3000:]}")
                res = json.loads(line[0][7:])
                runs.append(res)
                logging.info("%-20s %s B=%d: peak %.2f GiB (%s), held %.2f GiB, step %.1f s (wall %.0f s)", m, pr, B,
                             res["peak_bytes"] / GIB, res["peak_phase"], res["held_bytes"] / GIB,
                             res["step_seconds"], time.time() - t0)
                out.write_text(json.dumps(dict(runs=runs), indent=1) + "\n")
    table = []
    budget = a.budget_gb * 1e9
    for pr in precisions:
        for m in methods:
            rs = sorted((r for r in runs if r["method"] == m and r["precision"] == pr and r["batch"] in sizes),
                        key=lambda r: r["batch"])
            if len(rs) < 2:
                continue
            ex = extrapolate_phases(rs, PHASES, a.target_batch)
            pred = ex["extrapolated_bytes"]
            table.append(dict(method=m, precision=pr,
                              measured={str(r["batch"]): round(r["peak_bytes"] / GIB, 3) for r in rs},
                              measured_phase={str(r["batch"]): r["peak_phase"] for r in rs},
                              held={str(r["batch"]): round(r["held_bytes"] / GIB, 3) for r in rs},
                              held_slope_mib=round(ex["held_slope_bytes"] / 2 ** 20, 1),
                              peak_phase=ex["peak_phase"], peak_slope_mib=round(ex["slope_bytes"] / 2 ** 20, 1),
                              phases={ph: dict(intercept_gib=round(f["intercept_bytes"] / GIB, 3),
                                               slope_mib=round(f["slope_bytes"] / 2 ** 20, 1),
                                               at_target_gib=round(f["at_target_bytes"] / GIB, 1))
                                      for ph, f in ex["phases"].items()},
                              predicted_gib=round(pred / GIB, 1), fits=bool(pred <= budget),
                              headroom=round(budget / pred, 2)))
    meta = dict(config=a.config, seconds=a.seconds, checkpoint_chunk_size=a.chunk,
                tokens=int(round(a.seconds * a.tokens_per_second)), vocab=a.vocab, target_batch=a.target_batch,
                budget_gb=a.budget_gb, device="CPU (resident set), torch " + __import__("torch").__version__)
    out.write_text(json.dumps(dict(meta=meta, table=table, runs=runs), indent=1) + "\n")
    print(f"| method | precision | peak GiB ({', '.join(f'B={B}' for B in sizes)}) | held MiB/utt "
          f"| peak phase at B={a.target_batch}: MiB/utt | predicted peak B={a.target_batch} GiB "
          f"| fits {a.budget_gb:.0f} GB |")
    print("|" + " --- |" * 7)
    for t in table:
        meas = ", ".join(f"{v:.2f} ({t['measured_phase'][b]})" for b, v in t["measured"].items())
        verdict = f"yes ({t['headroom']:.1f}x headroom)" if t["fits"] else f"no ({1 / t['headroom']:.1f}x too large)"
        print(f"| {t['method']} | {t['precision']} | {meas} | {t['held_slope_mib']:.0f} | {t['peak_phase']}: "
              f"{t['peak_slope_mib']:.0f} | {t['predicted_gib']:.1f} | {verdict} |")
    print()
    print(f"| method | precision | phase | intercept GiB | MiB per utterance | at B = {a.target_batch} GiB |")
    print("|" + " --- |" * 6)
    for t in table:
        for ph, f in t["phases"].items():
            print(f"| {t['method']} | {t['precision']} | {ph} | {f['intercept_gib']:.2f} | {f['slope_mib']:.1f} "
                  f"| {f['at_target_gib']:.1f} |")


if __name__ == "__main__":
    main()
