"""ManifestDataset over a tiny corpus of tones (built here, no downloads, no synthesiser)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.dataset import ManifestDataset, read_manifest, window_samples
from training.labels import SILENCE, UNKNOWN

TINY_WORDS = ("yes", "no", "up")
TINY_LABELS = [*TINY_WORDS, UNKNOWN, SILENCE]


def make_tiny_corpus(
    root: Path,
    words: tuple[str, ...] = TINY_WORDS,
    voices_per_split: dict[str, int] | None = None,
    per_voice: int = 2,
    source: str = "synthetic",
) -> Path:
    """A manifest corpus where each word is a tone pattern and each voice a pitch/timbre.

    Words: two-tone sequences at word-specific frequencies; ``_unknown_``: random tones;
    ``_silence_``: rows with an empty path. Split by voice.
    """
    voices_per_split = voices_per_split or {"train": 4, "validation": 1, "test": 1}
    rate = 16000
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    voice_id = 0
    for split, n_voices in voices_per_split.items():
        for _ in range(n_voices):
            voice = f"tone:v{voice_id}"
            pitch = 0.9 + 0.05 * voice_id
            voice_id += 1
            for w_i, word in enumerate([*words, UNKNOWN]):
                for k in range(per_voice):
                    dur = rng.uniform(0.35, 0.6)
                    t = np.arange(int(dur * rate)) / rate
                    if word == UNKNOWN:
                        f1, f2 = rng.uniform(150, 3000, size=2)
                    else:
                        f1, f2 = 300.0 + 400.0 * w_i, 2500.0 - 500.0 * w_i
                    half = t.size // 2
                    f = np.where(np.arange(t.size) < half, f1, f2) * pitch
                    phase = 2 * np.pi * np.cumsum(f) / rate
                    x = 0.3 * (np.sin(phase) + 0.3 * np.sin(2 * phase))
                    x *= np.hanning(t.size)
                    rel = f"wav/{voice.replace(':', '_')}_{word}_{k}.wav"
                    sf.write(root / rel, x.astype(np.float32), rate, subtype="PCM_16")
                    rows.append([rel, word, split, voice, "tone", word])
            for _ in range(per_voice):
                rows.append(["", SILENCE, split, "", "online", ""])
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "voice", "engine", "text"])
        writer.writerows(rows)
    info = {"source": source, "labels": [*words, UNKNOWN, SILENCE], "sample_rate": rate}
    (root / "corpus.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def test_window_samples() -> None:
    assert window_samples(128) == 20720


def test_items_shape_and_labels(corpus: Path) -> None:
    ds = ManifestDataset(corpus, "train", augment=True, seed=1)
    assert ds.labels == TINY_LABELS
    assert ds.mode == "window" and ds.window == 20720
    feats, label = ds[0]
    assert feats.shape == (128, 128) and feats.dtype == torch.float32
    assert 0 <= label < len(TINY_LABELS)
    x, y = ds.batch(range(len(ds)))
    assert x.shape == (len(ds), 128, 128)
    assert torch.isfinite(x).all()
    assert set(y.tolist()) == set(range(len(TINY_LABELS)))


def test_silence_rows_are_generated(corpus: Path) -> None:
    ds = ManifestDataset(corpus, "validation", augment=False)
    silence = [i for i, t in enumerate(ds.targets) if ds.labels[t] == SILENCE]
    assert silence
    waves = ds.waveforms(silence)
    assert waves.shape == (len(silence), 20720)
    # speech items are louder than generated silence
    speech = [i for i, t in enumerate(ds.targets) if ds.labels[t] != SILENCE]
    assert np.abs(ds.waveforms(speech)).max() > np.abs(waves).max()


def test_evaluation_items_are_deterministic_and_centred(corpus: Path) -> None:
    a = ManifestDataset(corpus, "validation", augment=False, seed=0)
    b = ManifestDataset(corpus, "validation", augment=False, seed=0)
    a.set_epoch(3)
    assert torch.equal(a.batch(range(len(a)))[0], b.batch(range(len(b)))[0])
    wave = a.waveforms([0])[0]
    nz = np.flatnonzero(wave)
    centre = (nz[0] + nz[-1]) / 2
    assert abs(centre - wave.size / 2) < 200


def test_augmentation_is_seeded_per_epoch(corpus: Path) -> None:
    a = ManifestDataset(corpus, "train", augment=True, seed=5)
    b = ManifestDataset(corpus, "train", augment=True, seed=5)
    idx = list(range(8))
    assert np.array_equal(a.waveforms(idx), b.waveforms(idx))
    # same item, same epoch, other batch: same augmentation
    assert np.array_equal(a.waveforms([3])[0], b.waveforms(idx)[3])
    b.set_epoch(1)
    assert not np.array_equal(a.waveforms(idx), b.waveforms(idx))


def test_clip_mode_pads_to_128_frames(tmp_path: Path) -> None:
    root = make_tiny_corpus(tmp_path / "sc", source="speech-commands")
    ds = ManifestDataset(root, "train", augment=False)
    assert ds.mode == "clip" and ds.window == 16000
    feats, _ = ds[0]
    assert feats.shape == (128, 128)
    # frames 98.. are padding: the normalised value of a zero log-mel
    assert torch.allclose(feats[98:], torch.full((30, 128), ds.pad_value))


def test_unknown_labels_map_to_unknown(corpus: Path) -> None:
    ds = ManifestDataset(corpus, "train", labels=["yes", UNKNOWN, SILENCE])
    names = {ds.labels[t] for t in ds.targets}
    assert names == {"yes", UNKNOWN, SILENCE}
    with pytest.raises(ValueError, match="not in the labels"):
        ManifestDataset(corpus, "train", labels=["yes", "no"])


def test_split_by_voice(corpus: Path) -> None:
    rows = read_manifest(corpus)
    splits: dict[str, set[str]] = {}
    for r in rows:
        if r["voice"]:
            splits.setdefault(r["voice"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ManifestDataset(tmp_path, "train")
