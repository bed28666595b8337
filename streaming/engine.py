"""The streaming engine: one model, one scheduler, many sessions.

``StreamingEngine`` puts three pieces together: the ``ServedModel`` (what the checkpoint is),
the ``BatchStep`` (the compute of one batched step: front end, network, pooling, detector) and
the ``Scheduler`` (the sessions' queues, the lock and batching, with an optional worker thread).
It admits sessions (``create_session`` validates their options into a ``SessionSpec``) and
scores whole clips (``classify``, the parallel form).

Example::

    engine = StreamingEngine.from_checkpoint(path)   # or StreamingEngine(model, metadata)
    engine.start()                                    # worker thread (optional: without it,
    session = engine.create_session(sample_rate=16000)  # the blocking calls run inline)
    for chunk in chunks:                              # float32 [n] in [-1, 1]
        for event in session.accept(chunk):           # Detection / Scores
            print(event)
    print(session.finish()[-1])                       # End(audio_ms, frames, detections)
    engine.close()

Shapes: n samples, T frames, K labels.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import Fbank, FeatureConfig, LMUFormer, StreamingFbank, load_checkpoint
from models.config import DEFAULT_WINDOW_HOP_MS, RUNTIMES
from models.runtime import StepRuntime, load_runtime
from streaming.detector import NEVER_FIRE, DetectorConfig, DetectorSettings
from streaming.errors import EngineClosedError, EngineFullError, SessionClosedError
from streaming.metrics import EngineMetrics
from streaming.resample import StreamingResampler, resample
from streaming.scheduler import Scheduler
from streaming.sensitivity import SensitivityCurve
from streaming.served import ServedModel
from streaming.session import Session
from streaming.slab import StateSlab
from streaming.step import BatchStep, SessionSpec
from streaming.window import WindowStep

__all__ = [
    "EngineClosedError",
    "EngineConfig",
    "EngineFullError",
    "SessionClosedError",
    "StreamingEngine",
]


@dataclass(frozen=True)
class EngineConfig(DetectorSettings):
    """The engine's settings: its detector settings (inherited from ``DetectorSettings``, used
    as given) and how it schedules steps. ``from_metadata`` reads a checkpoint's defaults;
    ``server.loading.engine_config`` builds it from ``Settings``."""

    max_sessions: int = 64
    max_batch: int = 256
    max_wait_ms: float = 2.0
    max_step_frames: int = 100  # frames of one session in one step (fairness)
    scores_top: int = 5
    torch_threads: int = 0  # 0: leave torch's default
    runtime: str = "torch"  # one of models.config.RUNTIMES (the server defaults to "auto")
    #: "auto" with no cached export: serve on torch while exporting (the server), else export
    #: first (offline tools, which run long enough for the export to pay)
    export_in_background: bool = False
    window_hop_ms: float = DEFAULT_WINDOW_HOP_MS  # a window model's recompute period

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        for name in ("max_sessions", "max_batch", "max_step_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.window_hop_ms > 0:
            raise ValueError(f"window_hop_ms must be > 0, got {self.window_hop_ms}")

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> EngineConfig:
        """Settings in increasing priority: the library's, ``defaults``, the checkpoint's
        ``detector`` section, ``overrides``. Detector keys are those of
        ``DetectorSettings.updated`` (frames, ``*_ms``, ``thresholds``, label names); the
        engine's own keys are field names."""
        frame_ms = FeatureConfig.from_dict(metadata.get("features") or {}).frame_shift_ms
        labels = tuple(metadata.get("labels") or ())
        settings = DetectorSettings().updated(defaults, frame_ms)
        settings = settings.updated(metadata.get("detector"), frame_ms, labels)
        settings = settings.updated(overrides, frame_ms)
        return cls.with_detector(settings, **overrides)

    @classmethod
    def with_detector(cls, settings: DetectorSettings, **engine: Any) -> EngineConfig:
        """``settings`` plus the engine's own keys of ``engine`` (others are ignored)."""
        own = {f.name for f in dataclasses.fields(cls)} - {
            f.name for f in dataclasses.fields(DetectorSettings)
        }
        detector = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        return cls(**detector, **{k: v for k, v in engine.items() if k in own})


class StreamingEngine:
    """Owns the model, the device, the step, the scheduler and the sessions.

    ``config`` None: the checkpoint's detector defaults (``ServedModel.detector``) and the
    engine defaults; a given ``config`` is used as it is.
    """

    def __init__(
        self,
        model: LMUFormer,
        metadata: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
        device: str | torch.device = "cpu",
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        #: what the checkpoint is: labels, features, look-ahead, detector defaults, calibration
        hop_ms = config.window_hop_ms if config is not None else DEFAULT_WINDOW_HOP_MS
        self.served = ServedModel.from_model(self.model, metadata, window_hop_ms=hop_ms)
        self.config = config or EngineConfig.with_detector(self.served.detector)
        if self.config.torch_threads > 0:
            torch.set_num_threads(self.config.torch_threads)
        self.metrics = metrics or EngineMetrics()
        runtime: StepRuntime
        if self.served.streaming:
            runtime = load_runtime(
                self.model,
                self.config.runtime,
                self.device,
                self.config.torch_threads,
                background=self.config.export_in_background,
            )
        else:  # a window model: recompute its window every hop, in torch
            runtime = WindowStep(self.model, self.served.hop_frames, self.served.pad_value)
        self.step = BatchStep(
            self.model,
            runtime,
            self.served,
            self.config.detector_settings,
            self.device,
            scores_top=self.config.scores_top,
            capacity=min(self.config.max_sessions, 64),
            metrics=self.metrics,
        )
        self.scheduler = Scheduler(
            self.step,
            max_sessions=self.config.max_sessions,
            max_batch=self.config.max_batch,
            max_wait_ms=self.config.max_wait_ms,
            max_step_frames=self.config.max_step_frames,
        )
        #: sensitivity -> thresholds: the checkpoint's calibrated DET curve (or a plain one)
        self.sensitivity: SensitivityCurve = self.served.sensitivity_curve(
            self.detector_config().keyword_thresholds
        )
        self.sessions: dict[str, Session] = {}
        self._resamplers: dict[int, StreamingResampler] = {}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: EngineConfig | None = None,
        device: str | torch.device = "cpu",
        metrics: EngineMetrics | None = None,
    ) -> StreamingEngine:
        model, metadata = load_checkpoint(path, device=device)
        metadata = dict(metadata)
        metadata.setdefault("checkpoint", str(path))
        return cls(model, metadata, config, device, metrics)

    # -- model facts (``served`` has them all) ----------------------------------------------

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.served.metadata

    @property
    def labels(self) -> list[str]:
        return list(self.served.labels)

    @property
    def feature_config(self) -> FeatureConfig:
        return self.served.features

    @property
    def model_name(self) -> str:
        return self.served.name

    @property
    def lookahead_frames(self) -> int:
        return self.served.lookahead_frames

    @property
    def frame_ms(self) -> float:
        return self.served.frame_ms

    @property
    def algorithmic_latency_ms(self) -> float:
        """Analysis window + look-ahead frames × frame shift (the conv delay analysis)."""
        return self.served.algorithmic_latency_ms

    @property
    def num_parameters(self) -> int:
        return self.served.parameters

    @property
    def runtime(self) -> str:
        """What runs the streaming steps: "torch" or "onnx"."""
        return self.step.runtime.name

    @property
    def scores_top(self) -> int:
        return self.config.scores_top

    @property
    def fbank(self) -> Fbank:
        return self.step.fbank

    @property
    def streaming_fbank(self) -> StreamingFbank:
        return self.step.streaming_fbank

    @property
    def slab(self) -> StateSlab:
        """Every session's network state and pooling window (the step's)."""
        return self.step.slab

    def frame_end_ms(self, frame: int) -> float:
        """Audio time (ms) of the end of frame ``frame``'s analysis window."""
        return self.served.frame_end_ms(frame)

    def posteriors(self, logits: np.ndarray) -> np.ndarray:
        """Pooled logits [..., K] -> posteriors (sigmoid or softmax, float64)."""
        return self.step.posteriors(logits)

    def resampler(self, sample_rate: int) -> StreamingResampler:
        """A (shared, stateless) resampler from ``sample_rate`` to the model's rate;
        ``ValueError`` for a rate it cannot take."""
        r = self._resamplers.get(sample_rate)
        if r is None:
            r = self._resamplers[sample_rate] = StreamingResampler(
                sample_rate, self.served.sample_rate
            )
        return r

    # -- sessions ---------------------------------------------------------------------------

    def detector_config(
        self,
        keywords: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        *,
        sensitivity: float | None = None,
        wake_word: str | None = None,
        command_window_ms: float | None = None,
        command_sensitivity: float | None = None,
        speech_gate_ms: float | None = None,
    ) -> DetectorConfig:
        """The detector settings of a session; ``ValueError`` names unknown labels.

        Thresholds, in increasing priority: the default, the engine's per-keyword thresholds
        (the checkpoint's calibrated ones) or, with ``sensitivity``, that point of its DET
        curve, then the session's ``thresholds``. ``wake_word`` turns on the wake-word grammar
        with a command window of ``command_window_ms`` (default: the config's);
        ``command_sensitivity`` (default: the config's, else ``sensitivity``) then puts every
        other keyword at that point of the curve: said only right after the wake word, a
        command can be looser than the wake word. ``speech_gate_ms``: the speech gate's length
        of other speech (0: off; default: the config's)."""
        c = self.config
        label_thresholds = dict(c.thresholds)
        if sensitivity is not None:
            label_thresholds.update(self.sensitivity.thresholds(sensitivity))
        if command_sensitivity is not None and wake_word is None:
            raise ValueError("command_sensitivity is the commands' point under a wake_word")
        if command_sensitivity is None and wake_word is not None:
            command_sensitivity = c.command_sensitivity
        if command_sensitivity is not None:
            commands = self.sensitivity.thresholds(command_sensitivity)
            label_thresholds.update({k: t for k, t in commands.items() if k != wake_word})
        window = c.command_window_frames
        if command_window_ms is not None:
            if command_window_ms <= 0:
                raise ValueError(f"command_window_ms must be > 0, got {command_window_ms}")
            window = math.ceil(command_window_ms / self.frame_ms)
        gate = c.speech_gate_frames
        if speech_gate_ms is not None:
            if not speech_gate_ms >= 0:
                raise ValueError(f"speech_gate_ms must be >= 0 (0: off), got {speech_gate_ms}")
            gate = round(speech_gate_ms / self.frame_ms)
        return DetectorConfig.build(
            self.labels,
            default_threshold=c.threshold,
            label_thresholds=label_thresholds,
            keywords=keywords,
            overrides=thresholds,
            wake_word=wake_word,
            smoothing_frames=c.smoothing_frames,
            patience_frames=c.patience_frames,
            refractory_frames=c.refractory_frames,
            warmup_frames=c.warmup_frames,
            early_threshold=c.early_threshold,
            rearm_fraction=c.rearm_fraction,
            command_frames=window,
            background_frames=c.background_frames,
            background_floor=c.background_floor,
            background_ceiling=c.background_ceiling,
            speech_gate_frames=gate,
            speech_gate_recent_frames=c.speech_gate_recent_frames,
        )

    def session_spec(
        self,
        sample_rate: int = 16000,
        *,
        keywords: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        scores_every_ms: float = 0,
        sensitivity: float | None = None,
        wake_word: str | None = None,
        command_window_ms: float | None = None,
        command_sensitivity: float | None = None,
        speech_gate_ms: float | None = None,
        record_posteriors: bool = False,
    ) -> SessionSpec:
        """A session's options, validated (``ValueError`` for bad keywords, thresholds,
        sensitivity, wake word or sample rate): what every backend opens a session with.
        ``record_posteriors``: also emit each step's pooled posteriors (``Posteriors`` events,
        for offline evaluation; the server never asks for them)."""
        detector = self.detector_config(
            keywords,
            thresholds,
            sensitivity=sensitivity,
            wake_word=wake_word,
            command_window_ms=command_window_ms,
            command_sensitivity=command_sensitivity,
            speech_gate_ms=speech_gate_ms,
        )
        self.resampler(int(sample_rate))  # ValueError for a rate the engine cannot take
        every = math.ceil(scores_every_ms / self.frame_ms) if scores_every_ms > 0 else 0
        return SessionSpec(int(sample_rate), detector, every, record_posteriors)

    def create_session(
        self, sample_rate: int = 16000, *, session_id: str | None = None, **options: Any
    ) -> Session:
        """A new session; ``EngineFullError`` past ``max_sessions``, ``EngineClosedError``
        after ``close``, ``ValueError`` for bad ``options`` (``session_spec``'s)."""
        return self.open_session(self.session_spec(sample_rate, **options), session_id)

    def open_session(self, spec: SessionSpec, session_id: str | None = None) -> Session:
        """A new session from a validated spec (``session_spec``); admission errors as
        ``create_session``."""
        lane = self.scheduler.open(spec)
        session_id = session_id or uuid.uuid4().hex
        session = Session(
            session_id, self.scheduler, lane, self.resampler(spec.sample_rate), self._forget
        )
        self.sessions[session_id] = session
        self.metrics.active_sessions.inc()
        self.metrics.sessions_total.inc()
        return session

    def _forget(self, session: Session) -> None:
        """A session was closed."""
        self.sessions.pop(session.id, None)
        self.metrics.active_sessions.dec()

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    # -- driving (the scheduler's) ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.scheduler.running

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        self.scheduler.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the queued work, stop the worker and refuse new sessions."""
        self.scheduler.close(timeout)

    def wait_idle(self, session: Session, timeout: float | None = None) -> None:
        """Block until the session has nothing left to process (runs it inline without a
        worker thread)."""
        session.wait_idle(timeout)

    @property
    def ready_sessions(self) -> int:
        """Sessions with a frame or a marker waiting for a step."""
        return self.scheduler.ready_sessions

    def step_ready(self) -> int:
        """One batched step over the sessions with work waiting (at most ``max_batch``),
        without waiting for more; the number of sessions stepped. For a caller that drives the
        engine from its own loop instead of ``start()``'s worker thread (``streaming.process``,
        offline evaluation)."""
        return self.scheduler.step_ready()

    # -- whole clips (parallel form) --------------------------------------------------------

    def classify(
        self, clips: Sequence[np.ndarray], sample_rates: Sequence[int]
    ) -> list[np.ndarray]:
        """Clip posteriors [K] for each mono clip [n] (any rate), through the parallel form.

        Clips with the same number of frames run as one batch. A clip up to ``window`` frames
        (1.28 s) is the paper's mean over frames; a longer one is scored by the sliding
        ``pooling_frames`` window with the most confident keyword.
        """
        rate = self.served.sample_rate
        waves = [
            resample(np.asarray(c, dtype=np.float32).reshape(-1), int(r), rate)
            for c, r in zip(clips, sample_rates, strict=True)
        ]
        min_len = self.fbank.frame_length
        waves = [np.pad(w, (0, max(0, min_len - w.size))) for w in waves]
        out: list[np.ndarray | None] = [None] * len(waves)
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for i, w in enumerate(waves):
            groups[w.size].append(i)
        window = self.model.config.window
        with torch.inference_mode():
            for _size, members in groups.items():
                batch = torch.from_numpy(np.stack([waves[i] for i in members])).to(self.device)
                feats = self.fbank(batch)
                frame_logits = self.model.frame_logits(feats).double().cpu().numpy()
                for j, i in enumerate(members):
                    out[i] = self._clip_posteriors(frame_logits[j], window)
        return out  # type: ignore[return-value]

    def _clip_posteriors(self, frame_logits: np.ndarray, window: int) -> np.ndarray:
        if frame_logits.shape[0] <= window:
            return self.posteriors(frame_logits.mean(axis=0))
        W = self.config.pooling_frames
        c = np.cumsum(np.concatenate((np.zeros((1, frame_logits.shape[1])), frame_logits)), 0)
        pooled = (c[W:] - c[:-W]) / W  # [T - W + 1, K]
        post = self.posteriors(pooled)
        fire = np.array([lab not in NEVER_FIRE for lab in self.labels], dtype=bool)
        best = int(np.argmax(post[:, fire].max(axis=1))) if fire.any() else 0
        return post[best]
