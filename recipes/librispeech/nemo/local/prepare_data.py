"""LibriSpeech directory (standard layout) -> NeMo manifests, one per part, plus train.json.

    python local/prepare_data.py --librispeech DIR --out data/manifests [--train-parts ...]

Every part under DIR (train-*, dev-*, test-*; the synthetic corpus's *-mini parts too) is written to
``<out>/<part>.json``; the train parts are concatenated into ``<out>/train.json``.
"""
import argparse
import sys
from pathlib import Path

from samplewise_rnnt.data.librispeech import find_parts, read_librispeech_part, write_nemo_manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--librispeech", required=True, help="the LibriSpeech root (holds train-clean-100, ...)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    train = []
    for part in find_parts(args.librispeech):
        utts = read_librispeech_part(part)
        write_nemo_manifest(utts, out / f"{part.name}.json")
        hours = sum(u.duration for u in utts) / 3600
        print(f"  {part.name}: {len(utts)} utterances, {hours:.2f} h -> {out / (part.name + '.json')}", flush=True)
        if part.name.startswith("train-"):
            train.extend(utts)
    if not train:
        raise ValueError(f"--librispeech: no train-* part under {args.librispeech}")
    write_nemo_manifest(train, out / "train.json")
    print(f"  train: {len(train)} utterances -> {out / 'train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
