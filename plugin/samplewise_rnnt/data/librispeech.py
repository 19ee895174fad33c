"""Read a LibriSpeech part and write it out as a NeMo manifest or a Kaldi/ESPnet data dir.

The layout, as distributed by openslr.org (and as written by
:mod:`samplewise_rnnt.data.mini_librispeech`)::

    <root>/SPEAKERS.TXT, CHAPTERS.TXT, README.TXT, ...
    <root>/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

``<part>`` is for example ``train-clean-100``, ``test-other`` or ``dev-clean-mini``;
``<speaker>`` and ``<chapter>`` are decimal numbers, ``<utt>`` has four digits. Each line of a
``.trans.txt`` file is ``<speaker>-<chapter>-<utt> <TEXT>``, where the text is upper-case
letters and apostrophes separated by single spaces.

Both recipes (NeMo and ESPnet) prepare their data with this module, so the real corpus and the
synthetic one go through the same code:

>>> utts = read_librispeech_part("LibriSpeech/dev-clean")          # doctest: +SKIP
>>> write_nemo_manifest(utts, "data/dev_clean.json")                 # doctest: +SKIP
>>> write_kaldi_dir(utts, "data/dev_clean")                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Utterance",
    "find_parts",
    "read_librispeech_part",
    "write_kaldi_dir",
    "write_nemo_manifest",
]

PART_NAME = re.compile(r"^(train|dev|test)-(clean|other)(-[a-z0-9]+)?$")
_NUMBER = re.compile(r"^[0-9]+$")
_UTT_ID = re.compile(r"^([0-9]+)-([0-9]+)-([0-9]{4})$")
_TEXT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a LibriSpeech part.

    ``utt_id`` is ``<speaker>-<chapter>-<utt>``; ``speaker`` and ``chapter`` are the decimal
    strings of the directory names; ``path`` is the absolute path of the FLAC file; ``text``
    the upper-case transcript; ``duration`` the length in seconds read from the FLAC header.
    """

    utt_id: str
    speaker: str
    chapter: str
    path: Path
    text: str
    duration: float


def find_parts(root: str | os.PathLike) -> list[Path]:
    """The part directories directly under a LibriSpeech root, sorted by name.

    A part is a directory named like ``train-clean-100``, ``dev-other`` or
    ``test-clean-mini`` (``(train|dev|test)-(clean|other)[-<suffix>]``).
    Raises ValueError when ``root`` is not a directory or holds no part.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise ValueError(f"root: {str(root)!r} is not a directory")
    parts = sorted(p for p in root_path.iterdir() if p.is_dir() and PART_NAME.match(p.name))
    if not parts:
        raise ValueError(
            f"root: {str(root)!r} holds no LibriSpeech part (a directory named like "
            "train-clean-100, dev-other or test-clean-mini)")
    return [p.absolute() for p in parts]


def _visible(entries) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def read_librispeech_part(part_dir: str | os.PathLike) -> list[Utterance]:
    """Read one LibriSpeech part, checking its layout strictly.

    Returns the utterances sorted by ``utt_id`` (byte order, as Kaldi's ``sort`` with
    ``LC_ALL=C``). Hidden entries (names starting with ``.``) are ignored. Raises ValueError
    naming the offending path when: the part is not a directory or is empty; an entry of the
    part is not a speaker directory with a numeric name, or of a speaker not a chapter
    directory with a numeric name; a chapter directory holds anything but
    ``<speaker>-<chapter>-<utt>.flac`` files and the one ``<speaker>-<chapter>.trans.txt``;
    a transcript line is malformed, repeats an id, names another speaker or chapter, or has
    text other than upper-case words; a transcript line has no FLAC file or a FLAC file no
    line; a FLAC file cannot be read.
    """
    part = Path(part_dir)
    if not part.is_dir():
        raise ValueError(f"part_dir: {str(part_dir)!r} is not a directory")
    part = part.absolute()
    utterances: list[Utterance] = []
    speakers = _visible(part.iterdir())
    if not speakers:
        raise ValueError(f"part_dir: {str(part)!r} is empty")
    for spk_dir in speakers:
        if not spk_dir.is_dir() or not _NUMBER.match(spk_dir.name):
            raise ValueError(f"{spk_dir}: expected a speaker directory with a numeric name")
        chapters = _visible(spk_dir.iterdir())
        if not chapters:
            raise ValueError(f"{spk_dir}: speaker directory is empty")
        for chap_dir in chapters:
            if not chap_dir.is_dir() or not _NUMBER.match(chap_dir.name):
                raise ValueError(f"{chap_dir}: expected a chapter directory with a numeric name")
            utterances += _read_chapter(chap_dir, spk_dir.name, chap_dir.name)
    utterances.sort(key=lambda u: u.utt_id)
    return utterances


def _read_chapter(chap_dir: Path, speaker: str, chapter: str) -> list[Utterance]:
    prefix = f"{speaker}-{chapter}"
    trans_name = f"{prefix}.trans.txt"
    flacs: dict[str, Path] = {}
    trans_path = None
    for entry in _visible(chap_dir.iterdir()):
        if entry.name == trans_name and entry.is_file():
            trans_path = entry
            continue
        m = _UTT_ID.match(entry.name[:-5]) if entry.name.endswith(".flac") else None
        if m is None or not entry.is_file():
            raise ValueError(f"{entry}: unexpected entry; a chapter directory holds only "
                             f"{prefix}-NNNN.flac files and {trans_name}")
        if (m.group(1), m.group(2)) != (speaker, chapter):
            raise ValueError(f"{entry}: file name does not start with {prefix}-")
        flacs[entry.name[:-5]] = entry
    if trans_path is None:
        raise ValueError(f"{chap_dir / trans_name}: transcript file is missing")
    texts: dict[str, str] = {}
    with open(trans_path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            utt_id, sep, text = line.partition(" ")
            where = f"{trans_path}:{lineno}"
            m = _UTT_ID.match(utt_id)
            if not sep or m is None:
                raise ValueError(f"{where}: expected '<speaker>-<chapter>-<utt> TEXT', "
                                 f"got {line!r}")
            if (m.group(1), m.group(2)) != (speaker, chapter):
                raise ValueError(f"{where}: utterance {utt_id!r} does not belong to "
                                 f"speaker {speaker} chapter {chapter}")
            if not _TEXT.match(text):
                raise ValueError(f"{where}: text must be upper-case words (A-Z and ') "
                                 f"separated by single spaces, got {text!r}")
            if utt_id in texts:
                raise ValueError(f"{where}: utterance {utt_id!r} appears twice")
            if utt_id not in flacs:
                raise ValueError(f"{where}: audio file {chap_dir / (utt_id + '.flac')} "
                                 "is missing")
            texts[utt_id] = text
    for utt_id, path in flacs.items():
        if utt_id not in texts:
            raise ValueError(f"{path}: no line for {utt_id!r} in {trans_path}")
    if not texts:
        raise ValueError(f"{trans_path}: chapter has no utterances")
    import soundfile  # here, not at module level: importing the package needs no audio library

    out = []
    for utt_id, text in texts.items():
        path = flacs[utt_id]
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as err:
            raise ValueError(f"{path}: cannot read the audio file: {err}") from err
        out.append(Utterance(utt_id, speaker, chapter, path, text,
                             info.frames / info.samplerate))
    return out


def _check_utterances(utts: Sequence[Utterance]) -> list[Utterance]:
    utts = list(utts)
    if not utts:
        raise ValueError("utts: expected at least one utterance, got none")
    seen: set[str] = set()
    for u in utts:
        if not isinstance(u, Utterance):
            raise ValueError(f"utts: expected Utterance items, got {type(u).__name__}")
        if u.utt_id in seen:
            raise ValueError(f"utts: utterance id {u.utt_id!r} appears twice")
        seen.add(u.utt_id)
    return utts


def write_nemo_manifest(utts: Sequence[Utterance], path: str | os.PathLike) -> Path:
    """Write a NeMo manifest: one JSON object per line, in the order given.

    Each line is ``{"audio_filepath": <absolute path>, "duration": <seconds>, "text": ...}``
    with the text in lower case, as NeMo's LibriSpeech manifests have it. Creates the parent
    directory. Returns the path written.
    """
    utts = _check_utterances(utts)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for u in utts:
            f.write(json.dumps({"audio_filepath": str(Path(u.path).absolute()),
                                "duration": u.duration,
                                "text": u.text.lower()}) + "\n")
    return out


def write_kaldi_dir(utts: Sequence[Utterance], data_dir: str | os.PathLike) -> Path:
    """Write a Kaldi-style data directory as ESPnet reads it.

    Files: ``wav.scp`` (``<utt_id> <absolute path of the FLAC file>``; ESPnet reads FLAC through
    soundfile, no ``flac -d`` pipe needed), ``text`` (``<utt_id> <UPPER-CASE TEXT>``),
    ``utt2spk`` and ``spk2utt``. As in Kaldi's LibriSpeech recipe the Kaldi "speaker" is
    ``<speaker>-<chapter>``, a prefix of the utterance id, so that every file is sorted the same
    way (byte order, like ``LC_ALL=C sort``). Creates the directory. Returns its path.
    """
    utts = sorted(_check_utterances(utts), key=lambda u: u.utt_id)
    for u in utts:
        if re.search(r"\s", str(Path(u.path).absolute())):
            raise ValueError(f"utts: path {str(u.path)!r} of {u.utt_id!r} contains white "
                             "space, which wav.scp cannot hold")
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(f"{u.speaker}-{u.chapter}", []).append(u.utt_id)
    files = {
        "wav.scp": [f"{u.utt_id} {Path(u.path).absolute()}" for u in utts],
        "text": [f"{u.utt_id} {u.text}" for u in utts],
        "utt2spk": [f"{u.utt_id} {u.speaker}-{u.chapter}" for u in utts],
        "spk2utt": [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())],
    }
    for name, lines in files.items():
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out
