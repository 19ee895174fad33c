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

import yaml

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
            wer = _field(m.group(3), "wer_transducer")  # with model_conf report_wer: true (a fraction)
            epochs.append(dict(epoch=int(m.group(1)), train_loss=_field(m.group(2), "loss"),
                               valid_loss=_field(m.group(3), "loss"),
                               valid_wer=None if wer is None else round(100.0 * wer, 2)))
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
    ts, tc = exp / "train_seconds", exp / "train_cpu_seconds"
    log = (exp / "train.log").read_text(encoding="utf-8", errors="replace")
    m = re.search(r"Number of trainable parameters: ([0-9.]+) ([KMG]?)", log)
    params = round(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]) if m else None
    conf = yaml.safe_load((exp / "config.yaml").read_text()) if (exp / "config.yaml").exists() else {}
    summary = dict(
        task=a.task, model="samplewise_transducer", config=a.config, epochs=len(epochs),
        train_steps=len(batches), batch_size=conf.get("batch_size"), parameters=params,
        loss_first_step=batches[0]["loss"] if batches else None,
        loss_last_step=batches[-1]["loss"] if batches else None,
        train_loss_first_epoch=epochs[0]["train_loss"], train_loss_last_epoch=epochs[-1]["train_loss"],
        valid_loss_first_epoch=epochs[0]["valid_loss"], valid_loss_last_epoch=epochs[-1]["valid_loss"],
        wer=wer, train_seconds=float(ts.read_text()) if ts.exists() else None,
        train_cpu_seconds=float(tc.read_text()) if tc.exists() else None,
        valid_wer_per_epoch=[e["valid_wer"] for e in epochs],
        total_seconds=a.total_seconds, per_epoch=epochs,
    )
    (exp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("=" * 78)
    print(f"ESPnet {a.task} + samplewise_transducer ({a.config}): {len(epochs)} epochs, {len(batches)} steps, "
          f"training {summary['train_seconds']} s, whole run {a.total_seconds} s")
    print(f"  train loss: first step {summary['loss_first_step']}, last step {summary['loss_last_step']}; "
          f"epoch mean {epochs[0]['train_loss']} -> {epochs[-1]['train_loss']}")
    print(f"  valid loss: {epochs[0]['valid_loss']} -> {epochs[-1]['valid_loss']}")
    if any(e["valid_wer"] is not None for e in epochs):
        print("  valid WER per epoch (%): " + ", ".join("-" if e["valid_wer"] is None else f"{e['valid_wer']:.0f}"
                                                     for e in epochs))
    for t, w in wer.items():
        print(f"  WER {t}: {w:.2f} %")
    print(f"  summary: {exp / 'summary.json'}")
    print("SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "per_epoch"}))


if __name__ == "__main__":
    main()
