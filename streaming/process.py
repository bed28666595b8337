"""The streaming engine in a child process, so the server's event loop keeps a core of its own.

In one process the engine's worker thread and the event loop share one interpreter lock, so
each step waits for the loop and the loop for the step (measurements: benchmarks/README.md).
``EngineProcess`` runs a ``StreamingEngine`` in a child process (forked from the fork server
that has torch and the engine loaded, ``streaming.children``);
``EnginePool`` (one or more of them) gives the server the session surface it uses
(``create_session`` -> ``RemoteSession``, a ``streaming.session.SessionHandle`` like the
in-process ``Session``).
The server keeps its own engine (never started) for the model facts, the detector settings and
the REST batch path when there is no classification worker (``streaming.classify_process``).
The child runs on one thread (``_ChildServer``): read what arrived, one batched step over every
session with work, send the events.

Link: one Unix socket pair; a message is a 4-byte little-endian length and a pickled tuple (both
ends are this module, in processes it started). Server -> child:

- ``("open", handle, session_id, spec)``: ``spec`` the session's ``SessionSpec``, validated by
  the server's engine (sample rate, detector settings with keywords, thresholds, sensitivity,
  wake word and window, scores period)
- ``("audio", handle, received_at, float32 bytes)``, ``("reset", handle)``,
  ``("stop", handle, received_at)``, ``("close", handle)``
- ``("metrics", request)``, ``("shutdown", timeout_s)``

Child -> server: ``("ready", pid, runtime)``, ``("events", handle, [Event, ...])``,
``("progress", {handle: (input samples read, queued 16 kHz samples)})`` every ``PROGRESS_S``
for the sessions that changed, ``("metrics", request, snapshot)`` (the engine's series after
everything sent before the request), ``("heartbeat",)`` when nothing else was sent for
``HEARTBEAT_S``, ``("runtime", runtime, pid)`` when the steps move to ONNX Runtime after a
background export (``models.runtime.WarmingStep``), ``("closed",)``.

``received_at`` is ``time.perf_counter()``: on Linux the system-wide monotonic clock, so the
latencies measured across the two processes are real. Nothing is lost: per session the socket
keeps the order of audio, markers and close, and on ``shutdown`` the child finishes the queued
work (every stopped session gets its ``End``) before it answers ``closed``. If the child dies,
every open session gets a ``Failure`` and ``alive`` turns False. The child ignores SIGINT and
SIGTERM (the server drains, then shuts it down) and exits when the socket closes, so it never
outlives the server.

Supervision (``EnginePool``): every message from a child is a sign of life, and an idle child
sends a heartbeat. A child silent for ``RESPONSIVE_S`` gets no new sessions; one silent for
the pool's ``heartbeat_timeout_s`` is hung (stopped, deadlocked, starved) and is killed; a
killed or dead child is reaped (no zombie) and replaced by a new one, its sessions having got
a ``Failure`` (the server closes them with 1011). Restarts are counted in
``lmukws_engine_restarts_total{reason}``; a replacement that fails to start is retried with
a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import os
import pickle
import select
import signal
import socket
import struct
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streaming.children import child_context
from streaming.engine import EngineConfig, StreamingEngine
from streaming.errors import EngineClosedError, EngineFullError, SessionClosedError
from streaming.events import Event, Failure
from streaming.metrics import EngineMetrics
from streaming.session import PushGuard
from streaming.step import SessionSpec

log = logging.getLogger("lmukws.engine.process")

HEADER = struct.Struct("<I")
PROGRESS_S = 0.05  # how often the child reports each session's backlog
HEARTBEAT_S = 0.25  # the longest a child stays silent when it is well
RESPONSIVE_S = 1.0  # a child silent this long gets no new sessions
HEARTBEAT_TIMEOUT_S = 10.0  # a child silent this long is hung: killed and replaced
RESTART_DELAY_MAX_S = 60.0  # the longest wait between failed attempts to start a replacement
READY_TIMEOUT_S = 120.0
METRICS_TIMEOUT_S = 2.0
#: series the child's engine updates; the server copies them from the child's snapshots
ENGINE_SERIES = (
    "step_seconds", "frame_seconds", "queue_seconds", "batch_size", "frames_total",
    "state_resets_total",
)  # fmt: skip


def encode_message(message: tuple[Any, ...]) -> bytes:
    """One message on the link: length + pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class EngineProcessError(RuntimeError):
    """The engine process did not start, or is gone."""


# ---------------------------------------------------------------------------------------------
# server side


class RemoteSession(PushGuard):
    """A session of the engine in the child process (the server's ``SessionHandle`` on it).

    The push side never blocks: messages go to the event loop's socket buffer. ``queued_samples``
    is the child's last reported backlog plus the audio it had not read yet then.
    """

    def __init__(
        self,
        owner: EngineProcess,
        handle: int,
        session_id: str,
        spec: SessionSpec,
        engine_rate: int,
    ) -> None:
        self.owner = owner
        self.handle = handle
        self.id = session_id
        self.sample_rate = int(spec.sample_rate)
        self.detector_config = spec.detector
        self.notify: Callable[[], None] | None = None
        self.closed = False
        self.stopping = False
        self._rate_ratio = engine_rate / self.sample_rate
        self._outbox: list[Event] = []
        self._sent = 0  # input samples sent, cumulative
        self._child_read = 0  # of those, read by the child (its last report)
        self._child_queued = 0  # 16 kHz samples queued in the child (its last report)

    @property
    def queued_samples(self) -> int:
        """16 kHz samples sent but not yet taken by the child's worker (approximately)."""
        unread = (self._sent - self._child_read) * self._rate_ratio
        return int(self._child_queued + unread)

    def push(self, samples: np.ndarray, received_at: float | None = None) -> None:
        """Send mono samples [n] (float, at ``sample_rate``) to the child without waiting."""
        self.check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        self._sent += x.size
        self.owner.send(("audio", self.handle, received_at, x.tobytes()))

    def push_reset(self) -> None:
        self.check_open()
        self.owner.send(("reset", self.handle))

    def push_stop(self, received_at: float | None = None) -> None:
        self.check_open()
        received_at = time.perf_counter() if received_at is None else received_at
        self.stopping = True
        self.owner.send(("stop", self.handle, received_at))

    def poll(self) -> list[Event]:
        events, self._outbox = self._outbox, []
        return events

    def close(self) -> None:
        """Forget the session (idempotent); audio the child has not processed is dropped."""
        self.owner.close_session(self)

    def _progress(self, read: int, queued: int) -> None:
        self._child_read, self._child_queued = read, queued

    def _deliver(self, events: list[Event]) -> None:
        self._outbox.extend(events)
        if self.notify is not None:
            self.notify()


class EngineProcess:
    """A ``StreamingEngine`` (``checkpoint`` + ``config``) serving sessions from a child process;
    ``EnginePool`` validates and admits the sessions it opens. ``start()`` must be awaited on the
    event loop that uses the sessions; ``aclose()`` finishes every queued step in the child, then
    stops it. ``metrics`` receives the session counts (the pool copies the child's series)."""

    def __init__(
        self,
        checkpoint: str | Path,
        config: EngineConfig,
        metrics: EngineMetrics,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.metrics = metrics
        self.sessions: dict[int, RemoteSession] = {}
        self._next_handle = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closed_seen = asyncio.Event()
        self._metrics_requests: dict[int, asyncio.Future[Mapping[str, Any]]] = {}
        self._next_request = 0
        self.last_metrics: Mapping[str, Any] | None = None
        self._closing = False
        self._failed = False
        self.alive = False
        #: ``time.monotonic()`` of the child's last message (any message is a sign of life)
        self.last_heard = 0.0
        #: what runs the child's streaming steps ("onnx" or "torch"), known once it is ready
        self.runtime: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the child, wait for its ``ready`` (it loads the checkpoint itself)."""
        ours, theirs = socket.socketpair()
        context = child_context()
        process = context.Process(
            target=child_main,
            args=(theirs, str(self.checkpoint), self.config, self.device),
            name="lmukws-engine",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        theirs.close()
        self._process = process
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        try:
            kind = await asyncio.wait_for(self._read(reader), READY_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as error:
            process.kill()
            raise EngineProcessError(
                f"the engine process did not start (exit code {process.exitcode}): {error!r}"
            ) from None
        if kind[0] != "ready":
            raise EngineProcessError(f"the engine process said {kind[0]!r} instead of ready")
        self.runtime = kind[2]
        self.alive = True
        self.last_heard = time.monotonic()
        self._reader_task = asyncio.ensure_future(self._read_loop(reader))
        threads = self.config.torch_threads or "default"
        log.info(
            "engine process %d ready (%s runtime, torch threads: %s)",
            process.pid,
            self.runtime,
            threads,
        )

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let the child finish queued work (within ``timeout``), then stop it."""
        self._closing = True
        process = self._process
        if process is None:
            return
        if self.alive:
            self.send(("shutdown", timeout))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed_seen.wait(), timeout + 5.0)
        if self._writer is not None:
            self._writer.close()
        await asyncio.to_thread(process.join, 5.0)
        if process.is_alive():
            log.warning("engine process %d did not exit: killing it", process.pid)
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.alive = False
        self._process = None

    def kill(self, reason: str) -> None:
        """Stop the child at once (SIGKILL, which also ends a stopped process): every open
        session gets ``Failure(reason)``. ``reap()`` then collects it."""
        self.alive = False
        self._fail_sessions(reason)
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._writer is not None:
            self._writer.close()

    async def reap(self) -> None:
        """Collect a child that is gone or killed (no zombie) and release the link."""
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 5.0)
            if process.is_alive():  # it was not killed: a reaped child must not run on
                process.kill()
                await asyncio.to_thread(process.join, 5.0)
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()

    def silent_s(self, now: float | None = None) -> float:
        """Seconds since the child's last message."""
        return (time.monotonic() if now is None else now) - self.last_heard

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    # -- sessions ---------------------------------------------------------------------------

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    def open_session(self, session_id: str, spec: SessionSpec, engine_rate: int) -> RemoteSession:
        """A new session in this child; the pool has validated its spec and admitted it.
        ``engine_rate``: the model's sample rate (for the backlog estimate)."""
        handle = self._next_handle
        self._next_handle += 1
        session = RemoteSession(self, handle, session_id, spec, engine_rate)
        self.sessions[handle] = session
        self.send(("open", handle, session_id, spec))
        self.metrics.active_sessions.inc()
        self.metrics.sessions_total.inc()
        return session

    def close_session(self, session: RemoteSession) -> None:
        """Forget ``session`` (idempotent) and tell the child."""
        if session.closed:
            return
        session.closed = True
        if self.sessions.pop(session.handle, None) is not None:
            self.metrics.active_sessions.dec()
        if self.alive:
            self.send(("close", session.handle))

    # -- link -------------------------------------------------------------------------------

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue one message to the child (never waits; dropped once the link is closed)."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(encode_message(message))

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        return pickle.loads(await reader.readexactly(size))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await self._read(reader)
                self.last_heard = time.monotonic()
                kind = message[0]
                if kind == "events":
                    session = self.sessions.get(message[1])
                    if session is not None:
                        session._deliver(message[2])
                elif kind == "progress":
                    for handle, (read, queued) in message[1].items():
                        session = self.sessions.get(handle)
                        if session is not None:
                            session._progress(read, queued)
                elif kind == "metrics":
                    future = self._metrics_requests.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(message[2])
                elif kind == "runtime":  # the background ONNX export is in (models.runtime)
                    self.runtime = message[1]
                    log.info("engine process %d: streaming steps on the %s runtime now",
                             message[2], self.runtime)  # fmt: skip
                elif kind == "closed":
                    self._closed_seen.set()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._on_child_gone()

    def _on_child_gone(self) -> None:
        was_alive, self.alive = self.alive, False
        self._closed_seen.set()
        if was_alive and not self._closing:
            code = self._process.exitcode if self._process is not None else None
            log.error("the engine process exited (code %s): failing every session", code)
        if not self._closing:
            self._fail_sessions("the engine process exited")

    def _fail_sessions(self, reason: str) -> None:
        """Give every open session one ``Failure`` (the first reason wins)."""
        if self._failed:
            return
        self._failed = True
        for session in list(self.sessions.values()):
            session._deliver([Failure(reason)])

    async def metrics_snapshot(self) -> Mapping[str, Any] | None:
        """The child engine's series (``ENGINE_SERIES``: steps, frames, queue wait, batch
        sizes) after everything sent before this call; the last one received if the child does
        not answer (None before the first)."""
        if not self.alive or self.silent_s() > RESPONSIVE_S:  # no wait on a hung child
            return self.last_metrics
        request = self._next_request
        self._next_request += 1
        future = self._metrics_requests[request] = asyncio.get_running_loop().create_future()
        self.send(("metrics", request))
        try:
            self.last_metrics = await asyncio.wait_for(future, METRICS_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("engine process %s did not answer for metrics", self.pid)
        finally:
            self._metrics_requests.pop(request, None)
        return self.last_metrics


def merge_metric_states(states: Sequence[Mapping[Any, Any]]) -> dict[Any, Any]:
    """Sum ``state()``s of one series from several processes (counters: values; histograms:
    bucket counts and sums)."""
    merged: dict[Any, Any] = {}
    for state in states:
        for key, value in state.items():
            if key not in merged:
                merged[key] = value if not isinstance(value, tuple) else (list(value[0]), value[1])
            elif isinstance(value, tuple):
                counts, total = merged[key]
                merged[key] = (
                    [a + b for a, b in zip(counts, value[0], strict=True)],
                    total + value[1],
                )
            else:
                merged[key] += value
    return merged


class EnginePool:
    """``count`` engine processes behind one front end: a new session goes to the responsive
    process with the fewest sessions; ``max_sessions`` counts them all. ``local`` is the
    server's own engine (never started): it validates session settings. With ``torch_threads``
    0 each process gets ``cpu_count // count`` torch threads (at least 1). ``runtime``, if
    given, replaces the local engine's for the processes: the local engine never runs a step,
    so it can be built with the cheap "torch" runtime while the processes export to ONNX.

    A supervisor task (module docstring) replaces a process that dies or stays silent for
    ``heartbeat_timeout_s``; ``running`` is True while every process is live, and
    ``live_count`` says how many are."""

    def __init__(
        self,
        local: StreamingEngine,
        checkpoint: str | Path,
        count: int = 1,
        device: str = "cpu",
        metrics: EngineMetrics | None = None,
        runtime: str | None = None,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
    ) -> None:
        if count < 1:
            raise ValueError(f"an engine pool needs at least one process, got {count}")
        if heartbeat_timeout_s <= RESPONSIVE_S:
            raise ValueError(
                f"heartbeat_timeout_s must exceed {RESPONSIVE_S} s, got {heartbeat_timeout_s}"
            )
        self.local = local
        self.config = local.config
        self.metrics = metrics or local.metrics
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.heartbeat_timeout_s = heartbeat_timeout_s
        child_config = self.config
        if runtime is not None:
            child_config = dataclasses.replace(child_config, runtime=runtime)
        if child_config.torch_threads == 0:  # share the cores instead of oversubscribing them
            threads = max(1, (os.cpu_count() or 1) // count)
            child_config = dataclasses.replace(child_config, torch_threads=threads)
        self.child_config = child_config
        self.processes = [self._new_process() for _ in range(count)]
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._restarts: dict[int, asyncio.Task[None]] = {}
        #: engine series of replaced processes (their last snapshots), so counters never fall
        self._retired: dict[str, Any] = {}

    def _new_process(self) -> EngineProcess:
        return EngineProcess(self.checkpoint, self.child_config, self.metrics, self.device)

    async def start(self) -> None:
        """Start every process (in parallel) and the supervisor; stops them all if one
        fails."""
        try:
            await asyncio.gather(*(p.start() for p in self.processes))
        except BaseException:
            await self.aclose(0.0)
            raise
        self._supervisor = asyncio.ensure_future(self._supervise())

    async def aclose(self, timeout: float = 10.0) -> None:
        """Each process finishes its queued work (within ``timeout``), then stops."""
        self._closing = True
        for task in [self._supervisor, *self._restarts.values()]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in [self._supervisor, *self._restarts.values()] if t is not None),
            return_exceptions=True,
        )
        await asyncio.gather(*(p.aclose(timeout) for p in self.processes))

    @property
    def running(self) -> bool:
        return all(p.alive for p in self.processes)

    @property
    def live_count(self) -> int:
        return sum(1 for p in self.processes if p.alive)

    @property
    def restarting(self) -> int:
        """Processes being replaced now."""
        return len(self._restarts)

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self.processes]

    @property
    def runtime(self) -> str | None:
        """What runs the processes' streaming steps, as the first one reported it when ready
        (they load the same checkpoint with the same settings)."""
        return self.processes[0].runtime

    @property
    def active_sessions(self) -> int:
        return sum(p.active_sessions for p in self.processes)

    # -- supervision ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Check every process ``interval`` seconds: replace the dead and the hung.

        A tick that comes late means this event loop was blocked: the children's messages may
        sit unread in the socket, so that tick judges no one as hung.
        """
        interval = min(0.5, self.heartbeat_timeout_s / 4)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._closing:
            await asyncio.sleep(interval)
            now = loop.time()
            stalled = now - last > interval + RESPONSIVE_S
            last = now
            for index, process in enumerate(self.processes):
                if index in self._restarts or self._closing:
                    continue
                if not process.alive:
                    reason = "exited"
                elif not stalled and process.silent_s() > self.heartbeat_timeout_s:
                    reason = "hung"
                else:
                    continue
                # counted now, not when the task first runs: a restart under way is counted
                self.metrics.engine_restarts_total.inc(reason=reason)
                task = asyncio.ensure_future(self._replace(index, reason))
                self._restarts[index] = task
                task.add_done_callback(lambda _, i=index: self._restarts.pop(i, None))

    async def _replace(self, index: int, reason: str) -> None:
        """Kill (if hung) and reap process ``index``, then start a new one in its place,
        retrying with a growing delay while starting fails."""
        old = self.processes[index]
        if reason == "hung":
            log.error(
                "engine process %s sent nothing for %.1f s: killing it and its sessions",
                old.pid,
                old.silent_s(),
            )
            old.kill("the engine process stopped responding")
        else:
            log.error("engine process %s exited (code %s): replacing it", old.pid, old.exitcode)
        await old.reap()
        self._retire(old)
        started = time.monotonic()
        delay = 1.0
        while not self._closing:
            new = self._new_process()
            try:
                await new.start()
            except (EngineProcessError, OSError) as error:
                log.error("replacement engine process failed to start: %s; retry in %.0f s",
                          error, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(RESTART_DELAY_MAX_S, 2 * delay)
                continue
            except asyncio.CancelledError:
                await new.aclose(0.0)
                raise
            self.processes[index] = new
            log.info(
                "engine process %s replaced by %s in %.1f s",
                old.pid, new.pid, time.monotonic() - started,
            )  # fmt: skip
            return

    def _retire(self, process: EngineProcess) -> None:
        snapshot = process.last_metrics
        if snapshot is None:
            return
        for name in ENGINE_SERIES:
            states = [snapshot[name]] + ([self._retired[name]] if name in self._retired else [])
            self._retired[name] = merge_metric_states(states)
        process.last_metrics = None  # counted once, in _retired

    def create_session(
        self, sample_rate: int = 16000, *, session_id: str | None = None, **options: Any
    ) -> RemoteSession:
        """Like ``StreamingEngine.create_session`` (same options, same errors), on the live
        process with the fewest sessions."""
        spec = self.local.session_spec(sample_rate, **options)  # ValueError
        if self._closing:
            raise EngineClosedError("the engine is shutting down")
        live = [p for p in self.processes if p.alive]
        if not live:  # no capacity until a replacement has started
            raise EngineFullError("no engine process is running")
        now = time.monotonic()
        responsive = [p for p in live if p.silent_s(now) < RESPONSIVE_S]
        live = responsive or live  # all silent: this event loop was blocked, not them
        if self.active_sessions >= self.config.max_sessions:
            raise EngineFullError(
                f"server full: {self.active_sessions} of {self.config.max_sessions} sessions"
            )
        target = min(live, key=lambda p: p.active_sessions)
        session_id = session_id or uuid.uuid4().hex
        return target.open_session(session_id, spec, self.local.served.sample_rate)

    async def refresh_metrics(self) -> None:
        """Copy the sum of every process's engine series into ``metrics``."""
        snapshots = await asyncio.gather(*(p.metrics_snapshot() for p in self.processes))
        known = [s for s in snapshots if s is not None]
        if self._retired:
            known.append(self._retired)
        if not known:
            return
        for name in ENGINE_SERIES:
            merged = merge_metric_states([s[name] for s in known])
            getattr(self.metrics, name).load_state(merged)


# ---------------------------------------------------------------------------------------------
# child side


class _ChildLink:
    """The child's end of the link; one thread uses it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False
        self._buffer = bytearray()

    def send(self, message: tuple[Any, ...]) -> None:
        self.sock.sendall(encode_message(message))

    def receive(self, timeout: float) -> list[tuple[Any, ...]]:
        """Every complete message that has arrived, waiting up to ``timeout`` s for the first
        bytes; sets ``closed`` when the server's end is gone."""
        if not select.select([self.sock], [], [], timeout)[0]:
            return []
        try:
            chunk = self.sock.recv(1 << 18)
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return []
        buffer = self._buffer
        buffer += chunk
        messages, start = [], 0
        while len(buffer) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + size
            if end > len(buffer):
                break
            messages.append(pickle.loads(buffer[start + HEADER.size : end]))
            start = end
        del buffer[:start]
        return messages


class _ChildServer:
    """The engine process's loop, on one thread (no interpreter lock to share): read what the
    server sent, run one batched step over the sessions with work, send the events, and every
    ``PROGRESS_S`` the backlogs that changed."""

    def __init__(self, link: _ChildLink, engine: StreamingEngine) -> None:
        self.link = link
        self.engine = engine
        self.sessions: dict[int, Any] = {}
        self.read: dict[int, int] = {}  # input samples read, per session
        self._reported: dict[int, tuple[int, int]] = {}
        self._last_sent = time.monotonic()

    def run(self) -> float:
        """Serve until ``shutdown`` (returns its timeout) or the link closes (returns 0).

        A step starts as soon as a session has work: what arrives while it runs makes the next
        batch. (Waiting ``max_wait_ms`` for fuller batches, as the worker thread does, was
        slower here: benchmarks/README.md.)
        """
        engine = self.engine
        next_report = time.monotonic() + PROGRESS_S
        runtime = engine.runtime  # told in "ready"; a WarmingStep changes it once exported
        while not self.link.closed:
            timeout = 0.0 if engine.ready_sessions else PROGRESS_S
            for message in self.link.receive(timeout):
                if message[0] == "shutdown":
                    return float(message[1])
                self._apply(message)
            engine.step_ready()
            now = time.monotonic()
            if now >= next_report:
                self._report()
                next_report = now + PROGRESS_S
                if engine.runtime != runtime:
                    runtime = engine.runtime
                    self._send(("runtime", runtime, os.getpid()))
            if now - self._last_sent >= HEARTBEAT_S:
                self._send(("heartbeat",))
        return 0.0

    def finish(self, timeout: float) -> None:
        """Process what is queued (every stopped session gets its ``End``) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.engine.ready_sessions and time.monotonic() < deadline:
            self.engine.step_ready()

    def _apply(self, message: tuple[Any, ...]) -> None:
        kind, handle = message[0], message[1]
        if kind == "open":
            _, _, session_id, spec = message
            try:
                session = self.engine.open_session(spec, session_id)
            except (EngineFullError, EngineClosedError) as error:  # admitted by the server
                self._send(("events", handle, [Failure(str(error))]))
                return
            session.notify = self._notifier(handle, session)
            self.sessions[handle] = session
            self.read[handle] = 0
            return
        if kind == "metrics":
            snapshot = {n: getattr(self.engine.metrics, n).state() for n in ENGINE_SERIES}
            self._send(("metrics", handle, snapshot))
            return
        session = self.sessions.get(handle)
        if session is None:
            return
        try:
            if kind == "audio":
                samples = np.frombuffer(message[3], dtype=np.float32)
                self.read[handle] += samples.size
                session.push(samples, message[2])
            elif kind == "reset":
                session.push_reset()
            elif kind == "stop":
                session.push_stop(message[2])
            elif kind == "close":
                del self.sessions[handle], self.read[handle]
                self._reported.pop(handle, None)
                session.close()
        except SessionClosedError:
            pass

    def _notifier(self, handle: int, session: Any) -> Callable[[], None]:
        def notify() -> None:
            events = session.poll()
            if events:
                self._send(("events", handle, events))

        return notify

    def _report(self) -> None:
        now = {h: (self.read[h], s.queued_samples) for h, s in self.sessions.items()}
        changed = {h: v for h, v in now.items() if self._reported.get(h) != v}
        if changed:
            self._reported.update(changed)
            self._send(("progress", changed))

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.link.send(message)
        except OSError:
            self.link.closed = True
        self._last_sent = time.monotonic()


def freeze_startup_heap() -> None:
    """Move every object alive now (torch, the model, the web stack) into the garbage
    collector's permanent generation.

    A full (generation-2) collection walks every tracked object: with the startup heap in it,
    a stall of the event loop or of an engine step that lands on whichever frames are waiting
    (``benchmarks/gc_pause.py`` measures it). Frozen, the startup heap is never walked again;
    collections scan only what the service allocated since. Call once, after loading, in each
    serving process.
    """
    gc.collect()
    gc.freeze()


def child_main(sock: socket.socket, checkpoint: str, config: EngineConfig, device: str) -> None:
    """Entry point of the engine process: load the checkpoint, serve the link until it closes
    or says ``shutdown``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server drains first, then stops us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    link = _ChildLink(sock)
    engine = StreamingEngine.from_checkpoint(checkpoint, config, device)
    freeze_startup_heap()
    link.send(("ready", os.getpid(), engine.runtime))
    server = _ChildServer(link, engine)
    try:
        server.finish(server.run())
    finally:
        with contextlib.suppress(OSError):
            link.send(("closed",))
        sock.close()
