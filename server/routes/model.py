"""``GET /v1/model``: the served model, its labels, latency and checkpoint metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server import protocol

router = APIRouter(tags=["model"])


@router.get(protocol.MODEL_PATH, response_model=protocol.ModelInfo)
async def model_info(request: Request) -> protocol.ModelInfo:
    """Name, labels, thresholds and operating points, parameters, look-ahead, algorithmic
    latency and checkpoint metadata."""
    service = request.app.state.service
    engine = service.engine
    detector = engine.detector_config()
    metadata = dict(engine.metadata)
    checkpoint = metadata.pop("checkpoint", None)
    return protocol.ModelInfo(
        name=engine.model_name,
        labels=engine.labels,
        keywords=detector.keywords,
        thresholds=detector.keyword_thresholds,
        calibrated=engine.sensitivity.calibrated,
        operating_points=engine.sensitivity.describe(),
        parameters=engine.num_parameters,
        frame_ms=engine.frame_ms,
        window_ms=engine.feature_config.frame_length_ms,
        lookahead_frames=engine.lookahead_frames,
        algorithmic_latency_ms=engine.algorithmic_latency_ms,
        runtime=service.runtime,
        checkpoint=checkpoint,
        metadata=metadata,
    )
