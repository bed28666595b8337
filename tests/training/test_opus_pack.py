"""Packing a corpus into one Opus stream and back: same clips, same lengths, aligned audio."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.opus_pack import main, pack, unpack
from training.voices import SAMPLE_RATE, read_wav, write_wav

sf = pytest.importorskip("soundfile")
if "OPUS" not in sf.available_subtypes("OGG"):
    pytest.skip("this libsndfile cannot write Opus", allow_module_level=True)


def _voiced(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A vowel-like clip: harmonics of f0 under a rise-and-fall envelope, plus a little noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    x = x * np.sin(np.pi * t / seconds) ** 2
    x += 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    rows = []
    for i, (split, seconds, f0) in enumerate(
        [
            ("train", 0.41, 120.0),
            ("train", 0.63, 210.0),
            ("validation", 0.5, 160.0),
            ("test", 0.45, 180.0),
        ]
    ):
        path = f"audio/yes/clip{i}.wav"
        write_wav(root / path, _voiced(seconds, f0, i))
        rows.append(
            {
                "path": path,
                "label": "yes",
                "split": split,
                "voice": f"v{i}",
                "engine": "espeak-ng",
                "text": "yes",
            }
        )
    rows.append(
        {"path": "", "label": "_silence_", "split": "train", "voice": "", "engine": "", "text": ""}
    )
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps({"source": "synthetic"}))
    return root


def test_round_trip_keeps_train_and_validation_clips_aligned(corpus: Path, tmp_path: Path) -> None:
    stats = pack(corpus, tmp_path / "packed", progress=False)
    assert stats["clips"] == 3  # the test clip stays behind
    assert unpack(tmp_path / "packed", tmp_path / "copy", threads=2) == 3
    with (tmp_path / "copy" / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "validation"} and len(rows) == 4
    assert not (tmp_path / "copy" / "audio/yes/clip3.wav").exists()
    for i in range(3):
        original, _ = read_wav(corpus / f"audio/yes/clip{i}.wav")
        copy, rate = read_wav(tmp_path / "copy" / f"audio/yes/clip{i}.wav")
        assert rate == SAMPLE_RATE and len(copy) == len(original)
        # lossy but in place: a shift of a few milliseconds would lower this far below 0.9
        corr = float(np.dot(original, copy) / np.linalg.norm(original) / np.linalg.norm(copy))
        assert corr > 0.9
    assert json.loads((tmp_path / "copy" / "corpus.json").read_text()) == {"source": "synthetic"}


def test_cli_packs_and_unpacks(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pack", str(corpus), str(tmp_path / "p"), "--level", "0.9"]) == 0
    assert "3 clips" in capsys.readouterr().out
    assert main(["unpack", str(tmp_path / "p"), str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "audio/yes/clip2.wav").is_file()
