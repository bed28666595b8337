"""Training windows cut from continuous audio at random offsets, labelled as the server sees them.

The server scores a frame with the model's per-frame logits over a stream of any length (the
LMU's memory holds exactly the last 128 frames) and pools them with a sliding mean over the last
``pool_frames`` frames (1 s). A stream window is ``history + pool + lookahead`` frames of audio:
``model.frame_logits`` over it, averaged over the ``pool`` frames that precede the last
``lookahead`` frames (``pooled_logits``), is exactly the served pooled logit at the last final
frame, because every pooled frame has its full 128 frames of history and its look-ahead.

Each window is cut from a scene built at random (``SCENE_SHARES``):

- ``keyword``: a keyword clip alone, inside a carrier phrase of the same voice, or in a sequence
  of two or three keywords, sometimes after a sentence fragment of the same voice; placed so the
  pooled span holds the whole keyword, or (``partial_share``) so it cuts it;
- ``sentence``: a keyword-free sentence or paragraph (``lmukws data continuous``) at a random
  offset; ``recording``: real recorded speech without keywords (``lmukws data recordings``, use
  ``train`` only); ``unknown``: a run of ``_unknown_`` words; ``silence``: noise or nothing;
- ``hard`` (with ``hard_negatives``, ``hard_share`` of the windows): a window of training speech
  where an earlier model fired (``lmukws mine-negatives``), as it was cut.

Label: the keyword whose clip lies inside the pooled span (at least ``whole_fraction`` of it;
the one that ends last if several), else ``_unknown_`` when speech overlaps the pooled span by
``min_speech_s``, else ``_silence_``. A keyword that the window cuts is therefore ``_unknown_``:
the model learns to fire once the word is complete, not on its first syllable. With
``ambiguous_fraction`` a window holding most of a keyword, but not ``whole_fraction`` of it,
gets ``IGNORE`` (-1) and no loss. The scene then
goes through the corpus's waveform augmentation (EQ, band limits, reverb, noise, babble, gain;
no speed change or placement, which would move the spans).

Shapes: S samples of a window, T = history + pool + lookahead frames, F mel bins.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models import Fbank, FeatureConfig
from training.augment import AugmentConfig, WaveAugmenter, change_speed, item_rng
from training.continuous import read_continuous
from training.dataset import read_corpus_info, read_manifest, window_samples
from training.hard_negatives import read_hard_negatives
from training.labels import SILENCE, UNKNOWN

__all__ = ["IGNORE", "SCENE_SHARES", "StreamWindowConfig", "StreamWindows", "pooled_logits"]

#: the label of a window left out of the loss (``StreamWindowConfig.ambiguous_fraction``)
IGNORE = -1

SCENE_SHARES: dict[str, float] = {
    "keyword": 0.5,
    "sentence": 0.2,
    "recording": 0.1,
    "unknown": 0.1,
    "silence": 0.1,
}


@dataclass(frozen=True)
class StreamWindowConfig:
    """Geometry and mix of the stream windows."""

    history_frames: int = 133  # >= the LMU's 128 frames + the conv stack's left context
    pool_frames: int = 100  # the engine's pooling window (1 s)
    lookahead_frames: int = 5  # the model's look-ahead (frames after the last pooled one)
    scene_shares: tuple[tuple[str, float], ...] = tuple(SCENE_SHARES.items())
    partial_share: float = 0.25  # of keyword scenes: the pooled span cuts the keyword
    context_shares: tuple[tuple[str, float], ...] = (
        ("alone", 0.4),
        ("carrier", 0.35),
        ("sequence", 0.25),
    )
    lead_in_prob: float = 0.3  # a keyword scene starts with a sentence fragment of the voice
    whole_fraction: float = 0.9
    #: a window whose pooled span holds at least this share of a keyword, but not
    #: ``whole_fraction`` of it, is left out of the loss (``IGNORE``) instead of ``_unknown_``:
    #: an almost whole word is neither clearly the keyword nor clearly not (0: off)
    ambiguous_fraction: float = 0.0
    min_speech_s: float = 0.1
    speed: tuple[float, float] = (0.9, 1.1)
    hard_share: float = 0.15  # of all windows, when mined hard negatives are given

    @property
    def frames(self) -> int:
        return self.history_frames + self.pool_frames + self.lookahead_frames

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamWindowConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown stream keys {sorted(unknown)}; known: {sorted(fields)}")
        values = dict(data)
        for key in ("scene_shares", "context_shares"):
            if isinstance(values.get(key), dict):
                values[key] = tuple(values[key].items())
            elif isinstance(values.get(key), list):
                values[key] = tuple(tuple(x) for x in values[key])
        if isinstance(values.get("speed"), list):
            values["speed"] = tuple(values["speed"])
        config = cls(**values)
        if not 0.0 <= config.ambiguous_fraction < config.whole_fraction <= 1.0:
            raise ValueError(
                "stream needs 0 <= ambiguous_fraction < whole_fraction <= 1, got "
                f"{config.ambiguous_fraction} and {config.whole_fraction}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pooled_logits(frame_logits: Tensor, config: StreamWindowConfig) -> Tensor:
    """The served pooled logits [B, K] of stream windows' frame logits [B, T, K]."""
    start = config.history_frames
    return frame_logits[:, start : start + config.pool_frames].mean(dim=1)


def _float(wave: np.ndarray) -> np.ndarray:
    return wave.astype(np.float32) / np.float32(32768.0)


def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(data[:, 0])


class StreamWindows:
    """Stream windows of one split (features [T, F], label) drawn deterministically per
    (seed, epoch, index).

    Args:
        root: synthetic corpus with ``continuous.csv``.
        split: the split whose voices (and texts) speak.
        labels: class order (the model's).
        recordings: a ``lmukws data recordings`` folder; its ``use=train`` speech is drawn for
            ``recording`` scenes (never the evaluation-only recordings).
        hard_negatives: a ``lmukws mine-negatives`` folder, drawn for ``hard`` scenes.
        config, augment_config, feature_config, seed, augment: as named.
        engine_repeat: voice source (the rows' ``engine``) → its voices' relative weight when a
            scene picks a voice (the recipe's ``engine_repeat``); others count once.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        labels: Sequence[str],
        *,
        recordings: str | Path | None = None,
        hard_negatives: str | Path | None = None,
        config: StreamWindowConfig | None = None,
        augment_config: AugmentConfig | None = None,
        feature_config: FeatureConfig = FeatureConfig(),
        seed: int = 0,
        augment: bool = True,
        engine_repeat: dict[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.config = config or StreamWindowConfig()
        self.seed = seed
        self.augment = augment
        self.epoch = 0
        self.feature_config = feature_config
        self.rate = feature_config.sample_rate
        c = self.config
        self.window = window_samples(c.frames, feature_config)
        hop, length = feature_config.frame_shift, feature_config.frame_length
        #: the pooled frames' audio, in samples
        last = c.history_frames + c.pool_frames - 1
        self.pool_span = (c.history_frames * hop, last * hop + length)
        rows = [r for r in read_manifest(self.root) if r["split"] == split and r["path"]]
        keyword_rows = [
            r for r in rows if r["label"] in self.index and r["label"] not in (UNKNOWN, SILENCE)
        ]
        unknown_rows = [r for r in rows if r["label"] == UNKNOWN]
        self.keywords: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
        for r in keyword_rows:
            self.keywords[r["voice"]].append((r["label"], _read(self.root / r["path"])))
        self.unknown: dict[str, list[np.ndarray]] = defaultdict(list)
        for r in unknown_rows:
            self.unknown[r["voice"]].append(_read(self.root / r["path"]))
        self.voices = sorted(self.keywords)
        self.unknown_voices = sorted(self.unknown)
        self.sentences: dict[str, list[np.ndarray]] = defaultdict(list)
        self.carriers: dict[str, list[tuple[np.ndarray | None, np.ndarray | None]]] = defaultdict(
            list
        )
        groups: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
        continuous = read_continuous(self.root, split)
        for r in continuous:
            wave = _read(self.root / r["path"])
            if r["kind"] in ("sentence", "paragraph"):
                self.sentences[r["voice"]].append(wave)
            else:
                groups[r["voice"], r["group"]][r["kind"]] = wave
        for (voice, _), parts in sorted(groups.items()):
            self.carriers[voice].append((parts.get("prefix"), parts.get("suffix")))
        self.sentence_voices = sorted(self.sentences)
        # how often each voice is picked, relative: its engine's ``engine_repeat`` (else 1)
        repeat = dict(engine_repeat or {})
        engine_of = {r["voice"]: r.get("engine", "") for r in rows}
        engine_of.update({r["voice"]: r.get("engine", "") for r in continuous})
        self.voice_weight = {v: float(repeat.get(engine_of.get(v, ""), 1)) for v in engine_of}
        self.recordings: list[np.ndarray] = []
        if recordings is not None:
            from training.recordings import read_recordings

            for rec in read_recordings(recordings, use="train", kind="speech"):
                self.recordings.append(_read(Path(rec.path)))
        self.hard: list[np.ndarray] = []
        if hard_negatives is not None:
            self.hard = [_read(path) for path in read_hard_negatives(hard_negatives)]
            if any(w.size != self.window for w in self.hard):
                raise ValueError(f"{hard_negatives}: windows of another length than {self.window}")
        babble = [_float(w) for v in self.unknown_voices for w in self.unknown[v]][:2000]
        self.augmenter = WaveAugmenter(
            dataclasses.replace(augment_config or AugmentConfig(), speed_prob=0.0),
            self.window,
            self.rate,
            babble=babble,
        )
        self.fbank = Fbank(feature_config, normalize=True)
        shares = dict(c.scene_shares)
        if not self.recordings:
            shares.pop("recording", None)
        if not self.sentence_voices:
            shares.pop("sentence", None)
        if self.hard:
            rest = sum(shares.values())
            shares = {k: v * (1 - c.hard_share) / rest for k, v in shares.items()}
            shares["hard"] = c.hard_share
        self.scene_kinds = list(shares)
        self.scene_weights = np.array([shares[k] for k in self.scene_kinds], dtype=np.float64)
        self.scene_weights /= self.scene_weights.sum()
        if not self.voices:
            raise ValueError(f"{self.root}: no keyword clips in split {split!r}")

    def _pick_voice(self, rng: random.Random, voices: list[str]) -> str:
        """One of ``voices``, uniformly unless ``engine_repeat`` weights some sources."""
        weights = [self.voice_weight[v] for v in voices]
        if all(w == 1.0 for w in weights):
            return rng.choice(voices)  # the unweighted draw, as before the knob
        return rng.choices(voices, weights=weights)[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def provenance(self) -> dict[str, Any]:
        """What the stream windows are drawn from."""
        return {
            "root": str(self.root),
            "corpus": read_corpus_info(self.root).get("generator_version"),
            "split": self.split,
            "voices": len(self.voices),
            "keyword_clips": sum(len(v) for v in self.keywords.values()),
            "sentences": sum(len(v) for v in self.sentences.values()),
            "carriers": sum(len(v) for v in self.carriers.values()),
            "recordings": len(self.recordings),
            "hard_negatives": len(self.hard),
            "config": self.config.to_dict(),
        }

    # -- scenes -----------------------------------------------------------------------------

    def _gap(self, rng: random.Random, lo: float, hi: float) -> np.ndarray:
        return np.zeros(int(rng.uniform(lo, hi) * self.rate), np.float32)

    def _keyword_scene(self, rng: random.Random) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """A phrase with keywords: audio and each keyword's (label, start, end) in it."""
        c = self.config
        voice = self._pick_voice(rng, self.voices)
        contexts = dict(c.context_shares)
        if not self.carriers.get(voice):
            contexts.pop("carrier", None)
        context = rng.choices(list(contexts), weights=list(contexts.values()))[0]
        speed = rng.uniform(*c.speed)
        parts: list[tuple[str | None, np.ndarray]] = []
        if rng.random() < c.lead_in_prob and self.sentences.get(voice):
            sentence = _float(rng.choice(self.sentences[voice]))
            cut = rng.randint(0, max(0, sentence.size - self.rate))
            parts += [(None, sentence[cut : cut + rng.randint(self.rate // 2, 2 * self.rate)])]
        if context == "carrier":
            prefix, suffix = rng.choice(self.carriers[voice])
            label, clip = rng.choice(self.keywords[voice])
            parts += [(None, _float(prefix))] if prefix is not None else []
            parts += [(label, _float(clip))]
            parts += [(None, _float(suffix))] if suffix is not None else []
        elif context == "sequence":
            clips = self.keywords[voice]
            for label, clip in rng.sample(clips, min(rng.choice((2, 2, 3)), len(clips))):
                parts.append((label, _float(clip)))
        else:
            label, clip = rng.choice(self.keywords[voice])
            parts.append((label, _float(clip)))
        pieces: list[np.ndarray] = []
        spans: list[tuple[str, int, int]] = []
        n = 0
        for j, (label, audio) in enumerate(parts):
            if j:
                gap = self._gap(rng, 0.04, 0.15)
                pieces.append(gap)
                n += gap.size
            audio = change_speed(audio, speed)
            if label is not None:
                spans.append((label, n, n + audio.size))
            pieces.append(audio)
            n += audio.size
        return np.concatenate(pieces), spans

    def _place_keyword(
        self, scene: np.ndarray, spans: list[tuple[str, int, int]], rng: random.Random
    ) -> tuple[np.ndarray, int]:
        """The window [S] with the scene placed so the pooled span holds (or cuts) a keyword;
        returns the scene's offset in the window."""
        lo, hi = self.pool_span
        _, start, end = rng.choice(spans)
        length = end - start
        if rng.random() < self.config.partial_share:
            if rng.random() < 0.5:  # still being spoken at the end of the pooled span
                end_at = hi + int(rng.uniform(0.15, 0.8) * length)
            else:  # its start already left the pooled span
                end_at = lo + int(rng.uniform(0.2, 0.85) * length)
        else:
            end_at = rng.randint(min(hi, lo + length), hi)
        offset = end_at - end
        return _paste(scene, offset, self.window), offset

    def _speech_fill(self, sources: list[np.ndarray], rng: random.Random) -> np.ndarray:
        """Consecutive clips of ``sources`` (int16) with short pauses, from a random point, to
        fill the window."""
        out = np.zeros(self.window, np.float32)
        pos = -rng.randint(0, self.window // 2)
        while pos < self.window:
            clip = _float(rng.choice(sources))
            out += _paste(clip, pos, self.window)
            pos += clip.size + int(rng.uniform(0.1, 0.8) * self.rate)
        return out

    def _unknown_scene(self, rng: random.Random) -> np.ndarray:
        voice = self._pick_voice(rng, self.unknown_voices)
        pool = self.unknown[voice]
        words = [_float(w) for w in rng.sample(pool, min(len(pool), rng.randint(2, 5)))]
        pieces = []
        for j, word in enumerate(words):
            if j:
                pieces.append(self._gap(rng, 0.05, 0.4))
            pieces.append(word)
        scene = np.concatenate(pieces)
        lo = self.pool_span[0]
        end_at = rng.randint(lo + int(0.2 * self.rate), self.window)
        return _paste(scene, end_at - scene.size, self.window)

    def item(self, index: int) -> tuple[np.ndarray, int, str]:
        """One window: (audio [S] float32 before augmentation, label index, scene kind)."""
        seed = int(item_rng(self.seed, self.epoch if self.augment else 0, index).integers(2**63))
        rng = random.Random(seed)
        kind = rng.choices(self.scene_kinds, weights=self.scene_weights.tolist())[0]
        spans: list[tuple[str, int, int]] = []
        if kind == "keyword":
            scene, kw = self._keyword_scene(rng)
            audio, offset = self._place_keyword(scene, kw, rng)
            spans = [(label, s + offset, e + offset) for label, s, e in kw]
        elif kind == "sentence":
            voice = self._pick_voice(rng, self.sentence_voices)
            audio = self._speech_fill(self.sentences[voice], rng)
        elif kind == "recording":
            audio = self._speech_fill(self.recordings, rng)
        elif kind == "unknown":
            audio = self._unknown_scene(rng)
        elif kind == "hard":
            audio = _float(rng.choice(self.hard))
        else:
            audio = np.zeros(self.window, np.float32)
        return audio, self._label(audio, spans, kind), kind

    def _label(self, audio: np.ndarray, spans: list[tuple[str, int, int]], kind: str) -> int:
        c = self.config
        lo, hi = self.pool_span
        whole, ambiguous = [], False
        for label, s, e in spans:
            inside = max(0, min(e, hi) - max(s, lo))
            if inside >= c.whole_fraction * (e - s):
                whole.append((e, label))
            elif c.ambiguous_fraction > 0 and inside >= c.ambiguous_fraction * (e - s):
                ambiguous = True
        if whole:
            return self.index[max(whole)[1]]
        if ambiguous:
            return IGNORE
        if kind == "silence":
            return self.index[SILENCE]
        hop = self.feature_config.frame_shift
        frames = (hi - lo) // hop
        active = np.abs(audio[lo : lo + frames * hop]).reshape(frames, hop).max(axis=1) > 1e-3
        speech = float(active.sum()) * hop / self.rate  # seconds of frames with sound
        return self.index[UNKNOWN if speech >= c.min_speech_s else SILENCE]

    # -- batches ----------------------------------------------------------------------------

    def waveforms(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Windows [B, S] (augmented when ``augment``), labels [B], scene kinds."""
        items = [self.item(int(i)) for i in indices]
        audio = np.stack([a for a, _, _ in items])
        labels = np.array([y for _, y, _ in items], dtype=np.int64)
        kinds = [k for _, _, k in items]
        if self.augment:
            rngs = [item_rng(self.seed + 1, self.epoch, int(i)) for i in indices]
            speech = [b for b, k in enumerate(kinds) if k != "silence"]
            if speech:
                mixed = self.augmenter.speech([audio[b] for b in speech], [rngs[b] for b in speech])
                audio[speech] = mixed
            for b, k in enumerate(kinds):
                if k == "silence":
                    audio[b] = self.augmenter.silence(rngs[b])
        return audio, labels, kinds

    def batch(self, indices: Sequence[int], raw: bool = False) -> tuple[Tensor, Tensor]:
        """(features [B, T, F] float32, labels [B] int64); with ``raw`` the augmented windows
        [B, S] instead (for :meth:`features` on the training device)."""
        audio, labels, _ = self.waveforms(indices)
        if raw:
            return torch.from_numpy(audio), torch.from_numpy(labels)
        return self.features(torch.from_numpy(audio)), torch.from_numpy(labels)

    def features(self, audio: Tensor, fbank: Fbank | None = None) -> Tensor:
        """Features [B, T, F] of windows [B, S], on their device with an ``fbank`` there."""
        with torch.no_grad():
            feats = (fbank or self.fbank)(audio)
        return feats[:, : self.config.frames].contiguous()


def _paste(scene: np.ndarray, offset: int, window: int) -> np.ndarray:
    """``scene`` placed at ``offset`` (may be negative or run past the end) in a zero window."""
    out = np.zeros(window, np.float32)
    a, b = max(0, offset), min(window, offset + scene.size)
    if b > a:
        out[a:b] = scene[a - offset : b - offset]
    return out
