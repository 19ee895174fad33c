"""Print the demo's summary, each number with a line that says what it is and why it is what it is.

    python recipes/demo/summarize.py --out exp/demo [--seconds N]

Reads what recipes/demo/run.sh left under ``--out``: ``corpus/`` (the synthetic corpus),
``nemo/summary.json`` with ``nemo/{hyp,ref}_<part>.txt``, ``espnet/exp/*/summary.json`` with the
decoded text, ``memory.md`` (the loss benchmark's table), ``steps.tsv`` (wall and CPU time per
step). Writes ``wer_curve.png`` (the WER curves) beside them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from samplewise_rnnt.data.librispeech import read_librispeech_part

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from recipes.benchmark.__main__ import grad_buffer_mib  # noqa: E402
from recipes.benchmark.presets import DEMO  # noqa: E402

LABELS = {"batched_swr": "batched (materialised logits)", "batched_torchaudio": "batched, torchaudio loss",
          "samplewise": "sample-wise", "fused": "fused output layer"}


# ---------------------------------------------------------------------------------------------------------
# scoring: substitutions, deletions, insertions


def read_kaldi_text(path: Path) -> dict:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if parts:
            out[parts[0]] = (parts[1] if len(parts) > 1 else "").upper().split()
    return out


def align_counts(ref: list, hyp: list) -> tuple:
    """(substitutions, deletions, insertions) of a minimum edit-distance alignment."""
    n, m = len(ref), len(hyp)
    # d[i][j] = (cost, S, D, I) for ref[:i] against hyp[:j]
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            c, s, d, ins = prev[j - 1]
            sub = (c + (ref[i - 1] != hyp[j - 1]), s + (ref[i - 1] != hyp[j - 1]), d, ins)
            c, s, d, ins = prev[j]
            dele = (c + 1, s, d + 1, ins)
            c, s, d, ins = cur[j - 1]
            inse = (c + 1, s, d, ins + 1)
            cur.append(min(sub, dele, inse))
        prev = cur
    _, s, d, i = prev[m]
    return s, d, i


def score(ref: dict, hyp: dict) -> dict:
    s = d = i = words = empty = correct = 0
    per_utt = []
    for utt, r in sorted(ref.items()):
        h = hyp.get(utt, [])
        cs, cd, ci = align_counts(r, h)
        s, d, i, words = s + cs, d + cd, i + ci, words + len(r)
        empty += not h
        correct += cs + cd + ci == 0
        per_utt.append((cs + cd + ci, " ".join(r), " ".join(h)))
    worst = sorted(per_utt, key=lambda x: -x[0])[:2]  # the two utterances with the most errors
    return dict(wer=100.0 * (s + d + i) / max(words, 1), S=s, D=d, I=i, words=words, utterances=len(ref),
                empty=empty, correct=correct, examples=[(r, h) for _, r, h in worst])


# ---------------------------------------------------------------------------------------------------------
# readers


def corpus_facts(root: Path) -> dict:
    facts = {}
    for part in ("train-clean-mini", "dev-clean-mini", "test-clean-mini"):
        if (root / part).is_dir():
            utts = read_librispeech_part(root / part)
            facts[part] = dict(utterances=len(utts), minutes=sum(u.duration for u in utts) / 60,
                               speakers=len({u.speaker for u in utts}),
                               words=len({w for u in utts for w in u.text.split()}))
    return facts


def nemo(out: Path) -> dict | None:
    path = out / "nemo" / "summary.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    test = {}
    for part in s.get("wer", {}):
        ref, hyp = out / "nemo" / f"ref_{part}.txt", out / "nemo" / f"hyp_{part}.txt"
        if ref.exists() and hyp.exists():
            test[part] = score(read_kaldi_text(ref), read_kaldi_text(hyp))
    return dict(name="NeMo", path=path, steps=s.get("steps"), batch=s.get("batch_size"),
                loss_start=s.get("loss_start_mean3"), loss_end=s.get("loss_end_mean3"),
                curve=[(p["step"], 100.0 * p["val_wer"]) for p in s.get("curve", [])],
                test=test, wall=s.get("train_seconds"), cpu=s.get("train_cpu_seconds"),
                params=s.get("parameters"), decoding="greedy (NeMo's transcribe)",
                loss_unit="per target token (NeMo's mean_volume: summed over the batch / its tokens)")


def espnet(out: Path) -> dict | None:
    found = sorted((out / "espnet" / "exp").glob("*/summary.json"))
    if not found:
        return None
    path = found[-1]
    s = json.loads(path.read_text())
    exp, data = path.parent, out / "espnet" / "data"
    test = {}
    for part in s.get("wer", {}):
        ref, hyp = data / part / "text", exp / f"decode_{part}" / "1best_recog" / "text"
        if ref.exists() and hyp.exists():
            test[part] = score(read_kaldi_text(ref), read_kaldi_text(hyp))
    per_epoch = s.get("per_epoch", [])
    steps_per_epoch = s["train_steps"] / max(1, s["epochs"]) if s.get("train_steps") else None
    curve = [(round(e["epoch"] * steps_per_epoch) if steps_per_epoch else e["epoch"], e["valid_wer"])
             for e in per_epoch if e.get("valid_wer") is not None]
    return dict(name="ESPnet", path=path, steps=s.get("train_steps"), batch=s.get("batch_size"),
                loss_start=s.get("train_loss_first_epoch"), loss_end=s.get("train_loss_last_epoch"),
                curve=curve, test=test, wall=s.get("train_seconds"), cpu=s.get("train_cpu_seconds"),
                params=s.get("parameters"), decoding="beam search, beam 4 (ESPnet's asr_inference)",
                loss_unit="per utterance, epoch mean (transducer + 0.3 CTC, summed over tokens / B)")


def memory_rows(path: Path) -> list:
    """(method, B, time ms, CPU ms, peak MiB) from the benchmark's markdown table."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not cells[3].startswith("B="):
            continue
        try:
            rows.append((cells[0], int(re.match(r"B=(\d+)", cells[3]).group(1)), float(cells[4]), float(cells[5]),
                         float(cells[6])))
        except ValueError:
            continue  # a skipped or failed row
    return rows


# ---------------------------------------------------------------------------------------------------------
# output


def fmt_curve(curve, k=6) -> str:
    if not curve:
        return "-"
    idx = sorted({round(j * (len(curve) - 1) / (k - 1)) for j in range(k)}) if len(curve) > k else range(len(curve))
    return ", ".join(f"{curve[j][1]:.0f} @{curve[j][0]}" for j in idx)


def plot_curves(runs, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for r, color in zip(runs, ("tab:blue", "tab:green", "tab:purple")):
        if r["curve"]:
            ax.plot([p[0] for p in r["curve"]], [p[1] for p in r["curve"]], "o-", color=color,
                    label=f"{r['name']}: dev WER during training")
        for part, t in r["test"].items():
            ax.plot([r["steps"]], [t["wer"]], "*", markersize=14, color=color,
                    label=f"{r['name']}: test WER after training ({t['wer']:.0f} %)")
    ax.axhline(100, color="gray", linestyle=":", linewidth=1)
    ax.text(0, 101, "100 % = nothing recognised (empty hypotheses)", fontsize=7, color="gray", va="bottom")
    ax.set_ylim(0, 110)
    ax.set_xlabel("training steps")
    ax.set_ylabel("word error rate (%)")
    ax.set_title("Transducers trained with the sample-wise loss (synthetic speech, CPU)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seconds", type=int, default=None)
    args = ap.parse_args(argv)
    out = args.out
    runs = [r for r in (nemo(out), espnet(out)) if r is not None]
    if not runs:
        raise SystemExit(f"demo: no NeMo or ESPnet summary under {out}")
    corpus = corpus_facts(out / "corpus") if (out / "corpus").is_dir() else {}

    print("## Training with the sample-wise loss (synthetic mini-LibriSpeech, CPU)\n")
    if corpus:
        tr, dv, te = (corpus.get(p, {}) for p in ("train-clean-mini", "dev-clean-mini", "test-clean-mini"))
        print(f"Corpus: espeak-ng speech ({tr.get('words', '?')} distinct words in the training transcripts); training "
              f"{tr.get('utterances')} utterances ({tr.get('minutes', 0):.1f} min, {tr.get('speakers')} voices), "
              f"dev {dv.get('utterances')} ({dv.get('speakers')} voices), test {te.get('utterances')} "
              f"({te.get('speakers')} voices); dev and test voices are never heard in training.\n")
    print("| toolkit | parameters | steps | training loss, start -> end | dev WER (%) @ step | test WER (%) | "
          "training time, wall / CPU (s) |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: |")
    for r in runs:
        test = ", ".join(f"{t['wer']:.1f}" for t in r["test"].values()) or "-"
        params = f"{r['params'] / 1e6:.2f} M" if r.get("params") else "-"
        cpu = f"{r['cpu']:.0f}" if r.get("cpu") is not None else "-"
        print(f"| {r['name']} | {params} | {r['steps']} | {r['loss_start']:.2f} -> {r['loss_end']:.2f} | "
              f"{fmt_curve(r['curve'])} | {test} | {r['wall']:.0f} / {cpu} |")
    print("\nWhat the numbers are:")
    print("- steps: optimizer steps (one batch each) of the toolkit's own trainer; the loss is the sample-wise "
          "RNN-T loss through the toolkit's adapter (`loss_name: samplewise_rnnt` / `model: samplewise_transducer`).")
    for r in runs:
        verdict = "falls" if r["loss_end"] < r["loss_start"] else "DOES NOT FALL"
        print(f"- {r['name']} training loss: {r['loss_unit']}; it {verdict} "
              f"({r['loss_start']:.2f} -> {r['loss_end']:.2f}).")
    print("- dev WER @ step: the toolkit's validation decoding of the dev set during training (the curve in "
          "wer_curve.png). It starts at 100 %: a transducer first learns to emit only blanks (empty "
          "hypotheses, every word a deletion), then the words.")
    for r in runs:
        for part, t in r["test"].items():
            first_ok = next((s for s, w in r["curve"] if w < 100), None)
            kinds = {"substitutions (a wrong word)": t["S"], "deletions (a word left out)": t["D"],
                     "insertions (an extra word)": t["I"]}
            main_kind = max(kinds, key=kinds.get)
            falling = len(r["curve"]) >= 2 and r["curve"][-1][1] <= min(w for _, w in r["curve"][:-1])
            if t["empty"] == t["utterances"]:
                why = ("every hypothesis is empty: the model still emits only blanks (too few steps for it to "
                       "leave that phase)")
            else:
                why = (f"{t['correct']} of {t['utterances']} utterances exactly right, {t['empty']} empty; most "
                       f"errors are {main_kind}. "
                       + (f"The dev WER left 100 % at step {first_ok} and " if first_ok else "The dev WER ")
                       + ("was still falling at the last step: more steps would lower it further; "
                          if falling else "had levelled off; ")
                       + f"a {r['params'] / 1e6:.2f} M-parameter model trained for {r['steps']} steps on "
                       f"{corpus.get('train-clean-mini', {}).get('speakers', '?')} voices still drops or confuses "
                       "words of voices it has not heard")
            print(f"- {r['name']} test WER on {part}: {r['decoding']} of {t['utterances']} utterances by voices "
                  f"never heard in training: ({t['S']} substitutions + {t['D']} deletions + {t['I']} insertions) "
                  f"/ {t['words']} words = {t['wer']:.1f} %. Why: {why}. The two worst utterances:")
            for ref, hyp in t["examples"]:
                print(f"    ref: {ref.lower()}\n    hyp: {hyp.lower() or '(empty)'}")
    print("- training time: the trainer's wall time on this machine and the CPU time of its process "
          "(user + system, all threads; less sensitive to other work on the machine).")

    mem = out / "memory.md"
    if mem.exists():
        rows = memory_rows(mem)
        methods = list(dict.fromkeys(m for m, *_ in rows))
        bs = sorted({b for _, b, *_ in rows})
        cell = {(m, b): (t, c, p) for m, b, t, c, p in rows}
        base = methods[0] if methods else None
        print("\n## Loss memory against batch size (the loss step alone: joint + loss + backward)\n")
        print("| B | " + " | ".join(f"{LABELS.get(m, m)}: peak MiB" for m in methods) + " | "
              + " | ".join(f"{LABELS.get(m, m)}: CPU time x" for m in methods[1:]) + " |")
        print("| ---: | " + " | ".join("---:" for _ in methods) + " | " + " | ".join("---:" for _ in methods[1:]) + " |")
        for b in bs:
            peaks = [f"{cell[(m, b)][2]:.0f}" if (m, b) in cell else "-" for m in methods]
            ratios = [f"{cell[(m, b)][1] / cell[(base, b)][1]:.2f}" if (m, b) in cell and (base, b) in cell
                      and cell[(base, b)][1] > 0 else "-" for m in methods[1:]]
            print(f"| {b} | " + " | ".join(peaks) + " | " + " | ".join(ratios) + " |")
        print("\nWhat the numbers are:")
        print("- peak MiB: the memory one forward + backward step adds on top of its inputs (the process's peak "
              "resident set, VmHWM), one fresh process per cell; the full table (shapes, wall and CPU times): "
              f"{mem}.")
        common = dict(DEMO["common"])
        grads = {b: grad_buffer_mib(dict(common, B=b)) for b in bs}
        per_sample = None
        for m in methods:
            pts = sorted((b, cell[(m, b)][2]) for b in bs if (m, b) in cell)
            if len(pts) < 2:
                continue
            (b0, p0), (b1, p1) = pts[0], pts[-1]
            if m.startswith("batched"):
                per_sample = (p1 - p0) / max(1, b1 - b0)
                print(f"- {LABELS.get(m, m)}: grows in proportion to B ({p0:.0f} -> {p1:.0f} MiB over B = {b0}-{b1}, "
                      f"{per_sample:.1f} MiB per sample): it holds the logits [B, T, U+1, V] of the whole batch and "
                      f"their gradient (at B = {bs[-1]} that would be about {per_sample * bs[-1] / 1024:.1f} GiB).")
            else:
                mid = [(b, p) for b, p in pts if b <= bs[-1] // 4]
                bm, pm = mid[-1] if mid else pts[0]
                gain, ggain = p1 - pm, grads[b1] - grads[bm]
                grew = (f"of the {gain:.0f} MiB it gained, {ggain:.0f} MiB are" if gain > ggain else
                        f"it gained no more than the {ggain:.0f} MiB of")
                print(f"- {LABELS.get(m, m)}: {p0:.0f} MiB at B = {b0}, {pm:.0f} at B = {bm}, {p1:.0f} at B = {b1}: "
                      f"{b1 // bm}x the samples for {p1 / pm:.1f}x the memory; {grew} the gradient buffers of the "
                      "encoder and predictor outputs (dashed line), which grow with B in every method. The samples "
                      f"go through the loss in groups that share one working-memory budget ({_cpu_budget_mib()} MiB "
                      "on the CPU, dotted line): more samples make more groups, not bigger ones. (One step per cell: the peak "
                      "of a cell varies by some 20 % between runs with the allocator's state.)")
        if base and len(methods) > 1:
            print(f"- time x: CPU time of the step against {LABELS.get(base, base)} at the same B (CPU time, as "
                  "wall time on a shared machine swings with the other work). The fused layer computes the "
                  "joint group by group into one buffer and differentiates it by hand. These are the demo's small shapes (table header), "
                  "one step each, not the README's headline measurement.")
        print(f"\nPlots: {out / 'memory_vs_batch.png'} (memory against B), {out / 'wer_curve.png'} (WER curves)")
    plot_curves(runs, out / "wer_curve.png")
    for r in runs:
        print(f"{r['name']} summary: {r['path']}")

    steps = out / "steps.tsv"
    if steps.exists():
        lines = [ln.split("\t") for ln in steps.read_text().splitlines()[1:] if ln.strip()]
        if lines:
            print("\n| demo step | wall (s) | CPU (s) |\n| --- | ---: | ---: |")
            for name, wall, cpu in lines:
                print(f"| {name} | {wall} | {cpu} |")
    if args.seconds is not None:
        print(f"\nDemo finished in {args.seconds // 60} min {args.seconds % 60} s (after the set-up).")


def _cpu_budget_mib():
    """The engine's CPU group budget (``planner.CPU_DEFAULT_BYTES``) in MiB, as the demo ran with it."""
    from samplewise_rnnt.planner import CPU_DEFAULT_BYTES

    return CPU_DEFAULT_BYTES // 2 ** 20


if __name__ == "__main__":
    main()

