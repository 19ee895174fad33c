"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# The tiny synthetic corpus the tests share: 6 train, 2 dev, 2 test utterances of 1-8 s.
MINI_LIBRISPEECH_SETTINGS = dict(seed=0, train=6, dev=2, test=2, train_speakers=3,
                                 dev_speakers=1, test_speakers=2, min_seconds=1.0,
                                 max_seconds=8.0)


@pytest.fixture(scope="session")
def mini_librispeech_settings() -> dict:
    """The settings the ``mini_librispeech`` corpus was generated with (a fresh copy)."""
    return dict(MINI_LIBRISPEECH_SETTINGS)


@pytest.fixture(scope="session")
def mini_librispeech(tmp_path_factory) -> Path:
    """Root of a tiny synthetic mini-LibriSpeech corpus (LibriSpeech's layout).

    ``<root>/{train,dev,test}-clean-mini/<speaker>/<chapter>/...flac + .trans.txt`` with
    6, 2 and 2 utterances of 1-8 s, plus SPEAKERS.TXT, CHAPTERS.TXT, README.TXT; generated
    once per session (about a second; needs espeak-ng and sox). Treat it as read-only:
    copy it before changing anything.
    """
    from samplewise_rnnt.data.mini_librispeech import generate

    root = tmp_path_factory.mktemp("mini_librispeech")
    generate(root, jobs=2, progress=False, **MINI_LIBRISPEECH_SETTINGS)
    return root


@pytest.fixture(scope="session")
def espnet_mini_data(mini_librispeech, tmp_path_factory) -> Path:
    """The tiny corpus in the ESPnet recipe's data layout, made by the recipe's own scripts:
    ``<root>/data/{train,valid,test}/{wav.scp,text,...}`` and a 30-piece BPE model in
    ``<root>/data/bpe``. Skips without ESPnet. Tests may write their own subfolders of ``<root>``."""
    pytest.importorskip("espnet2")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "librispeech" / "espnet" / "local"))
    import data_prep
    import prepare_bpe

    work = tmp_path_factory.mktemp("espnet_mini_data")
    data_prep.main(["--librispeech", str(mini_librispeech), "--parts",
                    "train-clean-mini,dev-clean-mini,test-clean-mini", "--names", "train,valid,test",
                    "--out", str(work / "data")])
    prepare_bpe.main(["--text", str(work / "data" / "train" / "text"), "--nbpe", "30",
                      "--out", str(work / "data" / "bpe")])
    return work
