#!/usr/bin/env python3
"""Final summary of a run: training loss at start and end, per-epoch losses, WER, times.

Reads ``<exp>/train.log`` (ESPnet's trainer log), ``<exp>/train_seconds`` and
``<exp>/decode_<set>/result.json``; writes ``<exp>/summary.json`` and prints one line
``SUMMARY {...}`` (JSON) plus a readable block.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

BATCH = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: .*?\bloss=([-0-9.e+]+)")
EPOCH = re.compile(r"(\d+)epoch results: \[train\] (.*?)(?:, \[valid\] (.*?))?(?:, \[att_plot\].*)?$")


def _field(text, key):
    m = re.search(rf"(?:^|, ){key}=([-0-9.e+]+)", text or "")
    return float(m.group(1)) if m else None


def parse_log(path: Path):
    batches, epochs = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = BATCH.search(line)
        if m:
            batches.append(dict(epoch=int(m.group(1)), batch=int(m.group(3)), loss=float(m.group(4))))
            continue
        m = EPOCH.search(line)
        if m:
            epochs.append(dict(epoch=int(m.group(1)), train_loss=_field(m.group(2), "loss"),
                               valid_loss=_field(m.group(3), "loss")))
    return batches, epochs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", required=True)
    p.add_argument("--test-sets", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--total-seconds", type=float, default=None)
    a = p.parse_args(argv)
    exp = Path(a.exp)
    batches, epochs = parse_log(exp / "train.log")
    if not epochs:
        raise ValueError(f"{exp / 'train.log'}: no 'epoch results' line; did training run?")
    wer = {}
    for t in a.test_sets.split(","):
        r = json.loads((exp / f"decode_{t}" / "result.json").read_text())
        wer[t] = round(r["wer"], 2)
    ts = exp / "train_seconds"
    summary = dict(
        task=a.task, model="samplewise_transducer", config=a.config, epochs=len(epochs),
        train_steps=len(batches),
        loss_first_step=batches[0]["loss"] if batches else None,
        loss_last_step=batches[-1]["loss"] if batches else None,
        train_loss_first_epoch=epochs[0]["train_loss"], train_loss_last_epoch=epochs[-1]["train_loss"],
        valid_loss_first_epoch=epochs[0]["valid_loss"], valid_loss_last_epoch=epochs[-1]["valid_loss"],
        wer=wer, train_seconds=float(ts.read_text()) if ts.exists() else None,
        total_seconds=a.total_seconds, per_epoch=epochs,
    )
    (exp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("=" * 78)
    print(f"ESPnet {a.task} + samplewise_transducer ({a.config}): {len(epochs)} epochs, {len(batches)} steps, "
          f"training {summary['train_seconds']} s, whole run {a.total_seconds} s")
    print(f"  train loss: first step {summary['loss_first_step']}, last step {summary['loss_last_step']}; "
          f"epoch mean {epochs[0]['train_loss']} -> {epochs[-1]['train_loss']}")
    print(f"  valid loss: {epochs[0]['valid_loss']} -> {epochs[-1]['valid_loss']}")
    for t, w in wer.items():
        print(f"  WER {t}: {w:.2f} %")
    print(f"  summary: {exp / 'summary.json'}")
    print("SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "per_epoch"}))


if __name__ == "__main__":
    main()
