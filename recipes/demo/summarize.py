"""Print the demo's summary: per toolkit, the training loss at the start and the end, the WER and the
training time; then the loss benchmark's memory table and the path of its plot."""
import argparse
import json
from pathlib import Path


def _nemo(path):
    s = json.loads(path.read_text())
    return {"loss_start": s.get("loss_start_mean3", s.get("loss_first")),
            "loss_end": s.get("loss_end_mean3", s.get("loss_last")),
            # NeMo's WER is a fraction
            "wer": {k: 100.0 * v for k, v in s.get("wer", {}).items()},
            "train_seconds": s.get("train_seconds"), "steps": s.get("steps")}


def _espnet(path):
    s = json.loads(path.read_text())
    return {"loss_start": s.get("train_loss_first_epoch", s.get("loss_first_step")),
            "loss_end": s.get("train_loss_last_epoch", s.get("loss_last_step")),
            "wer": s.get("wer", {}),  # already in percent
            "train_seconds": s.get("train_seconds"), "steps": s.get("train_steps")}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seconds", type=int, default=None)
    args = ap.parse_args()
    rows = []
    for name, pattern, reader in [("NeMo", "nemo/summary.json", _nemo),
                                  ("ESPnet", "espnet/exp/*/summary.json", _espnet)]:
        found = sorted(args.out.glob(pattern))
        if not found:
            raise SystemExit(f"demo: no summary for {name} under {args.out} ({pattern})")
        rows.append((name, reader(found[-1]), found[-1]))
    print("\n## Training with the sample-wise loss (synthetic mini-LibriSpeech, CPU)\n")
    print("| toolkit | steps | training loss, start | training loss, end | WER (%) | training time (s) |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, s, _ in rows:
        wer = ", ".join(f"{k}: {v:.1f}" for k, v in s["wer"].items())
        print(f"| {name} | {s['steps']} | {s['loss_start']:.2f} | {s['loss_end']:.2f} | {wer} | "
              f"{s['train_seconds']:.0f} |")
    for name, s, _ in rows:
        verdict = "falls" if s["loss_end"] < s["loss_start"] else "DOES NOT FALL"
        print(f"- {name}: the training loss {verdict} ({s['loss_start']:.2f} -> {s['loss_end']:.2f})")
    print("\n(NeMo reports its loss per target token (mean_volume), ESPnet per utterance (sum / B).)")
    print("\n## Loss memory against batch size\n")
    print((args.out / "memory.md").read_text().strip())
    print(f"\nPlot: {args.out / 'memory_vs_batch.png'}")
    for name, _, path in rows:
        print(f"{name} summary: {path}")
    if args.seconds is not None:
        print(f"\nDemo finished in {args.seconds // 60} min {args.seconds % 60} s.")


if __name__ == "__main__":
    main()
