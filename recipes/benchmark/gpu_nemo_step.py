"""One real training step of the NeMo recipe on a GPU, measured, beside the CPU extrapolation.

``python -m recipes.benchmark.gpu_nemo_step --batch 1024 --precision bf16 --out results/<gpu>-nemo-step.json``

The step is ``recipes/librispeech/nemo/memory.py``'s: the recipe's model (FastConformer-L, 17 x 512,
1024 pieces -> V+1 = 1025 outputs, from ``conf/fastconformer_transducer_samplewise_b1024.yaml``), B
utterances of synthetic audio (Gaussian noise made on the device; every utterance at the duration cap,
16.7 s) with 4 labels per second, the sample-wise loss and the config's encoder checkpointing
(``samplewise+ckpt``), preprocessor + forward + loss + backward + AdamW step, under bf16 autocast (the
recipe's ``bf16-mixed``) or fp32. Memory: ``torch.cuda.max_memory_allocated`` per phase above the memory
before the step, the weights and the batch counted (as ``memory.py`` does); besides, the allocator's
reserved peak and the device's used memory after the step. The CPU extrapolation of the same quantity
(``recipes/librispeech/nemo/results/memory_cpu_<precision>_recipe.json``, fitted over small B) is
printed beside it.

Without a GPU (``--device cpu``) the same code runs on the CPU; with ``--set`` overrides (e.g. the tiny
model of tests/test_nemo_memory.py) it rehearses the step in seconds.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEMORY_PY = REPO / "recipes" / "librispeech" / "nemo" / "memory.py"
CPU_RESULTS = REPO / "recipes" / "librispeech" / "nemo" / "results"
GIB = 1024 ** 3


def _memory_module():
    spec = importlib.util.spec_from_file_location("nemo_recipe_memory", MEMORY_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_extrapolation(precision: str, variant: str, batch: int):
    """The CPU fit's value at ``batch`` for the step's peak and for each phase (None where no file)."""
    path = CPU_RESULTS / f"memory_cpu_{precision}_recipe.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    res = data["results"].get(variant)
    if res is None:
        return None
    phases = {ph: f["intercept_bytes"] + f["slope_bytes"] * batch for ph, f in res["phases"].items()}
    top = max(phases, key=phases.get)
    return {"file": str(path.relative_to(REPO)), "header": data.get("header", ""),
            "batches": [r["batch"] for r in res["runs"]], "peak_bytes": phases[top], "peak_phase": top,
            "phase_bytes": phases}


def markdown(r: dict, cpu) -> str:
    lines = [f"NeMo recipe step on {r['device']} ({r['dtype']}): B = {r['batch']} utterances of "
             f"{r['seconds']:g} s (T = {r['T_frames']} encoder frames, U = {r['U']}), variant {r['variant']}; "
             f"step {r['step_s']:.1f} s (the first step: cuDNN/cuBLAS set-up included), loss {r['loss']:.3f}.",
             "",
             f"| phase | measured peak GiB ({'CUDA allocator' if r.get('reserved_peak_bytes') is not None else 'resident set'}) "
             f"| CPU extrapolation GiB |",
             "| --- | ---: | ---: |"]
    for ph, b in r["phase_peak_bytes"].items():
        est = f"{cpu['phase_bytes'][ph] / GIB:.1f}" if cpu and ph in cpu["phase_bytes"] else ""
        lines.append(f"| {ph} | {b / GIB:.2f} | {est} |")
    est = f"{cpu['peak_bytes'] / GIB:.1f} ({cpu['peak_phase']})" if cpu else "not compared"
    lines.append(f"| **step** | **{r['peak_bytes'] / GIB:.2f}** ({r['peak_phase']}) | **{est}** |")
    if cpu:
        lines += ["", f"CPU extrapolation: `{cpu['file']}` (fit over B = {', '.join(map(str, cpu['batches']))}; "
                      f"{cpu['header']}); measured / extrapolated = {r['peak_bytes'] / cpu['peak_bytes']:.2f}."]
    if r.get("reserved_peak_bytes") is not None:
        lines.append(f"Allocator: {r['reserved_peak_bytes'] / GIB:.1f} GiB reserved at most in the last phase; "
                     f"device memory in use after the step {r['device_used_bytes'] / GIB:.1f} GiB of "
                     f"{r['device_total_bytes'] / GIB:.1f} GiB.")
    return "\n".join(lines)


def audit(image_list: Path, site: Path) -> list:
    """Distributions this process imported that the GPU image lacks and the carried wheels do not provide."""
    import importlib.metadata as md
    import re

    def canon(n):
        return re.sub(r"[-_.]+", "-", n).lower()

    image = {canon(ln.split("#")[0].strip()) for ln in image_list.read_text().splitlines() if ln.split("#")[0].strip()}
    top = {m.split(".")[0] for m in list(sys.modules)}
    dists = {d for t in top for d in md.packages_distributions().get(t, [])}
    bad = []
    for d in sorted(dists):
        try:
            where = Path(str(md.distribution(d)._path)).resolve().parent  # noqa: SLF001 (the .dist-info folder)
        except Exception:  # a distribution without metadata: report it
            where = None
        if canon(d) not in image and where != site.resolve() and canon(d) != "samplewise-rnnt":
            bad.append(f"{d} (from {where})")
    print(f"audit: {len(dists)} distributions imported; {len(bad)} neither in {image_list.name} nor under {site}"
          + (": " + ", ".join(bad) if bad else ""))
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--variant", default="samplewise+ckpt",
                    choices=("stock", "stock+ckpt", "samplewise", "samplewise+ckpt"))
    ap.add_argument("--seconds", type=float, default=None, help="utterance length (default: the config's cap)")
    ap.add_argument("--tokens-per-second", type=float, default=4.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as memory.py's --set (repeatable)")
    ap.add_argument("--out", help="write the result (JSON) here and the table next to it (.md)")
    ap.add_argument("--audit-image", metavar="PACKAGES_TXT",
                    help="after the step, fail (exit 4) if an imported distribution is neither in this list (the "
                         "GPU image's, recipes/benchmark/gpu_image_packages.txt) nor installed under --site")
    ap.add_argument("--site", default="/tmp/swr-site", help="where gpu_check.sh installs the carried wheels")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch must be positive, got {args.batch}")
    memory = _memory_module()
    cfg = memory.load_model_config(str(memory.DEFAULT_CONFIG), args.overrides)
    seconds = args.seconds or float(cfg.train_ds.max_duration)
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        # the rehearsal without a GPU ends here: arguments parsed, NeMo and the config loaded
        print("gpu_nemo_step: NeMo and the recipe's config load; no CUDA device is visible, stopping before "
              "the first CUDA call", file=sys.stderr)
        return 3
    t0 = time.time()
    r = memory.one_step(str(memory.DEFAULT_CONFIG), args.overrides, args.variant, args.batch, seconds,
                        args.tokens_per_second, args.device, args.precision)
    r.update(seconds=seconds, wall_s=time.time() - t0, overrides=args.overrides,
             command="python -m recipes.benchmark.gpu_nemo_step " + " ".join(sys.argv[1:] if argv is None else argv))
    r["reserved_peak_bytes"] = None
    if cuda:
        free, total = torch.cuda.mem_get_info()
        r.update(reserved_peak_bytes=int(torch.cuda.max_memory_reserved()), device_used_bytes=int(total - free),
                 device_total_bytes=int(total))
    cpu = None if args.overrides else cpu_extrapolation(args.precision, args.variant, args.batch)
    r["cpu_extrapolation"] = cpu
    md = markdown(r, cpu)
    print(md)
    if args.audit_image and audit(Path(args.audit_image), Path(args.site)):
        return 4
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps(r, indent=1))
        out.with_suffix(".md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
