#!/usr/bin/env bash
# NeMo LibriSpeech recipe: FastConformer transducer, batch 1024 on one GPU, sample-wise RNN-T loss.
#
#   bash run.sh [--mini] [--model rnnt|tdt] [--stage N] [--stop-stage N] [--librispeech DIR] [--exp DIR]
#               [-- hydra overrides]
#
# stages: 0 data (download LibriSpeech when missing; --mini: generate the synthetic corpus)
#         1 NeMo manifests   2 sentencepiece tokenizer   3 training   4 greedy WER on test-clean / test-other
# --mini runs everything on the CPU in minutes (conf/mini.yaml, synthetic corpus); the default is the real
# recipe (conf/fastconformer_transducer_samplewise_b1024.yaml, LibriSpeech 960 h, one 80 GB GPU).
# --model tdt: FastConformer-TDT with the sample-wise TDT loss (conf/fastconformer_tdt_samplewise_b1024.yaml,
# --mini: conf/mini_tdt.yaml); the data stages are shared with the RNN-T run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$ROOT/plugin${PYTHONPATH:+:$PYTHONPATH}"

mini=0; model=rnnt; stage=0; stop_stage=4; librispeech=""; exp=""; overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mini) mini=1 ;;
    --model) model="$2"; shift ;;
    --stage) stage="$2"; shift ;;
    --stop-stage) stop_stage="$2"; shift ;;
    --librispeech) librispeech="$2"; shift ;;
    --exp) exp="$2"; shift ;;
    --) shift; overrides=("$@"); break ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

case "$model" in
  rnnt) suffix="" ;;
  tdt) suffix="_tdt" ;;
  *) echo "run.sh: --model must be rnnt or tdt, got '$model'" >&2; exit 2 ;;
esac
if [ "$mini" = 1 ]; then
  data="$HERE/data/mini"; config="mini$suffix"; vocab=64
  librispeech="${librispeech:-$data/corpus}"
  exp="${exp:-$HERE/exp/mini$suffix}"
  test_parts=(test-clean-mini test-other-mini)
else
  data="$HERE/data/full"; vocab=1024
  if [ "$model" = tdt ]; then config=fastconformer_tdt_samplewise_b1024; else config=fastconformer_transducer_samplewise_b1024; fi
  librispeech="${librispeech:-$data/LibriSpeech}"
  exp="${exp:-$HERE/exp/b1024$suffix}"
  test_parts=(test-clean test-other)
fi
manifests="$data/manifests"; tokenizer="$data/tokenizer_bpe_$vocab"
mkdir -p "$data" "$exp"
t_start=$(date +%s)
say() { echo "== [$(( $(date +%s) - t_start )) s] $*"; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ "$mini" = 1 ]; then
    say "stage 0: synthetic mini-LibriSpeech corpus -> $librispeech"
    # the same corpus as the ESPnet recipe's --mini: 16 training voices, a 70-word grammar
    "$PY" -m samplewise_rnnt.data.mini_librispeech --out "$librispeech" --seed 0 --grammar small \
      --train 400 --dev 20 --test 30 --train-speakers 16 --dev-speakers 2 --test-speakers 3 \
      --min-seconds 1 --max-seconds 5 --no-progress
  else
    say "stage 0: LibriSpeech -> $librispeech (parts already there are skipped)"
    mkdir -p "$librispeech"
    for part in train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other; do
      if [ -d "$librispeech/$part" ]; then echo "  $part: present"; continue; fi
      echo "  $part: downloading from openslr.org (needs internet)"
      wget -c -q --show-progress -O "$data/$part.tar.gz" "https://www.openslr.org/resources/12/$part.tar.gz"
      tar -xzf "$data/$part.tar.gz" -C "$(dirname "$librispeech")"   # the archives hold LibriSpeech/<part>
      rm -f "$data/$part.tar.gz"
    done
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  say "stage 1: NeMo manifests -> $manifests"
  "$PY" "$HERE/local/prepare_data.py" --librispeech "$librispeech" --out "$manifests"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  say "stage 2: sentencepiece BPE tokenizer ($vocab pieces) -> $tokenizer"
  "$PY" "$HERE/local/make_tokenizer.py" --manifest "$manifests/train.json" --vocab-size "$vocab" --out "$tokenizer"
fi

if [ "$mini" = 1 ]; then dev="$manifests/dev-clean-mini.json"; else dev="[$manifests/dev-clean.json,$manifests/dev-other.json]"; fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  say "stage 3: training ($config) -> $exp"
  "$PY" "$HERE/train.py" --config-path "$HERE/conf" --config-name "$config" \
    model.train_ds.manifest_filepath="$manifests/train.json" \
    model.validation_ds.manifest_filepath="$dev" \
    model.tokenizer.dir="$tokenizer" exp_manager.exp_dir="$exp/nemo_logs" +output_dir="$exp" \
    ${overrides[@]+"${overrides[@]}"} 2>&1 | grep --line-buffered -v -E "^\[NeMo W|^ *warnings.warn|^$" || \
    { echo "training failed (see above)" >&2; exit 1; }
  [ -f "$exp/model.nemo" ] || { echo "training did not write $exp/model.nemo" >&2; exit 1; }
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  tests=()
  for p in "${test_parts[@]}"; do [ -f "$manifests/$p.json" ] && tests+=("$manifests/$p.json"); done
  say "stage 4: greedy WER on ${test_parts[*]} (present: ${#tests[@]})"
  cp "$exp/train_summary.json" "$exp/summary.json"
  # plain NeMo: no samplewise_rnnt import is needed to decode
  "$PY" "$HERE/evaluate.py" --model "$exp/model.nemo" --manifests "${tests[@]}" --summary "$exp/summary.json" \
    2>&1 | grep --line-buffered -v -E "^\[NeMo [WI]|^ *warnings.warn|^$"
  say "done; summary: $exp/summary.json"
  echo "SUMMARY $("$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$exp/summary.json")"
fi
