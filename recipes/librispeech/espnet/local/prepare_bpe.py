#!/usr/bin/env python3
"""Sentencepiece BPE model and ESPnet token list from a Kaldi ``text`` file.

    python local/prepare_bpe.py --text data/train/text --nbpe 5000 --out data/token_list/bpe_unigram5000

Writes ``<out>/bpe.model`` and ``<out>/tokens.txt``: ``<blank>`` (id 0, the transducer blank of
both ESPnet tasks), ``<unk>`` (1), the pieces, ``<sos/eos>`` (last), as asr.sh's token lists.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import sentencepiece as spm


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True)
    p.add_argument("--nbpe", type=int, required=True)
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char"])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (prepare_bpe) %(message)s")
    if a.nbpe < 4:
        raise ValueError(f"--nbpe must be at least 4, got {a.nbpe}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [ln.split(maxsplit=1)[1] for ln in Path(a.text).read_text(encoding="utf-8").splitlines()
             if len(ln.split(maxsplit=1)) == 2]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(input=f.name, vocab_size=a.nbpe, model_type=a.model_type,
                                   model_prefix=str(out / "bpe"), character_coverage=1.0,
                                   input_sentence_size=100_000_000, minloglevel=2)
    Path(f.name).unlink()
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    tokens = ["<blank>", "<unk>"] + pieces + ["<sos/eos>"]
    (out / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    logging.info("%s: %d pieces, token list of %d", out / "bpe.model", len(pieces), len(tokens))


if __name__ == "__main__":
    main()
