#!/usr/bin/env python3
"""Generate the synthetic mini-LibriSpeech corpus (see README.md in this directory).

    python recipes/mini_librispeech/generate.py                  # -> data/mini_librispeech
    python recipes/mini_librispeech/generate.py --out DIR --train 200 --seed 1

A thin wrapper around ``python -m samplewise_rnnt.data.mini_librispeech``; ``--help`` lists
the options.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugin"))  # this checkout's package, built in place

from samplewise_rnnt.data.mini_librispeech import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="recipes/mini_librispeech/generate.py",
                  default_out=str(REPO / "data" / "mini_librispeech")))
