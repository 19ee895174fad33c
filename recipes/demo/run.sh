#!/usr/bin/env bash
# make demo: the project's main job end to end on the CPU, on its embedded default.
#   0. the synthetic corpus both toolkits train on (espeak-ng speech, a 70-word grammar)
#   1. the loss benchmark: peak memory of batched vs sample-wise vs fused at growing B (table + PNG)
#   2. NeMo:   bash recipes/librispeech/nemo/run.sh --mini   (a transducer trained with the sample-wise loss)
#      ESPnet: bash recipes/librispeech/espnet/run.sh --mini  (side by side with NeMo on two or more cores)
#   3. a summary: what each number is and why it is what it is (recipes/demo/summarize.py)
# Set-up (venv, extension, espeak-ng/sox/flac) is done by `make demo` before this script runs.
# Every step prints its elapsed wall and CPU time; the outputs of a rerun replace the last run's.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
PY=${PY:-$repo/.venv/bin/python}
export PY
out=${DEMO_OUT:-$repo/exp/demo}
mkdir -p "$out"
export PYTHONPATH="$repo/plugin${PYTHONPATH:+:$PYTHONPATH}"
# The demo runs offline: no model hub look-ups; ESPnet's import-time NLTK downloads are deferred
# (samplewise_rnnt.offline, used by the ESPnet recipe).
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1} \
       HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
# One compute thread per process: on a 2-core machine shared with other work, two spinning OpenMP
# threads per process were measured up to 10x slower than one.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

t0=$SECONDS
steps="$out/steps.tsv"
printf 'step\twall_s\tcpu_s\n' > "$steps"
cpu_now() {  # CPU_NOW: user + system seconds of the finished children of this shell (`times`, not in a subshell)
  times > "${TMPDIR:-/tmp}/times.$$"
  CPU_NOW=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", u[1]*60+u[2]+s[1]*60+s[2] }' "${TMPDIR:-/tmp}/times.$$")
  rm -f "${TMPDIR:-/tmp}/times.$$"
}
step_t=0; step_c=0; step_name=""
begin() {
  step_name=$1; shift
  step_t=$SECONDS; cpu_now; step_c=$CPU_NOW
  echo -e "\n==== [demo $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s] $step_name: $*"
}
end() {
  local wall=$((SECONDS - step_t)) cpu
  cpu_now; cpu=$(awk -v a="$CPU_NOW" -v b="$step_c" 'BEGIN { printf "%.0f", a - b }')
  printf '%s\t%d\t%s\n' "$step_name" "$wall" "$cpu" >> "$steps"
  echo "==== [demo $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s] $step_name done in ${wall} s (CPU ${cpu} s)"
}

# The corpus settings are the two recipes' --mini settings (recipes/librispeech/*/run.sh); the
# recipes find it complete and keep it.
corpus="$out/corpus"
begin corpus "synthetic mini-LibriSpeech -> $corpus (espeak-ng, 16 training voices, 70-word grammar)"
"$PY" -m samplewise_rnnt.data.mini_librispeech --out "$corpus" --grammar small --seed 0 \
    --train 400 --dev 20 --test 30 --train-speakers 16 --dev-speakers 2 --test-speakers 3 \
    --min-seconds 1 --max-seconds 5 --no-progress | tee "$out/corpus.log"
end

begin benchmark "loss benchmark: peak memory against batch size (batched, sample-wise, fused)"
rm -f "$out/memory.md"
# one line per measured case as it comes (tqdm's bar goes to benchmark.err)
"$PY" -m recipes.benchmark --preset demo --plot "$out/memory_vs_batch.png" --save "$out/memory.md" \
    2> "$out/benchmark.err" | tee "$out/benchmark.log" | { grep --line-buffered -E "^ +[a-z_]+ cpu " || true; } \
    || { tail -n 20 "$out/benchmark.err"; exit 1; }
end

nemo_cmd=(bash recipes/librispeech/nemo/run.sh --mini --librispeech "$corpus" --exp "$out/nemo")
espnet_cmd=(bash recipes/librispeech/espnet/run.sh --mini --librispeech_dir "$corpus" --work "$out/espnet" --python "$PY")
nemo_lines="^== |^\[train\]|^\[valid\]|^\[eval\]|^ +(ref|hyp):"
espnet_lines="\(run.sh\) stage|^ +epoch [0-9]|^WER|^ +valid WER"
rm -rf "$out/nemo" "$out/espnet/exp"
: > "$out/nemo.log"; : > "$out/espnet.log"
if [ "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)" -ge 2 ]; then  # (nproc obeys OMP_NUM_THREADS)
  # one core each: the two trainings side by side, their progress lines interleaved as they come
  begin train "NeMo and ESPnet side by side (one core each), each a Conformer transducer trained with the sample-wise loss; logs: $out/{nemo,espnet}.log"
  "${nemo_cmd[@]}" > "$out/nemo.log" 2>&1 & nemo_pid=$!
  "${espnet_cmd[@]}" > "$out/espnet.log" 2>&1 & espnet_pid=$!
  shown_nemo=0; shown_espnet=0
  show_new() {  # the progress lines the two logs gained since the last call
    local n
    n=$(wc -l < "$out/nemo.log")
    [ "$n" -le "$shown_nemo" ] || sed -n "$((shown_nemo + 1)),${n}p" "$out/nemo.log" | { grep -E "$nemo_lines" || true; } | sed 's/^/  [nemo]   /'
    shown_nemo=$n
    n=$(wc -l < "$out/espnet.log")
    [ "$n" -le "$shown_espnet" ] || sed -n "$((shown_espnet + 1)),${n}p" "$out/espnet.log" | { grep -E "$espnet_lines" || true; } | sed 's/^/  [espnet] /'
    shown_espnet=$n
  }
  while kill -0 "$nemo_pid" 2>/dev/null || kill -0 "$espnet_pid" 2>/dev/null; do show_new; sleep 2; done
  nemo_rc=0; espnet_rc=0
  wait "$nemo_pid" || nemo_rc=$?
  wait "$espnet_pid" || espnet_rc=$?
  show_new
  [ "$nemo_rc" = 0 ] || { echo "NeMo recipe failed ($nemo_rc):"; tail -n 30 "$out/nemo.log"; exit 1; }
  [ "$espnet_rc" = 0 ] || { echo "ESPnet recipe failed ($espnet_rc):"; tail -n 30 "$out/espnet.log"; exit 1; }
  end
else
  begin nemo "NeMo: Conformer transducer trained with the sample-wise loss (log: $out/nemo.log)"
  "${nemo_cmd[@]}" > "$out/nemo.log" 2>&1 || { tail -n 30 "$out/nemo.log"; exit 1; }
  grep -E "$nemo_lines" "$out/nemo.log" || true
  end
  begin espnet "ESPnet: conformer transducer (task asr) trained with the sample-wise loss (log: $out/espnet.log)"
  "${espnet_cmd[@]}" > "$out/espnet.log" 2>&1 || { tail -n 30 "$out/espnet.log"; exit 1; }
  grep -E "$espnet_lines" "$out/espnet.log" || true
  end
fi

echo -e "\n==== [demo $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s] summary"
"$PY" recipes/demo/summarize.py --out "$out" --seconds $((SECONDS - t0)) | tee "$out/summary.md"
