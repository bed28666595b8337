"""Continuous speech by the corpus's voices: split by speaker and by text, resumable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.training.conftest import TINY_COUNTS
from training.continuous import (
    CONTINUOUS_COLUMNS,
    TEXT_SHARES,
    build_continuous,
    plan_continuous,
    read_continuous,
    split_texts,
)
from training.keyword_text import is_keyword_free
from training.sentences import CARRIERS
from training.voices import is_valid_clip


def test_texts_are_split_like_speakers() -> None:
    pools = split_texts(seed=0)
    for kind in ("sentence", "paragraph", "carrier"):
        seen: dict[int, str] = {}
        sizes = {}
        for split, by_kind in pools.items():
            sizes[split] = len(by_kind[kind])
            for index, _ in by_kind[kind]:
                assert index not in seen, (kind, index, split, seen[index])
                seen[index] = split
        total = sum(sizes.values())
        assert abs(sizes["train"] - TEXT_SHARES["train"] * total) <= 1
    assert pools == split_texts(seed=0) and pools != split_texts(seed=1)


def test_every_voice_speaks_its_own_splits_texts(stream_corpus: Path) -> None:
    rows = read_continuous(stream_corpus)
    header = (stream_corpus / "continuous.csv").read_text().splitlines()[0]
    assert header == ",".join(CONTINUOUS_COLUMNS)
    corpus = json.loads((stream_corpus / "corpus.json").read_text())
    split_of = {v["id"]: v["split"] for v in corpus["voices"]}
    pools = split_texts(seed=3)
    texts = {
        split: {t for _, t in by_kind["sentence"]} | {t for _, t in by_kind["paragraph"]}
        for split, by_kind in pools.items()
    }
    for row in rows:
        assert row["split"] == split_of[row["voice"]]
        assert is_valid_clip(stream_corpus / row["path"]), row["path"]
        assert is_keyword_free(row["text"])
        if row["kind"] in ("sentence", "paragraph"):
            assert row["text"] in texts[row["split"]]
        else:
            prefix, suffix = CARRIERS[int(row["group"][1:])]
            assert row["text"] == (prefix if row["kind"] == "prefix" else suffix)
    per_voice = {}
    for row in rows:
        per_voice.setdefault(row["voice"], []).append(row["kind"])
    for voice, kinds in per_voice.items():
        want = TINY_COUNTS[split_of[voice]]
        assert kinds.count("sentence") == want["sentence"]
        assert kinds.count("paragraph") == want["paragraph"]
    assert read_continuous(stream_corpus, "test") == [r for r in rows if r["split"] == "test"]


def test_same_plan_and_resume(stream_corpus: Path) -> None:
    a = plan_continuous(stream_corpus, seed=3, counts=TINY_COUNTS)
    assert a == plan_continuous(stream_corpus, seed=3, counts=TINY_COUNTS)
    before = {p: p.stat().st_mtime_ns for p in (stream_corpus / "continuous").rglob("*.wav")}
    build_continuous(stream_corpus, seed=3, counts=TINY_COUNTS, jobs=1, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (stream_corpus / "continuous").rglob("*.wav")}
    assert before == after  # nothing rendered again
    with (stream_corpus / "continuous.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(a)
