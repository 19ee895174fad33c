#!/usr/bin/env bash
# ESPnet LibriSpeech recipe with the sample-wise transducer loss (egs2 style, pip-installed
# ESPnet only: no ESPnet checkout, Kaldi or SCTK).
#
#   bash run.sh --mini                                   # synthetic corpus, tiny model, CPU, minutes
#   bash run.sh --librispeech_dir /data/LibriSpeech --ngpu 1   # GPU: batch 1024 conformer transducer
#   bash run.sh --mini --asr_task asr_transducer         # ESPnet's asr_transducer task instead of asr
#
# Stages: 1 data preparation (wav.scp/text), 2 sentencepiece BPE model + token list,
# 3 statistics collection, 4 training, 5 decoding, 6 WER scoring and summary.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh) $*"; }
cpu_now() {  # CPU_NOW: user + system seconds of the finished children of this shell (`times`, not in a subshell)
    times > "${TMPDIR:-/tmp}/times.$$"
    CPU_NOW=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", u[1]*60+u[2]+s[1]*60+s[2] }' "${TMPDIR:-/tmp}/times.$$")
    rm -f "${TMPDIR:-/tmp}/times.$$"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "${here}/../../.." && pwd)

# ---- options (--name value) ----------------------------------------------------------------
stage=1
stop_stage=6
mini=false
asr_task=asr                     # asr (decoder: transducer) or asr_transducer
librispeech_dir=                 # LibriSpeech root (holds train-clean-100, dev-clean, ...)
train_parts=train-clean-100,train-clean-360,train-other-500
valid_parts=dev-clean
test_parts=test-clean,test-other
max_wav_duration=15              # length cap (seconds) of the training and validation sets (measured: README)
nbpe=5000
asr_config=                      # default: conf/train_conformer_transducer_samplewise_b1024.yaml
inference_config=conf/decode_transducer.yaml
ngpu=0
work=                            # where data/ and exp/ go (default: this directory)
python=${PYTHON:-}
mini_train=400                   # --mini corpus sizes (utterances; the same corpus as the NeMo recipe's --mini)
mini_dev=20
mini_test=30

while [ $# -gt 0 ]; do
    case "$1" in
        --mini) mini=true; shift ;;
        --mini=*) mini=${1#*=}; shift ;;
        --*=*) n=${1%%=*}; n=${n#--}; v=${1#*=}; shift
               declare -p "${n}" >/dev/null 2>&1 || { echo "run.sh: unknown option --${n}" >&2; exit 2; }
               printf -v "${n}" '%s' "${v}" ;;
        --*) n=${1#--}; [ $# -ge 2 ] || { echo "run.sh: option --${n} needs a value" >&2; exit 2; }
             declare -p "${n}" >/dev/null 2>&1 || { echo "run.sh: unknown option --${n}" >&2; exit 2; }
             printf -v "${n}" '%s' "$2"; shift 2 ;;
        *) echo "run.sh: unexpected argument '$1'" >&2; exit 2 ;;
    esac
done

case "${asr_task}" in asr|asr_transducer) ;; *) echo "run.sh: --asr_task must be asr or asr_transducer, got '${asr_task}'" >&2; exit 2 ;; esac
if [ -z "${python}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then python=python
    elif [ -x "${repo}/.venv/bin/python" ]; then python="${repo}/.venv/bin/python"
    else python=python3; fi
fi
export PYTHONPATH="${repo}/plugin${PYTHONPATH:+:${PYTHONPATH}}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
work=${work:-${here}}
mkdir -p "${work}"
cd "${here}"

if "${mini}"; then
    librispeech_dir=${librispeech_dir:-${work}/data/mini_librispeech}
    train_parts=train-clean-mini; valid_parts=dev-clean-mini; test_parts=test-clean-mini
    nbpe=${nbpe_mini:-64}
    asr_config=${asr_config:-conf/mini_${asr_task}.yaml}
    max_wav_duration=20
else
    [ -n "${librispeech_dir}" ] || { echo "run.sh: give --librispeech_dir DIR (or --mini)" >&2; exit 2; }
    if [ -z "${asr_config}" ]; then
        if [ "${asr_task}" = asr ]; then asr_config=conf/train_conformer_transducer_samplewise_b1024.yaml
        else asr_config=conf/train_asr_transducer_conformer_samplewise_b1024.yaml; fi
    fi
fi
data=${work}/data
tag=$(basename "${asr_config}" .yaml)
exp=${work}/exp/${asr_task}_${tag}
stats=${work}/exp/${asr_task}_stats_bpe${nbpe}
bpedir=${data}/token_list/bpe_unigram${nbpe}
token_list=${bpedir}/tokens.txt
bpemodel=${bpedir}/bpe.model
names() { local IFS=,; local out=(); for p in $1; do out+=("$(echo "$p" | tr - _)"); done; echo "${out[*]}"; }
train_set=train; valid_set=valid
test_sets=$(names "${test_parts}")
# samplewise_rnnt.offline runs the entry point with ESPnet's import-time NLTK downloads (g2p_en, for
# phoneme tokenizers this recipe does not use) deferred to first use: no network errors offline
train_cmd="${python} -m samplewise_rnnt.offline samplewise_rnnt.espnet.${asr_task}_train"
infer_cmd="${python} -m samplewise_rnnt.offline samplewise_rnnt.espnet.${asr_task}_inference"
t_start=${SECONDS}
log "task ${asr_task}, config ${asr_config}, corpus ${librispeech_dir}, exp ${exp}, ngpu ${ngpu}"

# ---- 1. data preparation ---------------------------------------------------------------------
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    if "${mini}"; then
        log "stage 1: synthetic mini-LibriSpeech (${mini_train}/${mini_dev}/${mini_test} utterances)"
        ${python} -m samplewise_rnnt.data.mini_librispeech --out "${librispeech_dir}" --seed 0 --grammar small \
            --train "${mini_train}" --dev "${mini_dev}" --test "${mini_test}" --train-speakers 16 \
            --dev-speakers 2 --test-speakers 3 --min-seconds 1 --max-seconds 5 --jobs 2 --no-progress
    fi
    log "stage 1: data preparation ${librispeech_dir} -> ${data}/{train,valid,${test_sets}} (cap ${max_wav_duration} s)"
    # the training set merges its parts: one data dir per part, then concatenated
    tparts=(${train_parts//,/ })
    tnames=(); for p in "${tparts[@]}"; do tnames+=("train_part_$(echo "$p" | tr - _)"); done
    ${python} local/data_prep.py --librispeech "${librispeech_dir}" \
        --parts "${train_parts},${valid_parts},${test_parts}" \
        --names "$(IFS=,; echo "${tnames[*]}"),${valid_set},${test_sets}" --out "${data}" \
        --max-duration "${max_wav_duration}" --cap-names "$(IFS=,; echo "${tnames[*]}"),${valid_set}"
    mkdir -p "${data}/${train_set}"
    for f in wav.scp text utt2spk; do
        for n in "${tnames[@]}"; do cat "${data}/${n}/${f}"; done | LC_ALL=C sort > "${data}/${train_set}/${f}"
    done
    for n in "${tnames[@]}"; do cat "${data}/${n}/spk2utt"; done | LC_ALL=C sort > "${data}/${train_set}/spk2utt"
    [ "${#tnames[@]}" -gt 1 ] || [ "${tnames[0]}" = "${train_set}" ] || rm -r "${data:?}/${tnames[0]}"
    log "stage 1: $(wc -l < "${data}/${train_set}/text") training utterances"
fi

# ---- 2. BPE model and token list --------------------------------------------------------------
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "stage 2: sentencepiece unigram model (${nbpe}) and token list -> ${bpedir}"
    ${python} local/prepare_bpe.py --text "${data}/${train_set}/text" --nbpe "${nbpe}" --out "${bpedir}"
fi

common_opts=(--use_preprocessor true --token_type bpe --bpemodel "${bpemodel}" --token_list "${token_list}"
             --train_data_path_and_name_and_type "${data}/${train_set}/wav.scp,speech,sound"
             --train_data_path_and_name_and_type "${data}/${train_set}/text,text,text"
             --valid_data_path_and_name_and_type "${data}/${valid_set}/wav.scp,speech,sound"
             --valid_data_path_and_name_and_type "${data}/${valid_set}/text,text,text")

# ---- 3. statistics collection (feature mean/variance, shapes) ------------------------------------
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "stage 3: statistics collection -> ${stats} (log ${stats}/collect_stats.log)"
    mkdir -p "${stats}"
    ${train_cmd} --collect_stats true --config "${asr_config}" "${common_opts[@]}" --ngpu 0 \
        --batch_type unsorted --batch_size 8 --num_workers 0 \
        --train_shape_file "${data}/${train_set}/wav.scp" --valid_shape_file "${data}/${valid_set}/wav.scp" \
        --output_dir "${stats}" > "${stats}/collect_stats.log" 2>&1 \
        || { tail -n 30 "${stats}/collect_stats.log"; exit 1; }
    vocab=$(wc -l < "${token_list}")
    for s in train valid; do
        awk -v N="${vocab}" '{ print $0 "," N }' "${stats}/${s}/text_shape" > "${stats}/${s}/text_shape.bpe"
    done
fi

# ---- 4. training ---------------------------------------------------------------------------------
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "stage 4: training (ESPnet trainer, ${train_cmd}) -> ${exp} (log ${exp}/train.log)"
    mkdir -p "${exp}"
    t0=${SECONDS}; cpu_now; c0=${CPU_NOW}
    ${train_cmd} --config "${asr_config}" "${common_opts[@]}" --ngpu "${ngpu}" \
        --normalize global_mvn --normalize_conf "stats_file=${stats}/train/feats_stats.npz" \
        --train_shape_file "${stats}/train/speech_shape" --train_shape_file "${stats}/train/text_shape.bpe" \
        --valid_shape_file "${stats}/valid/speech_shape" --valid_shape_file "${stats}/valid/text_shape.bpe" \
        --resume true --output_dir "${exp}" 2>&1 | tee "${exp}/train.log" \
        | grep --line-buffered -E "epoch results|epoch started|Error|error" \
        | sed -u -E -e 's/.*INFO: ([0-9]+)epoch results: \[train\].*, loss=([-0-9.e+]+),.*time=([^,]+),.*\[valid\].*wer_transducer=([0-9.]+), loss=([-0-9.e+]+),.*/    epoch \1: train loss \2, valid loss \5, valid WER \4 (fraction; \3)/' \
                    -e 's/.*INFO: ([0-9]+)epoch results: \[train\].*, loss=([-0-9.e+]+),.*time=([^,]+),.*\[valid\].*, loss=([-0-9.e+]+),.*/    epoch \1: train loss \2, valid loss \4 (\3)/' \
                    -e 's/.*INFO: ([0-9]+\/[0-9]+epoch started.*)/    \1/' || true
    [ -e "${exp}/valid.loss.ave.pth" ] || [ -e "${exp}/valid.loss.best.pth" ] \
        || { echo "run.sh: training failed, see ${exp}/train.log" >&2; tail -n 30 "${exp}/train.log"; exit 1; }
    echo $((SECONDS - t0)) > "${exp}/train_seconds"
    cpu_now; awk -v a="${CPU_NOW}" -v b="${c0}" 'BEGIN { printf "%.1f\n", a - b }' > "${exp}/train_cpu_seconds"
fi

# ---- 5. decoding -----------------------------------------------------------------------------
model_file=${exp}/valid.loss.ave.pth
[ -e "${model_file}" ] || model_file=${exp}/valid.loss.best.pth
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    for t in ${test_sets//,/ }; do
        d=${exp}/decode_${t}
        log "stage 5: decoding ${t} (${infer_cmd}) -> ${d} (log ${d}/decode.log)"
        mkdir -p "${d}"
        ${infer_cmd} --config "${inference_config}" --ngpu "${ngpu}" \
            --data_path_and_name_and_type "${data}/${t}/wav.scp,speech,sound" --key_file "${data}/${t}/wav.scp" \
            --asr_train_config "${exp}/config.yaml" --asr_model_file "${model_file}" \
            --output_dir "${d}" > "${d}/decode.log" 2>&1 || { tail -n 30 "${d}/decode.log"; exit 1; }
    done
fi

# ---- 6. scoring and summary ------------------------------------------------------------------
if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    for t in ${test_sets//,/ }; do
        log "stage 6: scoring ${t}"
        ${python} local/score.py --ref "${data}/${t}/text" --hyp "${exp}/decode_${t}/1best_recog/text" \
            --out "${exp}/decode_${t}/result.json"
    done
    ${python} local/summarize.py --exp "${exp}" --test-sets "${test_sets}" --task "${asr_task}" \
        --config "${asr_config}" --total-seconds $((SECONDS - t_start))
fi
