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
