# samplewise-rnnt: one-command set-up, build and tests.
#   make test       venv (.venv, pinned versions), system packages, extension build, pytest
#   make demo       the same set-up, then the main job on its embedded default (CPU, under 20 minutes)
#   make gpu-check  on a machine with a GPU: gpu-check-1 then gpu-check-2 (recipes/benchmark/gpu_check.sh)
#   make gpu-check-1  build for the visible GPU, CUDA tests, core/engine/budget/sweep benchmarks (< 5 min on an H200)
#   make gpu-check-2  the paper preset and one NeMo recipe step at B = 1024 (< 5 min; needs the carried .whl/)
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON_BASE ?= python3
VENV        ?= .venv
PY          ?= $(VENV)/bin/python
STAMP       := $(VENV)/.swr-requirements
PYTEST_ARGS ?=
# pip warns once per package about this machine's local index folders; keep the log readable
PIPQ        := -q --progress-bar off
QUIET_PIP   := 2>&1 | sed -u '/is ignored: it is neither a file nor a directory/d' 
export MAX_JOBS ?= 2
# the CUDA toolkit (ENVIRONMENT.md: the nvcc wrapper in /usr/local/bin misleads torch)
export CUDA_HOME ?= $(shell test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda)
# CI builds one architecture to stay fast; release builds set their own list
export TORCH_CUDA_ARCH_LIST ?= 9.0

.PHONY: test demo build venv sysdeps gpu-check gpu-check-1 gpu-check-2 bench clean

# ---- virtual environment (pinned versions; see ../shared/ENVIRONMENT.md) ----------------------
$(STAMP): requirements/base.txt requirements/toolkits.txt
	@echo "== creating $(VENV) (torch, torchaudio, NeMo, ESPnet); a few minutes on a fresh machine"
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	# pip 23 is required: pip 26 refuses ESPnet's ci_sdr dependency (ENVIRONMENT.md)
	$(PY) -m pip install $(PIPQ) 'pip<24' $(QUIET_PIP)
	$(PY) -m pip install $(PIPQ) -r requirements/base.txt $(QUIET_PIP)
	$(PY) -m pip install $(PIPQ) --no-deps torchaudio==2.11.0 $(QUIET_PIP)
	$(PY) -m pip install $(PIPQ) -r requirements/toolkits.txt $(QUIET_PIP)
	# espnet 202511 pins setuptools<74 and sentencepiece==0.2.0, which clash with torch 2.14:
	# install it without its pins, its runtime dependencies are in requirements/toolkits.txt
	$(PY) -m pip install $(PIPQ) --no-deps espnet==202511 $(QUIET_PIP)
	# the source tree on the path (the extension is built in place)
	echo "$(CURDIR)/plugin" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/samplewise_rnnt_dev.pth
	touch $@

venv: $(STAMP)

# ---- system packages for the synthetic corpus ------------------------------------------------------
sysdeps:
	@if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null || ! command -v flac >/dev/null; then
		echo "== installing espeak-ng sox flac"
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo)
		$$SUDO apt-get update -q
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q espeak-ng sox flac
	fi

# ---- the extension (incremental: ninja rebuilds only what changed) ---------------------------------
build: $(STAMP)
	@echo "== building samplewise_rnnt._C"
	$(PY) setup.py -q build_ext --inplace
	$(PY) -c "import samplewise_rnnt as s; print('samplewise_rnnt._C built; CUDA kernels:', s.cuda_built())"

test: build sysdeps
	$(PY) -m pytest tests $(PYTEST_ARGS)

# the main job on its embedded default: synthetic mini-LibriSpeech, NeMo and ESPnet recipes, memory story (CPU)
demo: build sysdeps
	bash recipes/demo/run.sh

bench: build
	$(PY) -m recipes.benchmark --preset core

# On a GPU machine (no registries there): the system python with its own torch.
# Each part ends within GPU_CHECK_LIMIT_S (290 s); results in recipes/benchmark/results/<gpu>-<date>-<n>.md.
gpu-check:
	bash recipes/benchmark/gpu_check.sh all

gpu-check-1:
	bash recipes/benchmark/gpu_check.sh 1

gpu-check-2:
	bash recipes/benchmark/gpu_check.sh 2

clean:
	rm -rf build plugin/samplewise_rnnt/*.so
