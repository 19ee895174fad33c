"""samplewise_rnnt.offline: ESPnet commands without g2p_en's import-time NLTK downloads.

Real ESPnet and g2p_en in fresh processes (imports are process-wide).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(code_or_args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "plugin"), str(REPO)]
                                                      + [os.environ.get("PYTHONPATH", "")]))
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_espnet_command_prints_no_nltk_download():
    pytest.importorskip("espnet2")
    pytest.importorskip("g2p_en")
    # espnet2.bin.tokenize_text imports ESPnet's tokenizers, phoneme ones (g2p_en) included
    r = _run(["-m", "samplewise_rnnt.offline", "espnet2.bin.tokenize_text", "--help"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--token_type" in r.stdout
    assert "nltk_data" not in r.stderr and "urlopen" not in r.stderr, r.stderr[-2000:]


def test_g2p_en_is_imported_on_first_use():
    pytest.importorskip("g2p_en")
    r = _run("import sys, types\n"
             "from samplewise_rnnt.offline import defer_nltk_downloads, _nltk_data_present\n"
             "installed = defer_nltk_downloads()\n"
             "assert installed == (not _nltk_data_present()), installed\n"
             "import g2p_en\n"
             "import importlib.util\n"
             "assert importlib.util.find_spec('g2p_en') is not None\n"
             "print('stand-in' if type(g2p_en).__name__ == '_Deferred' else 'real')\n"
             "G2p = g2p_en.G2p\n"  # first use: the real module is imported (and downloads what it needs)
             "assert type(sys.modules['g2p_en']).__name__ == 'module' and callable(G2p)\n"
             "print('real after use')\n"
             "assert defer_nltk_downloads() is False\n")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.split()
    assert lines[-3:] == ["real", "after", "use"]


def test_module_runner_passes_arguments_and_exit_status(tmp_path):
    (tmp_path / "probe_mod.py").write_text(
        "import os, sys\nprint(sys.argv[1:], os.environ['HF_HUB_OFFLINE'])\nsys.exit(3)\n")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO / "plugin")])
    r = subprocess.run([sys.executable, "-m", "samplewise_rnnt.offline", "probe_mod", "a", "--b"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == "['a', '--b'] 1"
    r = subprocess.run([sys.executable, "-m", "samplewise_rnnt.offline"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2 and "python -m samplewise_rnnt.offline MODULE" in r.stdout
