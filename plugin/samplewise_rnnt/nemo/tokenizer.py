"""A sentencepiece tokenizer folder in the layout NeMo's ``model.tokenizer.dir`` expects.

``<dir>/tokenizer.model``, ``<dir>/tokenizer.vocab`` (sentencepiece's own files) and ``<dir>/vocab.txt``
(one piece a line), trained on the ``text`` fields of NeMo manifests.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["manifest_texts", "train_sentencepiece"]


def manifest_texts(manifests: Sequence[os.PathLike]) -> list:
    """The ``text`` of every line of the given NeMo manifests."""
    texts = []
    for m in manifests:
        with open(m, encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f if line.strip())
    return texts


def train_sentencepiece(texts: Iterable[str], out_dir: os.PathLike, vocab_size: int = 256,
                        model_type: str = "bpe") -> Path:
    """Train a sentencepiece model (``bpe`` or ``unigram``) on ``texts`` into ``out_dir``; return ``out_dir``.

    ``vocab_size`` counts sentencepiece's pieces (``<unk>`` included); the transducer adds its blank.
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("texts is empty: nothing to train the tokenizer on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "text_corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, hard_vocab_limit=False,
        num_threads=1, minloglevel=2)
    pieces = [line.split("\t")[0] for line in (out / "tokenizer.vocab").read_text(encoding="utf-8").splitlines()]
    (out / "vocab.txt").write_text("\n".join(p for p in pieces if p != "<unk>") + "\n", encoding="utf-8")
    return out
