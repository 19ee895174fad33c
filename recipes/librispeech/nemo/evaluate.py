"""Greedy WER of a trained .nemo model on NeMo manifests (test-clean, test-other, ...).

    python evaluate.py --model exp/model.nemo --manifests data/manifests/test-clean.json ... [--summary exp/summary.json]

Runs in plain NeMo (the saved model names stock classes only). Prints one line per manifest; with
``--summary`` merges ``{"wer": {part: wer}}`` into that JSON file (created if missing) and writes
the hypotheses and references beside it, Kaldi style (``<utt_id> <words>``):
``hyp_<part>.txt``, ``ref_<part>.txt``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifests", required=True, nargs="+")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--summary", default=None)
    args = ap.parse_args(argv)
    from nemo.collections.asr.metrics.wer import word_error_rate
    from nemo.collections.asr.models import ASRModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ASRModel.restore_from(args.model, map_location=device)
    model.eval()
    wers = {}
    for manifest in args.manifests:
        rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
        t0 = time.time()
        hyps = model.transcribe([r["audio_filepath"] for r in rows], batch_size=args.batch_size, verbose=False)
        hyps = [getattr(h, "text", h) for h in hyps]
        wer = word_error_rate(hyps, [r["text"] for r in rows])
        name = Path(manifest).stem
        wers[name] = wer
        print(f"[eval] {name}: WER {100 * wer:.2f}% ({len(rows)} utterances, greedy, {time.time() - t0:.0f} s)",
              flush=True)
        for h, r in list(zip(hyps, rows))[:2]:
            print(f"        ref: {r['text']}\n        hyp: {h}")
        if args.summary:
            ids = [Path(r["audio_filepath"]).stem for r in rows]
            out = Path(args.summary).parent
            (out / f"hyp_{name}.txt").write_text("".join(f"{i} {h}\n" for i, h in zip(ids, hyps)))
            (out / f"ref_{name}.txt").write_text("".join(f"{i} {r['text']}\n" for i, r in zip(ids, rows)))
    if args.summary:
        path = Path(args.summary)
        summary = json.loads(path.read_text()) if path.exists() else {}
        summary["wer"] = wers
        path.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
