"""``GET /v1/model``: the served model, its labels, latency and checkpoint metadata."""

from __future__ import annotations

from pathlib import PurePath

from fastapi import APIRouter

from server import protocol
from server.deps import ServiceDep

router = APIRouter(tags=["model"])


@router.get(protocol.MODEL_PATH, response_model=protocol.ModelInfo)
async def model_info(service: ServiceDep) -> protocol.ModelInfo:
    """Name, labels, thresholds and operating points (and the commands' default point under a
    wake word), parameters, look-ahead, algorithmic latency and checkpoint metadata."""
    engine = service.engine
    served = engine.served
    detector = engine.detector_config()
    metadata = dict(served.metadata)
    checkpoint = metadata.pop("checkpoint", None)
    if checkpoint is not None:  # its name, never where the server keeps it
        checkpoint = PurePath(str(checkpoint)).name
    return protocol.ModelInfo(
        name=served.name,
        labels=list(served.labels),
        keywords=detector.keywords,
        thresholds=detector.keyword_thresholds,
        calibrated=engine.sensitivity.calibrated,
        operating_points=engine.sensitivity.describe(),
        command_sensitivity=engine.config.command_sensitivity,
        speech_gate_ms=engine.config.speech_gate_frames * served.frame_ms,
        parameters=served.parameters,
        frame_ms=served.frame_ms,
        window_ms=served.window_ms,
        lookahead_frames=served.lookahead_frames,
        algorithmic_latency_ms=served.algorithmic_latency_ms,
        streaming=served.streaming,
        model_window_ms=served.model_window_ms,
        hop_ms=served.hop_ms,
        runtime=service.runtime,
        checkpoint=checkpoint,
        metadata=metadata,
    )
