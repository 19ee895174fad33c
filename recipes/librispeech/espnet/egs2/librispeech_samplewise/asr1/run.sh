#!/usr/bin/env bash
# LibriSpeech 960 h, conformer transducer trained with the sample-wise loss (samplewise-rnnt):
# egs2/librispeech/asr1's run.sh with this directory's conf/. ESPnet's own asr.sh and programs run
# unchanged; `model: samplewise_transducer` in the training config is the only line that selects
# the loss (samplewise-rnnt's post-import hook registers it in every process, --ngpu N included).
#
#   ./run.sh                                  # LibriSpeech from db.sh's LIBRISPEECH, 4 GPUs, batch 1024
#   ./run.sh --ngpu 1                         # any --ngpu: the batch stays 1024 (1024/N per GPU)
#   ./run.sh --asr_task asr_transducer        # ESPnet's asr_transducer task instead of asr
#   ./run.sh --mini true --ngpu 0             # synthetic mini corpus, tiny model, CPU, minutes
# Every other option goes to asr.sh (the last value of an option wins), e.g. --stage 11 --stop_stage 13.
set -e
set -u
set -o pipefail

mini=false
asr_task=asr
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mini) mini=$2; shift 2 ;;
        --asr_task) asr_task=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
case "${asr_task}" in asr|asr_transducer) ;; *) echo "$0: --asr_task must be asr or asr_transducer, got '${asr_task}'" >&2; exit 2 ;; esac

if [ "${mini}" = true ]; then
    train_set=train_mini
    valid_set=dev_mini
    test_sets="test_mini"
    asr_config=conf/train_mini_${asr_task}.yaml
    opts=(--ngpu 0 --nbpe 64 --max_wav_duration 20 --local_data_opts "--mini true")
else
    train_set=train_960
    valid_set=dev
    test_sets="test_clean test_other dev_clean dev_other"
    if [ "${asr_task}" = asr ]; then asr_config=conf/train_asr_rnnt_samplewise_b1024.yaml
    else asr_config=conf/train_asr_transducer_samplewise_b1024.yaml; fi
    # the length cap of the batch-1024 configs (their measured memory assumes it)
    opts=(--ngpu 4 --nbpe 5000 --max_wav_duration 15 --speed_perturb_factors "0.9 1.0 1.1")
fi
inference_config=conf/decode_asr_rnnt.yaml

./asr.sh \
    --lang en \
    --asr_task "${asr_task}" \
    --use_lm false \
    "${opts[@]}" \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    --inference_asr_model valid.loss.ave.pth \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --bpe_train_text "data/${train_set}/text" "${args[@]}"
