#!/usr/bin/env bash
# Rehearse both GPU commands on a machine WITHOUT a GPU, in an environment built like the GPU image:
#
#   bash recipes/benchmark/gpu_rehearsal.sh [WORKDIR]      # default WORKDIR /tmp/swr-gpu-rehearsal
#   VENV=DIR ... uses (or creates) the venv there instead of WORKDIR/venv
#   KEEP=1 ...  keeps WORKDIR (the venv is about 5 GB) for a rerun; without it WORKDIR is deleted at the end
#
#  1. venv: Python 3.11 (standing in for the image's 3.12) with torch 2.11.0 and torchaudio 2.11.0 from the
#     registry and the image's packages the project and the carried wheels need; no soundfile, NeMo or ESPnet
#  2. wheels: recipes/benchmark/gpu_wheels.sh --python-version 3.11, checked with pip --no-index --dry-run there
#  3. the working tree as the device tool sends it (tracked and untracked-not-ignored files) plus the wheels
#  4. SWR_GPU_REHEARSAL=1 gpu_check.sh 1, then 2 (as on a fresh machine), in that copy: the extension builds against torch 2.11 (sm_90),
#     the tests collect and the CUDA ones skip with their reason, the wheels install with --no-index, the
#     benchmarks and the NeMo step parse their arguments and stop at their first CUDA call, the NeMo step runs
#     on a tiny model on the CPU with every imported distribution from the image's list or the wheels.
# Each step's wall time is in WORKDIR/results/*.md and printed at the end. Needs a registry (pip) and nvcc
# (CUDA_HOME, default /usr/local/cuda); about 10 minutes on 2 cores after the first venv.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-/tmp/swr-gpu-rehearsal}
PYTHON_BASE=${PYTHON_BASE:-python3.11}
VENV=${VENV:-$WORK/venv}   # an existing one is reused (VENV=...)
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$WORK"
t_all=$SECONDS
declare -a TIMES
timed() {
  local name=$1 t=$SECONDS rc=0; shift; echo "== $name"
  "$@" || rc=$?
  TIMES+=("$name: $(( SECONDS - t )) s$([ $rc = 0 ] || echo " (exit $rc)")"); return $rc
}
pipq() { "$VENV/bin/python" -m pip install -q --progress-bar off "$@" 2>&1 | { grep -v "is ignored" || true; }; }

not_on_image() {  # what the GPU image lacks and an install here may have pulled in
  local bad
  bad=$("$VENV/bin/python" -m pip list --format freeze 2>/dev/null | grep -i -E '^(soundfile|nemo.toolkit|espnet|librosa)==' || true)
  if [ -n "$bad" ]; then echo "removing what the GPU image lacks: $bad"; "$VENV/bin/python" -m pip uninstall -q -y $(echo "$bad" | cut -d= -f1); fi
}

make_venv() {
  if [ ! -x "$VENV/bin/python" ]; then "$PYTHON_BASE" -m venv "$VENV"; fi
  pipq torch==2.11.0 torchaudio==2.11.0
  # the image's packages (recipes/benchmark/gpu_image_packages.txt) that the project's tests and scripts, and
  # the carried wheels' declared requirements, use; pip picks their Python 3.11 versions
  pipq numpy scipy numba pytest hypothesis matplotlib tqdm ninja pybind11 setuptools wheel pyyaml \
    scikit-learn pandas pyarrow xxhash sentencepiece huggingface-hub fsspec tensorboard onnx wrapt packaging \
    click tabulate joblib msgpack lazy-loader typing-extensions requests rich "lightning>=2.5" pytorch-lightning \
    torchmetrics lightning-utilities transformers einops protobuf filelock jinja2 psutil
  not_on_image
  "$VENV/bin/python" -c 'import torch, torchaudio; print("venv: torch", torch.__version__, "cuda", torch.version.cuda, "torchaudio", torchaudio.__version__)'
}

copy_tree() {  # what the device tool sends: tracked and untracked-not-ignored files, then the carried folder
  rm -rf "$WORK/tree"; mkdir -p "$WORK/tree"
  (cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK/tree")
  cp -r "$WORK/whl311" "$WORK/tree/.whl"
  echo "tree: $(du -sh --apparent-size "$WORK/tree" | cut -f1) including .whl ($(du -sh --apparent-size "$WORK/tree/.whl" | cut -f1))"
}

check() {  # gpu_check.sh N in the copy, as on the GPU machine (its own python, wheels from .whl)
  (cd "$WORK/tree" && PY="$VENV/bin/python" SWR_GPU_REHEARSAL=1 SWR_SITE="$WORK/site" RESULTS_DIR="$WORK/results" \
     GPU_CHECK_JOBS=${GPU_CHECK_JOBS:-1} GPU_CHECK_LIMIT_S=${GPU_CHECK_LIMIT_S:-1500} nice -n 10 \
     bash recipes/benchmark/gpu_check.sh "$1")
}

rm -rf "$WORK/site" "$WORK/results"
timed "venv like the GPU image" make_venv
timed "wheels for Python 3.11" env PYTHON="$VENV/bin/python" bash "$REPO/recipes/benchmark/gpu_wheels.sh" \
  --python-version 3.11 --dest "$WORK/whl311" --image-requirements "$WORK/image-requirements.txt"
# the image's distributions the wheels require (gpu_image_packages.txt names them), then pip's --no-index dry run
timed "venv: the image's packages the wheels require" pipq -r "$WORK/image-requirements.txt"
not_on_image
timed "wheels: pip --no-index --dry-run in the venv" env PYTHON="$VENV/bin/python" \
  bash "$REPO/recipes/benchmark/gpu_wheels.sh" --python-version 3.11 --dest "$WORK/whl311" --no-download \
  --check-venv "$VENV"
timed "copy of the working tree" copy_tree
status=0
timed "gpu_check.sh 1 (rehearsal)" check 1 || status=1
# command 2 on a fresh machine (the device goes back 30 s after a call): no build, no installed wheels
rm -rf "$WORK/site" "$WORK/tree/build" "$WORK/tree"/plugin/samplewise_rnnt/_C*.so
timed "gpu_check.sh 2 (rehearsal, fresh machine)" check 2 || status=1
echo
echo "== rehearsal step times"
for f in "$WORK"/results/*.md; do echo "-- $f"; sed -n '/^Step times/,$p' "$f"; done
printf '%s\n' "${TIMES[@]}"
echo "total $(( SECONDS - t_all )) s; status $status"
if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi   # (a VENV given from outside WORKDIR stays)
exit $status
