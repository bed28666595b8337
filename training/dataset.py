"""One dataset over any corpus manifest (synthetic corpus or Speech Commands V2).

``ManifestDataset(root, split, labels, augment, seed)`` reads ``root/manifest.csv`` (see
docs/CONTRACTS.md), keeps the rows of one split, and loads every WAV of it into memory once
(int16, the clips are short), so epochs never touch the disk. Items are built online:

- ``window`` mode (synthetic corpus): the trimmed utterance goes into a window of
  ``1 + (S - 400) // 160 = window_frames`` real frames (S = 20,720 samples for 128 frames), at a
  random offset when augmenting, centred otherwise; the model never sees padded frames.
- ``clip`` mode (Speech Commands): the paper's 1 s clips, features padded (or cut) to
  ``window_frames`` frames with the value a zero log-mel takes after normalisation.

``_silence_`` rows (empty path) are made online from noise / digital zero / faint babble
(deterministic per item for validation and test). Features are computed for a whole batch at
once with :class:`models.Fbank` and normalised with the paper's constants.
Shapes: B batch, S samples, T frames (``window_frames``), F mel bins (128).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models import Fbank, FeatureConfig
from training.augment import AugmentConfig, WaveAugmenter, item_rng
from training.labels import SILENCE, UNKNOWN

__all__ = ["ManifestDataset", "read_corpus_info", "read_manifest", "window_samples"]

MODES = ("window", "clip")


def window_samples(frames: int, config: FeatureConfig = FeatureConfig()) -> int:
    """Samples that make exactly ``frames`` Kaldi frames (20,720 for 128 at 16 kHz)."""
    return config.frame_length + (frames - 1) * config.frame_shift


def read_manifest(root: str | Path) -> list[dict[str, str]]:
    """The rows of ``root/manifest.csv`` as dicts (path, label, split, voice, engine, text)."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}; build the corpus first (lmukws data ...)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for key in ("path", "label", "split"):
        if rows and key not in rows[0]:
            raise ValueError(f"{path}: missing column {key!r}")
    return rows


def read_corpus_info(root: str | Path) -> dict[str, Any]:
    """``root/corpus.json`` (provenance), or {} when absent."""
    path = Path(root) / "corpus.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _read_wav(path: Path, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate}, expected {sample_rate}")
    return np.ascontiguousarray(data[:, 0])


class ManifestDataset:
    """Items (features [T, F] float32 normalised, label index) of one split of a corpus.

    Args:
        root: corpus folder with ``manifest.csv`` (and ``corpus.json``).
        split: train | validation | test.
        labels: class order; default: ``corpus.json`` labels, else sorted manifest labels.
            Manifest labels outside it map to ``_unknown_`` when that is a label, else raise.
        augment: online waveform augmentation (training) or none (evaluation).
        seed: fixes augmentation, silence generation and shuffling.
        window_frames: T, frames per item (128).
        mode: "window" or "clip"; default "clip" for Speech Commands, "window" otherwise.
        augment_config: knobs of the waveform augmentation.
        max_items: keep N rows evenly spaced over the split (faster validation, smoke runs).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        labels: Sequence[str] | None = None,
        augment: bool = False,
        seed: int = 0,
        window_frames: int = 128,
        mode: str | None = None,
        augment_config: AugmentConfig | None = None,
        feature_config: FeatureConfig = FeatureConfig(),
        max_items: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.window_frames = window_frames
        self.feature_config = feature_config
        self.info = read_corpus_info(self.root)
        rows = [r for r in read_manifest(self.root) if r["split"] == split]
        if max_items is not None and max_items < len(rows):
            keep = np.linspace(0, len(rows) - 1, max_items).round().astype(int)
            rows = [rows[i] for i in keep]
        if not rows:
            raise ValueError(f"{self.root}: no rows in split {split!r}")
        if labels is None:
            labels = self.info.get("labels") or sorted({r["label"] for r in rows})
        self.labels = list(labels)
        index = {label: i for i, label in enumerate(self.labels)}
        targets = []
        for r in rows:
            label = r["label"]
            if label not in index:
                if UNKNOWN not in index:
                    raise ValueError(f"label {label!r} of {r['path']!r} is not in the labels")
                label = UNKNOWN
            targets.append(index[label])
        self.targets = np.asarray(targets, dtype=np.int64)
        self.rows = rows
        source = str(self.info.get("source", ""))
        self.mode = mode or ("clip" if "speech" in source.lower() else "window")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        rate = feature_config.sample_rate
        self.window = (
            window_samples(window_frames, feature_config) if self.mode == "window" else rate
        )
        self.waves: list[np.ndarray | None] = [
            _read_wav(self.root / r["path"], rate) if r["path"] else None for r in rows
        ]
        for r, w in zip(rows, self.waves, strict=True):
            if w is None and r["label"] != SILENCE:
                raise ValueError(f"row with empty path must be {SILENCE}, got {r['label']!r}")
        babble = [
            _to_float(w)
            for w, r in zip(self.waves, rows, strict=True)
            if w is not None and r["label"] == UNKNOWN
        ]
        self.augmenter = WaveAugmenter(
            augment_config or AugmentConfig(), self.window, rate, babble=babble[:2000]
        )
        self.fbank = Fbank(feature_config, normalize=True)
        norm = feature_config
        #: a zero log-mel after normalisation: the paper's padding value
        self.pad_value = (0.0 - norm.norm_mean) / (2.0 * norm.norm_std)

    def draw_pool(self, engine_repeat: dict[str, int] | None = None) -> np.ndarray:
        """Row indices [N'] an epoch draws from: every row once, the rows of each engine
        named in ``engine_repeat`` that many times (oversampling a voice source)."""
        repeat = dict(engine_repeat or {})
        engines = [r.get("engine", "") for r in self.rows]
        missing = sorted(set(repeat) - set(engines))
        if missing:
            raise ValueError(
                f"engine_repeat names {missing}, not an engine of split {self.split!r} "
                f"(it has {sorted(set(engines) - {''})})"
            )
        times = np.array([repeat.get(e, 1) for e in engines], dtype=np.int64)
        return np.repeat(np.arange(len(self.rows)), times)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on (seed, epoch, item)."""
        self.epoch = epoch

    def counts(self) -> dict[str, int]:
        """Items per label."""
        c = Counter(self.labels[t] for t in self.targets)
        return {label: c.get(label, 0) for label in self.labels}

    def provenance(self) -> dict[str, Any]:
        """What the model was trained on: corpus.json, split, counts, mode."""
        voices = {r.get("voice", "") for r in self.rows}
        return {
            "root": str(self.root),
            "corpus": self.info,
            "split": self.split,
            "items": len(self),
            "voices": len(voices),
            "counts": self.counts(),
            "mode": self.mode,
            "window_samples": self.window,
        }

    def waveforms(self, indices: Sequence[int]) -> np.ndarray:
        """Windows [B, S] float32 of the given items (augmented when ``augment``)."""
        S = self.window
        out = np.zeros((len(indices), S), dtype=np.float32)
        rngs = {i: item_rng(self.seed, self.epoch if self.augment else 0, i) for i in indices}
        speech_pos = [p for p, i in enumerate(indices) if self.waves[i] is not None]
        for p, i in enumerate(indices):
            if self.waves[i] is None:
                out[p] = self.augmenter.silence(rngs[i])
        if not speech_pos:
            return out
        utts = [_to_float(self.waves[indices[p]]) for p in speech_pos]  # type: ignore[arg-type]
        if self.augment:
            mixed = self.augmenter.speech(utts, [rngs[indices[p]] for p in speech_pos])
            out[speech_pos] = mixed  # type: ignore[assignment]
        else:
            for p, utt in zip(speech_pos, utts, strict=True):
                out[p] = _fit(utt, S) if self.mode == "clip" else _centre(utt, S)
        return out

    def features(self, waveforms: np.ndarray | Tensor, fbank: Fbank | None = None) -> Tensor:
        """Normalised fbank [B, T, F] of windows [B, S], padded/cut to T in clip mode; on the
        windows' device when given a tensor and an ``fbank`` there (training on a GPU)."""
        if isinstance(waveforms, np.ndarray):
            waveforms = torch.from_numpy(waveforms)
        with torch.no_grad():
            feats = (fbank or self.fbank)(waveforms)
        T = self.window_frames
        if feats.shape[1] < T:
            pad = feats.new_full((feats.shape[0], T - feats.shape[1], feats.shape[2]), 0.0)
            feats = torch.cat([feats, pad + self.pad_value], dim=1)
        return feats[:, :T].contiguous()

    def batch(self, indices: Sequence[int], raw: bool = False) -> tuple[Tensor, Tensor]:
        """(features [B, T, F] float32, labels [B] int64) for the given items; with ``raw``
        the augmented windows [B, S] instead of their features (for :meth:`features` on the
        training device)."""
        indices = [int(i) for i in indices]
        waves = self.waveforms(indices)
        feats = torch.from_numpy(waves) if raw else self.features(waves)
        return feats, torch.from_numpy(self.targets[indices])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        feats, labels = self.batch([index])
        return feats[0], int(labels[0])

    def batches(
        self, batch_size: int, shuffle: bool = False, drop_last: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches over the split (shuffled per epoch with ``seed``)."""
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(len(self))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if drop_last and len(chunk) < batch_size:
                break
            yield self.batch(chunk)


def _to_float(wave: np.ndarray) -> np.ndarray:
    return wave.astype(np.float32) / np.float32(32768.0)


def _centre(utt: np.ndarray, window: int) -> np.ndarray:
    out = np.zeros(window, dtype=np.float32)
    n = utt.size
    if n >= window:
        skip = (n - window) // 2
        return utt[skip : skip + window].copy()
    start = (window - n) // 2
    out[start : start + n] = utt
    return out


def _fit(clip: np.ndarray, window: int) -> np.ndarray:
    """A Speech Commands clip as the paper reads it: zero-padded or cut at the end."""
    out = np.zeros(window, dtype=np.float32)
    n = min(clip.size, window)
    out[:n] = clip[:n]
    return out
