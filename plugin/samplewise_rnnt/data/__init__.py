"""Speech corpora: the LibriSpeech reader shared by the recipes, and the synthetic
mini-LibriSpeech generator (:mod:`samplewise_rnnt.data.mini_librispeech`)."""

from .librispeech import (
    Utterance,
    find_parts,
    read_librispeech_part,
    write_kaldi_dir,
    write_nemo_manifest,
)

__all__ = [
    "Utterance",
    "find_parts",
    "read_librispeech_part",
    "write_kaldi_dir",
    "write_nemo_manifest",
]
