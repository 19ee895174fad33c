#!/usr/bin/env bash
# make demo: the project's main job end to end on the CPU, on its embedded default.
#   1. the loss benchmark: peak memory of batched vs sample-wise vs fused at growing B (table + PNG)
#   2. NeMo:   bash recipes/librispeech/nemo/run.sh --mini   (synthetic mini-LibriSpeech, sample-wise loss)
#   3. ESPnet: bash recipes/librispeech/espnet/run.sh --mini
#   4. a summary: loss at the start and the end, WER, training time per toolkit; the memory table
# Set-up (venv, extension, espeak-ng/sox/flac) is done by `make demo` before this script runs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
PY=${PY:-$repo/.venv/bin/python}
out=${DEMO_OUT:-$repo/exp/demo}
mkdir -p "$out"
export PYTHONPATH="$repo/plugin${PYTHONPATH:+:$PYTHONPATH}"
say() { echo -e "\n==== $(date '+%H:%M:%S') demo: $*"; }
t0=$SECONDS

say "1/3 loss benchmark: peak memory against batch size (batched, sample-wise, fused)"
"$PY" -m recipes.benchmark --preset demo --plot "$out/memory_vs_batch.png" --save "$out/memory.md" \
    | tee "$out/benchmark.log"

say "2/3 NeMo: FastConformer-style transducer on the synthetic mini-LibriSpeech with the sample-wise loss"
bash recipes/librispeech/nemo/run.sh --mini --exp "$out/nemo" 2>&1 | tee "$out/nemo.log"

say "3/3 ESPnet: conformer transducer (task asr) on the synthetic mini-LibriSpeech with the sample-wise loss"
bash recipes/librispeech/espnet/run.sh --mini --work "$out/espnet" 2>&1 | tee "$out/espnet.log"

say "summary"
"$PY" recipes/demo/summarize.py --out "$out" --seconds $((SECONDS - t0))
