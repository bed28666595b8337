"""Speech for the load tests: keywords with pauses, 16 kHz mono float32 in [-1, 1].

Sources, in order: WAVs of a prepared corpus (``data/synth/manifest.csv``, test split first:
the synthetic corpus of Debian voices), else keywords spoken by ``espeak-ng`` (a subprocess),
else tone bursts in noise (the model's cost does not depend on the audio; detections do).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from models.config import FeatureConfig

#: the model's input rate: every track and word is at it
RATE = FeatureConfig().sample_rate
DEFAULT_CORPUS = Path("data/synth")
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def _read_wav(path: Path) -> np.ndarray:
    import soundfile

    x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != RATE:
        from streaming.resample import resample

        x = resample(x, int(rate), RATE)
    return x.astype(np.float32)


def corpus_words(corpus: Path, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``count`` keyword clips from a corpus manifest (test split first)."""
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("path") and not r["label"].startswith("_")]
    test = [r for r in rows if r.get("split") == "test"] or rows
    picks = rng.choice(len(test), size=min(count, len(test)), replace=False) if test else []
    clips = []
    for i in picks:
        path = corpus / test[int(i)]["path"]
        if path.is_file():
            clips.append(_read_wav(path))
    return clips


def espeak_words(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Keywords spoken by espeak-ng (empty when it is not installed)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return []
    clips = []
    with tempfile.TemporaryDirectory(prefix="lmukws-bench-") as tmp:
        for i in range(count):
            word = WORDS[i % len(WORDS)]
            path = Path(tmp) / f"{i}.wav"
            speed = int(rng.integers(140, 190))
            subprocess.run(
                [exe, "-v", "en-us", "-s", str(speed), "-w", str(path), word],
                check=True,
                capture_output=True,
                timeout=30,
            )
            clips.append(_read_wav(path))
    return clips


def tone_words(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Stand-in 'words': 300 ms tone bursts."""
    t = np.arange(int(0.3 * RATE)) / RATE
    return [
        (0.3 * np.sin(2 * np.pi * float(rng.uniform(300, 3000)) * t)).astype(np.float32)
        for _ in range(count)
    ]


def speech_track(
    seconds: float, seed: int = 0, corpus: Path = DEFAULT_CORPUS, words: int = 24
) -> tuple[np.ndarray, str]:
    """A track of ``seconds`` seconds: keywords separated by 0.3-1.0 s of faint noise.

    Returns (samples [S] float32 at 16 kHz, source name)."""
    rng = np.random.default_rng(seed)
    source = "corpus"
    clips = corpus_words(corpus, words, rng)
    if not clips:
        source = "espeak-ng"
        try:
            clips = espeak_words(min(words, 10), rng)
        except (OSError, subprocess.SubprocessError):
            clips = []
    if not clips:
        source, clips = "tones", tone_words(words, rng)
    total = int(seconds * RATE)
    pieces, length, i = [], 0, 0
    while length < total:
        gap = int(rng.uniform(0.3, 1.0) * RATE)
        pieces.append(np.zeros(gap, np.float32))
        clip = clips[i % len(clips)]
        pieces.append(clip / max(1e-3, float(np.abs(clip).max())) * 0.5)
        length += gap + clip.size
        i += 1
    track = np.concatenate(pieces)[:total]
    track += (0.002 * rng.standard_normal(total)).astype(np.float32)
    return np.clip(track, -1.0, 1.0).astype(np.float32), source
