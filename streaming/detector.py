"""Keyword detector: a pure function over a small per-session state.

Per frame it receives posteriors p [K] (the pooled clip posteriors of the model), smooths them
over the last ``smoothing_frames`` frames and fires keyword k when all of these hold:

- k is the arg-max of the smoothed posteriors and its smoothed score is >= ``thresholds[k]``
  (labels that must never fire, e.g. ``_unknown_`` and ``_silence_``, have an infinite
  threshold);
- k has been the top label above its threshold for ``patience_frames`` consecutive frames, or,
  as an early decision, its smoothed score is already >= ``early_threshold``;
- the warm-up (``warmup_frames`` after start or reset) is over;
- no keyword fired in the last ``refractory_frames`` frames (a wake word's firing does not
  count: the command may follow at once);
- k is armed: after firing, k re-arms only once its smoothed score drops below
  ``rearm_fraction`` × its threshold, so one long utterance, whose score wobbles around the
  threshold while the word passes through the pooling window, fires once;
- with a wake word (``wake_label``), every other keyword fires only within
  ``command_frames`` frames after the wake word fired (the wake word itself always can);
- with the speech gate (``speech_gate_frames`` > 0), no keyword but the wake word fires while
  the model's latest stretch of other speech (pooled ``_unknown_`` posterior above
  ``SPEECH_GATE_POSTERIOR``) lasted at least ``speech_gate_frames`` and ended at most
  ``speech_gate_recent_frames`` ago (``speech_gate``): a command follows a pause or a short
  carrier ("the word is ..."), not a long sentence, which is where most false alarms were.

With ``background_frames`` > 0 the posteriors are first normalised by the session's own
background (``normalize_background``): a voice or a room whose speech keeps lifting one
keyword's posterior a little makes that keyword harder to fire. Per label that can fire, a slow
average b of its posterior (frames up to ``background_ceiling`` only, so keywords said clearly
do not count; time constant ``background_frames``, updated once a block of
``BACKGROUND_BLOCK`` frames, used one to two blocks late so a spoken keyword does not raise its
own bar) divides the posterior's odds by (b + floor) / floor. A wake word is left out: the
user says it again and again, and half-heard sayings would raise its bar until it is missed.

Shapes: T frames in one call, K labels, W = ``smoothing_frames``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

NEVER_FIRE = ("_unknown_", "_silence_")
#: the label whose pooled posterior tells other speech, for the speech gate
OTHER_SPEECH = "_unknown_"
#: the speech gate counts frames whose ``OTHER_SPEECH`` posterior is above this
SPEECH_GATE_POSTERIOR = 0.5
#: frames per block of the background average (``normalize_background``): it is updated at
#: each block's end and used from the block after next
BACKGROUND_BLOCK = 100


POSTERIORS = ("sigmoid", "softmax")
#: settings that may also be given in milliseconds (converted with the model's frame shift)
MS_SETTINGS = {
    "pooling_ms": "pooling_frames",
    "refractory_ms": "refractory_frames",
    "warmup_ms": "warmup_frames",
    "command_window_ms": "command_window_frames",
    "background_ms": "background_frames",
    "speech_gate_ms": "speech_gate_frames",
    "speech_gate_recent_ms": "speech_gate_recent_frames",
}


@dataclass(frozen=True)
class DetectorSettings:
    """How pooled posteriors become detections: the defaults of every session's detector.

    The one place these defaults are written: a checkpoint's ``detector`` section overrides them
    (``updated``), ``server.settings.Settings`` and ``EngineConfig`` derive their own defaults
    from them. ``pooling_frames``: the sliding mean of per-frame logits (the clip head over
    ~1 s); ``posterior``: sigmoid (BCE training) or softmax (CE) of the pooled logits;
    ``thresholds``: per-label defaults over ``threshold``; ``command_window_frames``: the
    wake-word grammar's window; ``command_sensitivity``: the point of the calibrated DET curve
    that the commands take under a wake word (None: the session's sensitivity);
    ``background_*``: the background normalisation (0 frames: off); ``speech_gate_*``: the
    speech gate (0 frames: off). The others are ``DetectorConfig``'s.
    """

    threshold: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    smoothing_frames: int = 5
    patience_frames: int = 3
    refractory_frames: int = 100
    warmup_frames: int = 30
    early_threshold: float | None = 0.9
    rearm_fraction: float = 0.8
    command_window_frames: int = 300
    command_sensitivity: float | None = None
    pooling_frames: int = 100
    posterior: str = "sigmoid"
    background_frames: int = 0
    background_floor: float = 1e-3
    background_ceiling: float = 0.5
    speech_gate_frames: int = 0
    speech_gate_recent_frames: int = 100

    def __post_init__(self) -> None:
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.pooling_frames < 1:
            raise ValueError(f"pooling_frames must be >= 1, got {self.pooling_frames}")
        if self.command_sensitivity is not None and not 0 <= self.command_sensitivity <= 1:
            raise ValueError(
                f"command_sensitivity must be in [0, 1], got {self.command_sensitivity}"
            )
        _check_background(self.background_frames, self.background_floor, self.background_ceiling)
        _check_speech_gate(self.speech_gate_frames, self.speech_gate_recent_frames)

    @property
    def detector_settings(self) -> DetectorSettings:
        """Just these settings (a subclass such as ``EngineConfig`` carries more)."""
        return DetectorSettings(**{n: getattr(self, n) for n in _SETTING_NAMES})

    def updated(
        self, source: Mapping[str, Any] | None, frame_ms: float, labels: Sequence[str] = ()
    ) -> DetectorSettings:
        """These settings with ``source``'s keys applied: field names, the ``MS_SETTINGS``
        keys (milliseconds, rounded to frames of ``frame_ms``), ``thresholds`` ({label: p},
        merged over the current ones) and keys that are ``labels`` (per-label thresholds).
        Unknown keys are ignored (a checkpoint's section may carry more); None leaves a
        setting as it is, except ``early_threshold`` (None: off)."""
        source = source or {}
        changes: dict[str, Any] = {}
        thresholds = dict(self.thresholds)
        thresholds.update({k: float(v) for k, v in source.items() if k in labels})
        thresholds.update({k: float(v) for k, v in (source.get("thresholds") or {}).items()})
        for key, value in source.items():
            if key in labels or key == "thresholds":
                continue
            if value is None and key != "early_threshold":
                continue
            elif key in MS_SETTINGS:
                changes[MS_SETTINGS[key]] = max(0, round(float(value) / frame_ms))
            elif key in _SETTING_NAMES:
                changes[key] = value
        if "pooling_frames" in changes:
            changes["pooling_frames"] = max(1, int(changes["pooling_frames"]))
        return dataclasses.replace(self, thresholds=thresholds, **changes)


_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(DetectorSettings))


def _check_background(frames: int, floor: float, ceiling: float) -> None:
    if frames < 0:
        raise ValueError(f"background_frames must be >= 0 (0: off), got {frames}")
    if not floor > 0:
        raise ValueError(f"background_floor must be > 0, got {floor}")
    if not 0 < ceiling <= 1:
        raise ValueError(f"background_ceiling must be in (0, 1], got {ceiling}")


def _check_speech_gate(frames: int, recent: int) -> None:
    if frames < 0:
        raise ValueError(f"speech_gate_frames must be >= 0 (0: off), got {frames}")
    if recent < 1:
        raise ValueError(f"speech_gate_recent_frames must be >= 1, got {recent}")


_DEFAULTS = DetectorSettings()


@dataclass(frozen=True)
class DetectorConfig:
    """Fixed settings of one session's detector (defaults: ``DetectorSettings``')."""

    labels: tuple[str, ...]
    thresholds: np.ndarray  # [K] float64; inf = never fires
    smoothing_frames: int = _DEFAULTS.smoothing_frames
    patience_frames: int = _DEFAULTS.patience_frames
    refractory_frames: int = _DEFAULTS.refractory_frames
    warmup_frames: int = _DEFAULTS.warmup_frames
    early_threshold: float | None = _DEFAULTS.early_threshold
    rearm_fraction: float = _DEFAULTS.rearm_fraction
    wake_label: int = -1  # label index of the wake word; -1: no wake-word grammar
    command_frames: int = 0  # frames after the wake word in which other keywords may fire
    background_frames: int = _DEFAULTS.background_frames  # 0: no background normalisation
    background_floor: float = _DEFAULTS.background_floor
    background_ceiling: float = _DEFAULTS.background_ceiling
    speech_gate_frames: int = _DEFAULTS.speech_gate_frames  # 0: no speech gate
    speech_gate_recent_frames: int = _DEFAULTS.speech_gate_recent_frames

    def __post_init__(self) -> None:
        if self.thresholds.shape != (len(self.labels),):
            raise ValueError(
                f"thresholds must have shape ({len(self.labels)},), got {self.thresholds.shape}"
            )
        for name in ("smoothing_frames", "patience_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("refractory_frames", "warmup_frames", "command_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.rearm_fraction <= 1.0:
            raise ValueError(f"rearm_fraction must be in (0, 1], got {self.rearm_fraction}")
        if self.wake_label >= 0 and not math.isfinite(self.thresholds[self.wake_label]):
            raise ValueError(f"the wake word {self.labels[self.wake_label]!r} cannot fire")
        _check_background(self.background_frames, self.background_floor, self.background_ceiling)
        _check_speech_gate(self.speech_gate_frames, self.speech_gate_recent_frames)
        if self.speech_gate_frames and OTHER_SPEECH not in self.labels:
            raise ValueError(f"the speech gate needs an {OTHER_SPEECH!r} label")

    @property
    def background_key(self) -> tuple[int, float, float, int]:
        """What the background normalisation depends on (not the thresholds): its settings
        and the wake word, which it leaves out."""
        return (
            self.background_frames, self.background_floor, self.background_ceiling,
            self.wake_label,
        )  # fmt: skip

    @cached_property
    def other_speech_label(self) -> int:
        """The label index of ``OTHER_SPEECH``, which the speech gate reads (-1: none).
        Computed once per config: every step of its sessions asks."""
        return self.labels.index(OTHER_SPEECH) if OTHER_SPEECH in self.labels else -1

    @cached_property
    def normalized_labels(self) -> np.ndarray:
        """[K] bool: the labels the background normalisation applies to: not ``NEVER_FIRE``,
        and not the wake word, said again and again by design (it depends on the labels and
        the wake word only, so each keyword competes the same whatever fires). Computed once
        per config: every step of its sessions asks."""
        return np.array(
            [
                label not in NEVER_FIRE and i != self.wake_label
                for i, label in enumerate(self.labels)
            ]
        )

    @property
    def keywords(self) -> list[str]:
        """Labels that can fire, in label order."""
        pairs = zip(self.labels, self.thresholds, strict=True)
        return [label for label, t in pairs if math.isfinite(t)]

    @property
    def keyword_thresholds(self) -> dict[str, float]:
        """{keyword: threshold} of the labels that can fire, in label order."""
        pairs = zip(self.labels, self.thresholds, strict=True)
        return {label: float(t) for label, t in pairs if math.isfinite(t)}

    @classmethod
    def build(
        cls,
        labels: Sequence[str],
        *,
        default_threshold: float = _DEFAULTS.threshold,
        label_thresholds: Mapping[str, float] | None = None,
        keywords: Sequence[str] | None = None,
        overrides: Mapping[str, float] | None = None,
        wake_word: str | None = None,
        **kwargs: int | float | None,
    ) -> DetectorConfig:
        """Thresholds from, in increasing priority: the default, per-label defaults (checkpoint),
        per-session overrides. ``keywords`` (default: every label) restricts what can fire;
        ``NEVER_FIRE`` labels never do; ``wake_word`` (one of the keywords that can fire) turns
        on the wake-word grammar. Unknown names raise ``ValueError`` naming them.
        """
        labels = tuple(labels)
        known = set(labels)
        wake = [wake_word] if wake_word is not None else []
        for what, names in (
            ("keyword", keywords),
            ("threshold key", overrides),
            ("wake word", wake),
        ):
            unknown = sorted(set(names or ()) - known)
            if unknown:
                raise ValueError(
                    f"unknown {what}s {unknown}; the model's labels are {list(labels)}"
                )
        allowed = set(keywords) if keywords is not None else known
        if wake_word is not None:
            if wake_word in NEVER_FIRE:
                raise ValueError(f"{wake_word!r} cannot be a wake word: it never fires")
            allowed.add(wake_word)
            kwargs["wake_label"] = labels.index(wake_word)
        thresholds = np.full(len(labels), np.inf)
        for i, label in enumerate(labels):
            if label in NEVER_FIRE or label not in allowed:
                continue
            value = default_threshold
            if label_thresholds and label in label_thresholds:
                value = label_thresholds[label]
            if overrides and label in overrides:
                value = overrides[label]
            thresholds[i] = float(value)
        return cls(labels=labels, thresholds=thresholds, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Background:
    """A session's background average (``normalize_background``), each [K] float64."""

    block_sum: np.ndarray  # posteriors summed over the current block so far
    level: np.ndarray  # the average after the last finished block
    lagged: np.ndarray  # the average after the block before it: what normalises now

    @classmethod
    def initial(cls, labels: int) -> Background:
        return cls(np.zeros(labels), np.zeros(labels), np.zeros(labels))


@dataclass(frozen=True)
class SpeechRun:
    """The speech gate's count (``speech_gate``), in frames: the current run of other speech
    (0: none going), the length of the latest run (the current one included) and the frames
    since its last frame (0 while it goes on)."""

    current: int = 0
    latest: int = 0
    since: int = 1 << 30


@dataclass(frozen=True)
class DetectorState:
    """Per-session detector state (a few hundred bytes; about 1 KB with a background)."""

    ring: np.ndarray  # [W - 1, K] last posteriors, oldest first (zeros before the start)
    filled: int  # real frames in the smoothing window so far (<= W)
    frames: int  # frames seen since start/reset
    run_label: int  # top label of the current run above threshold, -1 if none
    run_length: int
    last_fire: int  # frame index of the last detection (a large negative number if none)
    armed: np.ndarray  # [K] bool
    wake_until: int = -1  # last frame of the open command window (wake-word grammar)
    background: Background | None = None  # with config.background_frames > 0
    speech: SpeechRun | None = None  # with config.speech_gate_frames > 0

    @classmethod
    def initial(cls, config: DetectorConfig) -> DetectorState:
        K = len(config.labels)
        return cls(
            ring=np.zeros((config.smoothing_frames - 1, K)),
            filled=0,
            frames=0,
            run_label=-1,
            run_length=0,
            last_fire=-(1 << 62),
            armed=np.ones(K, dtype=bool),
            background=Background.initial(K) if config.background_frames else None,
            speech=SpeechRun() if config.speech_gate_frames else None,
        )


@dataclass(frozen=True)
class Firing:
    """One detection: label index, keyword, smoothed score and the frame index that fired."""

    label: int
    keyword: str
    score: float
    frame: int


def sliding_mean(
    history: np.ndarray, new: np.ndarray, seen: int | np.ndarray, window: int
) -> np.ndarray:
    """Mean over the last ``window`` rows for each new row: [..., m, K].

    history: [..., window - 1, K] the rows before ``new`` (zeros where there were none); new:
    [..., m, K]; seen: real rows before ``new``, an int or one per leading index [...] (the
    divisor is min(window, seen + i + 1) for new row i). Leading axes batch sessions; a row's
    result depends only on its own window (the same bits whatever the batch or the chunking).
    """
    m = new.shape[-2]
    ext = np.concatenate((history, new), axis=-2) if window > 1 else new
    sums = np.empty(new.shape, dtype=np.result_type(ext, np.float64))
    for i in range(m):
        np.add.reduce(ext[..., i : i + window, :], axis=-2, out=sums[..., i, :])
    counts = np.minimum(np.asarray(seen)[..., None] + np.arange(1, m + 1), window)  # [..., m]
    return sums / counts[..., None]


def normalize_background(
    config: DetectorConfig,
    backgrounds: Sequence[Background],
    posteriors: np.ndarray,
    frames: Sequence[int] | np.ndarray,
) -> tuple[list[Background], np.ndarray]:
    """Posteriors [B, T, K] of B sessions normalised by each one's background -> (new
    backgrounds, [B, T, K]).

    ``frames``: per session, frames seen before these (the block phase). For each label of
    ``config.normalized_labels``, with b its ``lagged`` average, the odds p / (1 - p) are
    divided by (b + floor) / floor; the others pass unchanged. The average is an exponential
    one over block means of the raw posteriors up to ``background_ceiling`` (time constant
    ``background_frames``), so it follows what a voice or a room keeps half-suggesting over
    tens of seconds, not the keywords said clearly (a user repeating a command), and it is used
    one block late, so the keyword being spoken does not count against itself. Only IEEE-exact
    arithmetic, and block sums added row by row in order: any chunking or batch gives the same
    bits.
    """
    L = BACKGROUND_BLOCK
    B, T = posteriors.shape[:2]
    floor, ceiling = config.background_floor, config.background_ceiling
    decay = math.exp(-L / config.background_frames)
    block_sum = np.stack([b.block_sum for b in backgrounds])  # [B, K]
    level = np.stack([b.level for b in backgrounds])
    lagged = np.stack([b.lagged for b in backgrounds])
    phase = np.asarray(frames) % L  # [B]
    keep = ~config.normalized_labels  # labels that pass unchanged
    out = np.empty_like(posteriors)
    for t in range(0, T, L):  # pieces of <= L frames: at most one block end per session in each
        x = posteriors[:, t : t + L]
        n = x.shape[1]
        cut = L - phase  # [B] rows of this piece before the session's block ends
        after = np.arange(n)[None, :] >= cut[:, None]  # [B, n]: rows of the next block
        c = np.where(
            after[..., None],
            (floor / (level + floor))[:, None],
            (floor / (lagged + floor))[:, None],
        )
        y = x * c
        y /= y + (1.0 - x)
        y[..., keep] = x[..., keep]
        out[:, t : t + n] = y
        counted = np.where(x <= ceiling, x, 0.0)  # a keyword said clearly does not count
        before, rest = block_sum, np.zeros_like(block_sum)
        for r in range(n):  # row by row, in order: the same sums whatever the chunking
            row = counted[:, r]
            if after[:, r].any():
                before = before + np.where(after[:, r, None], 0.0, row)
                rest = rest + np.where(after[:, r, None], row, 0.0)
            else:
                before = before + row
        ends = cut <= n  # [B] sessions whose block ended in this piece
        lagged = np.where(ends[:, None], level, lagged)
        level = np.where(ends[:, None], decay * level + (1.0 - decay) * (before / L), level)
        block_sum = np.where(ends[:, None], rest, before)
        phase = (phase + n) % L
    return [Background(block_sum[i], level[i], lagged[i]) for i in range(B)], out


#: up to this many frames the speech gate counts frame by frame (a live step's few frames:
#: fewer numpy calls); beyond, whole arrays at once (a recording replayed)
SPEECH_GATE_LOOP_FRAMES = 64


def speech_gate(
    config: DetectorConfig, run: SpeechRun, posteriors: np.ndarray
) -> tuple[np.ndarray, SpeechRun]:
    """The speech gate over posteriors [T, K] after ``run``: [T] bool, True where it holds
    keywords back, and the count after these frames.

    A frame is other speech when its ``OTHER_SPEECH`` posterior is above
    ``SPEECH_GATE_POSTERIOR``; the gate is closed while the latest run of such frames lasted
    ``speech_gate_frames`` or more and its last frame is at most ``speech_gate_recent_frames``
    back. It depends on the posteriors only (not on thresholds or firings), in whole frames:
    any chunking gives the same gate."""
    speech = posteriors[:, config.other_speech_label] > SPEECH_GATE_POSTERIOR
    if speech.size <= SPEECH_GATE_LOOP_FRAMES:
        return _gate_by_frame(config, run, speech)
    return _gate_by_array(config, run, speech)


def _gate_by_frame(
    config: DetectorConfig, run: SpeechRun, speech: np.ndarray
) -> tuple[np.ndarray, SpeechRun]:
    """``speech_gate`` over [T] bool speech frames, one frame at a time."""
    current, latest, since = run.current, run.latest, run.since
    gate, recent = config.speech_gate_frames, config.speech_gate_recent_frames
    closed = []
    for frame in speech.tolist():
        if frame:
            current += 1
            latest, since = current, 0
        else:
            current, since = 0, min(since + 1, 1 << 30)
        closed.append(latest >= gate and since <= recent)
    return np.array(closed, dtype=bool), SpeechRun(current, latest, since)


def _gate_by_array(
    config: DetectorConfig, run: SpeechRun, speech: np.ndarray
) -> tuple[np.ndarray, SpeechRun]:
    """``speech_gate`` over [T] bool speech frames (T >= 1), with whole arrays."""
    t = np.arange(speech.size)
    last = np.maximum.accumulate(np.where(speech, t, -1))  # latest speech frame, -1: none yet
    went_on = np.concatenate(([run.current > 0], speech[:-1]))
    start = np.maximum.accumulate(np.where(speech & ~went_on, t, -1))  # -1: carried in
    length = np.where(start >= 0, t - start + 1, run.current + t + 1)  # at speech frames
    latest = np.where(last >= 0, length[np.maximum(last, 0)], run.latest)
    since = np.where(last >= 0, t - last, np.minimum(run.since + t + 1, 1 << 30))
    closed = (latest >= config.speech_gate_frames) & (since <= config.speech_gate_recent_frames)
    after = SpeechRun(
        current=int(length[-1]) if speech[-1] else 0, latest=int(latest[-1]), since=int(since[-1])
    )
    return closed, after


def detect(
    config: DetectorConfig, state: DetectorState, posteriors: np.ndarray
) -> tuple[DetectorState, list[Firing], np.ndarray]:
    """Run the detector over posteriors [T, K] -> (new state, firings, smoothed [T, K]).

    Pure: ``state`` is not modified. Frame indices count from the start (or last reset).
    One session of ``detect_batch``, the path the engine takes.
    """
    posteriors = np.asarray(posteriors, dtype=np.float64)
    if posteriors.ndim != 2 or posteriors.shape[1] != len(config.labels):
        raise ValueError(
            f"posteriors must be [T, {len(config.labels)}], got shape {posteriors.shape}"
        )
    if posteriors.shape[0] == 0:
        return state, [], posteriors.copy()
    (new_state,), (firings,), smoothed = detect_batch([config], [state], posteriors[None])
    return new_state, firings, smoothed[0]


def detect_batch(
    configs: Sequence[DetectorConfig],
    states: Sequence[DetectorState],
    posteriors: np.ndarray,
) -> tuple[list[DetectorState], list[list[Firing]], np.ndarray]:
    """``detect`` for B sessions with the same number of new frames at once: posteriors
    [B, m, K] (float64) -> (new states, firings per session, smoothed [B, m, K]).

    Sessions with the same smoothing window are smoothed and ranked together (numpy over
    [B, m, K]); the firing rules (``decide``) then run per session. Every session gets the
    same bits as alone (``sliding_mean`` and ``top_labels`` are row-wise). A session with a
    background has its posteriors normalised first (``normalize_background``).
    """
    B, m = posteriors.shape[:2]
    new_states: list[DetectorState] = list(states)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, config in enumerate(configs if m else ()):
        if config.background_frames:
            groups.setdefault((config.background_key, config.labels), []).append(i)
    if groups:
        posteriors = posteriors.copy()
    background_of: dict[int, Background] = {}  # the new backgrounds, handed to ``decide``
    gate_of: dict[int, tuple[np.ndarray, SpeechRun]] = {}  # the speech gates, likewise
    for i, config in enumerate(configs if m else ()):
        if config.speech_gate_frames:
            run = states[i].speech or SpeechRun()
            gate_of[i] = speech_gate(config, run, posteriors[i])
    for members in groups.values():
        K = posteriors.shape[2]
        backgrounds = [states[i].background or Background.initial(K) for i in members]
        frames = [states[i].frames for i in members]
        backgrounds, posteriors[members] = normalize_background(
            configs[members[0]], backgrounds, posteriors[members], frames
        )
        background_of.update(zip(members, backgrounds, strict=True))
    firings: list[list[Firing]] = [[] for _ in range(B)]
    windows: dict[int, list[int]] = {}
    for i, config in enumerate(configs):
        windows.setdefault(config.smoothing_frames, []).append(i)
    smoothed = posteriors if m == 0 else np.empty_like(posteriors)
    for W, members in windows.items() if m else ():
        every = len(members) == B
        x = posteriors if every else posteriors[members]
        rings = np.stack([states[i].ring for i in members])  # [b, W - 1, K]
        filled = np.array([states[i].filled for i in members])
        smooth = sliding_mean(rings, x, filled, W)
        new_rings = np.concatenate((rings, x), axis=1)[:, m:] if W > 1 else rings
        thresholds = np.stack([configs[i].thresholds for i in members])
        top, scores, above = top_labels(smooth, thresholds)  # [b, m] each
        if every:
            smoothed = smooth
        else:
            smoothed[members] = smooth
        for j, i in enumerate(members):
            new_states[i], firings[i] = decide(
                configs[i],
                states[i],
                x[j],
                smooth[j],
                new_rings[j],
                (top[j], scores[j], above[j]),
                background_of.get(i),
                gate_of.get(i),
            )
    return new_states, firings, smoothed


def top_labels(
    smoothed: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the top label, its smoothed score and whether it reaches its threshold.

    smoothed: [..., T, K]; thresholds: [..., K] (leading axes batch sessions) ->
    (top [..., T] int, scores [..., T], above [..., T] bool).
    """
    top = smoothed.argmax(axis=-1)
    scores = np.take_along_axis(smoothed, top[..., None], axis=-1)[..., 0]
    above = scores >= np.take_along_axis(thresholds, top, axis=-1)
    return top, scores, above


def decide(
    config: DetectorConfig,
    state: DetectorState,
    posteriors: np.ndarray,
    smoothed: np.ndarray,
    ring: np.ndarray | None = None,
    tops: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    background: Background | None = None,
    gate: tuple[np.ndarray, SpeechRun | None] | None = None,
) -> tuple[DetectorState, list[Firing]]:
    """The firing rules over smoothed posteriors [T, K] (``sliding_mean`` of ``posteriors``
    [T, K] over ``state.ring``) -> (new state, firings). ``ring``: the new ring if the caller
    already has it ([W - 1, K], the last rows of ring + posteriors); ``tops``: ``top_labels``
    of ``smoothed`` if the caller computed them for many sessions at once; ``background``:
    the session's background after these frames (``normalize_background``; None: the state's);
    ``gate``: the speech gate over these frames [T] and its count after them (``speech_gate``;
    the count None: the state's), None without one.

    A frame whose top label is under its threshold, with no run going and every label armed,
    changes nothing but the counters: such steps skip the per-frame loop.
    """
    W = config.smoothing_frames
    T = posteriors.shape[0]
    thresholds = config.thresholds
    top, scores, above_mask = tops if tops is not None else top_labels(smoothed, thresholds)
    if ring is None:
        ring = np.concatenate((state.ring, posteriors))[T:] if W > 1 else state.ring
    filled = min(W, state.filled + T)
    closed, speech = gate if gate is not None else (None, None)
    speech = state.speech if speech is None else speech
    if state.run_label < 0 and not above_mask.any() and state.armed.all():
        quiet = DetectorState(
            ring=ring,
            filled=filled,
            frames=state.frames + T,
            run_label=state.run_label,
            run_length=state.run_length,
            last_fire=state.last_fire,
            armed=state.armed,
            wake_until=state.wake_until,
            background=state.background if background is None else background,
            speech=speech,
        )
        return quiet, []
    above = above_mask.tolist()
    top_list, score_list = top.tolist(), scores.tolist()
    disarmed = set(np.flatnonzero(~state.armed).tolist())
    before = frozenset(disarmed)
    below: np.ndarray | None = None  # [T, K]: re-arms a label (made once one is disarmed)
    run_label, run_length, last_fire = state.run_label, state.run_length, state.last_fire
    wake, wake_until = config.wake_label, state.wake_until
    early = config.early_threshold
    patience, warmup, refractory = (
        config.patience_frames,
        config.warmup_frames,
        config.refractory_frames,
    )
    held = closed.tolist() if closed is not None else None
    firings: list[Firing] = []
    frame = state.frames
    for t in range(T):
        if disarmed:
            if below is None:
                below = smoothed < thresholds * config.rearm_fraction
            for label in [lab for lab in disarmed if below[t, lab]]:
                disarmed.discard(label)
        k = top_list[t]
        if above[t]:
            if run_label == k:
                run_length += 1
            else:
                run_label, run_length = k, 1
        else:
            run_label, run_length = -1, 0
        if (
            run_label == k
            and k not in disarmed
            and frame >= warmup
            and frame - last_fire >= refractory
            and (run_length >= patience or (early is not None and score_list[t] >= early))
            and (wake < 0 or k == wake or frame <= wake_until)
            and (held is None or k == wake or not held[t])
        ):
            firings.append(
                Firing(label=k, keyword=config.labels[k], score=score_list[t], frame=frame)
            )
            if k == wake:
                wake_until = frame + config.command_frames
            else:
                last_fire = frame
            disarmed.add(k)
            run_label, run_length = -1, 0
        frame += 1
    armed = state.armed
    if disarmed != before:
        armed = np.ones_like(state.armed)
        armed[list(disarmed)] = False
    new_state = DetectorState(
        ring=ring,
        filled=filled,
        frames=frame,
        run_label=run_label,
        run_length=run_length,
        last_fire=last_fire,
        armed=armed,
        wake_until=wake_until,
        background=state.background if background is None else background,
        speech=speech,
    )
    return new_state, firings


def normalized_from_rest(config: DetectorConfig, posteriors: np.ndarray) -> np.ndarray:
    """[T, K]: what the detector's smoothing sees over a whole recording from rest: the
    posteriors normalised by their background (``normalize_background``), or as they are
    without one. Depends on ``config.background_key`` only, not on the thresholds."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    if not config.background_frames:
        return posteriors
    rest = [Background.initial(posteriors.shape[1])]
    return normalize_background(config, rest, posteriors[None], [0])[1][0]


def replay(
    config: DetectorConfig,
    posteriors: np.ndarray,
    smoothed: np.ndarray | None = None,
    chunk: int = 64,
    normalized: np.ndarray | None = None,
) -> list[Firing]:
    """``detect`` over a whole recording from rest, fast: the per-frame rules run only over
    stretches where some label is above its threshold, a run is going or a label waits to
    re-arm; quiet stretches in between are skipped. The same firings as ``detect``.

    posteriors: [T, K]; normalized: ``normalized_from_rest`` of them and smoothed: its
    ``sliding_mean`` over ``config.smoothing_frames`` from rest, when the caller has them
    (neither depends on thresholds: a threshold sweep computes them once).
    """
    if normalized is None:
        normalized = normalized_from_rest(config, posteriors)
    posteriors = np.asarray(normalized, dtype=np.float64)
    T = posteriors.shape[0]
    state = DetectorState.initial(config)
    if smoothed is None:
        smoothed = sliding_mean(state.ring, posteriors, 0, config.smoothing_frames)
    top, scores, above = top_labels(smoothed, config.thresholds)
    closed = None
    if config.speech_gate_frames:  # it depends on the posteriors only: once for the recording
        closed, _ = speech_gate(config, SpeechRun(), posteriors)
    active = np.flatnonzero(above)
    firings: list[Firing] = []
    t = 0
    while t < T:
        if state.run_label < 0 and state.armed.all():
            i = int(np.searchsorted(active, t))
            if i == active.size:
                break
            t = int(active[i])
            state = replace(state, frames=t)
        end = min(T, t + chunk)
        state, found = decide(
            config,
            state,
            posteriors[t:end],
            smoothed[t:end],
            state.ring,
            (top[t:end], scores[t:end], above[t:end]),
            gate=None if closed is None else (closed[t:end], None),
        )
        firings += found
        t = end
    return firings


class Detector:
    """``detect`` with its state kept: ``update(posteriors [T, K]) -> firings``; ``reset()``."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.state = DetectorState.initial(config)
        self.smoothed: np.ndarray = np.zeros((0, len(config.labels)))

    def update(self, posteriors: np.ndarray) -> list[Firing]:
        self.state, firings, self.smoothed = detect(self.config, self.state, posteriors)
        return firings

    def reset(self) -> None:
        self.state = DetectorState.initial(self.config)
        self.smoothed = np.zeros((0, len(self.config.labels)))
