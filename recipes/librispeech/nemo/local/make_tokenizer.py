"""Train the sentencepiece tokenizer NeMo's model.tokenizer.dir expects, on a train manifest's text.

    python local/make_tokenizer.py --manifest data/manifests/train.json --vocab-size 1024 --out data/tokenizer
"""
import argparse
import sys

from samplewise_rnnt.nemo.tokenizer import manifest_texts, train_sentencepiece


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", required=True, nargs="+")
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--type", default="bpe", choices=["bpe", "unigram"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = train_sentencepiece(manifest_texts(args.manifest), args.out, args.vocab_size, args.type)
    print(f"  tokenizer ({args.type}, {args.vocab_size} pieces) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
