"""A session is a handle on one listener's stream; ``SessionHandle`` is what every backend's
handle does, ``SessionBackend`` what opens them.

Two backends implement the protocols: ``streaming.engine.StreamingEngine`` opens ``Session``s
(this module) that queue into its ``streaming.scheduler.Scheduler`` in this process (run by its
worker thread, or inline), and ``streaming.process.EnginePool`` opens ``RemoteSession``s that
send the same calls to an engine in a child process. The server and the in-process client use
only the protocols: ``push``, ``push_reset``, ``push_stop`` never wait; ``poll`` takes the
events produced so far; ``notify`` (if set) is called from the thread that produced new events;
``queued_samples`` is the backlog; ``close`` forgets the session.

``Session`` also has blocking helpers, ``accept``, ``reset`` and ``finish``: push, then wait
for the scheduler (or run the steps inline when the engine has no worker thread). Its input
side resamples to 16 kHz in the caller's thread; everything else (front-end remainder, network
state, pooling window, detector, counters) belongs to the step.

Shapes: n samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models import ModelState
from streaming.detector import DetectorConfig
from streaming.errors import SessionClosedError
from streaming.events import Detection, End, Event, Failure, Posteriors, Scores
from streaming.resample import ResamplerState, StreamingResampler
from streaming.scheduler import Lane, Scheduler
from streaming.step import Reset, SessionSpec, SessionState, Stop

__all__ = [
    "Detection",
    "End",
    "Event",
    "Failure",
    "Posteriors",
    "Scores",
    "Session",
    "SessionBackend",
    "SessionClosedError",
    "SessionHandle",
]


@runtime_checkable
class SessionHandle(Protocol):
    """One listener's stream, whatever runs it (see the module docstring)."""

    id: str
    sample_rate: int
    detector_config: DetectorConfig
    notify: Callable[[], None] | None

    @property
    def queued_samples(self) -> int:
        """16 kHz samples pushed but not yet taken by a step (approximately, across
        processes)."""
        ...

    def push(self, samples: np.ndarray, received_at: float | None = None) -> None:
        """Queue mono samples [n] (float, at ``sample_rate``) without waiting."""
        ...

    def push_reset(self) -> None:
        """Queue a total reset: afterwards the session behaves like a new one."""
        ...

    def push_stop(self, received_at: float | None = None) -> None:
        """Queue the end of the stream: the look-ahead is flushed and an ``End`` follows."""
        ...

    def poll(self) -> list[Event]:
        """The events produced so far, in frame order."""
        ...

    def close(self) -> None:
        """Forget the session (idempotent); audio not processed yet is dropped."""
        ...


@runtime_checkable
class SessionBackend(Protocol):
    """What opens sessions: ``StreamingEngine`` (a scheduler in this process) or
    ``streaming.process.EnginePool`` (engines in child processes)."""

    @property
    def running(self) -> bool:
        """Whether it serves sessions (worker thread, or engine processes alive)."""
        ...

    @property
    def active_sessions(self) -> int: ...

    def create_session(
        self, sample_rate: int = 16000, *, session_id: str | None = None, **options: Any
    ) -> SessionHandle:
        """A new session (options: ``StreamingEngine.session_spec``'s); ``EngineFullError``,
        ``EngineClosedError`` or ``ValueError``."""
        ...


class PushGuard:
    """The push side's rule shared by both handles: nothing is pushed after ``close`` or
    ``push_stop``."""

    id: str
    closed: bool
    stopping: bool

    def check_open(self) -> None:
        if self.closed or self.stopping:
            state = "closed" if self.closed else "stopped"
            raise SessionClosedError(f"session {self.id} is {state}")


class Session(PushGuard):
    """A session of an in-process engine (``StreamingEngine.create_session``)."""

    def __init__(
        self,
        session_id: str,
        scheduler: Scheduler,
        lane: Lane,
        resampler: StreamingResampler,
        on_close: Callable[[Session], None] | None = None,
    ) -> None:
        self.id = session_id
        self.sample_rate = int(lane.spec.sample_rate)
        self.detector_config = lane.spec.detector
        self._scheduler = scheduler
        self._lane = lane
        self._on_close = on_close
        self._resampler = resampler
        self._resampler_state: ResamplerState = resampler.init_state()
        self._input_samples = 0
        self.stopping = False  # a stop was pushed
        self.closed = False

    # -- state ------------------------------------------------------------------------------

    @property
    def notify(self) -> Callable[[], None] | None:
        return self._lane.notify

    @notify.setter
    def notify(self, callback: Callable[[], None] | None) -> None:
        self._scheduler.set_notify(self._lane, callback)

    @property
    def spec(self) -> SessionSpec:
        """The session's options (detector, scores period, posteriors recording)."""
        return self._lane.spec

    @property
    def state(self) -> SessionState:
        """The step's state of this session (front end, detector, counters, slot)."""
        return self._lane.state

    @property
    def slot(self) -> int | None:
        """This session's row of the engine's state slab (None before its first step)."""
        return self._lane.state.slot

    @property
    def failed(self) -> bool:
        """A step failed for this session: it takes no more work."""
        return self._lane.failed

    @property
    def queued_samples(self) -> int:
        """16 kHz samples pushed but not yet taken by a step (the backlog)."""
        return self._lane.queued_samples

    @property
    def busy(self) -> bool:
        """True while the scheduler has something to do for this session."""
        return self._scheduler.busy(self._lane)

    def model_state(self) -> ModelState:
        """A copy of the network's state (batch 1); call while the session is idle."""
        return self._scheduler.step.model_state(self._lane.state)

    # -- input side (caller's thread) -------------------------------------------------------

    def push(self, samples: np.ndarray, received_at: float | None = None) -> None:
        """Queue mono samples [n] (float, at ``sample_rate``) without waiting."""
        self.check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._input_samples += x.size
        y, self._resampler_state = self._resampler.process(x, self._resampler_state)
        self._scheduler.push_audio(self._lane, y, received_at)

    def push_reset(self) -> None:
        """Queue a total reset: audio pushed before it is processed first (without the final
        look-ahead frames), everything after it sees a brand-new session."""
        self.check_open()
        self._resampler_state = self._resampler.init_state()
        self._input_samples = 0
        self._scheduler.push_marker(self._lane, Reset())

    def push_stop(self, received_at: float | None = None) -> None:
        """Queue the end of the stream: the look-ahead is flushed and an ``End`` event follows."""
        self.check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        tail, self._resampler_state = self._resampler.flush(self._resampler_state)
        self._scheduler.push_audio(self._lane, tail, received_at)
        audio_ms = 1000.0 * self._input_samples / self.sample_rate
        self.stopping = True
        self._scheduler.push_marker(self._lane, Stop(received_at, audio_ms))

    def poll(self) -> list[Event]:
        """Take the events produced so far (in frame order)."""
        return self._scheduler.poll(self._lane)

    def close(self) -> None:
        """Forget the session (idempotent); queued audio is dropped."""
        self.closed = True
        if self._scheduler.close_lane(self._lane) and self._on_close is not None:
            self._on_close(self)

    # -- blocking helpers -------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until everything pushed so far is processed."""
        self._scheduler.wait_idle(self._lane, timeout)

    def accept(self, samples: np.ndarray) -> list[Event]:
        """Push samples [n] and wait until every complete frame is processed; the new events."""
        self.push(samples)
        self.wait_idle()
        return self.poll()

    def reset(self) -> list[Event]:
        """Total reset (see ``push_reset``); returns events of audio pushed before it."""
        self.push_reset()
        self.wait_idle()
        return self.poll()

    def finish(self) -> list[Event]:
        """Stop and wait: the remaining events, the last one an ``End``."""
        self.push_stop()
        self.wait_idle()
        return self.poll()
