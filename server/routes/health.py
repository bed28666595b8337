"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the model is loaded and serving)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "loading or shutting down"}})
async def readyz(service: ServiceDep) -> JSONResponse:
    """Readiness: 200 once the model is loaded, 503 while loading, shutting down, or when the
    engine process is gone."""
    if service.serving:
        return JSONResponse(
            {
                "status": "ready",
                "sessions": service.session_count,
                "pending": service.pending_count,
            },
            status_code=200,
        )
    if service.shutting_down:
        reason = "shutting down"
    elif service.ready:
        reason = "engine stopped"
    else:
        reason = "loading"
    return JSONResponse({"status": reason}, status_code=503)
