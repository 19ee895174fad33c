"""Synthetic mini-LibriSpeech: real audio in LibriSpeech's exact layout, made on this machine.

LibriSpeech cannot be downloaded everywhere this project runs, yet its recipes, tests and demo
must run the real data preparation on real audio. This module writes a small corpus with the
same layout (see :mod:`samplewise_rnnt.data.librispeech`)::

    <out>/README.TXT, SPEAKERS.TXT, CHAPTERS.TXT
    <out>/{train,dev,test}-clean-mini/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <out>/{train,dev,test}-clean-mini/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Speech comes from espeak-ng; each "speaker" is a distinct English voice and voice variant
(``en-gb-scotland+f3``), pitch, speaking rate, word gap and loudness. Sentences come from the
project's own grammar (:mod:`samplewise_rnnt.data.grammar`); each utterance draws sentences
until its synthesised duration lies in ``[min_seconds, max_seconds]``. espeak-ng writes 22.05 kHz
WAV; SoX turns it into 16 kHz mono 16-bit FLAC in its repeatable mode (dither noise from a
fixed seed, which also fills espeak-ng's digital silence), so the same seed gives identical
bytes. Utterances are synthesised ``jobs`` at a time (each in its own espeak-ng and sox
processes); files that already exist and are valid are kept.

Command line::

    python -m samplewise_rnnt.data.mini_librispeech --out data/mini_librispeech

Python::

    from samplewise_rnnt.data.mini_librispeech import generate
    summary = generate("data/mini_librispeech", seed=0, train=6, dev=2, test=2)
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .grammar import GRAMMARS, sentence_near
from .librispeech import read_librispeech_part

__all__ = [
    "DEFAULTS",
    "PARTS",
    "GenerationSummary",
    "MissingToolError",
    "generate",
    "main",
]

log = logging.getLogger(__name__)

PARTS = {"train": "train-clean-mini", "dev": "dev-clean-mini", "test": "test-clean-mini"}
DEFAULTS = dict(seed=0, train=600, dev=60, test=60, train_speakers=20, dev_speakers=5,
                test_speakers=5, min_seconds=1.0, max_seconds=8.0, jobs=2, grammar="book")
FORMAT_VERSION = 2
SAMPLE_RATE = 16000
INSTALL_HINT = "install it with: apt-get install espeak-ng sox flac"

# espeak-ng's own English voices (no MBROLA data needed) and its standard voice variants.
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = {"M": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
            "F": ["f1", "f2", "f3", "f4", "f5"]}
# Speakers alternate F, M, F, ...; each takes a distinct voice and variant.
MAX_SPEAKERS = min(2 * len(VOICES) * len(VARIANTS["F"]), 2 * len(VOICES) * len(VARIANTS["M"]) + 1)
MAX_ATTEMPTS = 60


class MissingToolError(RuntimeError):
    """espeak-ng or sox cannot be found or run."""


@dataclass(frozen=True)
class Speaker:
    id: int
    sex: str
    part: str
    voice: str
    variant: str
    pitch: int
    speed: int
    gap: int
    gain_db: int

    def espeak_args(self) -> list[str]:
        return ["-v", f"{self.voice}+{self.variant}", "-p", str(self.pitch),
                "-s", str(self.speed), "-g", str(self.gap)]

    @property
    def name(self) -> str:
        return (f"espeak-ng {self.voice}+{self.variant} pitch {self.pitch} "
                f"speed {self.speed} gap {self.gap} gain -{self.gain_db} dB")


@dataclass(frozen=True)
class _Chapter:
    id: int
    speaker: Speaker
    part: str
    num_utterances: int

    def directory(self, root: Path) -> Path:
        return root / self.part / str(self.speaker.id) / str(self.id)

    def utt_id(self, index: int) -> str:
        return f"{self.speaker.id}-{self.id}-{index:04d}"


@dataclass
class GenerationSummary:
    """What :func:`generate` did. ``durations`` maps each part name to its durations (s)."""

    root: Path
    generated: int = 0
    kept: int = 0
    seconds: float = 0.0
    durations: dict[str, list[float]] = field(default_factory=dict)

    @property
    def num_utterances(self) -> int:
        return sum(len(d) for d in self.durations.values())

    @property
    def hours(self) -> float:
        return sum(sum(d) for d in self.durations.values()) / 3600.0

    def __str__(self) -> str:
        lines = [f"mini-LibriSpeech in {self.root}: {self.generated} utterances synthesised, "
                 f"{self.kept} kept, {self.seconds:.1f} s"]
        for part, d in self.durations.items():
            lines.append(f"  {part}: {len(d)} utterances, {sum(d) / 60:.2f} min, "
                         f"{min(d):.2f}-{max(d):.2f} s")
        lines.append(f"  total: {self.num_utterances} utterances, {self.hours:.3f} h")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Planning: speakers, chapters and utterance ids depend only on the settings.

def _plan(seed: int, counts: dict[str, int], speakers: dict[str, int]) -> list[_Chapter]:
    rng = random.Random(f"mini-librispeech/{seed}/speakers")
    pools = {}
    for sex, variants in VARIANTS.items():
        pool = [(v, var) for v in VOICES for var in variants]
        rng.shuffle(pool)
        pools[sex] = pool
    total = sum(speakers[k] for k in counts if counts[k] > 0)
    speaker_ids = rng.sample(range(100, 10000), total)
    chapter_ids = iter(rng.sample(range(1000, 100000), 3 * total))
    chapters: list[_Chapter] = []
    k = 0
    for key, part in PARTS.items():
        n = counts[key]
        if n == 0:
            continue
        for i in range(speakers[key]):
            sex = "F" if k % 2 == 0 else "M"
            voice, variant = pools[sex].pop()
            spk = Speaker(id=speaker_ids[k], sex=sex, part=part, voice=voice, variant=variant,
                          pitch=rng.randint(25, 75), speed=rng.randint(135, 190),
                          gap=rng.randint(0, 2), gain_db=rng.randint(1, 8))
            k += 1
            n_spk = n // speakers[key] + (i < n % speakers[key])
            n_chap = max(1, min(3, n_spk // 15))
            for j in range(n_chap):
                chapters.append(_Chapter(next(chapter_ids), spk, part,
                                         n_spk // n_chap + (j < n_spk % n_chap)))
    return chapters


# ----------------------------------------------------------------------------------------------
# Tools

def _resolve_tool(name: str, exe: str) -> str:
    path = shutil.which(exe)
    if path is None:
        raise MissingToolError(f"{name} was not found (looked for {exe!r} on PATH); "
                               f"{INSTALL_HINT}")
    return path


def _tool_version(exe: str, name: str) -> str:
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as err:
        raise MissingToolError(f"{name} at {exe!r} cannot be run ({err}); {INSTALL_HINT}") \
            from err
    text = (proc.stdout or proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not text:
        raise MissingToolError(f"{name} at {exe!r} failed to report its version "
                               f"(exit code {proc.returncode}); {INSTALL_HINT}")
    line = text[0].split("Data at:")[0]  # espeak-ng: "eSpeak NG text-to-speech: 1.51  Data at: ..."
    if "SoX v" in line:  # sox: "/usr/bin/sox:      SoX v14.4.2"
        line = line[line.index("SoX v"):]
    return " ".join(line.split())


def _wav_frames(wav: bytes) -> tuple[int, int]:
    """(sample rate, frames) of espeak-ng's 16-bit mono WAV (its --stdout header has no sizes)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not write a WAV file")
    pos = 12
    rate = channels = None
    while pos + 8 <= len(wav):
        cid, size = wav[pos:pos + 4], int.from_bytes(wav[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            channels = int.from_bytes(wav[pos + 10:pos + 12], "little")
            rate = int.from_bytes(wav[pos + 12:pos + 16], "little")
        elif cid == b"data":
            if rate is None or channels != 1:
                raise RuntimeError("espeak-ng wrote an unexpected WAV format")
            return rate, (len(wav) - pos - 8) // 2
        pos += 8 + size
    raise RuntimeError("espeak-ng wrote a WAV file without data")


# ----------------------------------------------------------------------------------------------
# One utterance

@dataclass(frozen=True)
class _Settings:
    seed: int
    min_seconds: float
    max_seconds: float
    espeak: str
    sox: str
    grammar: str = "book"


def _flac_duration(path: Path) -> float | None:
    """Duration of a valid 16 kHz mono FLAC file, else None."""
    import soundfile  # here, not at module level: importing the package needs no audio library

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError):
        return None
    if info.format != "FLAC" or info.samplerate != SAMPLE_RATE or info.channels != 1:
        return None
    return info.frames / info.samplerate


def _synthesise(chapter: _Chapter, index: int, root: Path, cfg: _Settings) -> tuple[str, float]:
    """Write one utterance's FLAC file; returns (transcript, duration)."""
    spk = chapter.speaker
    utt_id = chapter.utt_id(index)
    directory = chapter.directory(root)
    final = directory / f"{utt_id}.flac"
    tmp = directory / f".tmp-{utt_id}.flac"
    rng = random.Random(f"mini-librispeech/{cfg.seed}/{utt_id}")
    lo, hi = cfg.min_seconds, cfg.max_seconds
    words_per_second = 1.15 * spk.speed / 60.0  # espeak-ng speaks a little faster
    # A target duration is drawn in the range and sentences of about the right number of
    # words are tried until one lands near the target (then the durations spread evenly over
    # the range); the word count is corrected by the duration each try gave. The last tries
    # take any duration in the range.
    tolerance = max(0.25, 0.1 * (hi - lo))
    words = 0
    target = lo
    for attempt in range(MAX_ATTEMPTS):
        if attempt % 10 == 0:
            target = rng.uniform(lo, hi)
            words = max(1, round((target - 0.3) * words_per_second))
        sentence = sentence_near(rng, words, grammar=cfg.grammar)
        synth = subprocess.run([cfg.espeak, *spk.espeak_args(), "--stdout", sentence.spoken],
                               capture_output=True)
        if synth.returncode != 0:
            raise RuntimeError(f"espeak-ng failed on {utt_id} (exit code {synth.returncode}): "
                               f"{synth.stderr.decode(errors='replace').strip()}")
        rate, frames = _wav_frames(synth.stdout)
        estimate = frames / rate
        near = abs(estimate - target) <= tolerance or attempt >= MAX_ATTEMPTS - 10
        if not (near and lo + 0.01 <= estimate <= hi - 0.01):
            got = len(sentence.words)
            scaled = round(got * max(target - 0.3, 0.1) / max(estimate - 0.3, 0.1))
            words = max(1, scaled if scaled != got else got + (1 if estimate < target else -1))
            continue
        # -R (repeatable): sox seeds its dither noise with a fixed number, which keeps the
        # bytes a function of the input alone. The dither (+-1 LSB) leaves no digital silence.
        conv = subprocess.run([cfg.sox, "-R", "-V1", "-t", "wav", "-", "-r",
                               str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "flac", str(tmp),
                               "gain", "-n", f"-{spk.gain_db}"],
                              input=synth.stdout, capture_output=True)
        if conv.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"sox failed on {utt_id} (exit code {conv.returncode}): "
                               f"{conv.stderr.decode(errors='replace').strip()}")
        duration = _flac_duration(tmp)
        if duration is None or not lo <= duration <= hi:
            tmp.unlink(missing_ok=True)
            continue
        if final.exists() and final.read_bytes() == tmp.read_bytes():
            tmp.unlink()  # identical file already there: keep it untouched
        else:
            os.replace(tmp, final)
        return sentence.transcript, duration
    raise RuntimeError(f"no sentence gave {utt_id} a duration in [{lo}, {hi}] s after "
                       f"{MAX_ATTEMPTS} attempts; widen --min-seconds/--max-seconds")


# ----------------------------------------------------------------------------------------------
# Text files

def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_transcripts(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            utt_id, _, text = line.partition(" ")
            if text:
                out[utt_id] = text
    return out


def _readme(settings_line: str, tools_line: str) -> str:
    return f"""Synthetic mini-LibriSpeech
==========================

{settings_line}
{tools_line}

Summary: a small corpus of synthetic read English speech in the exact directory layout and
file formats of the LibriSpeech ASR corpus, made on the machine for tests and demonstrations
of the samplewise-rnnt project. It is not LibriSpeech and holds none of its text or audio.

Speech was synthesised by eSpeak NG. Each "speaker" is one of its English voices with a voice
variant, a pitch, a speaking rate, a gap between words and a loudness of its own (see
SPEAKERS.TXT). The sentences were drawn from a vocabulary and grammar written for the project
(samplewise_rnnt/data/grammar.py). The same settings give byte-identical files.

Organization
------------
The corpus is split into three subsets with disjoint speakers:

train-clean-mini    training set
dev-clean-mini      development set
test-clean-mini     test set

Each subset is organized as LibriSpeech is:

<subset>/<speaker id>/<chapter id>/<speaker id>-<chapter id>-<utterance id>.flac
<subset>/<speaker id>/<chapter id>/<speaker id>-<chapter id>.trans.txt

The audio is 16 kHz, 16-bit, single-channel FLAC. Each line of a .trans.txt file holds an
utterance id and its transcript in upper case (letters and apostrophes, no punctuation).
SPEAKERS.TXT lists each speaker's sex, subset, minutes of speech and (as its "name") the
synthesiser settings; CHAPTERS.TXT lists each chapter's reader, minutes and subset.

To regenerate: python -m samplewise_rnnt.data.mini_librispeech --out <this directory>
(with the settings above). Existing valid files are kept; missing ones are synthesised.
"""


def _speakers_txt(chapters: list[_Chapter], minutes: dict[int, float]) -> str:
    lines = [
        "; Synthetic mini-LibriSpeech speakers: pipe (|) separated fields, as in LibriSpeech.",
        ";",
        "; reader_id: the speaker's id, the first part of every utterance id",
        "; gender: 'F' for female, 'M' for male (the espeak-ng voice variant)",
        "; subset: the corpus subset to which the speaker's audio is assigned",
        "; duration: total number of minutes of speech by the speaker in the corpus",
        "; name: the synthesiser settings that make up the speaker",
        ";",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    speakers = {c.speaker.id: c.speaker for c in chapters}
    for sid in sorted(speakers):
        s = speakers[sid]
        lines.append(f"{sid:<5}| {s.sex} | {s.part:<17}| {minutes[sid]:5.2f} | {s.name}")
    return "\n".join(lines) + "\n"


def _chapters_txt(chapters: list[_Chapter], minutes: dict[int, float]) -> str:
    lines = [
        "; Synthetic mini-LibriSpeech chapters: pipe (|) separated fields, as in LibriSpeech.",
        ";",
        "; chapter_id: the chapter's id, the second part of every utterance id",
        "; reader_id: the id of the speaker who reads the chapter",
        "; minutes: total number of minutes of speech in the chapter",
        "; subset: the corpus subset to which the chapter is assigned",
        "; project_id, book_id: placeholders (0), kept for LibriSpeech's column layout",
        "; chapter_title, project_title: made-up titles",
        ";",
        ";ID      |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE           "
        "| PROJECT TITLE",
    ]
    for c in sorted(chapters, key=lambda c: c.id):
        title = f"Chapter {c.id}"
        lines.append(f"{c.id:<9}| {c.speaker.id:<5}| {minutes[c.id]:5.2f} | {c.part:<17}| "
                     f"0     | 0     | {title:<20}| Synthetic Mini LibriSpeech")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Entry points

def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"out: directory {str(out)!r} is not writable ({err})") from err


def generate(out: str | os.PathLike, *, seed: int = DEFAULTS["seed"],
             train: int = DEFAULTS["train"], dev: int = DEFAULTS["dev"],
             test: int = DEFAULTS["test"], train_speakers: int = DEFAULTS["train_speakers"],
             dev_speakers: int = DEFAULTS["dev_speakers"],
             test_speakers: int = DEFAULTS["test_speakers"],
             min_seconds: float = DEFAULTS["min_seconds"],
             max_seconds: float = DEFAULTS["max_seconds"], jobs: int = DEFAULTS["jobs"],
             grammar: str = DEFAULTS["grammar"], espeak_ng: str = "espeak-ng", sox: str = "sox",
             progress: bool = True) -> GenerationSummary:
    """Write (or complete) a synthetic mini-LibriSpeech corpus under ``out``.

    ``train``/``dev``/``test`` are utterance counts of ``train-clean-mini``,
    ``dev-clean-mini`` and ``test-clean-mini`` (0 leaves a part out); ``*_speakers`` the
    number of speakers of each part (at most its utterance count is used); every utterance
    lasts between ``min_seconds`` and ``max_seconds``. The corpus is a function of these
    settings (and of the espeak-ng and SoX versions, recorded in README.TXT) alone:
    ``jobs``, the number of utterances synthesised at a time, changes nothing in the output.
    ``grammar`` picks the sentences: ``"book"`` (about 900 words, narrative sentences as in
    read books) or ``"small"`` (a few dozen words in five short patterns, for a model that has
    to learn something in minutes; see :mod:`samplewise_rnnt.data.grammar`).

    Files already present and valid are kept; missing or broken ones are synthesised. A
    directory holding a corpus made with other settings is refused (ValueError).
    Raises MissingToolError (a RuntimeError) when espeak-ng or sox is missing, ValueError for
    bad settings or an unwritable ``out``. Returns a :class:`GenerationSummary`.
    """
    start = time.monotonic()
    seed = _check_int("seed", seed, 0)
    counts = {"train": _check_int("train", train, 0), "dev": _check_int("dev", dev, 0),
              "test": _check_int("test", test, 0)}
    if sum(counts.values()) == 0:
        raise ValueError("train, dev and test are all 0: nothing to generate")
    speakers = {"train": _check_int("train_speakers", train_speakers, 1),
                "dev": _check_int("dev_speakers", dev_speakers, 1),
                "test": _check_int("test_speakers", test_speakers, 1)}
    speakers = {k: min(v, max(counts[k], 1)) for k, v in speakers.items()}
    total_speakers = sum(speakers[k] for k in counts if counts[k])
    if total_speakers > MAX_SPEAKERS:
        raise ValueError(f"train_speakers + dev_speakers + test_speakers (as used) must be at "
                         f"most {MAX_SPEAKERS}, got {total_speakers}")
    if not (isinstance(min_seconds, (int, float)) and math.isfinite(min_seconds)
            and min_seconds >= 0.5):
        raise ValueError(f"min_seconds must be a number >= 0.5, got {min_seconds!r}")
    if not (isinstance(max_seconds, (int, float)) and math.isfinite(max_seconds)
            and min_seconds + 0.5 <= max_seconds <= 60):
        raise ValueError(f"max_seconds must be a number in [min_seconds + 0.5, 60], "
                         f"got {max_seconds!r}")
    jobs = _check_int("jobs", jobs, 1)
    if not isinstance(grammar, str) or grammar not in GRAMMARS:
        raise ValueError(f"grammar must be one of {sorted(GRAMMARS)}, got {grammar!r}")

    espeak_path = _resolve_tool("espeak-ng", espeak_ng)
    sox_path = _resolve_tool("sox", sox)
    tools_line = (f"Tools: {_tool_version(espeak_path, 'espeak-ng')}; "
                  f"{_tool_version(sox_path, 'sox')}")
    settings_line = (f"Settings: format {FORMAT_VERSION}, seed {seed}, utterances "
                     f"{counts['train']}/{counts['dev']}/{counts['test']}, speakers "
                     f"{speakers['train']}/{speakers['dev']}/{speakers['test']} "
                     f"(train/dev/test), duration {float(min_seconds):g}-"
                     f"{float(max_seconds):g} s"
                     + ("" if grammar == "book" else f", grammar {grammar}"))

    root = Path(out)
    _check_writable(root)
    root = root.absolute()
    readme = root / "README.TXT"
    present = [p for p in [*PARTS.values(), "SPEAKERS.TXT", "CHAPTERS.TXT"]
               if (root / p).exists()]
    if readme.exists() or present:
        old = readme.read_text(encoding="utf-8").splitlines() if readme.exists() else []
        if settings_line not in old or tools_line not in old:
            raise ValueError(
                f"out: {str(root)!r} already holds files of another corpus or of other "
                f"settings ({', '.join(present) or 'README.TXT'}); expected README.TXT to "
                f"contain {settings_line!r} and {tools_line!r}. Delete the directory or "
                "choose another one.")
    _write_if_changed(readme, _readme(settings_line, tools_line))

    chapters = _plan(seed, counts, speakers)
    cfg = _Settings(seed, float(min_seconds), float(max_seconds), espeak_path, sox_path, grammar)
    summary = GenerationSummary(root=root)
    results: dict[int, dict[str, tuple[str, float]]] = {}
    todo = []
    for c in chapters:
        directory = c.directory(root)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".tmp-*"):
            stale.unlink()
        known = _read_transcripts(directory / f"{c.speaker.id}-{c.id}.trans.txt")
        results[c.id] = {}
        for i in range(c.num_utterances):
            utt_id = c.utt_id(i)
            duration = _flac_duration(directory / f"{utt_id}.flac")
            if (utt_id in known and duration is not None
                    and cfg.min_seconds <= duration <= cfg.max_seconds):
                results[c.id][utt_id] = (known[utt_id], duration)
                summary.kept += 1
            else:
                todo.append((c, i))
    by_id = {c.id: c for c in chapters}

    def finish_chapter(c: _Chapter) -> None:
        lines = sorted(results[c.id].items())
        _write_if_changed(c.directory(root) / f"{c.speaker.id}-{c.id}.trans.txt",
                          "".join(f"{u} {text}\n" for u, (text, _) in lines))

    pending = {c.id: c.num_utterances - len(results[c.id]) for c in chapters}
    for c in chapters:
        if pending[c.id] == 0:
            finish_chapter(c)
    with tqdm(total=sum(counts.values()), initial=summary.kept, unit="utt",
              desc="mini-LibriSpeech", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_synthesise, c, i, root, cfg): (c.id, i) for c, i in todo}
        try:
            for fut in as_completed(futures):
                cid, i = futures[fut]
                results[cid][by_id[cid].utt_id(i)] = fut.result()
                summary.generated += 1
                bar.update(1)
                pending[cid] -= 1
                if pending[cid] == 0:
                    finish_chapter(by_id[cid])
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise

    chapter_minutes: dict[int, float] = {}
    speaker_minutes: dict[int, float] = {}
    for c in chapters:
        chapter_minutes[c.id] = sum(d for _, d in results[c.id].values()) / 60
        speaker_minutes[c.speaker.id] = (speaker_minutes.get(c.speaker.id, 0.0)
                                         + chapter_minutes[c.id])
    _write_if_changed(root / "SPEAKERS.TXT", _speakers_txt(chapters, speaker_minutes))
    _write_if_changed(root / "CHAPTERS.TXT", _chapters_txt(chapters, chapter_minutes))

    # The output must read back through the same strict reader the recipes use.
    for key, part in PARTS.items():
        if counts[key]:
            utts = read_librispeech_part(root / part)
            if len(utts) != counts[key]:
                raise RuntimeError(f"{root / part} holds {len(utts)} utterances, expected "
                                   f"{counts[key]}")
            summary.durations[part] = [u.duration for u in utts]
    summary.seconds = time.monotonic() - start
    return summary


def main(argv: list[str] | None = None, *, prog: str | None = None,
         default_out: str | None = None) -> int:
    """Command line entry point (``python -m samplewise_rnnt.data.mini_librispeech``).

    Returns the exit status: 0, or 2 after printing the error for bad settings, a missing
    tool or an unwritable directory. ``default_out`` makes ``--out`` optional.
    """
    parser = argparse.ArgumentParser(
        prog=prog or "python -m samplewise_rnnt.data.mini_librispeech",
        description="Write a synthetic mini-LibriSpeech corpus (espeak-ng speech in "
                    "LibriSpeech's layout). Existing valid files are kept.")
    parser.add_argument("--out", required=default_out is None, default=default_out,
                        help="directory to write the corpus into"
                             + (f" (default {default_out})" if default_out else ""))
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    for key in ("train", "dev", "test"):
        parser.add_argument(f"--{key}", type=int, default=DEFAULTS[key],
                            help=f"utterances in {PARTS[key]} (default {DEFAULTS[key]})")
    for key in ("train", "dev", "test"):
        parser.add_argument(f"--{key}-speakers", type=int, default=DEFAULTS[f"{key}_speakers"],
                            help=f"speakers in {PARTS[key]} "
                                 f"(default {DEFAULTS[f'{key}_speakers']})")
    parser.add_argument("--min-seconds", type=float, default=DEFAULTS["min_seconds"])
    parser.add_argument("--max-seconds", type=float, default=DEFAULTS["max_seconds"])
    parser.add_argument("--grammar", choices=sorted(GRAMMARS), default=DEFAULTS["grammar"],
                        help="the sentences: book (about 900 words, the default) or small "
                             "(a few dozen words, for models trained in minutes)")
    parser.add_argument("--jobs", type=int, default=DEFAULTS["jobs"],
                        help="utterances synthesised at a time (default 2)")
    parser.add_argument("--espeak-ng", default="espeak-ng", help="espeak-ng executable")
    parser.add_argument("--sox", default="sox", help="sox executable")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out, seed=args.seed, train=args.train, dev=args.dev,
                           test=args.test, train_speakers=args.train_speakers,
                           dev_speakers=args.dev_speakers, test_speakers=args.test_speakers,
                           min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                           jobs=args.jobs, grammar=args.grammar, espeak_ng=args.espeak_ng,
                           sox=args.sox,
                           progress=not args.no_progress)
    except (ValueError, MissingToolError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
