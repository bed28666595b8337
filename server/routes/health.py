"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the model is loaded and serving)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import ServiceDep
from server.service import Service

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "no engine is running"}})
async def healthz(service: ServiceDep) -> JSONResponse:
    """Liveness: 200 while the process runs and, once loaded, at least one engine (process)
    runs; 503 when none does, so a container health check restarts a server that can no
    longer serve any session."""
    live, total = service.engines
    if service.ready and not service.shutting_down and live == 0:
        return JSONResponse(
            {"status": "no engine running", "engines": live, "engines_total": total},
            status_code=503,
        )
    return JSONResponse({"status": "ok"}, status_code=200)


def readiness(service: Service) -> tuple[bool, dict[str, Any]]:
    """(ready, ``/readyz`` body): ready once the model is loaded; not while loading, shutting
    down, or while an engine process is gone (being replaced)."""
    live, total = service.engines
    engines = {"engines": live, "engines_total": total}
    if service.serving:
        return True, {
            "status": "ready",
            "sessions": service.session_count,
            "pending": service.pending_count,
            **engines,
        }
    if service.shutting_down:  # the drain's progress
        engines = {"sessions": service.session_count, "pending": service.pending_count, **engines}
    if service.shutting_down:
        reason = "shutting down"
    elif service.restarting:
        reason = "engine restarting"
    elif service.ready:
        reason = "engine stopped"
    else:
        reason = "loading"
    return False, {"status": reason, **engines}


@router.get("/readyz", responses={503: {"description": "loading or shutting down"}})
async def readyz(service: ServiceDep) -> JSONResponse:
    """Readiness: 200 once the model is loaded, 503 while loading, shutting down, or while an
    engine process is gone (being replaced); ``engines`` says how many engines are live."""
    ready, body = readiness(service)
    return JSONResponse(body, status_code=200 if ready else 503)
