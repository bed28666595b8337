"""The FastAPI application: settings, a lifespan that loads the model once, one router per concern.

``create_app(settings)`` builds the app; its ``Service`` (``server.service``, kept in
``app.state.service``) holds the engine, the metrics and the open streaming connections, and
knows how to drain them on shutdown. Routes take what they need through ``server.deps``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.origins import OriginMiddleware
from server.routes import classify, health, metrics, model, stream
from server.service import Service
from server.settings import Settings
from streaming.engine import StreamingEngine


class BodyTooLargeError(Exception):
    """A request body over the upload limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the {limit} byte limit")
        self.limit = limit


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413, by Content-Length or, for a chunked
    body, as soon as the bytes received pass the limit: whatever the app answers then (the
    form parser turns the error into a 400) is replaced by the 413; ``on_reject`` counts it."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

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
                    await self._reject(scope, receive, send)
                    return
        received = 0
        exceeded = started = False

        async def limited() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to the error; the 413 follows
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not exceeded:
                raise  # anything else the app raised; the limit's own error ends here
        if exceeded and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject()
        await _too_large(self.max_bytes)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body is over the upload limit of {limit} bytes"}, status_code=413
    )


def create_app(settings: Settings | None = None, engine: StreamingEngine | None = None) -> FastAPI:
    """The application; ``engine`` (already built) skips loading a checkpoint."""
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
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        on_reject=lambda: service.metrics.errors_total.inc(code="upload_too_large"),
    )
    app.add_middleware(  # outermost: a foreign page is refused before anything else runs
        OriginMiddleware,
        allowed=settings.allowed_origins,
        on_refused=lambda: service.metrics.errors_total.inc(code="forbidden_origin"),
    )

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
