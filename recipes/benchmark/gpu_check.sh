#!/usr/bin/env bash
# `make gpu-check`: on a machine with a GPU (and no package registries), with its own python3:
#   1. build samplewise_rnnt._C in place for the visible GPU (TORCH_CUDA_ARCH_LIST unset),
#   2. run the CUDA tests (tests marked `cuda`; tests that import NeMo/ESPnet skip where those are absent),
#   3. run the GPU benchmarks (core, engine, sweep, paper presets on cuda; fp32 and bf16),
#   4. where NeMo imports, the NeMo recipe's memory measurement (recipes/librispeech/nemo/memory.py),
# and write everything printed, with the GPU's name and the exact commands, to
# recipes/benchmark/results/<gpu-name>-<date>.md, plus the memory plot <gpu-name>-<date>.png.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
unset TORCH_CUDA_ARCH_LIST   # target the visible GPU
export MAX_JOBS=${MAX_JOBS:-8}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PYTHONPATH="$PWD/plugin:$PWD${PYTHONPATH:+:$PYTHONPATH}"

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[ -n "$GPU" ] || { echo "gpu_check: nvidia-smi sees no GPU" >&2; exit 1; }
TAG=$(echo "$GPU" | tr -c 'A-Za-z0-9_.\n-' '-' | sed 's/--*/-/g; s/-$//')-$(date +%Y%m%d-%H%M)
mkdir -p recipes/benchmark/results
OUT=recipes/benchmark/results/$TAG.md
PNG=recipes/benchmark/results/$TAG.png
status=0

run() {  # run a command; its output to the terminal and (last 300 lines) to the results file
  echo "\$ $*" >> "$OUT"
  "$@" 2>&1 | tee /dev/stderr | tail -n 300 >> "$OUT"
  local rc=${PIPESTATUS[0]}
  echo "(exit status $rc)" >> "$OUT"
  return "$rc"
}

{
  echo "# GPU check: $GPU ($(date -Iseconds))"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  echo '```'
  echo
} > "$OUT"

echo "== build" | tee -a "$OUT"
echo '```' >> "$OUT"
run $PY setup.py build_ext --inplace || status=1
run $PY -c "import samplewise_rnnt as s; print('cuda_built:', s.cuda_built())" || status=1
echo '```' >> "$OUT"

echo "== CUDA tests" | tee -a "$OUT"
echo '```' >> "$OUT"
run $PY -m pytest tests -m cuda -q -ra || status=1
echo '```' >> "$OUT"

echo "== benchmarks" | tee -a "$OUT"
for args in "--preset core --device cuda" \
            "--preset core --device cuda --dtype float16" \
            "--preset engine --device cuda" \
            "--preset engine --device cuda --dtype bfloat16" \
            "--preset engine --device cuda --methods batched_swr samplewise fused" \
            "--preset demo --device cuda" \
            "--preset sweep --device cuda --plot $PNG" \
            "--preset paper --device cuda" \
            "--preset paper --device cuda --dtype bfloat16"; do
  echo "\$ $PY -m recipes.benchmark $args" | tee -a "$OUT"
  # the tables go to the results file; tqdm's progress to the terminal
  $PY -m recipes.benchmark $args --save "$OUT" || status=1
done
echo "== NeMo recipe: memory of one training step at B = 1024 (bf16 autocast)" | tee -a "$OUT"
if $PY -c "import nemo.collections.asr" >/dev/null 2>&1; then
  echo '```' >> "$OUT"
  run $PY recipes/librispeech/nemo/memory.py --device cuda --batch-sizes 8 16 32 \
      --out "recipes/benchmark/results/$TAG-nemo-memory.json" || status=1
  echo '```' >> "$OUT"
else
  echo "skipped: NeMo is not importable with $PY (the GPU image has no NeMo and no package index;" \
       "run it where NeMo is installed: python recipes/librispeech/nemo/memory.py --device cuda)" | tee -a "$OUT"
fi
echo "results: $OUT $PNG (status $status)"
exit $status
