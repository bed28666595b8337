"""The streaming engine: one model, one worker, many sessions.

The worker thread batches every session that has a complete frame waiting (at most
``max_batch`` sessions, waiting at most ``max_wait_ms`` to fill a batch): one front-end call for
all their new frames, then one ``model.stream_frames`` call per group of sessions with the same
number of new frames (sessions at different points of their streams batch together; the model
returns each output's frame position). The model states of all sessions live in one
preallocated ``StateSlab`` (a row per session), gathered and scattered once per group.
Everything runs under ``torch.inference_mode()`` and off the caller's (event loop's) thread.
A session's queue is processed in order, so no frame is dropped or processed twice.

Example::

    engine = StreamingEngine.from_checkpoint(path)   # or StreamingEngine(model, metadata)
    engine.start()                                    # worker thread (optional: without it,
    session = engine.create_session(sample_rate=16000)  # the blocking calls run inline)
    for chunk in chunks:                              # float32 [n] in [-1, 1]
        for event in session.accept(chunk):           # Detection / Scores
            print(event)
    print(session.finish()[-1])                       # End(audio_ms, frames, detections)
    engine.close()

Shapes: B sessions in a step, n samples, T frames, F mel bins, K labels.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import Fbank, FeatureConfig, LMUFormer, ModelState, StreamingFbank, load_checkpoint
from models.config import RUNTIMES
from models.runtime import load_runtime
from streaming.detector import DetectorConfig, sliding_mean, top_labels
from streaming.metrics import EngineMetrics
from streaming.resample import StreamingResampler, resample
from streaming.sensitivity import SensitivityCurve
from streaming.session import (
    End,
    Event,
    Failure,
    Session,
    SessionClosedError,
    StreamState,
    Work,
    _Reset,
    _Stop,
)
from streaming.slab import StateSlab

log = logging.getLogger("lmukws.engine")

TARGET_RATE = 16000
POSTERIORS = ("sigmoid", "softmax")


class EngineFullError(RuntimeError):
    """``create_session`` past ``max_sessions``."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine and detector settings (``server.settings.Settings`` fills these in)."""

    max_sessions: int = 64
    max_batch: int = 256
    max_wait_ms: float = 2.0
    max_step_frames: int = 100  # frames of one session in one step (fairness)
    pooling_frames: int = 100  # sliding mean of per-frame logits (~1 s)
    posterior: str = "sigmoid"  # BCE training: sigmoid of pooled logits
    threshold: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per-label defaults
    smoothing_frames: int = 5
    patience_frames: int = 3
    refractory_frames: int = 100
    warmup_frames: int = 30
    early_threshold: float | None = 0.9
    rearm_fraction: float = 0.8
    command_window_frames: int = 300  # wake-word grammar: the command window after the wake word
    scores_top: int = 5
    torch_threads: int = 0  # 0: leave torch's default
    runtime: str = "torch"  # one of models.config.RUNTIMES (the server defaults to "auto")

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> EngineConfig:
        """Settings in increasing priority: ``defaults``, the checkpoint's ``detector`` section,
        ``overrides``. Keys are field names, or ``pooling_ms``, ``refractory_ms`` and
        ``warmup_ms`` (converted with the checkpoint's frame shift).

        The ``detector`` section may hold ``thresholds`` ({label: p}) and any of the keys above;
        keys that are labels are read as per-label thresholds too.
        """
        frame_ms = float((metadata.get("features") or {}).get("frame_shift_ms", 10.0))
        fields = set(cls.__dataclass_fields__)
        ms_keys = {"pooling_ms": "pooling_frames", "refractory_ms": "refractory_frames",
                   "warmup_ms": "warmup_frames",
                   "command_window_ms": "command_window_frames"}  # fmt: skip
        detector = dict(metadata.get("detector") or {})
        labels = set(metadata.get("labels") or ())
        thresholds = {k: float(v) for k, v in detector.items() if k in labels}
        thresholds.update({k: float(v) for k, v in (detector.get("thresholds") or {}).items()})

        def normalise(source: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in source.items():
                if value is None and key != "early_threshold":
                    continue
                if key in ms_keys:
                    out[ms_keys[key]] = max(0, round(float(value) / frame_ms))
                elif key in fields and key != "thresholds":
                    out[key] = value
            return out

        params = normalise(defaults or {})
        params.update(normalise(detector))
        params.update(normalise(overrides))
        params["pooling_frames"] = max(1, int(params.get("pooling_frames", 100)))
        merged = dict(thresholds)
        merged.update(overrides.get("thresholds") or {})
        return cls(thresholds=merged, **params)

    def __post_init__(self) -> None:
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        for name in ("max_sessions", "max_batch", "max_step_frames", "pooling_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class StreamingEngine:
    """Owns the model, the device, the worker and the sessions."""

    def __init__(
        self,
        model: LMUFormer,
        metadata: Mapping[str, Any] | None = None,
        config: EngineConfig | None = None,
        device: str | torch.device = "cpu",
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.device = torch.device(device)
        if self.config.torch_threads > 0:
            torch.set_num_threads(self.config.torch_threads)
        self.model = model.to(self.device).eval()
        #: what runs the streaming steps: the model itself or its ONNX export (``runtime``)
        self.stream_step = load_runtime(
            self.model, self.config.runtime, self.device, self.config.torch_threads
        )
        K = model.num_classes
        labels = self.metadata.get("labels") or [f"class{i}" for i in range(K)]
        if len(labels) != K:
            raise ValueError(f"metadata has {len(labels)} labels but the model outputs {K}")
        self.labels: list[str] = list(labels)
        self.feature_config = FeatureConfig.from_dict(self.metadata.get("features") or {})
        #: sensitivity -> thresholds: the checkpoint's calibrated DET curve (or a plain one)
        self.sensitivity = SensitivityCurve.from_metadata(
            self.metadata.get("detector"), self.detector_config().keyword_thresholds
        )
        if self.feature_config.sample_rate != TARGET_RATE:
            raise ValueError(
                f"the model's features are at {self.feature_config.sample_rate} Hz; "
                f"the engine serves {TARGET_RATE} Hz models"
            )
        self.fbank = Fbank(self.feature_config, normalize=True).to(self.device)
        self.streaming_fbank = StreamingFbank(self.feature_config, normalize=True)
        self.metrics = metrics or EngineMetrics()
        #: every session's model state, a row (slot) each; owned by the thread running steps
        self.slab = StateSlab(
            self.model,
            min(self.config.max_sessions, 64),
            self.device,
            pooling_frames=self.config.pooling_frames,
        )
        self._released: list[int] = []  # slots of closed sessions, freed by the next step
        self.sessions: dict[str, Session] = {}
        self._cv = threading.Condition()
        self._ready: collections.OrderedDict[Session, None] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self._closing = False
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

    # -- model facts ------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.model.config.name

    @property
    def runtime(self) -> str:
        """What runs the streaming steps: "torch" or "onnx"."""
        return self.stream_step.name

    @property
    def lookahead_frames(self) -> int:
        return self.model.lookahead_frames

    @property
    def frame_ms(self) -> float:
        return self.feature_config.frame_shift_ms

    @property
    def algorithmic_latency_ms(self) -> float:
        """Analysis window + look-ahead frames × frame shift (the conv delay analysis)."""
        fc = self.feature_config
        return fc.frame_length_ms + self.lookahead_frames * fc.frame_shift_ms

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def scores_top(self) -> int:
        return self.config.scores_top

    def frame_end_ms(self, frame: int) -> float:
        """Audio time (ms) of the end of frame ``frame``'s analysis window."""
        fc = self.feature_config
        return frame * fc.frame_shift_ms + fc.frame_length_ms

    def posteriors(self, logits: np.ndarray) -> np.ndarray:
        """Pooled logits [..., K] -> posteriors (sigmoid or softmax, float64)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.config.posterior == "softmax":
            z = np.exp(logits - logits.max(axis=-1, keepdims=True))
            return z / z.sum(axis=-1, keepdims=True)
        return 0.5 * (1.0 + np.tanh(0.5 * logits))

    def resampler(self, sample_rate: int) -> StreamingResampler:
        """A (shared, stateless) resampler from ``sample_rate`` to 16 kHz."""
        r = self._resamplers.get(sample_rate)
        if r is None:
            r = self._resamplers[sample_rate] = StreamingResampler(sample_rate, TARGET_RATE)
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
    ) -> DetectorConfig:
        """The detector settings of a session; ``ValueError`` names unknown labels.

        Thresholds, in increasing priority: the default, the checkpoint's (calibrated)
        per-keyword thresholds or, with ``sensitivity``, that point of its DET curve, then the
        session's ``thresholds``. ``wake_word`` turns on the wake-word grammar with a command
        window of ``command_window_ms`` (default: the config's)."""
        c = self.config
        label_thresholds = dict(c.thresholds)
        if sensitivity is not None:
            label_thresholds.update(self.sensitivity.thresholds(sensitivity))
        window = c.command_window_frames
        if command_window_ms is not None:
            if command_window_ms <= 0:
                raise ValueError(f"command_window_ms must be > 0, got {command_window_ms}")
            window = math.ceil(command_window_ms / self.frame_ms)
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
        )

    def create_session(
        self,
        sample_rate: int = TARGET_RATE,
        keywords: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        scores_every_ms: float = 0,
        session_id: str | None = None,
        *,
        sensitivity: float | None = None,
        wake_word: str | None = None,
        command_window_ms: float | None = None,
        record_posteriors: bool = False,
    ) -> Session:
        """A new session; ``EngineFullError`` past ``max_sessions``, ``ValueError`` for bad
        keywords, thresholds, sensitivity or wake word (see ``detector_config``).
        ``record_posteriors``: also emit each step's pooled posteriors (``Posteriors`` events,
        for offline evaluation; the server never asks for them)."""
        detector = self.detector_config(
            keywords,
            thresholds,
            sensitivity=sensitivity,
            wake_word=wake_word,
            command_window_ms=command_window_ms,
        )
        every = math.ceil(scores_every_ms / self.frame_ms) if scores_every_ms > 0 else 0
        with self._cv:
            if self._closing:
                raise EngineFullError("the engine is shutting down")
            if len(self.sessions) >= self.config.max_sessions:
                raise EngineFullError(
                    f"server full: {len(self.sessions)} of {self.config.max_sessions} sessions"
                )
            session = Session(self, session_id or uuid.uuid4().hex, sample_rate, detector, every)
            session.record_posteriors = record_posteriors
            self.sessions[session.id] = session
        self.metrics.active_sessions.inc()
        self.metrics.sessions_total.inc()
        return session

    def _close_session(self, session: Session) -> None:
        with self._cv:
            if session.closed:
                return
            session.closed = True
            if not session._in_flight:  # an in-flight one: after its step (_step_works)
                self._release_slot(session)
            session._queue.clear()
            session._queued_samples = session._head_samples = session._markers = 0
            self._ready.pop(session, None)
            self.sessions.pop(session.id, None)
            self._cv.notify_all()
        self.metrics.active_sessions.dec()

    def _release_slot(self, session: Session) -> None:
        """Under ``_cv``: hand a closed session's slab row to the next step to free."""
        if session.slot is not None:
            self._released.append(session.slot)
            session.slot = None

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    # -- worker -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self.running:
            return
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="lmukws-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the queued work, stop the worker and refuse new sessions."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _schedule(self, session: Session) -> None:
        with self._cv:
            if session._in_flight or session in self._ready or not session._has_work():
                return
            self._ready[session] = None
            self._cv.notify_all()

    def wait_idle(self, session: Session, timeout: float | None = None) -> None:
        """Block until the session has nothing left to process (runs it inline without a
        worker thread)."""
        if not self.running:
            while True:
                with self._cv:
                    if session._in_flight or not session._has_work():
                        return
                    self._ready.pop(session, None)
                    work = session._take(self.config.max_step_frames)
                self._step_works([work])
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while session._in_flight or session._has_work():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"session {session.id} still busy after {timeout} s")
                self._cv.wait(remaining)

    def _run(self) -> None:
        max_wait = self.config.max_wait_ms / 1e3
        while True:
            with self._cv:
                while not self._ready and not self._closing:
                    self._cv.wait()
                if not self._ready:
                    return  # closing, nothing left
                if len(self._ready) < self.config.max_batch and max_wait > 0:
                    deadline = time.monotonic() + max_wait
                    while len(self._ready) < self.config.max_batch and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cv.wait(remaining)
                batch = self._take_batch()
            self._step_works(batch)

    def _take_batch(self) -> list[Work]:
        """Under ``_cv``: the work of the first ``max_batch`` ready sessions."""
        batch = []
        while self._ready and len(batch) < self.config.max_batch:
            session, _ = self._ready.popitem(last=False)
            batch.append(session._take(self.config.max_step_frames))
        return batch

    @property
    def ready_sessions(self) -> int:
        """Sessions with a frame or a marker waiting for a step."""
        return len(self._ready)

    def step_ready(self) -> int:
        """One batched step over the sessions with work waiting (at most ``max_batch``),
        without waiting for more; the number of sessions stepped. For a caller that drives the
        engine from its own loop instead of ``start()``'s worker thread (``streaming.process``).
        """
        with self._cv:
            batch = self._take_batch()
        if batch:
            self._step_works(batch)
        return len(batch)

    # -- one batched step -------------------------------------------------------------------

    def _step_works(self, works: list[Work]) -> None:
        """Process the work taken from several sessions; commit and notify."""
        try:
            results = self._compute(works)
        except Exception as error:  # neither the worker nor the other sessions die of it
            log.exception("engine step failed for %d sessions", len(works))
            if len(works) == 1:
                results = [self._failed(works[0], error)]
            else:
                results = [self._compute_alone(w) for w in works]
        notify = []
        with self._cv:
            for w, (stream, events) in zip(works, results, strict=True):
                s = w.session
                s._in_flight = False
                if s.closed:
                    self._release_slot(s)
                    continue
                if isinstance(w.marker, _Reset):  # this step's frames were pooled: start fresh
                    stream = s.fresh_stream()
                    if s.slot is not None:
                        self.slab.reset(torch.tensor([s.slot]))
                elif isinstance(w.marker, _Stop):
                    s.ended = True
                s.stream = stream
                if events:
                    s._outbox.extend(events)
                    notify.append(s)
                if s._has_work() and s not in self._ready:
                    self._ready[s] = None
            self._cv.notify_all()
        for s in notify:
            if s.notify is not None:
                try:
                    s.notify()
                except Exception:  # a consumer that went away
                    log.debug("notify failed for session %s", s.id, exc_info=True)

    def _compute_alone(self, work: Work) -> tuple[StreamState, list[Event]]:
        """After a failed step, one session's work on its own: only a session whose own step
        fails gets a ``Failure``. Safe because the failed step left every model state as it
        was (``_model_step``); only a failure after the model (pooling, detector) could have
        advanced some sessions' pooling windows."""
        try:
            return self._compute([work])[0]
        except Exception as error:
            log.exception("engine step failed for session %s", work.session.id)
            return self._failed(work, error)

    @staticmethod
    def _failed(work: Work, error: Exception) -> tuple[StreamState, list[Event]]:
        work.session.failed = True
        return work.stream, [Failure(f"engine step failed: {error}")]

    def _front_end(
        self, works: list[Work]
    ) -> tuple[list[int], np.ndarray, torch.Tensor | None, list[np.ndarray]]:
        """Every session's new frames in one front-end call.

        Returns (frames per session, index of each session's first row in the features
        [B], features [total frames, F] or None, each session's remainder samples).
        """
        fb = self.fbank
        L, hop = fb.frame_length, fb.frame_shift
        bufs = [np.concatenate((w.stream.fbank.pending[0].numpy(), w.samples)) for w in works]
        lengths = np.array([b.size for b in bufs])
        frames_per = np.where(lengths >= L, 1 + (lengths - L) // hop, 0)  # [B]
        counts: list[int] = frames_per.tolist()
        first_row = np.cumsum(frames_per) - frames_per
        total = int(frames_per.sum())
        feats = None
        if total:  # the windows of all sessions, cut from one concatenated buffer
            buf_start = np.cumsum(lengths) - lengths
            owner = np.repeat(np.arange(len(works)), frames_per)  # [total]
            window_start = buf_start[owner] + (np.arange(total) - first_row[owner]) * hop
            windows = np.concatenate(bufs)[window_start[:, None] + np.arange(L)]  # [total, L]
            feats = fb.frames_to_features(torch.from_numpy(windows)[None].to(self.device))[0]
        pendings = [b[m * hop :] for b, m in zip(bufs, counts, strict=True)]
        return counts, first_row, feats, pendings

    def _model_step(
        self,
        works: list[Work],
        counts: list[int],
        first_row: np.ndarray,
        feats: torch.Tensor | None,
    ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """One ``stream_frames`` call per group of sessions with the same number of new frames,
        on their rows of the state slab (allocated here for new sessions). Returns (final
        logits [m, K] per session, the look-ahead tail [lookahead, K] of each one that stops).

        The slab is written only once every call has succeeded, so a step that raises leaves
        every session's model state as it was (``_step_works`` then retries them one by one).
        """
        slab = self.slab
        with self._cv:
            released, self._released = self._released, []
        for slot in released:
            slab.release(slot)
        for w in works:
            if w.session.slot is None:
                w.session.slot = slab.allocate()
        slots: list[int] = [w.session.slot for w in works]  # type: ignore[misc]
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for i, m in enumerate(counts):
            if m:
                groups[m].append(i)
        outputs: list[np.ndarray | None] = [None] * len(works)
        tails: list[np.ndarray | None] = [None] * len(works)
        updates: list[tuple[torch.Tensor, list[torch.Tensor]]] = []  # (rows, new state leaves)
        for m, members in groups.items():
            rows = torch.tensor([slots[i] for i in members])
            pick = first_row[members][:, None] + np.arange(m)  # [b, m] rows of feats
            frames = feats[torch.from_numpy(pick).to(self.device)]  # type: ignore[index]
            logits, positions, leaves = self.stream_step.stream_leaves(
                frames, slab.gather_leaves(rows)
            )
            updates.append((rows, leaves))
            host = logits.float().cpu().numpy()
            keep = (positions >= 0).cpu().numpy()
            for j, i in enumerate(members):
                outputs[i] = host[j] if keep[j].all() else host[j][keep[j]]
                if isinstance(works[i].marker, _Stop):
                    tails[i] = self._tail(
                        slab.layout.unflatten([leaf[j : j + 1] for leaf in leaves])
                    )
        for i, w in enumerate(works):
            if isinstance(w.marker, _Stop) and not counts[i]:  # no new frames: the slab's state
                tails[i] = self._tail(slab.gather(torch.tensor([slots[i]])))
        for rows, leaves in updates:
            slab.scatter_leaves(rows, leaves)
        return outputs, tails

    def _tail(self, state: ModelState) -> np.ndarray:
        """The look-ahead tail [lookahead, K] of one stopping session (state of batch 1)."""
        tail, _ = self.model.finish(state)
        return tail[0].float().cpu().numpy()

    def _compute(self, works: list[Work]) -> list[tuple[StreamState, list[Event]]]:
        """One step for the works of several sessions: front end, model, post-processing."""
        step_start = time.perf_counter()
        with torch.inference_mode():
            counts, first_row, feats, pendings = self._front_end(works)
            outputs, tails = self._model_step(works, counts, first_row, feats)
        compute_s = time.perf_counter() - step_start
        compute_ms = compute_s * 1e3
        K = len(self.labels)
        streams: list[StreamState] = []
        final: list[np.ndarray] = []  # [m, K] logits of the frames that became final
        received: list[np.ndarray] = []  # [m] when the audio that made each one final came
        waits: list[float] = []  # each session's wait from its oldest new frame to the step
        lookahead = self.lookahead_frames
        empty = np.zeros((0, K), np.float32)
        for i, w in enumerate(works):
            old = w.stream
            m_in = counts[i]
            stream = StreamState(
                fbank=type(old.fbank)(torch.from_numpy(pendings[i].copy())[None]),
                detector=old.detector,
                samples_in=old.samples_in + w.samples.size,
                frames_in=old.frames_in + m_in,
                frames_out=old.frames_out,
                detections=old.detections,
            )
            logits = outputs[i] if outputs[i] is not None else empty
            # output frame t became final with input frame t + lookahead (in this step)
            first = old.frames_out + lookahead - old.frames_in
            if m_in:
                idx = np.arange(first, first + logits.shape[0])
                np.maximum(idx, 0, out=idx)
                np.minimum(idx, m_in - 1, out=idx)
                when = w.frame_received[idx]
            else:
                when = np.zeros(logits.shape[0])
            tail, stop = tails[i], w.marker
            if tail is not None and isinstance(stop, _Stop):
                logits = np.concatenate((logits, tail))
                when = np.concatenate((when, np.full(tail.shape[0], stop.received_at)))
            streams.append(stream)
            final.append(logits)
            received.append(when)
            if m_in:
                waits.append(max(0.0, step_start - float(w.frame_received[0])))
        self.metrics.queue_seconds.observe_many(waits)
        events = self._post_process(works, streams, final, received, step_start, compute_ms)
        frames_out = 0
        for w, stream, session_events, logits in zip(works, streams, events, final, strict=True):
            if isinstance(w.marker, _Stop):
                session_events.append(
                    End(
                        audio_ms=w.marker.audio_ms,
                        frames=stream.frames_out,
                        detections=stream.detections,
                    )
                )
            frames_out += logits.shape[0]
        results: list[tuple[StreamState, list[Event]]] = list(zip(streams, events, strict=True))
        self.metrics.step_seconds.observe(compute_s)
        self.metrics.batch_size.observe(len(works))
        if frames_out:
            self.metrics.frame_seconds.observe(compute_s / frames_out)
            self.metrics.frames_total.inc(frames_out)
        return results

    def _post_process(
        self,
        works: list[Work],
        streams: list[StreamState],
        final: list[np.ndarray],
        received: list[np.ndarray],
        step_start: float,
        compute_ms: float,
    ) -> list[list[Event]]:
        """Pooling, posteriors and detector smoothing for every session of the step at once
        (numpy over [B, m, K], sessions grouped by m), then each session's firing rules and
        events. Updates ``streams`` in place; returns each session's events."""
        events: list[list[Event]] = [[] for _ in works]
        groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        for i, logits in enumerate(final):
            if logits.shape[0]:
                groups[logits.shape[0], works[i].session.detector_config.smoothing_frames].append(i)
        for (m, S), members in groups.items():
            logits = np.stack([final[i] for i in members]).astype(np.float64)  # [B, m, K]
            slots = np.array([works[i].session.slot for i in members])
            posteriors = self.posteriors(self.slab.pool(slots, logits))
            rings = np.stack([streams[i].detector.ring for i in members])  # [B, S - 1, K]
            filled = np.array([streams[i].detector.filled for i in members])
            smoothed = sliding_mean(rings, posteriors, filled, S)
            new_rings = np.concatenate((rings, posteriors), axis=1)[:, m:] if S > 1 else rings
            thresholds = np.stack([works[i].session.detector_config.thresholds for i in members])
            top, scores, above = top_labels(smoothed, thresholds)  # [B, m] each
            for j, i in enumerate(members):
                streams[i], events[i] = works[i].session._post(
                    streams[i],
                    posteriors[j],
                    smoothed[j],
                    new_rings[j],
                    received[i],
                    step_start,
                    compute_ms,
                    (top[j], scores[j], above[j]),
                )
        return events

    # -- whole clips (parallel form) --------------------------------------------------------

    def classify(
        self, clips: Sequence[np.ndarray], sample_rates: Sequence[int]
    ) -> list[np.ndarray]:
        """Clip posteriors [K] for each mono clip [n] (any rate), through the parallel form.

        Clips with the same number of frames run as one batch. A clip up to ``window`` frames
        (1.28 s) is the paper's mean over frames; a longer one is scored by the sliding
        ``pooling_frames`` window with the most confident keyword.
        """
        waves = [
            resample(np.asarray(c, dtype=np.float32).reshape(-1), int(r), TARGET_RATE)
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
        fire = np.array([lab not in ("_unknown_", "_silence_") for lab in self.labels], dtype=bool)
        best = int(np.argmax(post[:, fire].max(axis=1))) if fire.any() else 0
        return post[best]


__all__ = [
    "EngineConfig",
    "EngineFullError",
    "SessionClosedError",
    "StreamingEngine",
]
