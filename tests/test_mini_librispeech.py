"""The synthetic mini-LibriSpeech corpus and the LibriSpeech reader both recipes use.

The corpus comes from the session fixture ``mini_librispeech`` (tests/conftest.py): real
espeak-ng speech through sox into FLAC. The layout checks walk the tree on their own (os.walk,
regular expressions, soundfile) rather than trusting the reader under test.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# the layout checks read the audio themselves; without soundfile (a GPU image) the module skips
soundfile = pytest.importorskip("soundfile")

from samplewise_rnnt.data import (
    Utterance,
    find_parts,
    read_librispeech_part,
    write_kaldi_dir,
    write_nemo_manifest,
)
from samplewise_rnnt.data import grammar
from samplewise_rnnt.data.mini_librispeech import PARTS, MissingToolError, generate

REPO = Path(__file__).resolve().parents[1]
PART_NAMES = ["dev-clean-mini", "test-clean-mini", "train-clean-mini"]
TEXT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def _gen(out: Path, settings: dict, **overrides):
    kwargs = {**settings, **overrides}
    return generate(out, jobs=2, progress=False, **kwargs)


def _table(path: Path) -> list[list[str]]:
    """Rows of a LibriSpeech SPEAKERS.TXT / CHAPTERS.TXT ('|' separated, ';' comments)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith(";"):
            continue
        rows.append([field.strip() for field in line.split("|")])
    return rows


# ---------------------------------------------------------------------------------------------
# Layout, contents, metadata files

def test_layout_matches_librispeech(mini_librispeech, mini_librispeech_settings):
    s = mini_librispeech_settings
    root = mini_librispeech
    assert sorted(p.name for p in root.iterdir()) == sorted(
        PART_NAMES + ["CHAPTERS.TXT", "README.TXT", "SPEAKERS.TXT"])
    expected_counts = {"train-clean-mini": s["train"], "dev-clean-mini": s["dev"],
                       "test-clean-mini": s["test"]}
    speakers_by_part = {}
    for part in PART_NAMES:
        n_utts = 0
        speakers_by_part[part] = set()
        for spk_dir in (root / part).iterdir():
            assert spk_dir.is_dir() and re.fullmatch(r"[1-9][0-9]*", spk_dir.name)
            speakers_by_part[part].add(spk_dir.name)
            for chap_dir in spk_dir.iterdir():
                assert chap_dir.is_dir() and re.fullmatch(r"[1-9][0-9]*", chap_dir.name)
                prefix = f"{spk_dir.name}-{chap_dir.name}"
                names = sorted(p.name for p in chap_dir.iterdir())
                flacs = [n for n in names if n.endswith(".flac")]
                assert names == sorted(flacs + [f"{prefix}.trans.txt"])
                # utterance numbers are 0000, 0001, ... as in LibriSpeech
                assert flacs == [f"{prefix}-{i:04d}.flac" for i in range(len(flacs))]
                lines = (chap_dir / f"{prefix}.trans.txt").read_text().split("\n")
                assert lines[-1] == ""  # newline-terminated
                ids = [line.split(" ", 1)[0] for line in lines[:-1]]
                assert ids == [f[:-5] for f in flacs]  # one line per file, sorted
                for line in lines[:-1]:
                    assert TEXT.match(line.split(" ", 1)[1]), line
                for f in flacs:
                    info = soundfile.info(str(chap_dir / f))
                    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
                    assert (info.samplerate, info.channels) == (16000, 1)
                    assert s["min_seconds"] <= info.duration <= s["max_seconds"]
                n_utts += len(flacs)
        assert n_utts == expected_counts[part]
    # speakers are disjoint across parts, as in LibriSpeech
    assert not speakers_by_part["train-clean-mini"] & speakers_by_part["dev-clean-mini"]
    assert not speakers_by_part["train-clean-mini"] & speakers_by_part["test-clean-mini"]
    assert not speakers_by_part["dev-clean-mini"] & speakers_by_part["test-clean-mini"]
    assert len(speakers_by_part["train-clean-mini"]) == s["train_speakers"]
    assert len(speakers_by_part["test-clean-mini"]) == s["test_speakers"]


def test_reader_parses_the_corpus(mini_librispeech):
    parts = find_parts(mini_librispeech)
    assert [p.name for p in parts] == PART_NAMES
    for part in parts:
        utts = read_librispeech_part(part)
        assert [u.utt_id for u in utts] == sorted(u.utt_id for u in utts)
        files = sorted(str(p) for p in part.rglob("*.flac"))
        assert sorted(str(u.path) for u in utts) == files
        for u in utts:
            assert isinstance(u, Utterance) and u.path.is_absolute()
            assert u.utt_id == f"{u.speaker}-{u.chapter}-{u.path.stem.rsplit('-', 1)[1]}"
            assert u.path == part / u.speaker / u.chapter / f"{u.utt_id}.flac"
            trans = (u.path.parent / f"{u.speaker}-{u.chapter}.trans.txt").read_text()
            assert f"{u.utt_id} {u.text}\n" in trans
            audio, rate = soundfile.read(str(u.path))
            assert u.duration == pytest.approx(len(audio) / rate, abs=1e-9)
            assert 0.01 < abs(audio).max() < 1.0  # speech, not silence, not clipped
            # sox's dither fills the pauses: no run of exact zeros as long as 10 ms
            zero = np.concatenate([[0], (audio == 0).astype(np.int8), [0]])
            starts, ends = np.flatnonzero(np.diff(zero) == 1), np.flatnonzero(np.diff(zero) == -1)
            assert (ends - starts).max(initial=0) < 160


def test_speakers_and_chapters_files(mini_librispeech):
    root = mini_librispeech
    utts = {p.name: read_librispeech_part(root / p.name) for p in find_parts(root)}
    speaker_part, speaker_minutes, chapter_minutes, chapter_reader = {}, {}, {}, {}
    for part, us in utts.items():
        for u in us:
            speaker_part[u.speaker] = part
            speaker_minutes[u.speaker] = speaker_minutes.get(u.speaker, 0) + u.duration / 60
            chapter_minutes[u.chapter] = chapter_minutes.get(u.chapter, 0) + u.duration / 60
            chapter_reader[u.chapter] = u.speaker

    speakers_txt = (root / "SPEAKERS.TXT").read_text()
    assert ";ID  |SEX| SUBSET           |MINUTES| NAME\n" in speakers_txt
    rows = _table(root / "SPEAKERS.TXT")
    assert sorted(r[0] for r in rows) == sorted(speaker_part)
    sexes = set()
    for spk, sex, subset, minutes, name in rows:
        assert sex in ("M", "F")
        sexes.add(sex)
        assert subset == speaker_part[spk]
        assert float(minutes) == pytest.approx(speaker_minutes[spk], abs=0.006)
        assert name.startswith("espeak-ng en")
        # Kaldi's LibriSpeech data_prep.sh finds the gender with: egrep "^$reader[ ]+\|"
        assert len([line for line in speakers_txt.splitlines()
                    if re.match(rf"^{spk}[ ]+\|", line)]) == 1
    assert sexes == {"M", "F"}
    # every speaker is a distinct voice
    assert len({r[4].split()[1] for r in rows}) == len(rows)

    assert ";ID      |READER|MINUTES| SUBSET           | PROJ.|BOOK ID| CH. TITLE " in \
        (root / "CHAPTERS.TXT").read_text()
    rows = _table(root / "CHAPTERS.TXT")
    assert sorted(r[0] for r in rows) == sorted(chapter_reader)
    for row in rows:
        assert len(row) == 8
        chapter, reader, minutes, subset = row[:4]
        assert reader == chapter_reader[chapter]
        assert subset == speaker_part[reader]
        assert float(minutes) == pytest.approx(chapter_minutes[chapter], abs=0.006)
    readme = (root / "README.TXT").read_text()
    assert "Settings: format 2, seed 0, utterances 6/2/2" in readme


def test_durations_follow_the_configured_range(tmp_path, mini_librispeech_settings):
    summary = _gen(tmp_path, mini_librispeech_settings, train=5, dev=0, test=0,
                   min_seconds=2.0, max_seconds=3.0, seed=5)
    assert [p.name for p in find_parts(tmp_path)] == ["train-clean-mini"]
    durations = [u.duration for u in read_librispeech_part(tmp_path / "train-clean-mini")]
    assert len(durations) == 5 and summary.durations["train-clean-mini"] == durations
    assert all(2.0 <= d <= 3.0 for d in durations), durations


def test_grammar_is_varied_and_within_its_vocabulary():
    rng = random.Random(0)
    vocab = set(grammar.vocabulary())
    assert 300 <= len(vocab) <= 1500
    sentences = [grammar.random_sentence(rng) for _ in range(2000)]
    assert len({s.transcript for s in sentences}) > 1800
    for s in sentences:
        assert TEXT.match(s.transcript)
        assert set(s.words) <= vocab
        assert s.spoken == s.spoken.lower() and s.spoken.replace(",", "").replace(
            ".", "").replace("?", "").upper().split() == s.words
    for target in (1, 3, 8, 15, 24):
        assert abs(len(grammar.sentence_near(rng, target).words) - target) <= 2
    with pytest.raises(ValueError, match="words must be >= 1, got 0"):
        grammar.sentence_near(rng, 0)


# ---------------------------------------------------------------------------------------------
# Determinism and regeneration

def test_small_grammar_is_small_and_within_the_book_vocabulary():
    rng = random.Random(0)
    vocab = set(grammar.small_vocabulary())
    assert 40 <= len(vocab) <= 100 and vocab <= set(grammar.vocabulary())
    sentences = [grammar.random_sentence(rng, "small") for _ in range(2000)]
    used = {w for s in sentences for w in s.words}
    assert used == vocab  # every word of the vocabulary occurs, and no other
    assert len({s.transcript for s in sentences}) > 1000
    for s in sentences:
        assert TEXT.match(s.transcript) and 2 <= len(s.words) <= 10
        assert s.spoken.replace(".", "").upper().split() == s.words
    for target in (2, 5, 12):
        assert abs(len(grammar.sentence_near(rng, target, grammar="small").words) - target) <= 2
    with pytest.raises(ValueError, match=r"grammar must be one of \['book', 'small'\], got 'tiny'"):
        grammar.random_sentence(rng, "tiny")
    with pytest.raises(TypeError, match="grammar must be a str, got int"):
        grammar.sentence_near(rng, 3, grammar=1)


def test_small_grammar_corpus(tmp_path, mini_librispeech_settings):
    summary = _gen(tmp_path, mini_librispeech_settings, train=4, dev=0, test=0, grammar="small",
                   min_seconds=1.0, max_seconds=4.0)
    utts = read_librispeech_part(tmp_path / "train-clean-mini")
    assert len(utts) == 4 and summary.durations["train-clean-mini"] == [u.duration for u in utts]
    vocab = set(grammar.small_vocabulary())
    for u in utts:
        assert set(u.text.split()) <= vocab and 1.0 <= u.duration <= 4.0
    readme = (tmp_path / "README.TXT").read_text()
    assert "duration 1-4 s, grammar small" in readme
    # the same directory with the book grammar is another corpus: refused
    with pytest.raises(ValueError, match="already holds files of another corpus or of other settings"):
        _gen(tmp_path, mini_librispeech_settings, train=4, dev=0, test=0, min_seconds=1.0, max_seconds=4.0)
    with pytest.raises(ValueError, match=r"grammar must be one of \['book', 'small'\], got 'tiny'"):
        _gen(tmp_path / "other", mini_librispeech_settings, grammar="tiny")


def test_same_seed_same_bytes_other_seed_differs(tmp_path, mini_librispeech,
                                                 mini_librispeech_settings):
    reference = _tree(mini_librispeech)
    # jobs=1 this time: the output must not depend on the number of workers either
    generate(tmp_path / "again", jobs=1, progress=False, **mini_librispeech_settings)
    assert _tree(tmp_path / "again") == reference

    _gen(tmp_path / "other", mini_librispeech_settings, seed=1)
    other = _tree(tmp_path / "other")
    flac = lambda tree: sorted(v for k, v in tree.items() if k.endswith(".flac"))  # noqa: E731
    assert not set(flac(other)) & set(flac(reference))
    texts = lambda root: sorted(u.text for p in find_parts(root)  # noqa: E731
                                for u in read_librispeech_part(p))
    assert texts(tmp_path / "other") != texts(mini_librispeech)


def test_regenerates_only_what_is_missing(tmp_path, mini_librispeech,
                                          mini_librispeech_settings):
    root = tmp_path / "corpus"
    shutil.copytree(mini_librispeech, root)
    reference = _tree(root)
    flacs = sorted(root.rglob("*.flac"))
    deleted, truncated = flacs[0], flacs[-1]
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:100])  # broken file: synthesised again
    # an utterance whose transcript line is missing is synthesised again, but its (identical)
    # file is left untouched
    dev_flac = sorted((root / "dev-clean-mini").rglob("*.flac"))[0]
    trans = dev_flac.parent / (dev_flac.name.rsplit("-", 1)[0] + ".trans.txt")
    trans.write_text("".join(line + "\n" for line in trans.read_text().splitlines()
                             if not line.startswith(dev_flac.stem + " ")))
    (root / "CHAPTERS.TXT").unlink()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.flac")}

    summary = _gen(root, mini_librispeech_settings)
    assert (summary.generated, summary.kept) == (3, 7)
    assert _tree(root) == reference
    for p, mtime in before.items():
        if p != truncated:
            assert p.stat().st_mtime_ns == mtime, p

    summary = _gen(root, mini_librispeech_settings)
    assert (summary.generated, summary.kept) == (0, 10)
    assert _tree(root) == reference


def test_refuses_a_directory_with_another_corpus(tmp_path, mini_librispeech,
                                                 mini_librispeech_settings):
    root = tmp_path / "corpus"
    shutil.copytree(mini_librispeech, root)
    with pytest.raises(ValueError, match="already holds files of another corpus or of other "
                                         "settings"):
        _gen(root, mini_librispeech_settings, seed=7)
    (root / "README.TXT").unlink()
    with pytest.raises(ValueError, match=r"holds files .*train-clean-mini"):
        _gen(root, mini_librispeech_settings)


# ---------------------------------------------------------------------------------------------
# Errors

def test_missing_espeak_ng_from_the_command_line(tmp_path):
    """A real missing executable: the command runs with a PATH that holds neither tool."""
    out = tmp_path / "corpus"
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin"),
           "PYTHONPATH": str(REPO / "plugin")}
    proc = subprocess.run([sys.executable, "-m", "samplewise_rnnt.data.mini_librispeech",
                           "--out", str(out), "--train", "2", "--dev", "0", "--test", "0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "espeak-ng was not found" in proc.stderr
    assert "apt-get install espeak-ng sox flac" in proc.stderr
    assert not out.exists()


def test_missing_tools_from_python(tmp_path, mini_librispeech_settings):
    with pytest.raises(MissingToolError, match=r"espeak-ng was not found \(looked for "
                                               r"'/nonexistent/espeak-ng' on PATH\); install "
                                               r"it with: apt-get install espeak-ng sox flac"):
        _gen(tmp_path, mini_librispeech_settings, espeak_ng="/nonexistent/espeak-ng")
    with pytest.raises(MissingToolError, match="sox was not found .*apt-get install"):
        _gen(tmp_path, mini_librispeech_settings, sox="no-such-sox-here")
    assert isinstance(MissingToolError("x"), RuntimeError)


def test_unwritable_directory(tmp_path, mini_librispeech_settings):
    # Tests may run as root, which ignores permission bits: a path below a regular file
    # cannot be created by anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(ValueError, match=r"out: directory '.*a-file/corpus' is not writable"):
        _gen(blocker / "corpus", mini_librispeech_settings)
    with pytest.raises(ValueError, match=r"out: directory '.*a-file' is not writable"):
        _gen(blocker, mini_librispeech_settings)
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.parametrize("override, message", [
    (dict(train=-1), "train must be an integer >= 0, got -1"),
    (dict(dev=1.5), "dev must be an integer >= 0, got 1.5"),
    (dict(train=0, dev=0, test=0), "nothing to generate"),
    (dict(test_speakers=0), "test_speakers must be an integer >= 1, got 0"),
    (dict(train=200, train_speakers=200), r"must be at most 80, got 203"),
    (dict(min_seconds=0.2), "min_seconds must be a number >= 0.5, got 0.2"),
    (dict(max_seconds=1.2), r"max_seconds must be a number in \[min_seconds \+ 0.5, 60\], "
                            "got 1.2"),
    (dict(seed=-3), "seed must be an integer >= 0, got -3"),
    (dict(jobs=0), "jobs must be an integer >= 1, got 0"),
])
def test_bad_settings(tmp_path, mini_librispeech_settings, override, message):
    kwargs = {**mini_librispeech_settings, "jobs": 2, **override}
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "corpus", progress=False, **kwargs)
    assert not (tmp_path / "corpus").exists()


# ---------------------------------------------------------------------------------------------
# The reader on real LibriSpeech names and on broken layouts

def _fake_part(root: Path, part: str, chapters: dict[tuple[int, int], list[str]]) -> Path:
    """A hand-made LibriSpeech part with short tones as audio."""
    for (spk, chap), texts in chapters.items():
        d = root / part / str(spk) / str(chap)
        d.mkdir(parents=True)
        lines = []
        for i, text in enumerate(texts):
            n = 1600 * (i + 1)
            tone = 0.1 * np.sin(np.arange(n) * 0.05)
            soundfile.write(str(d / f"{spk}-{chap}-{i:04d}.flac"), tone, 16000)
            lines.append(f"{spk}-{chap}-{i:04d} {text}\n")
        (d / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return root / part


def test_reader_on_librispeech_part_names(tmp_path):
    _fake_part(tmp_path, "train-clean-100", {(19, 198): ["HELLO WORLD", "IT'S ME"]})
    other = _fake_part(tmp_path, "test-other", {(1688, 142285): ["A"],
                                                 (367, 130732): ["B C", "D", "E"]})
    (tmp_path / "SPEAKERS.TXT").write_text(";ID |SEX\n")
    (tmp_path / "not-a-part").mkdir()
    assert [p.name for p in find_parts(tmp_path)] == ["test-other", "train-clean-100"]
    utts = read_librispeech_part(other)
    assert [(u.utt_id, u.speaker, u.chapter, u.text, u.duration) for u in utts] == [
        ("1688-142285-0000", "1688", "142285", "A", 0.1),
        ("367-130732-0000", "367", "130732", "B C", 0.1),
        ("367-130732-0001", "367", "130732", "D", 0.2),
        ("367-130732-0002", "367", "130732", "E", 0.3),
    ]


def test_find_parts_errors(tmp_path):
    with pytest.raises(ValueError, match=r"root: '.*missing' is not a directory"):
        find_parts(tmp_path / "missing")
    (tmp_path / "train-clean").write_text("a file, not a part\n")
    with pytest.raises(ValueError, match=r"holds no LibriSpeech part"):
        find_parts(tmp_path)


def _break(tmp_path: Path, how: str) -> Path:
    part = _fake_part(tmp_path, "dev-clean", {(84, 121123): ["ONE TWO", "THREE", "FOUR"]})
    chap = part / "84" / "121123"
    trans = chap / "84-121123.trans.txt"
    if how == "missing flac":
        (chap / "84-121123-0001.flac").unlink()
    elif how == "bad file name":
        (chap / "84-121123-0001.flac").rename(chap / "84-121123-1.flac")
    elif how == "foreign file name":
        (chap / "84-121123-0002.flac").rename(chap / "85-121123-0002.flac")
    elif how == "flac without line":
        shutil.copy(chap / "84-121123-0000.flac", chap / "84-121123-0003.flac")
    elif how == "lower-case text":
        trans.write_text(trans.read_text().replace("THREE", "three"))
    elif how == "double space":
        trans.write_text(trans.read_text().replace("ONE TWO", "ONE  TWO"))
    elif how == "duplicate line":
        trans.write_text(trans.read_text() + "84-121123-0000 ONE TWO\n")
    elif how == "other chapter in line":
        trans.write_text(trans.read_text().replace("84-121123-0002", "84-121124-0002"))
    elif how == "no text":
        trans.write_text(trans.read_text().replace("84-121123-0002 FOUR", "84-121123-0002"))
    elif how == "missing transcript":
        trans.unlink()
    elif how == "bad speaker dir":
        (part / "84").rename(part / "speaker84")
    elif how == "stray file":
        (part / "84" / "notes.txt").write_text("x\n")
    elif how == "broken flac":
        (chap / "84-121123-0001.flac").write_bytes(b"fLaC not really")
    return part


@pytest.mark.parametrize("how, message", [
    ("missing flac", r"84-121123.trans.txt:2: audio file .*84-121123-0001.flac is missing"),
    ("bad file name", r"84-121123-1.flac: unexpected entry"),
    ("foreign file name", r"85-121123-0002.flac: file name does not start with 84-121123-"),
    ("flac without line", r"84-121123-0003.flac: no line for '84-121123-0003'"),
    ("lower-case text", r"84-121123.trans.txt:2: text must be upper-case .* got 'three'"),
    ("double space", r"84-121123.trans.txt:1: text must be upper-case"),
    ("duplicate line", r"84-121123.trans.txt:4: utterance '84-121123-0000' appears twice"),
    ("other chapter in line", r"trans.txt:3: utterance '84-121124-0002' does not belong"),
    ("no text", r"84-121123.trans.txt:3: expected '<speaker>-<chapter>-<utt> TEXT'"),
    ("missing transcript", r"84-121123.trans.txt: transcript file is missing"),
    ("bad speaker dir", r"speaker84: expected a speaker directory with a numeric name"),
    ("stray file", r"84/notes.txt: expected a chapter directory with a numeric name"),
    ("broken flac", r"84-121123-0001.flac: cannot read the audio file"),
])
def test_reader_rejects_broken_layouts(tmp_path, how, message):
    part = _break(tmp_path, how)
    with pytest.raises(ValueError, match=message):
        read_librispeech_part(part)


def test_reader_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"part_dir: '.*nothing' is not a directory"):
        read_librispeech_part(tmp_path / "nothing")
    (tmp_path / "dev-clean").mkdir()
    with pytest.raises(ValueError, match=r"part_dir: '.*dev-clean' is empty"):
        read_librispeech_part(tmp_path / "dev-clean")


# ---------------------------------------------------------------------------------------------
# Shared preparation for the two recipes

def test_nemo_manifest(tmp_path, mini_librispeech):
    utts = read_librispeech_part(mini_librispeech / PARTS["train"])
    path = write_nemo_manifest(utts, tmp_path / "manifests" / "train.json")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len(utts)
    for row, u in zip(rows, utts):
        assert list(row) == ["audio_filepath", "duration", "text"]
        assert row["audio_filepath"] == str(u.path) and os.path.isabs(row["audio_filepath"])
        assert row["duration"] == soundfile.info(row["audio_filepath"]).duration
        assert row["text"] == u.text.lower()
    with pytest.raises(ValueError, match="utts: expected at least one utterance, got none"):
        write_nemo_manifest([], tmp_path / "empty.json")
    with pytest.raises(ValueError, match=f"utts: utterance id '{utts[0].utt_id}' appears twice"):
        write_nemo_manifest([utts[0], utts[0]], tmp_path / "twice.json")


def test_kaldi_dir_reads_in_espnet(tmp_path, mini_librispeech):
    from espnet2.fileio.read_text import read_2columns_text
    from espnet2.fileio.sound_scp import SoundScpReader

    utts = read_librispeech_part(mini_librispeech / PARTS["train"])
    given = list(reversed(utts))
    out = write_kaldi_dir(given, tmp_path / "data" / "train")
    assert given == list(reversed(utts))  # input untouched
    files = {name: (out / name).read_text().splitlines()
             for name in ("wav.scp", "text", "utt2spk", "spk2utt")}
    for name, lines in files.items():
        keys = [line.split(" ", 1)[0] for line in lines]
        assert keys == sorted(keys, key=lambda k: k.encode()), name  # LC_ALL=C order
    assert files["text"] == [f"{u.utt_id} {u.text}" for u in utts]
    utt2spk = dict(line.split(" ") for line in files["utt2spk"])
    spk2utt = {line.split(" ")[0]: line.split(" ")[1:] for line in files["spk2utt"]}
    assert utt2spk == {u.utt_id: f"{u.speaker}-{u.chapter}" for u in utts}
    assert {(s, x) for s, xs in spk2utt.items() for x in xs} == {
        (s, x) for x, s in utt2spk.items()}
    for u, s in utt2spk.items():
        assert u.startswith(s + "-")  # Kaldi: speaker id is a prefix of the utterance id

    reader = SoundScpReader(str(out / "wav.scp"), dtype="float32")
    texts = read_2columns_text(out / "text")
    for u in utts:
        rate, audio = reader[u.utt_id]
        assert rate == 16000 and audio.ndim == 1
        assert len(audio) / rate == pytest.approx(u.duration, abs=1e-9)
        assert texts[u.utt_id] == u.text

    spaced = Utterance("1-2-0000", "1", "2", Path("/a b/1-2-0000.flac"), "A", 1.0)
    with pytest.raises(ValueError, match=r"path '/a b/1-2-0000.flac' of '1-2-0000' contains "
                                         "white space"):
        write_kaldi_dir([spaced], tmp_path / "bad")


def test_recipe_script_help():
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "mini_librispeech" /
                                                "generate.py"), "--help"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for option in ("--out", "--seed", "--train", "--dev", "--test", "--min-seconds",
                   "--max-seconds", "--jobs"):
        assert option in proc.stdout
    assert "data/mini_librispeech" in proc.stdout
