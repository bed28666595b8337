"""One listener's stream: every piece of per-session state, and the events it produces.

A ``Session`` is made by ``StreamingEngine.create_session``. Its input side (``push``,
``push_reset``, ``push_stop``) runs in the caller's thread: it resamples to 16 kHz and queues the
samples. The engine's worker owns the rest of the state (front-end remainder, model state,
pooling window, detector, counters) and processes the queue in order, so audio, resets and the
stop are applied exactly in the order they were pushed. The blocking helpers ``accept``,
``reset`` and ``finish`` push and then wait for the worker (or run it inline when the engine has
no worker thread).

Shapes: K labels, m frames output by one step, W pooling window in frames.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from models.frontend import FbankState
from models.lmuformer import ModelState
from streaming.detector import DetectorConfig, DetectorState, decide
from streaming.resample import ResamplerState

if TYPE_CHECKING:  # pragma: no cover
    from streaming.engine import StreamingEngine


class SessionClosedError(RuntimeError):
    """Audio or a command for a session that was stopped or closed."""


# ---------------------------------------------------------------------------------------------
# events


@dataclass(frozen=True)
class Detection:
    """A keyword fired at frame ``frame``; ``audio_ms`` is the end of that frame's window.

    ``received_at`` (``time.perf_counter()``) is when the audio that made the frame final was
    pushed; ``queue_ms`` its wait before the model step, ``compute_ms`` the step's compute.
    """

    keyword: str
    score: float
    frame: int
    audio_ms: float
    received_at: float
    queue_ms: float
    compute_ms: float

    def server_ms(self, now: float | None = None) -> float:
        """Milliseconds from ``received_at`` to ``now`` (default: this moment)."""
        return ((time.perf_counter() if now is None else now) - self.received_at) * 1e3


@dataclass(frozen=True)
class Scores:
    """Top smoothed posteriors ``[(label, p), ...]`` at frame ``frame``."""

    frame: int
    audio_ms: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Posteriors:
    """Pooled posteriors [m, K] of frames ``frame`` .. ``frame + m - 1``, before the detector's
    smoothing (what ``streaming.detector.detect`` takes); only for sessions that ask for them."""

    frame: int
    values: np.ndarray


@dataclass(frozen=True)
class End:
    """After a stop: audio received (ms), frames scored and detections since start/reset."""

    audio_ms: float
    frames: int
    detections: int


@dataclass(frozen=True)
class Failure:
    """The engine failed while processing this session; the session is unusable."""

    message: str


Event = Detection | Scores | Posteriors | End | Failure


# ---------------------------------------------------------------------------------------------
# queue items


@dataclass
class _Audio:
    samples: np.ndarray  # [n] float32 at 16 kHz
    received_at: float


@dataclass(frozen=True)
class _Reset:
    pass


@dataclass(frozen=True)
class _Stop:
    received_at: float
    audio_ms: float


@dataclass(frozen=True)
class StreamState:
    """Worker-owned state of one session; ``StreamState`` of a fresh session after a reset.

    fbank: front-end remainder ([1, r], r < 400 samples); detector: the detector's state;
    samples_in / frames_in / frames_out / detections: counters since start or reset.
    The network's state and the pooling window of per-frame logits live in the engine's
    state slab, at the session's ``slot``.
    """

    fbank: FbankState
    detector: DetectorState
    samples_in: int = 0
    frames_in: int = 0
    frames_out: int = 0
    detections: int = 0


@dataclass
class Work:
    """What the worker took from a session for one step (filled in as the step runs)."""

    session: Session
    stream: StreamState
    samples: np.ndarray  # [n] float32 at 16 kHz
    frame_received: np.ndarray  # [m] receipt time of the audio completing each new input frame
    marker: _Reset | _Stop | None


class OpenCheck:
    """The push side's check, shared by ``Session`` and ``streaming.process.RemoteSession``:
    nothing can be pushed after ``close`` or ``push_stop``."""

    id: str
    closed: bool
    _stopping: bool

    def _check_open(self) -> None:
        if self.closed or self._stopping:
            state = "closed" if self.closed else "stopped"
            raise SessionClosedError(f"session {self.id} is {state}")


class Session(OpenCheck):
    """Per-listener state and its event outbox; see the module docstring for the threading."""

    def __init__(
        self,
        engine: StreamingEngine,
        session_id: str,
        sample_rate: int,
        detector: DetectorConfig,
        scores_every_frames: int = 0,
    ) -> None:
        self.engine = engine
        self.id = session_id
        self.sample_rate = int(sample_rate)
        self.detector_config = detector
        self.scores_every_frames = int(scores_every_frames)
        self.record_posteriors = False  # emit ``Posteriors`` events (offline evaluation)
        self.notify: Callable[[], None] | None = None  # called by the worker after new events
        self._resampler = engine.resampler(self.sample_rate)
        self._resampler_state: ResamplerState = self._resampler.init_state()
        self._input_samples = 0
        # guarded by engine._cv
        self._queue: collections.deque[_Audio | _Reset | _Stop] = collections.deque()
        self._queued_samples = 0
        self._head_samples = 0  # queued samples before the first marker
        self._markers = 0
        self._outbox: list[Event] = []
        self._in_flight = False
        self._stopping = False  # push side: a stop was pushed
        self.ended = False  # worker side: the stop was processed
        self.closed = False
        self.failed = False
        self.stream = self.fresh_stream()
        #: the row of the engine's state slab holding this session's model state (worker-owned;
        #: allocated by its first step, freed after it is closed)
        self.slot: int | None = None

    # -- state ------------------------------------------------------------------------------

    def fresh_stream(self) -> StreamState:
        """The stream state of a brand-new session (used at creation and on every reset)."""
        engine = self.engine
        return StreamState(
            fbank=engine.streaming_fbank.init_state(1),
            detector=DetectorState.initial(self.detector_config),
        )

    def model_state(self) -> ModelState:
        """A copy of the network's state (batch 1); call while the session is idle."""
        engine = self.engine
        if self.slot is None:
            return engine.model.init_state(1)
        return engine.slab.gather(torch.tensor([self.slot]))

    @property
    def queued_samples(self) -> int:
        """16 kHz samples pushed but not yet taken by the worker (the backlog)."""
        return self._queued_samples

    @property
    def busy(self) -> bool:
        """True while the worker has something to do for this session."""
        with self.engine._cv:
            return self._in_flight or self._has_work()

    def _has_work(self) -> bool:
        """Called under engine._cv: a frame can be made, or a marker can be applied."""
        if self.closed or self.ended or self.failed:
            return False
        if not self._queue:
            return False
        total = self.stream.fbank.num_pending + self._head_samples
        return self.engine.fbank.num_frames(total) > 0 or self._markers > 0

    # -- input side (caller's thread) -------------------------------------------------------

    def push(self, samples: np.ndarray, received_at: float | None = None) -> None:
        """Queue mono samples [n] (float, at ``sample_rate``) without waiting."""
        self._check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._input_samples += x.size
        y, self._resampler_state = self._resampler.process(x, self._resampler_state)
        self._enqueue_audio(y, received_at)
        self.engine._schedule(self)

    def _enqueue_audio(self, y: np.ndarray, received_at: float) -> None:
        if y.size == 0:
            return
        with self.engine._cv:
            self._queue.append(_Audio(y, received_at))
            self._queued_samples += y.size
            if self._markers == 0:
                self._head_samples += y.size

    def _enqueue_marker(self, marker: _Reset | _Stop) -> None:
        with self.engine._cv:
            self._queue.append(marker)
            self._markers += 1
        self.engine._schedule(self)

    def push_reset(self) -> None:
        """Queue a total reset: audio pushed before it is processed first (without the final
        look-ahead frames), everything after it sees a brand-new session."""
        self._check_open()
        self._resampler_state = self._resampler.init_state()
        self._input_samples = 0
        self._enqueue_marker(_Reset())

    def push_stop(self, received_at: float | None = None) -> None:
        """Queue the end of the stream: the look-ahead is flushed and an ``End`` event follows."""
        self._check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        tail, self._resampler_state = self._resampler.flush(self._resampler_state)
        self._enqueue_audio(tail, received_at)
        audio_ms = 1000.0 * self._input_samples / self.sample_rate
        self._stopping = True
        self._enqueue_marker(_Stop(received_at, audio_ms))

    def poll(self) -> list[Event]:
        """Take the events produced so far (in frame order)."""
        with self.engine._cv:
            events, self._outbox = self._outbox, []
        return events

    # -- blocking helpers -------------------------------------------------------------------

    def accept(self, samples: np.ndarray) -> list[Event]:
        """Push samples [n] and wait until every complete frame is processed; the new events."""
        self.push(samples)
        self.engine.wait_idle(self)
        return self.poll()

    def reset(self) -> list[Event]:
        """Total reset (see ``push_reset``); returns events of audio pushed before it."""
        self.push_reset()
        self.engine.wait_idle(self)
        return self.poll()

    def finish(self) -> list[Event]:
        """Stop and wait: the remaining events, the last one an ``End``."""
        self.push_stop()
        self.engine.wait_idle(self)
        return self.poll()

    def close(self) -> None:
        """Forget the session (idempotent); queued audio is dropped."""
        self.engine._close_session(self)

    # -- worker side ------------------------------------------------------------------------

    def _take(self, max_frames: int) -> Work:
        """Called under engine._cv by the worker: the audio for at most ``max_frames`` new
        frames and, if every sample before it was taken, the marker that follows.

        With more frames waiting, it takes a power of two of them (the rest waits for the next
        step): sessions that fell behind by different amounts then form at most
        log2(max_frames) + 1 groups of equal frame counts, i.e. that many model calls per
        step, instead of one call per distinct backlog.
        """
        frontend = self.engine.fbank
        r = self.stream.fbank.num_pending
        waiting = frontend.num_frames(r + self._head_samples)
        if waiting > 0:
            max_frames = 1 << (min(waiting, max_frames).bit_length() - 1)
        budget = frontend.frame_length + (max_frames - 1) * frontend.frame_shift
        budget += frontend.frame_shift - 1 - r
        pieces: list[np.ndarray] = []
        ends: list[int] = []
        times: list[float] = []
        taken = 0
        while self._queue and isinstance(self._queue[0], _Audio) and taken < budget:
            item = self._queue[0]
            assert isinstance(item, _Audio)
            room = budget - taken
            if item.samples.size <= room:
                self._queue.popleft()
                piece = item.samples
            else:
                piece, item.samples = item.samples[:room], item.samples[room:]
            pieces.append(piece)
            taken += piece.size
            ends.append(taken)
            times.append(item.received_at)
        self._queued_samples -= taken
        self._head_samples -= taken
        marker: _Reset | _Stop | None = None
        if self._queue and not isinstance(self._queue[0], _Audio):
            marker = self._queue.popleft()  # type: ignore[assignment]
            self._markers -= 1
            self._head_samples = 0
            for item in self._queue:
                if not isinstance(item, _Audio):
                    break
                self._head_samples += item.samples.size
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # receipt time of the audio holding the last sample of each frame completed now
        m = frontend.num_frames(r + taken)
        last = (
            np.arange(m) * frontend.frame_shift + frontend.frame_length - 1 - r
        )  # index into samples
        frame_received = (
            np.asarray(times, dtype=np.float64)[
                np.searchsorted(np.asarray(ends), last, side="right")
            ]
            if m
            else np.zeros(0)
        )
        self._in_flight = True
        return Work(self, self.stream, samples, frame_received, marker)

    def _post(
        self,
        stream: StreamState,
        posteriors: np.ndarray,
        smoothed: np.ndarray,
        ring: np.ndarray,
        received: np.ndarray,
        step_start: float,
        compute_ms: float,
        tops: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> tuple[StreamState, list[Event]]:
        """The detector's firing rules and the events for the final frames of one step.

        posteriors / smoothed: [m, K] pooled posteriors of frames ``stream.frames_out ...`` and
        their smoothing (computed for the whole step by the engine); ring [S - 1, K]: the new
        smoothing ring; received: [m] receipt time of the audio that made each frame final;
        tops: ``detector.top_labels`` of ``smoothed`` (computed for the whole step).
        """
        engine = self.engine
        m, K = posteriors.shape
        det_state, firings = decide(
            self.detector_config, stream.detector, posteriors, smoothed, ring, tops
        )
        first = stream.frames_out
        events: list[tuple[int, int, Event]] = []
        for f in firings:
            i = f.frame - stream.detector.frames
            events.append(
                (
                    f.frame,
                    1,
                    Detection(
                        keyword=f.keyword,
                        score=f.score,
                        frame=first + i,
                        audio_ms=engine.frame_end_ms(first + i),
                        received_at=float(received[i]),
                        queue_ms=max(0.0, (step_start - float(received[i])) * 1e3),
                        compute_ms=compute_ms,
                    ),
                )
            )
        if self.record_posteriors:
            events.append((first, -1, Posteriors(frame=first, values=posteriors.copy())))
        N = self.scores_every_frames
        if N > 0:
            labels = engine.labels
            top_k = min(engine.scores_top, K)
            for i in range(m):
                t = first + i
                if (t + 1) % N == 0:
                    order = np.argsort(-smoothed[i], kind="stable")[:top_k]
                    top = [(labels[j], round(float(smoothed[i, j]), 6)) for j in order]
                    events.append((t, 0, Scores(frame=t, audio_ms=engine.frame_end_ms(t), top=top)))
        if len(events) > 1:
            events.sort(key=lambda e: (e[0], e[1]))
        new_stream = StreamState(  # (the constructor: replace() costs ~3x on this hot path)
            fbank=stream.fbank,
            detector=det_state,
            samples_in=stream.samples_in,
            frames_in=stream.frames_in,
            frames_out=stream.frames_out + m,
            detections=stream.detections + len(firings),
        )
        return new_stream, [e[2] for e in events]
