"""The FastAPI application: settings, a lifespan that loads the model once, one router per concern.

``create_app(settings)`` builds the app; ``Service`` (``app.state.service``) holds the engine,
the metrics and the open streaming connections, and knows how to drain them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import protocol
from server.settings import Settings
from streaming.engine import EngineConfig, StreamingEngine
from streaming.metrics import EngineMetrics
from streaming.process import EnginePool, freeze_startup_heap

if TYPE_CHECKING:  # pragma: no cover
    from server.routes.stream import StreamConnection

log = logging.getLogger("lmukws.server")


def resolve_checkpoint(settings: Settings) -> Path:
    """The checkpoint to serve: ``settings.checkpoint`` or the shipped one for the model."""
    from models.checkpoint import CheckpointError, default_checkpoint

    if settings.checkpoint is not None:
        if not Path(settings.checkpoint).is_file():
            raise CheckpointError(f"checkpoint not found: {settings.checkpoint}")
        return Path(settings.checkpoint)
    return default_checkpoint(settings.model)


DETECTOR_SETTINGS = (
    "threshold",
    "smoothing_frames",
    "patience_frames",
    "refractory_ms",
    "warmup_ms",
    "early_threshold",
    "rearm_fraction",
    "command_window_ms",
    "pooling_ms",
)


def engine_config(settings: Settings, metadata: dict[str, Any]) -> EngineConfig:
    """Engine settings: detector settings default to the checkpoint's ``detector`` section
    (see ``EngineConfig.from_metadata``) unless set explicitly (flag or environment)."""
    explicit = settings.model_fields_set
    defaults = {name: getattr(settings, name) for name in DETECTOR_SETTINGS}
    overrides = {name: getattr(settings, name) for name in DETECTOR_SETTINGS if name in explicit}
    return EngineConfig.from_metadata(
        metadata,
        defaults,
        max_sessions=settings.max_sessions,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        scores_top=protocol.MAX_SCORES_TOP,
        torch_threads=settings.torch_threads,
        runtime=settings.runtime,
        **overrides,
    )


def load_engine(
    settings: Settings, metrics: EngineMetrics, runtime: str | None = None
) -> StreamingEngine:
    """Load the checkpoint named by the settings into a (not yet started) engine; ``runtime``
    replaces the settings' (the server's own engine in front of engine processes never runs a
    streaming step, so it takes "torch" and skips the ONNX export, ~115 MB)."""
    from models import read_metadata

    path = resolve_checkpoint(settings)
    config = engine_config(settings, read_metadata(path))
    if runtime is not None:
        config = dataclasses.replace(config, runtime=runtime)
    engine = StreamingEngine.from_checkpoint(path, config, settings.device, metrics)
    log.info(
        "loaded %s from %s: %d labels, %d parameters, look-ahead %d frames",
        engine.model_name,
        path,
        len(engine.labels),
        engine.num_parameters,
        engine.lookahead_frames,
    )
    return engine


class Service:
    """Everything the routes share: settings, engine, metrics and live connections."""

    def __init__(self, settings: Settings, engine: StreamingEngine | None = None) -> None:
        self.settings = settings
        self.metrics = engine.metrics if engine is not None else EngineMetrics()
        self._engine = engine
        self._pool: EnginePool | None = None
        self.connections: set[StreamConnection] = set()
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
    def sessions(self) -> StreamingEngine | EnginePool:
        """What opens streaming sessions: the engine processes, else the in-process engine."""
        return self._pool if self._pool is not None else self.engine

    @property
    def runtime(self) -> str | None:
        """What runs the streaming steps: the engine processes' runtime, else the engine's."""
        return self._pool.runtime if self._pool is not None else self.engine.runtime

    @property
    def serving(self) -> bool:
        """Loaded, not shutting down, and the engine (process) is running."""
        return self.ready and not self.shutting_down and self.sessions.running

    async def refresh_metrics(self) -> None:
        """Bring the engine processes' series into ``metrics`` (no-op in process)."""
        if self._pool is not None:
            await self._pool.refresh_metrics()

    async def startup(self) -> None:
        if self._engine is None:
            pooled = self.settings.engine_processes > 0
            self._engine = await asyncio.to_thread(
                load_engine, self.settings, self.metrics, "torch" if pooled else None
            )
            if pooled:
                self._pool = EnginePool(
                    self._engine,
                    self._engine.metadata["checkpoint"],
                    self.settings.engine_processes,
                    self.settings.device,
                    self.metrics,
                    runtime=self.settings.runtime,
                )
                await self._pool.start()
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
        gc.unfreeze()  # an embedding process (tests) gets its ordinary collector back

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


class BodyTooLargeError(Exception):
    """A request body over the upload limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the {limit} byte limit")
        self.limit = limit


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` (413) by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    response = _too_large(self.max_bytes)
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body is over the upload limit of {limit} bytes"}, status_code=413
    )


def create_app(settings: Settings | None = None, engine: StreamingEngine | None = None) -> FastAPI:
    """The application; ``engine`` (already built) skips loading a checkpoint."""
    from server.routes import classify, health, metrics, model, stream

    settings = settings or Settings()
    service = Service(settings, engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.startup()
        yield
        await service.shutdown()

    app = FastAPI(
        title="lmukws",
        version="0.1.0",
        summary="Streaming keyword spotting with LMUFormer and Spiking LMUFormer.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)

    @app.exception_handler(BodyTooLargeError)
    async def _body_too_large(request: Request, error: BodyTooLargeError) -> JSONResponse:
        service.metrics.errors_total.inc(code="upload_too_large")
        return _too_large(error.limit)

    for router in (stream.router, classify.router, model.router, health.router, metrics.router):
        app.include_router(router)
    _mount_static(app)
    return app


STATIC_DIR = Path(__file__).parent / "static"


def _mount_static(app: FastAPI) -> None:
    """The browser demo (server/static/, owned by the client package): ``GET /`` serves its
    index.html and ``/static/*`` its other files, when they are there."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return

    @app.get("/", include_in_schema=False)
    async def _index() -> FileResponse:
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
