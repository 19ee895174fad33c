"""ESPnet adapter: the sample-wise transducer loss for both espnet2 transducer tasks.

Select it in the training YAML (see recipes/librispeech/espnet/README.md for the exact lines)::

    # task asr (python -m espnet2.bin.asr_train), ESPnetASRModel + decoder: transducer
    model: samplewise_transducer
    model_conf:
        ctc_weight: 0.3
        fused: null                  # sample-wise engine options (samplewise_rnnt.espnet.options)
        encoder_checkpointing: true
        checkpoint_sliced_layers: true

    # task asr_transducer (python -m espnet2.bin.asr_transducer_train); ESPnet's task has no
    # --model option of its own: the package adds it (samplewise_rnnt.espnet.transducer_model.install)
    model: samplewise_transducer
    model_conf:
        auxiliary_ctc_weight: 0.3
        encoder_checkpointing: true
        checkpoint_sliced_layers: true

With the package installed, ESPnet's own programs (``python -m espnet2.bin.asr_train``,
``asr_inference``, ``asr_transducer_train``, ``asr_transducer_inference``, hence stock ``asr.sh``)
accept ``model: samplewise_transducer`` as they are: the post-import hook (:mod:`samplewise_rnnt_hook`)
registers it when ``espnet2.tasks.asr`` / ``espnet2.tasks.asr_transducer`` is imported, in every
process (also the workers ESPnet spawns with ``--ngpu > 1``). Without the hook, the entry points
``python -m samplewise_rnnt.espnet.{asr_train, asr_inference, asr_transducer_train,
asr_transducer_inference}`` register it at import (so spawned workers, which import the entry point's
module again, have it too) and run ESPnet's programs; :func:`write_asr_sh_python` writes an interpreter
wrapper for ``asr.sh --python`` that routes to them. warp-transducer is never imported.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

__all__ = ["register", "MODEL_NAME", "write_asr_sh_python", "ENTRY_POINTS"]

#: the name that selects the sample-wise model class in the training YAML (``model:``)
MODEL_NAME = "samplewise_transducer"

#: ESPnet program -> the entry point that registers the name and then runs it
ENTRY_POINTS = {
    "espnet2.bin.asr_train": "samplewise_rnnt.espnet.asr_train",
    "espnet2.bin.asr_inference": "samplewise_rnnt.espnet.asr_inference",
    "espnet2.bin.asr_transducer_train": "samplewise_rnnt.espnet.asr_transducer_train",
    "espnet2.bin.asr_transducer_inference": "samplewise_rnnt.espnet.asr_transducer_inference",
}


def register() -> None:
    """Add ``samplewise_transducer`` to task ``asr``'s ``--model`` choices (idempotent).

    Task ``asr_transducer`` has no ``--model`` option; its entry points use
    :class:`samplewise_rnnt.espnet.transducer_model.SampleWiseASRTransducerTask` instead.
    """
    from .._toolkits import require

    require("espnet", "samplewise_rnnt.espnet")
    from espnet2.tasks import asr

    from .asr_model import SampleWiseESPnetASRModel

    asr.model_choices.classes[MODEL_NAME] = SampleWiseESPnetASRModel


_WRAPPER = """#!/usr/bin/env bash
# Interpreter wrapper for ESPnet's asr.sh: --python {path}
# Runs {python} and replaces ESPnet's asr/asr_transducer train and inference programs by the
# samplewise_rnnt.espnet entry points (which register model: samplewise_transducer first).
if [ "${{1:-}}" = "-m" ]; then
    case "${{2:-}}" in
{cases}
    esac
fi
exec {python} "$@"
"""


def write_asr_sh_python(path, python: str = sys.executable) -> Path:
    """Write an executable interpreter wrapper for ``asr.sh --python <path>`` and return its path."""
    cases = "\n".join(f'        {src}) shift 2; set -- -m {dst} "$@" ;;' for src, dst in ENTRY_POINTS.items())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_WRAPPER.format(path=path, python=python, cases=cases))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _main_write_wrapper(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m samplewise_rnnt.espnet",
                                description="Write an interpreter wrapper for ESPnet's asr.sh --python")
    p.add_argument("--write-python-wrapper", required=True, metavar="PATH")
    a = p.parse_args(argv)
    out = write_asr_sh_python(a.write_python_wrapper)
    print(f"wrote {out}; use: ./asr.sh --python {os.path.abspath(out)} ...")
