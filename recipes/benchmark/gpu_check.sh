#!/usr/bin/env bash
# On a machine with a GPU (and no package registries), with its own python3; two commands, each meant to end
# within 5 minutes on an H100/H200 (GPU_CHECK_LIMIT_S, default 290 s: every step's time limit is cut to what
# is left of it):
#
#   bash recipes/benchmark/gpu_check.sh 1   (make gpu-check-1)
#     build samplewise_rnnt._C in place for the visible GPU (ptxas figures per kernel), all CUDA tests
#     (pytest -m cuda), then in one process: the core op (fp32, fp16), the engine (fp32, bf16, fused), the
#     group budget (max_chunk_bytes sweep, the default last), peak memory against B and the demo preset
#   bash recipes/benchmark/gpu_check.sh 2   (make gpu-check-2)
#     the same build (a no-op on the same machine), the carried wheels (NeMo 3.0.0 and what the image lacks,
#     recipes/benchmark/gpu_wheels.sh) installed with --no-index into $SWR_SITE, the paper's configuration
#     (B=1024, T=1000, U=160, V=1024; fp32 and bf16; batched, sample-wise, fused), then ONE real NeMo recipe
#     training step at B = 1024 (FastConformer-L, bf16 autocast, 16.7 s utterances, encoder checkpointing)
#     measured with the CUDA allocator's peak, beside the CPU extrapolation (recipes/benchmark/gpu_nemo_step.py)
#   bash recipes/benchmark/gpu_check.sh     both in a row (make gpu-check)
#
# Each writes recipes/benchmark/results/<gpu-name>-<date>-<n>.md (the GPU's name, versions, every command,
# its output and each step's wall time) and its side files (<...>-sweep.png, <...>-nemo-step-bf16.json/.md).
# Environment: PY (default python3), SWR_WHEELS (default .whl), SWR_SITE (default /tmp/swr-site),
# RESULTS_DIR, GPU_CHECK_LIMIT_S, GPU_CHECK_JOBS (parallel compile jobs, default: all cores).
# SWR_GPU_REHEARSAL=1 (recipes/benchmark/gpu_rehearsal.sh): no GPU needed; builds for sm_90, runs every step
# up to its first CUDA call (benchmarks as --dry-run, the NeMo step on a tiny model on the CPU and then up to
# the device), and expects the CUDA tests to skip.
set -uo pipefail
cd "$(dirname "$0")/../.."
PARTS=${1:-all}
case "$PARTS" in 1|2) ;; all) PARTS="1 2" ;; *) echo "usage: $0 [1|2|all]" >&2; exit 2 ;; esac
PY=${PY:-python3}
REHEARSAL=${SWR_GPU_REHEARSAL:-0}
LIMIT=${GPU_CHECK_LIMIT_S:-290}
WHEELS=${SWR_WHEELS:-.whl}
SITE=${SWR_SITE:-/tmp/swr-site}
RESULTS_DIR=${RESULTS_DIR:-recipes/benchmark/results}
export MAX_JOBS=${GPU_CHECK_JOBS:-$(nproc)}   # not make's MAX_JOBS (2, for CI)
export PYTHONUNBUFFERED=1
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export PYTHONPATH="$PWD/plugin:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$REHEARSAL" = 1 ]; then
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}   # what the H200 would get
  GPU="rehearsal $(uname -n) (no GPU)"
else
  unset TORCH_CUDA_ARCH_LIST   # target the visible GPU
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  [ -n "$GPU" ] || { echo "gpu_check: nvidia-smi sees no GPU" >&2; exit 1; }
fi
TAG=$(echo "$GPU" | tr -c 'A-Za-z0-9_.\n-' '-' | sed 's/--*/-/g; s/-$//')-$(date +%Y%m%d-%H%M)
mkdir -p "$RESULTS_DIR"
STATUS=0

# ---- helpers -----------------------------------------------------------------------------------------
left() { echo $(( LIMIT - (SECONDS - T0) )); }
# step NAME CAP_S EXPECT CMD...: run CMD with a time limit min(CAP_S, what is left), its output to the terminal
# and (last 400 lines) to the results file; EXPECT is the exit status that counts as success
step() {
  local name=$1 cap=$2 expect=$3; shift 3
  local lim; lim=$(left); [ "$cap" -lt "$lim" ] && lim=$cap
  if [ "$lim" -lt 5 ]; then
    echo "== $name: skipped (the command's ${LIMIT} s are spent)" | tee -a "$OUT"
    TIMES+=("| $name | skipped | |"); STATUS=1; return 1
  fi
  echo "== $name" | tee -a "$OUT"
  { echo; echo '```'; echo "\$ $*"; } >> "$OUT"
  local t=$SECONDS
  timeout -k 10 "$lim" "$@" 2>&1 | tee /dev/stderr | tail -n 400 >> "$OUT"
  local rc=${PIPESTATUS[0]} dt=$(( SECONDS - t ))
  [ "$rc" = 124 ] && echo "(stopped at its time limit, $lim s)" >> "$OUT"
  echo "(exit status $rc; $dt s)" >> "$OUT"; echo '```' >> "$OUT"
  TIMES+=("| $name | $dt | $rc$([ "$rc" = "$expect" ] || echo " (expected $expect)") |")
  [ "$rc" = "$expect" ] || STATUS=1
  [ "$rc" = "$expect" ]
}

header() {
  {
    echo "# GPU check $1: $GPU ($(date -Iseconds))"
    echo
    echo "Command: \`bash recipes/benchmark/gpu_check.sh $1\` (make gpu-check-$1); limit ${LIMIT} s"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    $PY -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
"| gpu:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")' 2>&1
    echo "nvcc: $("${CUDA_HOME:-/usr/local/cuda}"/bin/nvcc --version 2>/dev/null | tail -2 | head -1)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed file(s)"
    echo '```'
  } > "$OUT"
}

build() {
  local log="/tmp/swr-build-$$.log"
  step "build (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-<visible GPU>}, MAX_JOBS=$MAX_JOBS)" 240 0 bash -c \
    "SWR_PTXAS_VERBOSE=1 $PY setup.py build_ext --inplace > $log 2>&1; rc=\$?; grep -v '^ptxas info' $log | tail -n 30; exit \$rc"
  step "extension check" 60 0 $PY -c \
    "import samplewise_rnnt as s; print('cuda_built:', s.cuda_built()); assert s.cuda_built(), 'built without CUDA kernels'"
  # the ptxas figures (only when ninja compiled the CUDA file in this build)
  if grep -q "Compiling entry function" "$log" 2>/dev/null; then
    { echo; echo "ptxas figures of this build:"; echo; $PY -m recipes.benchmark.ptxas_report "$log"; } >> "$OUT"
  fi
}

wheels() {
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "== wheels: none in $WHEELS (run recipes/benchmark/gpu_wheels.sh where pip works, carry $WHEELS)" | tee -a "$OUT"
    return 1
  fi
  local list; list=$(cd "$WHEELS" && ls *.whl)
  if [ -f "$SITE/.swr-wheels" ] && [ "$(cat "$SITE/.swr-wheels")" = "$list" ]; then
    echo "== wheels: already installed in $SITE" | tee -a "$OUT"
  else
    # byte-compiled on all cores right away: NeMo's first import otherwise compiles it (100 s on 2 cores)
    step "wheels ($(echo "$list" | wc -l) from $WHEELS -> $SITE, --no-index; compileall)" 90 0 bash -c \
      "$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' \
       '$WHEELS'/*.whl && $PY -m compileall -q -j 0 '$SITE' > /dev/null" || return 1
    echo "$list" > "$SITE/.swr-wheels"
  fi
  # PYTHONPATH comes before site-packages: a carried package replaces the image's (gpu_wheels.sh carries what
  # the image lacks, and the versions NeMo 3.0.0 pins where the image's differ)
  export PYTHONPATH="$PYTHONPATH:$SITE"
}

finish() {
  { echo; echo "Step times (wall):"; echo; echo "| step | s | exit |"; echo "| --- | ---: | --- |"
    printf '%s\n' "${TIMES[@]}"; echo "| **total** | $(( SECONDS - T0 )) | status $STATUS |"; } >> "$OUT"
  echo "results: $OUT ($(( SECONDS - T0 )) s, status $STATUS)"
}

# ---- command 1 -----------------------------------------------------------------------------------------
check1() {
  OUT=$RESULTS_DIR/$TAG-1.md; T0=$SECONDS; TIMES=(); header 1
  build
  # every CUDA test (collection must not need NeMo, ESPnet or soundfile: the wheels are not on the path yet)
  if [ "$REHEARSAL" = 1 ]; then
    # without a GPU every CUDA test must skip, with its reason (-rs); exit 0 = collected, all skipped
    step "CUDA tests (pytest -m cuda: all skip here)" 240 0 bash -c \
      "$PY -m pytest tests -m cuda -q -rs -p no:cacheprovider | tail -n 25; rc=\${PIPESTATUS[0]}; exit \$rc"
  else
    step "CUDA tests (pytest -m cuda)" 120 0 $PY -m pytest tests -m cuda -q -ra -p no:cacheprovider
  fi
  wheels || true   # NeMo's numba loss in the core preset, where the wheels came along
  if [ "$REHEARSAL" = 1 ]; then
    step "benchmarks, suite 1 (dry run)" 60 0 $PY -m recipes.benchmark.gpu_suite 1 --dry-run
    # the GPU's command line: parses, imports, stops at its first CUDA call (exit 2: no CUDA device is visible)
    step "benchmarks, suite 1 (up to the first CUDA call)" 60 2 $PY -m recipes.benchmark.gpu_suite 1 --budget-s 150 \
      --save "$OUT" --plot "$RESULTS_DIR/$TAG-sweep.png"
  else
    # cases not started within the budget are reported as skipped; the step's limit stops a stuck case
    local budget=$(( $(left) - 45 )); [ "$budget" -gt 150 ] && budget=150
    step "benchmarks, suite 1 (one process)" $(( budget + 40 )) 0 $PY -m recipes.benchmark.gpu_suite 1 \
      --budget-s "$budget" --save "$OUT" --plot "$RESULTS_DIR/$TAG-sweep.png"
  fi
  finish
}

# ---- command 2 -----------------------------------------------------------------------------------------
check2() {
  OUT=$RESULTS_DIR/$TAG-2.md; T0=$SECONDS; TIMES=(); header 2
  build
  wheels || { echo "no wheels: the NeMo step will be skipped" | tee -a "$OUT"; }
  local nemo="python -m recipes.benchmark.gpu_nemo_step --batch 1024 --precision bf16"
  if [ "$REHEARSAL" = 1 ]; then
    step "benchmarks, suite 2 (dry run)" 60 0 $PY -m recipes.benchmark.gpu_suite 2 --dry-run
    step "benchmarks, suite 2 (up to the first CUDA call)" 60 2 $PY -m recipes.benchmark.gpu_suite 2 --budget-s 120 \
      --save "$OUT"
    # the whole NeMo step on a tiny model on the CPU (NeMo imports from the wheels, the loss, the optimizer) ...
    step "NeMo step, tiny model on the CPU" 240 0 $PY -m recipes.benchmark.gpu_nemo_step --device cpu --batch 2 \
      --seconds 2 --set encoder.n_layers=2 --set encoder.d_model=64 --set encoder.n_heads=2 \
      --set encoder.subsampling_conv_channels=32 --set encoder_checkpointing.subsampling_chunk=2 \
      --set model_defaults.pred_hidden=64 --set model_defaults.joint_hidden=64 \
      --audit-image recipes/benchmark/gpu_image_packages.txt --site "$SITE"
    # ... and the GPU's command line up to its first CUDA call (exit 3: no CUDA device)
    step "NeMo step at B = 1024 (up to the first CUDA call)" 120 3 $PY -m recipes.benchmark.gpu_nemo_step \
      --batch 1024 --precision bf16
  else
    # the paper's cases first (bf16 then fp32), then the NeMo step with at least 110 s left for it
    local budget=$(( $(left) - 130 )); [ "$budget" -gt 120 ] && budget=120
    step "benchmarks, suite 2 (paper; one process)" $(( budget + 45 )) 0 $PY -m recipes.benchmark.gpu_suite 2 \
      --budget-s "$budget" --save "$OUT"
    if $PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('nemo') is None)" 2>/dev/null; then
      step "NeMo recipe step, B = 1024, bf16 ($nemo)" 150 0 $PY -m recipes.benchmark.gpu_nemo_step --batch 1024 \
        --precision bf16 --out "$RESULTS_DIR/$TAG-nemo-step-bf16.json"
      [ -f "$RESULTS_DIR/$TAG-nemo-step-bf16.md" ] && cat "$RESULTS_DIR/$TAG-nemo-step-bf16.md" >> "$OUT"
      # fp32 as well where time is left (the CPU extrapolation: 29.6 GiB)
      if [ "$(left)" -gt 90 ]; then
        step "NeMo recipe step, B = 1024, fp32" $(( $(left) - 5 )) 0 $PY -m recipes.benchmark.gpu_nemo_step \
          --batch 1024 --precision fp32 --out "$RESULTS_DIR/$TAG-nemo-step-fp32.json"
        [ -f "$RESULTS_DIR/$TAG-nemo-step-fp32.md" ] && cat "$RESULTS_DIR/$TAG-nemo-step-fp32.md" >> "$OUT"
      fi
    else
      echo "NeMo step skipped: no NeMo for $PY (carry the wheels: gpu_wheels.sh)" \
        | tee -a "$OUT"; STATUS=1
    fi
  fi
  finish
}

for p in $PARTS; do "check$p"; done
exit $STATUS
