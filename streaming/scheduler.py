"""The scheduler: every session's input queue, the one lock, and batching into steps.

Sessions (``streaming.session.Session``) hand their resampled audio, resets and stops to the
scheduler from any thread; the scheduler alone touches the queues, under its lock. Whoever runs
steps (the worker thread of ``start()``, an engine process's loop through ``step_ready()``, or a
blocking call without a worker through ``wait_idle``) takes up to ``max_batch`` ready sessions,
runs one ``BatchStep.run`` over them outside the lock, and stores each session's new state and
events. A session's queue is processed in order, so no frame is dropped or processed twice, and
audio, resets and stops apply in the order they were pushed.

The worker waits up to ``max_wait_ms`` to fill a batch. Each session gives a step at most
``max_step_frames`` frames, taken in a power of two: sessions that fell behind by different
amounts then form at most log2(max_step_frames) + 1 groups of equal frame counts, i.e. that many
model calls per step, instead of one call per distinct backlog.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from streaming.errors import EngineClosedError, EngineFullError
from streaming.events import Event
from streaming.step import BatchStep, Marker, SessionSpec, SessionState, StepInput, Stop

__all__ = ["Lane", "Scheduler"]

log = logging.getLogger("lmukws.engine")


class _Audio:
    __slots__ = ("received_at", "samples")

    def __init__(self, samples: np.ndarray, received_at: float) -> None:
        self.samples = samples  # [n] float32 at 16 kHz
        self.received_at = received_at


class Lane:
    """One session as the scheduler sees it: its spec and state, its queue of audio and markers,
    its outbox of events and its flags. Only ``Scheduler`` reads or changes it (under its lock);
    the session keeps it as an opaque handle."""

    def __init__(self, spec: SessionSpec, state: SessionState) -> None:
        self.spec = spec
        self.state = state
        self.queue: collections.deque[_Audio | Marker] = collections.deque()
        self.queued_samples = 0
        self.head_samples = 0  # queued samples before the first marker
        self.markers = 0
        self.outbox: list[Event] = []
        self.in_flight = False
        self.closed = False
        self.ended = False  # the stop was processed
        self.failed = False
        self.notify: Callable[[], None] | None = None


class Scheduler:
    """Queues, lock and batching over one ``BatchStep`` (see the module docstring)."""

    def __init__(
        self,
        step: BatchStep,
        *,
        max_sessions: int = 64,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
        max_step_frames: int = 100,
    ) -> None:
        self.step = step
        self.max_sessions = max_sessions
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1e3
        self.max_step_frames = max_step_frames
        fbank = step.fbank
        self._num_frames = fbank.num_frames
        self._frame_length, self._frame_shift = fbank.frame_length, fbank.frame_shift
        self._cv = threading.Condition()
        self._lanes = 0
        self._ready: collections.OrderedDict[Lane, None] = collections.OrderedDict()
        self._released: list[int] = []  # slots of closed sessions, freed before the next step
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- sessions ---------------------------------------------------------------------------

    def open(self, spec: SessionSpec) -> Lane:
        """A lane for a new session; ``EngineFullError`` past ``max_sessions``,
        ``EngineClosedError`` once ``close`` was called."""
        lane = Lane(spec, self.step.initial_state(spec))
        with self._cv:
            if self._closing:
                raise EngineClosedError("the engine is shutting down")
            if self._lanes >= self.max_sessions:
                raise EngineFullError(f"server full: {self._lanes} of {self.max_sessions} sessions")
            self._lanes += 1
        return lane

    def push_audio(self, lane: Lane, samples: np.ndarray, received_at: float) -> None:
        """Queue 16 kHz samples [n] (float32)."""
        if samples.size == 0:
            return
        with self._cv:
            if lane.closed:
                return
            lane.queue.append(_Audio(samples, received_at))
            lane.queued_samples += samples.size
            if lane.markers == 0:
                lane.head_samples += samples.size
            self._schedule(lane)

    def push_marker(self, lane: Lane, marker: Marker) -> None:
        """Queue a ``Reset`` or ``Stop`` after the audio queued so far."""
        with self._cv:
            if lane.closed:
                return
            lane.queue.append(marker)
            lane.markers += 1
            self._schedule(lane)

    def poll(self, lane: Lane) -> list[Event]:
        """Take the lane's events produced so far (in frame order)."""
        with self._cv:
            events, lane.outbox = lane.outbox, []
        return events

    def set_notify(self, lane: Lane, notify: Callable[[], None] | None) -> None:
        """``notify()`` is called (from the thread running steps) after new events."""
        lane.notify = notify

    def busy(self, lane: Lane) -> bool:
        """True while a step is running for the lane or it has work waiting."""
        with self._cv:
            return lane.in_flight or self._has_work(lane)

    def close_lane(self, lane: Lane) -> bool:
        """Forget a lane (its queued audio is dropped); False if it was closed already."""
        with self._cv:
            if lane.closed:
                return False
            lane.closed = True
            if not lane.in_flight:  # an in-flight one: after its step (_apply)
                self._release(lane)
            lane.queue.clear()
            lane.queued_samples = lane.head_samples = lane.markers = 0
            self._ready.pop(lane, None)
            self._lanes -= 1
            self._cv.notify_all()
        return True

    def wait_idle(self, lane: Lane, timeout: float | None = None) -> None:
        """Block until the lane has nothing left to process; without a worker thread, run its
        steps here (one session at a time)."""
        if not self.running:
            while True:
                with self._cv:
                    if lane.in_flight or not self._has_work(lane):
                        return
                    self._ready.pop(lane, None)
                    work = [self._take(lane)]
                self._run_step([lane], work)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while lane.in_flight or self._has_work(lane):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"session still busy after {timeout} s")
                self._cv.wait(remaining)

    # -- driving ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def ready_sessions(self) -> int:
        """Sessions with a frame or a marker waiting for a step."""
        return len(self._ready)

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self.running:
            return
        self._closing = False
        self._thread = threading.Thread(target=self._worker, name="lmukws-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new sessions, let the worker finish the queued work, stop it."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def step_ready(self) -> int:
        """One step over the sessions with work waiting (at most ``max_batch``), without
        waiting for more; the number of sessions stepped. For a caller that drives the engine
        from its own loop instead of the worker thread."""
        with self._cv:
            lanes, work = self._take_batch()
        if lanes:
            self._run_step(lanes, work)
        return len(lanes)

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._ready and not self._closing:
                    self._cv.wait()
                if not self._ready:
                    return  # closing, nothing left
                if len(self._ready) < self.max_batch and self.max_wait_s > 0:
                    deadline = time.monotonic() + self.max_wait_s
                    while len(self._ready) < self.max_batch and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cv.wait(remaining)
                lanes, work = self._take_batch()
            self._run_step(lanes, work)

    # -- under the lock ---------------------------------------------------------------------

    def _schedule(self, lane: Lane) -> None:
        if not lane.in_flight and lane not in self._ready and self._has_work(lane):
            self._ready[lane] = None
            self._cv.notify_all()

    def _has_work(self, lane: Lane) -> bool:
        """A frame can be made, or a marker can be applied."""
        if lane.closed or lane.ended or lane.failed or not lane.queue:
            return False
        total = lane.state.fbank.num_pending + lane.head_samples
        return self._num_frames(total) > 0 or lane.markers > 0

    def _release(self, lane: Lane) -> None:
        if lane.state.slot is not None:
            self._released.append(lane.state.slot)

    def _take_batch(self) -> tuple[list[Lane], list[StepInput]]:
        """The first ``max_batch`` ready lanes and their work."""
        lanes: list[Lane] = []
        work: list[StepInput] = []
        while self._ready and len(lanes) < self.max_batch:
            lane, _ = self._ready.popitem(last=False)
            lanes.append(lane)
            work.append(self._take(lane))
        return lanes, work

    def _take(self, lane: Lane) -> StepInput:
        """The audio of at most ``max_step_frames`` new frames (a power of two of them) and, if
        every sample before it was taken, the marker that follows."""
        L, hop = self._frame_length, self._frame_shift
        r = lane.state.fbank.num_pending
        max_frames = self.max_step_frames
        waiting = self._num_frames(r + lane.head_samples)
        if waiting > 0:
            max_frames = 1 << (min(waiting, max_frames).bit_length() - 1)
        budget = L + (max_frames - 1) * hop + hop - 1 - r
        queue = lane.queue
        pieces: list[np.ndarray] = []
        ends: list[int] = []
        times: list[float] = []
        taken = 0
        while queue and isinstance(queue[0], _Audio) and taken < budget:
            item = queue[0]
            assert isinstance(item, _Audio)
            room = budget - taken
            if item.samples.size <= room:
                queue.popleft()
                piece = item.samples
            else:
                piece, item.samples = item.samples[:room], item.samples[room:]
            pieces.append(piece)
            taken += piece.size
            ends.append(taken)
            times.append(item.received_at)
        lane.queued_samples -= taken
        lane.head_samples -= taken
        marker: Marker | None = None
        if queue and not isinstance(queue[0], _Audio):
            marker = queue.popleft()  # type: ignore[assignment]
            lane.markers -= 1
            lane.head_samples = 0
            for item in queue:
                if not isinstance(item, _Audio):
                    break
                lane.head_samples += item.samples.size
        samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # receipt time of the audio holding the last sample of each frame completed now
        m = self._num_frames(r + taken)
        last = np.arange(m) * hop + L - 1 - r  # index into samples
        frame_received = (
            np.asarray(times, dtype=np.float64)[np.searchsorted(np.asarray(ends), last, "right")]
            if m
            else np.zeros(0)
        )
        lane.in_flight = True
        return StepInput(lane.spec, lane.state, samples, frame_received, marker)

    # -- one step ---------------------------------------------------------------------------

    def _run_step(self, lanes: list[Lane], work: list[StepInput]) -> None:
        """Run the step for the lanes' work (outside the lock), then store the results."""
        with self._cv:
            released, self._released = self._released, []
        self.step.release(released)
        outputs = self.step.run(work)
        notify = []
        with self._cv:
            for lane, x, out in zip(lanes, work, outputs, strict=True):
                lane.in_flight = False
                if lane.closed:
                    lane.state = out.state
                    self._release(lane)
                    continue
                lane.state = out.state
                lane.failed = lane.failed or out.failed
                if isinstance(x.marker, Stop):
                    lane.ended = True
                if out.events:
                    lane.outbox.extend(out.events)
                    notify.append(lane)
                self._schedule(lane)
            self._cv.notify_all()
        for lane in notify:
            if lane.notify is not None:
                try:
                    lane.notify()
                except Exception:  # a consumer that went away
                    log.debug("notify failed", exc_info=True)
