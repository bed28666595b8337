"""``lmukws serve --ray-replicas N``: the same app on Ray Serve replicas behind Ray's HTTP proxy.

Each replica is a Ray actor that builds the app of ``server.app.create_app`` and runs its
lifespan (the model, the engine or engine processes), so the websocket protocol, REST,
``/v1/model`` and the browser page are those of a plain ``lmukws serve``. A websocket session
is one ongoing request of one replica for its whole life, and a replica's
``max_ongoing_requests`` is its ``max_sessions``: Ray Serve routes each new session (and each
HTTP request) to a replica with a free slot, the less busy of two it samples, and never to a
full one.

Around the replicas:

- ``ReplicaBoard``, one small named actor: each replica reports its ``/readyz`` answer and its
  metrics every ``REPORT_S``; the board also carries the drain of a graceful shutdown to
  every replica (``drain``).
- ``ProxyGuard``, an ASGI middleware in Ray's HTTP proxy (``proxy_middlewares``, named by
  ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in the job's environment). It answers
  ``/healthz``, ``/readyz`` and ``/metrics`` for the whole deployment from the board, so they
  answer even when every replica's slots are taken; a websocket that no replica takes within
  ``ADMISSION_TIMEOUT_S`` (every one is full) or that the proxy's queue refuses gets
  ``error`` server_full and 1013, and one whose replica dies mid-session gets ``error``
  internal_error and 1011, as from a plain server (without it: a 500 handshake, a wait in
  the proxy's queue, and a dropped connection, 1006).

Nothing heavy is imported at module level (the proxy imports this module for its middleware):
Ray, torch and the app come inside functions. See docs/ray.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server import protocol
from server.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI
    from ray.serve import Application
    from starlette.middleware import Middleware
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from server.service import Service

__all__ = [
    "APP_NAME",
    "KwsReplica",
    "ProxyGuard",
    "ReplicaBoard",
    "ReplicaReport",
    "app_builder",
    "application",
    "deployment_options",
    "drain",
    "proxy_middlewares",
    "replica_settings",
    "runtime_env",
    "serve_on_ray",
]

log = logging.getLogger("lmukws.ray")

#: the Serve application and its one deployment
APP_NAME = "lmukws"
#: autoscaling: the active sessions per replica that Ray Serve aims at, as a share of the cap
TARGET_SHARE = 0.7
#: autoscaling: load above the target this long before a replica is added (Ray's default: 30 s)
UPSCALE_DELAY_S = 5.0
#: a replica reports its state to the board this often
REPORT_S = 1.0
#: a report older than this is a replica gone
STALE_S = 3 * REPORT_S + 2.0
#: a websocket that no replica accepted within this long at the proxy: every replica is full
ADMISSION_TIMEOUT_S = 3.0
#: what Ray's HTTP proxy imports for its middlewares
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "server.ray_serve.proxy_middlewares"
#: Ray's namespace of Serve's actors, where the board lives too
NAMESPACE = "serve"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: object store of a local cluster: the service passes only small messages through it
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


# ---------------------------------------------------------------------------------------------
# settings


def deployment_options(settings: Settings) -> dict[str, Any]:
    """``serve.deployment`` options for ``settings``: replicas or autoscaling, the replica's
    CPUs, ``max_ongoing_requests``; ValueError for replica counts that do not fit together."""
    replicas = settings.ray_replicas
    if replicas < 1:
        raise ValueError("ray_replicas must be at least 1 to serve on Ray")
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": settings.ray_replica_cpus},
        # a session is one ongoing request: Serve routes only to replicas with a free slot
        "max_ongoing_requests": settings.max_sessions,
        # requests waiting at a proxy to be routed (a burst of new sessions passes through
        # here): beyond this many, 503 (1013 for a websocket, through ProxyGuard)
        "max_queued_requests": settings.max_pending_connections,
        # sessions are drained (end + 1001) before Serve stops the replicas; this bounds the rest
        "graceful_shutdown_timeout_s": settings.shutdown_deadline_s + 5.0,
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if settings.ray_min_replicas is None and settings.ray_max_replicas is None:
        options["num_replicas"] = replicas
        return options
    low = 1 if settings.ray_min_replicas is None else settings.ray_min_replicas
    high = replicas if settings.ray_max_replicas is None else settings.ray_max_replicas
    if not low <= replicas <= high:
        raise ValueError(
            f"need ray_min_replicas ({low}) <= ray_replicas ({replicas}) <= "
            f"ray_max_replicas ({high})"
        )
    options["autoscaling_config"] = {
        "min_replicas": low,
        "initial_replicas": replicas,
        "max_replicas": high,
        "target_ongoing_requests": max(1.0, TARGET_SHARE * settings.max_sessions),
        "upscale_delay_s": UPSCALE_DELAY_S,
    }
    return options


def replica_settings(settings: Settings, replica: str) -> Settings:
    """The settings of one replica named ``replica``: unless set (flag or environment), its
    engine processes and torch threads follow its CPUs: one single-threaded engine process per
    whole CPU from 2 CPUs up, else the in-process engine on the CPUs it has."""
    cpus = settings.ray_replica_cpus
    update: dict[str, Any] = {"replica": replica}
    explicit = settings.model_fields_set
    if "engine_processes" not in explicit:
        update["engine_processes"] = int(cpus) if cpus >= 2 else 0
    if "torch_threads" not in explicit:
        processes = update.get("engine_processes", settings.engine_processes)
        update["torch_threads"] = 1 if processes else max(1, int(cpus))
    return settings.model_copy(update=update)


# ---------------------------------------------------------------------------------------------
# the board: every replica's state, and the drain


@dataclasses.dataclass(frozen=True)
class ReplicaReport:
    """One replica's state as the proxy shows it: its ``/readyz`` answer and its metrics."""

    ready: bool
    status: dict[str, Any]
    metrics: str


class ReplicaBoard:
    """A Ray actor (``board``): the latest report of each replica, and the drain flag."""

    def __init__(self) -> None:
        self._reports: dict[str, tuple[float, ReplicaReport]] = {}
        self._draining = False

    def report(self, replica: str, report: ReplicaReport) -> bool:
        """Keep ``replica``'s report; True: the replica is to drain its sessions now."""
        self._reports[replica] = (time.monotonic(), report)
        return self._draining

    def forget(self, replica: str) -> None:
        self._reports.pop(replica, None)

    def reports(self) -> dict[str, ReplicaReport]:
        """The reports of the replicas that reported within ``STALE_S``."""
        now = time.monotonic()
        for name in [n for n, (t, _) in self._reports.items() if now - t > STALE_S]:
            del self._reports[name]
        return {name: report for name, (_, report) in self._reports.items()}

    def drain(self, on: bool = True) -> None:
        """Every replica drains at its next report (``on``), or serves again (not ``on``)."""
        self._draining = on


def board(app_name: str = APP_NAME) -> Any:
    """The board of ``app_name`` (a Ray actor handle), started if it is not running."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(ReplicaBoard)
    return actor.options(  # type: ignore[attr-defined]
        name=_board_name(app_name),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote()


def _board_name(app_name: str) -> str:
    return f"lmukws-board-{app_name}"


#: the ``/readyz`` fields that add up over the replicas
_COUNTS = ("sessions", "pending", "engines", "engines_total")


def readiness(reports: Mapping[str, ReplicaReport]) -> tuple[bool, dict[str, Any]]:
    """(ready, ``/readyz`` body) of a deployment: ready while any replica is; the counts
    summed, each replica's own answer under ``replicas``."""
    ready = any(r.ready for r in reports.values())
    statuses = sorted({r.status.get("status", "?") for r in reports.values()})
    body: dict[str, Any] = {"status": "ready" if ready else ", ".join(statuses) or "loading"}
    for field in _COUNTS:
        body[field] = sum(int(r.status.get(field, 0)) for r in reports.values())
    body["replicas"] = {name: reports[name].status for name in sorted(reports)}
    return ready, body


# ---------------------------------------------------------------------------------------------
# the replica


class KwsReplica:
    """One replica: the app of ``create_app`` on this replica's settings, its report loop, and
    Ray Serve's health check. Made a deployment by ``application``."""

    def __init__(self, settings: Settings, app_name: str = APP_NAME) -> None:
        from ray import serve

        name = serve.get_replica_context().replica_tag
        self.settings = replica_settings(settings, name)
        self.name = name
        self.board = board(app_name)
        self._app: FastAPI | None = None  # not `app`: Ray Serve's wrapper has that property
        self._reporter: asyncio.Task[None] | None = None
        lmukws = logging.getLogger("lmukws")
        if not lmukws.handlers:  # Ray keeps the replica's stderr in its log files
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            lmukws.addHandler(handler)
            lmukws.setLevel(self.settings.log_level.upper())

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The app (Ray Serve runs its lifespan next: the model loads, the engines start)."""
        from server.app import create_app

        self._app = create_app(self.settings)
        self._reporter = asyncio.get_running_loop().create_task(self._report_loop())
        log.info("replica %s: %s", self.name, self.settings.model_dump(include=_SHOWN))
        return self._app

    @property
    def service(self) -> Service:
        assert self._app is not None
        return self._app.state.service

    async def _report_loop(self) -> None:
        """Report to the board every ``REPORT_S``; drain when it says so."""
        from server.routes.health import readiness as replica_readiness

        service = self.service
        while True:
            try:
                if service.ready:
                    await service.refresh_metrics()
                ready, status = replica_readiness(service)
                report = ReplicaReport(ready, status, service.metrics.registry.render())
                if await self.board.report.remote(self.name, report):
                    await service.drain()
            except Exception as error:  # the board restarts (max_restarts): keep reporting
                log.warning("replica %s: report failed: %s", self.name, error)
            await asyncio.sleep(REPORT_S)

    async def check_health(self) -> None:
        """Ray Serve's health check: unhealthy (replaced) when no engine runs, as ``/healthz``."""
        if self._app is None:
            return
        live, _ = self.service.engines
        if self.service.ready and not self.service.shutting_down and live == 0:
            raise RuntimeError(f"replica {self.name}: no engine is running")

    async def __del__(self) -> None:
        """After the app's shutdown (Ray Serve runs it first): leave the board."""
        if self._reporter is not None:
            self._reporter.cancel()
        with contextlib.suppress(Exception):
            await self.board.forget.remote(self.name)


_SHOWN = {"max_sessions", "engine_processes", "torch_threads", "runtime", "ray_replica_cpus"}


def application(settings: Settings, app_name: str = APP_NAME) -> Application:
    """The Ray Serve application of ``settings`` (for ``serve.run``)."""
    from ray import serve

    ingress = serve.ingress()(KwsReplica)
    deployment = serve.deployment(ingress, name=APP_NAME, **deployment_options(settings))
    return deployment.bind(settings, app_name)


def app_builder(args: dict[str, Any]) -> Application:
    """For Ray Serve config files and KubeRay (``import_path: server.ray_serve:app_builder``):
    ``args`` are settings (as the ``LMUKWS_*`` variables, lower case and without the prefix),
    over the ``LMUKWS_*`` variables of the process that builds the application."""
    settings = Settings(**args)
    if settings.ray_replicas < 1:
        settings = settings.model_copy(update={"ray_replicas": 1})
    return application(settings)


# ---------------------------------------------------------------------------------------------
# the proxy's middleware


def proxy_middlewares() -> list[Middleware]:
    """What Ray's HTTP proxy runs around every request: ``ProxyGuard``."""
    from starlette.middleware import Middleware

    return [Middleware(ProxyGuard)]


#: what the proxy answers itself, for the whole deployment
CONTROL_PATHS = ("/healthz", "/readyz", "/metrics")


class ProxyGuard:
    """In Ray's HTTP proxy: ``/healthz``, ``/readyz`` and ``/metrics`` of the whole deployment
    from the board, and, for a websocket, what a plain ``lmukws serve`` sends where Ray's
    proxy would not: server_full and 1013 when no replica took it in ``admission_timeout_s``
    or the proxy's queue refused it (an HTTP 503 the proxy sends on a websocket, which uvicorn
    turns into a 500 handshake), internal_error and 1011 when its replica died mid-session
    (the proxy just drops the connection: 1006). Other HTTP requests pass untouched."""

    def __init__(
        self,
        app: ASGIApp,
        app_name: str = APP_NAME,
        admission_timeout_s: float = ADMISSION_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.app_name = app_name
        self.admission_timeout_s = admission_timeout_s
        self._board: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif (
            scope["type"] == "http"
            and scope.get("path") in CONTROL_PATHS
            and scope.get("method") in ("GET", "HEAD")
        ):
            response = await self._control(scope["path"])
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _reports(self) -> dict[str, ReplicaReport]:
        import ray

        try:
            if self._board is None:
                self._board = await asyncio.to_thread(
                    ray.get_actor, _board_name(self.app_name), namespace=NAMESPACE
                )
            return await asyncio.wait_for(self._board.reports.remote(), 5.0)
        except Exception as error:  # not started yet, or restarting: no replica known
            log.info("no replica reports: %s", error)
            self._board = None
            return {}

    async def _control(self, path: str) -> Any:
        from starlette.responses import JSONResponse, PlainTextResponse

        from streaming.metrics import merge_expositions

        reports = await self._reports()
        if path == "/metrics":
            texts = {name: r.metrics for name, r in reports.items()}
            text = merge_expositions(texts, "replica") if texts else ""
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
        ready, body = readiness(reports)
        if path == "/readyz":
            return JSONResponse(body, status_code=200 if ready else 503)
        if body["engines"] == 0:  # /healthz: no replica reports a running engine
            status, code = "no engine running", 503
        else:
            status, code = "ok", 200
        return JSONResponse({"status": status, "replicas": len(reports)}, status_code=code)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = {"accepted": False, "closed": False, "gone": False, "status": None}
        accepted = asyncio.Event()

        async def watched_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                state["gone"] = True
            return message

        async def watched_send(message: Message) -> None:
            kind = message["type"]
            if not state["accepted"] and kind in ("http.response.start", "http.response.body"):
                state["status"] = message.get("status", state["status"])
                return  # the proxy's own HTTP answer: not for a websocket
            if kind == "websocket.accept":
                state["accepted"] = True
                accepted.set()
            elif kind == "websocket.close":
                state["closed"] = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, watched_receive, watched_send))
        waiter = asyncio.ensure_future(accepted.wait())
        try:
            await asyncio.wait(
                {task, waiter},
                timeout=self.admission_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not task.done() and not state["accepted"]:  # waiting at the proxy: all full
                task.cancel()
                state["status"] = 503
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
            if not state["closed"] and not state["gone"]:
                with contextlib.suppress(Exception):
                    await self._close(send, state["accepted"], state["status"])

    @staticmethod
    async def _close(send: Send, accepted: bool, status: int | None) -> None:
        code = protocol.ErrorCode.INTERNAL
        message = "the replica serving this session failed; open a new session"
        if not accepted:
            if status is not None and status < 500 and status != 429:
                await send({"type": "websocket.close", "code": 1000})  # refused: HTTP 403
                return
            if status in (429, 503):
                code = protocol.ErrorCode.SERVER_FULL
                message = "server full: every replica's sessions are taken; try again later"
            await send({"type": "websocket.accept"})
        error = protocol.ErrorMessage(code=code, message=message)
        await send({"type": "websocket.send", "text": protocol.dump_message(error)})
        await send({"type": "websocket.close", "code": int(protocol.ERROR_CLOSE_CODES[code])})


# ---------------------------------------------------------------------------------------------
# running it: lmukws serve --ray-replicas


def runtime_env() -> dict[str, Any]:
    """The job's runtime environment (inherited by Serve's controller, proxies and replicas
    that this job starts): the proxy middleware, and this checkout on ``PYTHONPATH`` when the
    project runs from a source tree rather than an installed package."""
    env = {PROXY_CALLBACK_ENV: PROXY_CALLBACK}
    root = Path(__file__).resolve().parent.parent
    if root.name not in ("site-packages", "dist-packages"):
        paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {"env_vars": env}


def drain(app_name: str = APP_NAME, deadline_s: float = 10.0) -> bool:
    """Drain every replica of ``app_name`` (each open session flushed, ``end``, 1001) and wait
    until none holds a session, at most ``deadline_s``; True when they all did in time."""
    import ray

    handle = board(app_name)
    ray.get(handle.drain.remote())
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        reports = ray.get(handle.reports.remote())
        if all(_drained(r) for r in reports.values()):
            return True
        time.sleep(0.2)
    return False


def _drained(report: ReplicaReport) -> bool:
    """The replica drained: shutting down, no connection left."""
    left = report.status.get("sessions", 1) + report.status.get("pending", 1)
    return report.status.get("status") == "shutting down" and left == 0


def _local_cpus(settings: Settings) -> float:
    """Logical CPUs of a local cluster: the machine's, or what the replicas reserve when that
    is more (they then share the cores; a log line says so)."""
    cores = os.cpu_count() or 1
    most = settings.ray_max_replicas or settings.ray_replicas
    wanted = math.ceil(most * settings.ray_replica_cpus)
    if wanted > cores:
        log.warning(
            "%d replicas x %g CPUs exceed this machine's %d cores: they share them",
            most,
            settings.ray_replica_cpus,
            cores,
        )
    return max(cores, wanted)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_on_ray(settings: Settings, stop: threading.Event | None = None) -> int:
    """Serve ``settings`` on Ray Serve until SIGTERM/SIGINT (or ``stop``); then drain every
    replica (``end`` + 1001 for each session), shut Serve down, and stop Ray if this started
    it. Returns the exit status."""
    import ray
    from ray import serve

    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    options = deployment_options(settings)  # ValueError before anything starts
    port = settings.port or _free_port(settings.host)
    local = settings.ray_address is None
    init: dict[str, Any] = {"runtime_env": runtime_env(), "include_dashboard": False}
    if local:  # "local": a new cluster, never one that `ray start` left running here
        init.update(
            address="local",
            num_cpus=_local_cpus(settings),
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        )
    else:
        init["address"] = settings.ray_address
    stop = stop or threading.Event()
    ray.init(**init)
    restore = _on_signals(stop)  # after ray.init: Ray's own SIGTERM handler aborts the process
    try:
        serve.start(http_options={"host": settings.host, "port": port})
        ray.get(board().drain.remote(False))  # a board left by an earlier run serves again
        started = time.monotonic()
        serve.run(application(settings), name=APP_NAME, route_prefix="/")
        log.info(
            "Ray Serve running on http://%s:%d with %s (%.1f s to start)",
            settings.host,
            port,
            _describe(options),
            time.monotonic() - started,
        )
        while not stop.wait(0.5):
            pass
        log.info("draining every replica (deadline %.1f s)", settings.shutdown_deadline_s)
        if not drain(deadline_s=settings.shutdown_deadline_s + 2 * REPORT_S):
            log.warning("some sessions were still open at the deadline")
        return 0
    finally:
        with contextlib.suppress(Exception):
            serve.delete(APP_NAME)
        with contextlib.suppress(Exception):
            ray.kill(ray.get_actor(_board_name(APP_NAME), namespace=NAMESPACE))
        if local:
            serve.shutdown()
        ray.shutdown()
        restore()


def _describe(options: Mapping[str, Any]) -> str:
    scaling = options.get("autoscaling_config")
    if scaling:
        return (
            f"{scaling['initial_replicas']} replicas (autoscaling {scaling['min_replicas']}.."
            f"{scaling['max_replicas']}, target {scaling['target_ongoing_requests']:g} sessions)"
        )
    return f"{options['num_replicas']} replicas"


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set ``stop`` (the main thread only; elsewhere, nothing); returns
    what restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def ray_missing() -> str | None:
    """None when Ray Serve can be imported, else what to tell the user."""
    try:
        import ray.serve  # noqa: F401
    except ImportError as error:
        return f"Ray Serve is not installed ({error}); pip install 'lmukws[ray]'"
    return None
