"""Run a toolkit's command without the downloads its imports attempt.

ESPnet imports ``g2p_en`` (for its phoneme tokenizers) whenever its text preprocessing is
imported, and ``g2p_en`` downloads NLTK's ``averaged_perceptron_tagger_eng`` and ``cmudict``
at import time when they are not installed: on a machine without internet every ESPnet command
then prints ``[nltk_data] Error loading ...: <urlopen error ...>``, although a BPE or character
recipe never uses them. :func:`defer_nltk_downloads` puts a stand-in for ``g2p_en`` in
``sys.modules`` that imports the real module on first use: a recipe that does use a phoneme
tokenizer gets the real import (and, offline, its real error) at that point; every other
command imports nothing and downloads nothing. Where the NLTK data is installed, or ``g2p_en``
is not, nothing is changed.

    python -m samplewise_rnnt.offline MODULE [ARGS ...]

runs ``python -m MODULE ARGS ...`` after :func:`defer_nltk_downloads` and with the Hugging Face
libraries' offline switches set (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``,
``HF_DATASETS_OFFLINE``; values already in the environment are kept).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import runpy
import sys
import types

__all__ = ["OFFLINE_ENVIRONMENT", "defer_nltk_downloads", "main"]

# The NLTK resources g2p_en looks for at import time (and downloads when missing).
_G2P_EN_RESOURCES = ("taggers/averaged_perceptron_tagger_eng.zip", "corpora/cmudict.zip")
OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports it."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _nltk_data_present() -> bool:
    try:
        import nltk.data
    except ImportError:
        return False
    for resource in _G2P_EN_RESOURCES:
        try:
            nltk.data.find(resource)
        except LookupError:
            return False
    return True


def defer_nltk_downloads() -> bool:
    """Defer ``g2p_en``'s import (and its NLTK downloads) to its first use.

    Returns True when the stand-in was installed; False when nothing needed doing (``g2p_en``
    is not installed or already imported, or the NLTK data it needs is present).
    """
    if "g2p_en" in sys.modules:
        return False
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or _nltk_data_present():
        return False
    stand_in = _Deferred("g2p_en", "stand-in: imported on first use (samplewise_rnnt.offline)")
    # the real spec, so that importlib.util.find_spec("g2p_en") (transformers asks it) answers
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules["g2p_en"] = stand_in
    return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    defer_nltk_downloads()
    module, args = argv[0], argv[1:]
    sys.argv = [module] + args
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
