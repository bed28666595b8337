"""The synthetic corpus: a tiny one built with the synthesisers installed here."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.labels import SILENCE, UNKNOWN
from training.synth import (
    MANIFEST_COLUMNS,
    Plan,
    build_corpus,
    plan_corpus,
    register_synth_parser,
)
from training.voices import (
    ENGINES,
    SAMPLE_RATE,
    base_voices,
    engine_available,
    is_valid_clip,
    trim,
)

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)

WORDS = ["yes", "three"]
VARIANTS = ["m1", "m3", "f2", "f4", "klatt"]
SECOND = "flite" if engine_available("flite") else None


def _tiny(out: Path, seed: int = 7) -> Path:
    engines = ["espeak-ng", *([SECOND] if SECOND else [])]
    return build_corpus(
        out,
        seed=seed,
        renditions_per_word=4,
        heldout_renditions=2,
        engines=engines,
        words=WORDS,
        variants=VARIANTS,
        jobs=2,
        progress=False,
    )


def _plan(engines: list[str], seed: int = 0, renditions: int = 4) -> Plan:
    """The plan of a tiny corpus (two words, five espeak-ng variants, two held-out renditions)."""
    return plan_corpus(
        seed=seed,
        renditions=renditions,
        heldout_renditions=2,
        engines=engines,
        words=WORDS,
        variants=VARIANTS,
        jobs=1,
    )


def _rows(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _pcm(path: Path) -> tuple[np.ndarray, Any]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0, params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny(tmp_path_factory.mktemp("synth") / "corpus")


def test_manifest_columns_and_labels(corpus: Path) -> None:
    header = (corpus / "manifest.csv").read_text().splitlines()[0]
    assert header == ",".join(MANIFEST_COLUMNS) == "path,label,split,voice,engine,text"
    rows = _rows(corpus)
    assert {r["label"] for r in rows} == {*WORDS, UNKNOWN, SILENCE}
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["labels"] == [*WORDS, UNKNOWN, SILENCE]
    assert meta["sample_rate"] == SAMPLE_RATE and meta["seed"] == 7
    assert meta["generator_version"]
    for split in ("train", "validation", "test"):
        assert all(meta["counts"][split].get(w, 0) > 0 for w in WORDS), split
    assert meta["counts"]["train"]["yes"] == 4
    if SECOND:
        assert SECOND in {r["engine"] for r in rows}


def test_clips_are_16k_mono_pcm16_speech(corpus: Path) -> None:
    rows = [r for r in _rows(corpus) if r["path"]]
    assert rows
    for row in rows:
        path = corpus / row["path"]
        assert is_valid_clip(path), row
        x, params = _pcm(path)
        assert params.framerate == 16000 and params.nchannels == 1 and params.sampwidth == 2
        assert 0.1 < len(x) / 16000 < 1.6, row
        peak = np.abs(x).max()
        assert 10 ** (-3.5 / 20) < peak < 10 ** (-2.5 / 20), row  # normalised to -3 dBFS
        assert np.sqrt(np.mean(x**2)) > 0.02, row  # speech energy, not silence
        assert row["text"] and row["voice"].startswith(row["engine"] + ":")


def test_no_voice_or_speaker_in_two_splits(corpus: Path) -> None:
    split_of: dict[str, str] = {}
    for row in _rows(corpus):
        if row["voice"]:
            assert split_of.setdefault(row["voice"], row["split"]) == row["split"], row
    meta = json.loads((corpus / "corpus.json").read_text())
    speaker_split: dict[str, str] = {}
    for voice in meta["voices"]:
        assert speaker_split.setdefault(voice["speaker"], voice["split"]) == voice["split"]
        assert meta["speakers"][voice["speaker"]] == voice["split"]


def test_silence_rows_have_no_path(corpus: Path) -> None:
    rows = _rows(corpus)
    silence = [r for r in rows if r["label"] == SILENCE]
    assert silence and all(r["path"] == "" and r["voice"] == "" for r in silence)
    assert all(r["path"] for r in rows if r["label"] != SILENCE)
    for split in ("train", "validation", "test"):
        voices = {r["voice"] for r in rows if r["split"] == split and r["voice"]}
        assert sum(r["split"] == split for r in silence) == len(voices)


def test_unknown_share_and_near_misses(corpus: Path) -> None:
    rows = _rows(corpus)
    unknown = [r for r in rows if r["label"] == UNKNOWN]
    assert 0.15 < len(unknown) / len(rows) < 0.35
    texts = {r["text"] for r in unknown}
    assert not texts & set(WORDS)
    near = {
        "yet",
        "yell",
        "mess",
        "yeast",
        "chess",
        "free",
        "thee",
        "threw",
        "thread",
        "freeze",
        "thrill",
    }
    assert texts & near


def test_same_seed_same_corpus_and_resume(corpus: Path, tmp_path: Path) -> None:
    again = _tiny(tmp_path / "again")
    assert (again / "manifest.csv").read_bytes() == (corpus / "manifest.csv").read_bytes()
    espeak = [r["path"] for r in _rows(corpus) if r["engine"] == "espeak-ng"][:5]
    for path in espeak:  # espeak-ng is deterministic: same bytes
        assert (again / path).read_bytes() == (corpus / path).read_bytes()
    # Resuming keeps every valid file and rewrites the same manifest.
    stamps = {p: p.stat().st_mtime_ns for p in (again / "audio").rglob("*.wav")}
    (again / "manifest.csv").unlink()
    _tiny(again)
    assert {p: p.stat().st_mtime_ns for p in (again / "audio").rglob("*.wav")} == stamps
    assert (again / "manifest.csv").read_bytes() == (corpus / "manifest.csv").read_bytes()


def test_other_seed_other_voices() -> None:
    a = _plan(["espeak-ng"], seed=1)
    b = _plan(["espeak-ng"], seed=2)
    assert set(a.voices) != set(b.voices)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_renders_a_word(engine: str, tmp_path: Path) -> None:
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed")
    voices = base_voices(engine)
    if not voices:
        pytest.skip(f"{engine} has no English voice installed")
    out = tmp_path / "yes.wav"
    seconds = voices[0].render("yes", out)
    assert is_valid_clip(out) and 0.1 < seconds < 1.5
    x, _ = _pcm(out)
    assert np.sqrt(np.mean(x**2)) > 0.02


def test_trim_strips_silence() -> None:
    rng = np.random.default_rng(0)
    tone = 0.5 * np.sin(2 * np.pi * 200 * np.arange(4000) / SAMPLE_RATE).astype(np.float32)
    x = np.concatenate([np.zeros(8000), tone, np.zeros(8000)]).astype(np.float32)
    x += 1e-4 * rng.standard_normal(len(x)).astype(np.float32)
    y = trim(x)
    assert 4000 <= len(y) <= 4000 + 2 * 480 + 320


def test_cli_parser() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_synth_parser(sub)
    args = parser.parse_args(
        [
            "synth",
            "--out",
            "x",
            "--renditions",
            "3",
            "--jobs",
            "1",
            "--engines",
            "espeak-ng,flite",
            "--limit-words",
            "2",
            "--unknown-fraction",
            "0.2",
            "--seed",
            "5",
        ]
    )
    assert args.out == Path("x") and args.renditions == 3 and args.limit_words == 2
    assert args.engines == "espeak-ng,flite" and args.seed == 5 and callable(args.func)


def test_more_training_renditions_keep_the_heldout_splits() -> None:
    """Growing the training split (``--renditions``) leaves validation and test clip for clip as
    they were, so a model trained on the larger corpus is scored on the same held-out clips."""
    plans = [_plan(["espeak-ng", "flite"], renditions=renditions) for renditions in (4, 12)]
    small, large = ([c for c in p.clips if c.split != "train"] for p in plans)
    assert small and small == large
    train = [sum(c.split == "train" for c in p.clips) for p in plans]
    assert train[1] > 2 * train[0]


def test_the_default_engines_leave_kokoro_out() -> None:
    """Without ``--engines`` the corpus is ``data/synth``'s: every Debian engine; Kokoro (an
    hour of CPU) renders only when named."""
    from training.voices import DEFAULT_ENGINES

    plan = plan_corpus(
        seed=0, renditions=4, heldout_renditions=2, words=WORDS, variants=VARIANTS, jobs=1
    )
    used = {voice.engine for voice, _ in plan.voices.values()}
    assert "espeak-ng" in used and used <= set(DEFAULT_ENGINES)
    assert set(DEFAULT_ENGINES) == set(ENGINES) - {"kokoro"}


TRAIN_ONLY = [e for e in ("espeak-ng-mbrola-accented", "pico") if base_voices(e)]


@pytest.mark.skipif(not TRAIN_ONLY, reason="no train-only engine (mbrola accents, pico) here")
def test_train_only_engines_keep_the_heldout_splits() -> None:
    """Engines outside HOLDOUT_ORDER only add training speakers: validation and test stay the
    same clips, so models trained with and without them are scored alike."""
    plans = [
        _plan(engines, renditions=12) for engines in (["espeak-ng"], ["espeak-ng", *TRAIN_ONLY])
    ]
    before, after = ([c for c in p.clips if c.split != "train"] for p in plans)
    assert before and before == after
    added = {c.voice.engine for c in plans[1].clips if c.split == "train"}
    assert set(TRAIN_ONLY) <= added
    assert all(
        plans[1].speakers[v.speaker] == "train"
        for v, _ in plans[1].voices.values()
        if v.engine in TRAIN_ONLY
    )


def test_mbrola_engines_split_english_and_accented_databases() -> None:
    native = [v.base for v in base_voices("espeak-ng-mbrola")]
    accented = base_voices("espeak-ng-mbrola-accented")
    assert not any(b.endswith("-en") for b in native)
    assert all(v.base.endswith("-en") for v in accented)
    # the speaker is the recorded database, shared with no English one
    assert {v.speaker for v in accented}.isdisjoint(f"mbrola:{b.split('-')[1]}" for b in native)


def test_pico_markup_carries_rate_and_pitch() -> None:
    from training.voices import _pico_markup

    assert _pico_markup("yes", {}) == "yes"
    assert _pico_markup("a<b", {"rate": 90, "pitch": 110}) == (
        "<speed level='90'><pitch level='110'>a&lt;b</pitch></speed>"
    )
