#!/usr/bin/env python3
"""Data preparation: LibriSpeech parts -> Kaldi/ESPnet data dirs (wav.scp, text, utt2spk, spk2utt).

    python local/data_prep.py --librispeech DIR --parts train-clean-100,dev-clean --out data \
        [--map train-clean-100=train ...] [--max-duration 16.7 --cap-parts train,valid]

Each part is read with the strict reader shared with the NeMo recipe
(samplewise_rnnt.data.librispeech); wav.scp points at the FLAC files (ESPnet reads them with
soundfile). Utterances longer than --max-duration seconds are left out of the parts named in
--cap-parts (as asr.sh's --max_wav_duration does), so that one training step fits the GPU.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from samplewise_rnnt.data.librispeech import read_librispeech_part, write_kaldi_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--librispeech", required=True, help="LibriSpeech root (holds the part directories)")
    p.add_argument("--parts", required=True, help="comma-separated part names, e.g. train-clean-100,dev-clean")
    p.add_argument("--names", required=True, help="comma-separated data dir names, one per part")
    p.add_argument("--out", required=True, help="where the data dirs go")
    p.add_argument("--max-duration", type=float, default=None, help="length cap in seconds")
    p.add_argument("--cap-names", default="", help="comma-separated data dir names the cap applies to")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (data_prep) %(message)s")
    parts, names = a.parts.split(","), a.names.split(",")
    if len(parts) != len(names):
        raise ValueError(f"--parts has {len(parts)} entries but --names has {len(names)}: {a.parts!r} / {a.names!r}")
    if a.max_duration is not None and a.max_duration <= 0:
        raise ValueError(f"--max-duration must be positive, got {a.max_duration}")
    capped = set(filter(None, a.cap_names.split(",")))
    summary = {}
    for part, name in zip(parts, names):
        utts = read_librispeech_part(Path(a.librispeech) / part)
        n_all = len(utts)
        if a.max_duration is not None and name in capped:
            utts = [u for u in utts if u.duration <= a.max_duration]
        if not utts:
            raise ValueError(f"part {part!r}: no utterance left (cap {a.max_duration} s)")
        write_kaldi_dir(utts, Path(a.out) / name)
        hours = sum(u.duration for u in utts) / 3600
        summary[name] = dict(part=part, utterances=len(utts), dropped=n_all - len(utts), hours=round(hours, 4),
                             max_seconds=round(max(u.duration for u in utts), 2))
        logging.info("%s <- %s: %d utterances (%d over the cap dropped), %.3f h", name, part, len(utts),
                     n_all - len(utts), hours)
    (Path(a.out) / "data_prep.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
