#!/usr/bin/env bash
# Wheels for the GPU image (no registries there): see recipes/benchmark/gpu_wheels.py for what and how.
#   bash recipes/benchmark/gpu_wheels.sh [--python-version 3.12] [--dest .whl] [--check-venv VENV]
# Run from anywhere with a python3 that has pip and reaches a registry; the folder (default .whl/ at the
# repository root, git-ignored) then travels with the working tree (carry it) and gpu_check.sh installs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# (pip warns about this machine's local index folders once per package: left out)
"${PYTHON:-python3}" -m recipes.benchmark.gpu_wheels "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
