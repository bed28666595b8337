"""A tiny synthetic corpus with continuous speech, shared by the stream tests (built once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: keywords of the tiny corpus (one with a near miss in the sentences, one short)
STREAM_WORDS = ["yes", "three", "go"]
#: per split voice: a few sentences, one paragraph for held-out voices, two carriers
TINY_COUNTS = {
    "train": {"sentence": 2, "paragraph": 0, "carrier": 1},
    "validation": {"sentence": 3, "paragraph": 1, "carrier": 2},
    "test": {"sentence": 3, "paragraph": 1, "carrier": 2},
}


@pytest.fixture(scope="session")
def stream_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng speaks three keywords, _unknown_ words, sentences and carrier halves, with
    five voices (three train, one validation, one test)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/install-system-packages.sh")
    from training.continuous import build_continuous
    from training.synth import build_corpus

    root = build_corpus(
        tmp_path_factory.mktemp("stream-corpus") / "corpus",
        seed=3,
        renditions_per_word=3,
        heldout_renditions=1,
        engines=["espeak-ng"],
        words=STREAM_WORDS,
        variants=["m1", "m3", "f2", "f4", "m7"],
        jobs=2,
        progress=False,
    )
    build_continuous(root, seed=3, counts=TINY_COUNTS, jobs=2, progress=False)
    return root
