#!/usr/bin/env bash
# Stage 1 of asr.sh: LibriSpeech (or the synthetic mini corpus) -> data/<set>/{wav.scp,text,utt2spk,spk2utt}.
#   local/data.sh                 # LibriSpeech under db.sh's LIBRISPEECH (it is not downloaded here)
#   local/data.sh --mini true     # generates the synthetic mini-LibriSpeech (espeak-ng, sox) under downloads/
# Sets: train_960 (train-clean-100 + train-clean-360 + train-other-500), dev (dev-clean + dev-other),
# dev_clean, dev_other, test_clean, test_other; with --mini: train_mini, dev_mini, test_mini.
set -euo pipefail
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*"; }

mini=false
while [ $# -gt 0 ]; do
    case "$1" in
        --mini) mini=$2; shift 2 ;;
        *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
. ./db.sh
python=${python:-python3}

if [ "${mini}" = true ]; then
    root=${MINI_LIBRISPEECH_SAMPLEWISE:-downloads/mini_librispeech_samplewise}
    if [ ! -f "${root}/README.TXT" ]; then
        log "generating the synthetic mini-LibriSpeech in ${root}"
        ${python} -m samplewise_rnnt.data.mini_librispeech --out "${root}" --no-progress
    fi
    sets="train_mini=train-clean-mini dev_mini=dev-clean-mini test_mini=test-clean-mini"
else
    root=${LIBRISPEECH:-}
    if [ -z "${root}" ] || [ ! -d "${root}/train-clean-100" ]; then
        echo "$0: set LIBRISPEECH in db.sh to the LibriSpeech root (it holds train-clean-100, ...); got '${root}'" >&2
        exit 1
    fi
    sets="train_960=train-clean-100,train-clean-360,train-other-500 dev=dev-clean,dev-other"
    sets+=" dev_clean=dev-clean dev_other=dev-other test_clean=test-clean test_other=test-other"
fi
log "data directories from ${root}: ${sets}"
${python} - "${root}" ${sets} <<'PY'
import sys
from pathlib import Path

from samplewise_rnnt.data.librispeech import read_librispeech_part, write_kaldi_dir

root = Path(sys.argv[1])
for spec in sys.argv[2:]:
    name, parts = spec.split("=")
    utts = sorted((u for p in parts.split(",") for u in read_librispeech_part(root / p)), key=lambda u: u.utt_id)
    write_kaldi_dir(utts, Path("data") / name)
    print(f"data/{name}: {len(utts)} utterances from {parts}")
PY
log "done"
