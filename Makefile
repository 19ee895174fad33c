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
# pip's output, condensed: one line per step with its time (below), pip's "Collecting ..." lines in a
# terminal (with its download bars) and only its summary, warnings and errors in a log (CI); the warning
# this machine's local index folders cause once per package is dropped
PIP_FILTER  := sed -u -e '/is ignored: it is neither a file nor a directory/d' -e '/^Requirement already satisfied/d' \
               -e '/^ *Using cached/d' -e '/^ *Stored in directory/d' -e '/^Looking in /d'
PIP_FILTER_LOG := -e '/^Collecting /d' -e '/^ *Processing /d' -e '/^ *Downloading /d' -e '/^ *Obtaining /d' -e '/^ *Preparing metadata/d' \
               -e '/^ *Getting requirements/d' -e '/^ *Installing build dependencies/d' -e '/^ *Building wheel/d' \
               -e '/^ *Created wheel/d' -e '/^Building wheels for/d' -e '/^Successfully built/d' -e '/^ *Attempting uninstall/d' \
               -e '/^ *Found existing installation/d' -e '/^ *Uninstalling /d' -e '/^ *Successfully uninstalled/d'
export MAX_JOBS ?= 2
# the CUDA toolkit: torch would guess CUDA_HOME=/usr/local from an nvcc wrapper in /usr/local/bin
# and then fail to link -lcudart
export CUDA_HOME ?= $(shell test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda)
# CI builds one architecture to stay fast; release builds set their own list
export TORCH_CUDA_ARCH_LIST ?= 9.0

.PHONY: test demo build venv hook sysdeps gpu-check gpu-check-1 gpu-check-2 bench clean

# ---- virtual environment (pinned versions: requirements/*.txt) ------------------------------------
# Five steps, each announced with its usual duration and closed with the time it took.
$(STAMP): requirements/base.txt requirements/toolkits.txt
	@t_all=$$(date +%s)
	if [ -t 1 ]; then bar=on; filt="$(PIP_FILTER)"; else bar=off; filt="$(PIP_FILTER) $(PIP_FILTER_LOG)"; fi
	step() {  # step N TITLE ESTIMATE COMMAND...: run COMMAND, pip's output condensed and indented
		local n=$$1 title=$$2 est=$$3 t0=$$(date +%s); shift 3
		echo "== [$$n/5] $$title (usually $$est) ..."
		"$$@" 2>&1 | eval "$$filt" | sed -u 's/^/     /'
		echo "== [$$n/5] $$title: done in $$(( $$(date +%s) - t0 )) s"
	}
	pip_install() { $(PY) -m pip install --progress-bar $$bar "$$@"; }
	echo "== setting up $(VENV): torch, torchaudio, NeMo, ESPnet (4-8 minutes on a fresh 2-core machine; once)"
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	# pip 23: pip 26 refuses one of ESPnet's dependencies (ci_sdr declares a direct URL dependency)
	step 1 "pip 23 in $(VENV)" "seconds" pip_install 'pip<24'
	step 2 "torch 2.14.1 and the build and test tools (requirements/base.txt)" "1-2 min" \
		pip_install -r requirements/base.txt
	step 3 "torchaudio 2.11.0 (without dependencies: it keeps torch 2.14.1)" "seconds" \
		pip_install --no-deps torchaudio==2.11.0
	step 4 "NeMo 3.0.0 and ESPnet's run-time dependencies (requirements/toolkits.txt)" "2-5 min" \
		pip_install -r requirements/toolkits.txt
	# espnet 202511 pins setuptools<74 and sentencepiece==0.2.0, which clash with torch 2.14 (pip would
	# replace torch with 2.12): install it without its pins, its run-time dependencies came in step 4
	step 5 "ESPnet 202511 (without dependencies)" "seconds" pip_install --no-deps espnet==202511
	# the source tree on the path (the extension is built in place)
	echo "$(CURDIR)/plugin" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/samplewise_rnnt_dev.pth
	touch $@
	echo "== $(VENV) ready in $$(( $$(date +%s) - t_all )) s"

venv: $(STAMP)

# the post-import hook's .pth (zero-code activation in NeMo and ESPnet, as a wheel install has it);
# cheap and idempotent, so venvs made before the hook existed get it too
hook: $(STAMP)
	$(PY) plugin/samplewise_rnnt_hook.py --write-pth >/dev/null

# ---- system packages for the synthetic corpus ------------------------------------------------------
sysdeps:
	@if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null || ! command -v flac >/dev/null; then
		echo "== installing espeak-ng sox flac"
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo)
		$$SUDO apt-get update -q
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q espeak-ng sox flac
	fi

# ---- the extension (incremental: ninja rebuilds only what changed) ---------------------------------
build: $(STAMP) hook
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
