"""What the routes share: the settings, the engine (or engine processes and the
classification worker), the metrics and the open streaming connections; loading on startup,
draining on shutdown.

``server.app.create_app`` makes one ``Service`` per application (``app.state.service``); routes
take it through ``server.deps``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Protocol

from server import protocol
from server.loading import load_engine
from server.settings import Settings
from streaming.classify_process import ClassifyWorker
from streaming.engine import StreamingEngine
from streaming.metrics import EngineMetrics
from streaming.process import EnginePool, freeze_startup_heap
from streaming.session import SessionBackend

__all__ = ["Connection", "Service"]

log = logging.getLogger("lmukws.server")


class Connection(Protocol):
    """An open streaming connection, as the drain sees it (``server.routes.stream``)."""

    @property
    def started(self) -> bool:
        """A session is open: the connection counts against ``max_sessions``."""

    async def go_away(self) -> None:
        """Flush what was received, send ``end``, close with 1001."""

    async def close(self, code: int) -> None:
        """Close at once with ``code``."""


class Service:
    """Everything the routes share: settings, engine, metrics and live connections."""

    def __init__(self, settings: Settings, engine: StreamingEngine | None = None) -> None:
        self.settings = settings
        self.metrics = engine.metrics if engine is not None else EngineMetrics()
        self._engine = engine
        self._pool: EnginePool | None = None
        self._classifier: ClassifyWorker | None = None
        self.connections: set[Connection] = set()
        self.ready = False
        self.shutting_down = False
        self.classify_lock = asyncio.Semaphore(1)
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> StreamingEngine:
        if self._engine is None:
            raise RuntimeError("the model is not loaded yet")
        return self._engine

    @property
    def classifier(self) -> ClassifyWorker | None:
        """The worker process that runs ``POST /v1/classify`` (with engine processes and
        ``classify_process``); None: the in-process engine classifies."""
        return self._classifier

    @property
    def sessions(self) -> SessionBackend:
        """What opens streaming sessions: the engine processes, else the in-process engine."""
        return self._pool if self._pool is not None else self.engine

    @property
    def runtime(self) -> str | None:
        """What runs the streaming steps: the engine processes' runtime, else the engine's."""
        return self._pool.runtime if self._pool is not None else self.engine.runtime

    @property
    def engines(self) -> tuple[int, int]:
        """(live, total) engines: the engine processes, else the in-process engine's worker."""
        if self._pool is not None:
            return self._pool.live_count, len(self._pool.processes)
        if self._engine is None:
            return 0, 1
        return int(self._engine.running), 1

    @property
    def session_count(self) -> int:
        """Connections with a session (what ``max_sessions`` caps)."""
        return sum(1 for c in self.connections if c.started)

    @property
    def pending_count(self) -> int:
        """Connections still waiting for their ``start`` (``max_pending_connections``)."""
        return len(self.connections) - self.session_count

    @property
    def serving(self) -> bool:
        """Loaded, not shutting down, and the engine (process) is running."""
        return self.ready and not self.shutting_down and self.sessions.running

    @property
    def restarting(self) -> bool:
        """An engine process is being replaced (``streaming.process.EnginePool``)."""
        return self._pool is not None and self._pool.restarting > 0

    async def refresh_metrics(self) -> None:
        """Bring the engine processes' series into ``metrics``, and the live engine count."""
        if self._pool is not None:
            await self._pool.refresh_metrics()
        if self.ready:
            self.metrics.engines_live.set(self.engines[0])

    async def startup(self) -> None:
        if self._engine is None:
            pooled = self.settings.engine_processes > 0
            self._engine = await asyncio.to_thread(
                load_engine, self.settings, self.metrics, "torch" if pooled else None
            )
            if pooled:
                checkpoint = self._engine.metadata["checkpoint"]
                if self.settings.classify_process:  # loads while the engines start
                    self._classifier = ClassifyWorker(
                        checkpoint,
                        self._engine.config,
                        self.settings.device,
                        nice=self.settings.classify_nice,
                        threads=self.settings.classify_threads,
                    )
                    await self._classifier.start()
                self._pool = EnginePool(
                    self._engine,
                    checkpoint,
                    self.settings.engine_processes,
                    self.settings.device,
                    self.metrics,
                    runtime=self.settings.runtime,
                    heartbeat_timeout_s=self.settings.engine_heartbeat_timeout_s,
                )
                try:
                    await self._pool.start()
                except BaseException:
                    await self._close_classifier(0.0)
                    raise
        if self._pool is None:
            self._engine.start()
        log.info("streaming steps run on the %s runtime", self.runtime)
        freeze_startup_heap()  # no full-GC stalls of the event loop over the startup heap
        self.ready = True

    async def shutdown(self) -> None:
        await self.drain()
        deadline = self.settings.shutdown_deadline_s
        if self._pool is not None:
            await self._pool.aclose(deadline)
        elif self._engine is not None:
            await asyncio.to_thread(self._engine.close, deadline)
        await self._close_classifier(deadline)
        gc.unfreeze()  # an embedding process (tests) gets its ordinary collector back

    async def _close_classifier(self, deadline: float) -> None:
        if self._classifier is not None:
            await asyncio.to_thread(self._classifier.close, deadline)

    async def drain(self, deadline_s: float | None = None) -> None:
        """Stop accepting sessions; flush each open one, send ``end`` and close with 1001.

        Idempotent; returns within ``deadline_s`` (default: the settings') plus a second.
        """
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain(deadline_s))
        await asyncio.shield(self._drain_task)

    async def _drain(self, deadline_s: float | None) -> None:
        self.shutting_down = True
        self.ready = False
        deadline = self.settings.shutdown_deadline_s if deadline_s is None else deadline_s
        connections = list(self.connections)
        if not connections:
            return
        log.info("draining %d streaming sessions (deadline %.1f s)", len(connections), deadline)
        started = time.monotonic()
        tasks = [asyncio.ensure_future(c.go_away()) for c in connections]
        _done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        forced = [c for c, t in zip(connections, tasks, strict=True) if t in pending]
        if forced:
            log.warning("deadline passed: closing %d sessions without end", len(forced))
            await asyncio.wait(
                [asyncio.ensure_future(c.close(protocol.CloseCode.GOING_AWAY)) for c in forced],
                timeout=1.0,
            )
        log.info("drained in %.2f s", time.monotonic() - started)
