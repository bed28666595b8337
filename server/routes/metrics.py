"""``GET /metrics``: Prometheus text exposition of the engine's and the server's metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from server.deps import ServiceDep

router = APIRouter(tags=["health"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> PlainTextResponse:
    """Histograms of step compute, queue wait, batch size and detection latency; gauges of
    sessions; counters of frames, detections per keyword and errors per kind."""
    await service.refresh_metrics()
    return PlainTextResponse(service.metrics.registry.render(), media_type=CONTENT_TYPE)
