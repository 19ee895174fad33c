#!/usr/bin/env python3
"""WER of ESPnet's decoded text against the reference (no SCTK needed).

    python local/score.py --ref data/test/text --hyp exp/asr/decode_test/1best_recog/text --out result.json

Both files are Kaldi ``<utt_id> <words>``; words are compared case-insensitively; an utterance
without a hypothesis counts as all deletions. WER = (S + D + I) / N over the set.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import editdistance


def read(path):
    out = {}
    for ln in Path(path).read_text(encoding="utf-8").splitlines():
        parts = ln.strip().split(maxsplit=1)
        if parts:
            out[parts[0]] = (parts[1] if len(parts) > 1 else "").upper().split()
    return out


def wer(ref, hyp):
    errors = words = 0
    for utt, r in ref.items():
        errors += editdistance.eval(r, hyp.get(utt, []))
        words += len(r)
    return errors, words


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True)
    p.add_argument("--hyp", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    ref, hyp = read(a.ref), read(a.hyp)
    if not ref:
        raise ValueError(f"--ref {a.ref!r} holds no utterance")
    errors, words = wer(ref, hyp)
    res = dict(wer=100.0 * errors / max(words, 1), errors=errors, words=words, utterances=len(ref),
               decoded=sum(u in hyp for u in ref))
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"WER {res['wer']:.2f} % ({errors} errors / {words} words, {res['decoded']}/{len(ref)} utterances "
          f"decoded) {a.hyp}")


if __name__ == "__main__":
    main()
