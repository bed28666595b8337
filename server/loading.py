"""From ``Settings`` to a loaded engine: the one loader of the server and the in-process client.

``resolve_checkpoint`` names the file (``settings.checkpoint`` or the shipped one of
``settings.model``), ``engine_config`` applies the settings over the checkpoint's description
(only the detector settings set explicitly override the checkpoint's ``detector`` section), and
``load_engine`` builds the engine (not yet started).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server import protocol
from server.settings import Settings
from streaming.engine import EngineConfig, StreamingEngine
from streaming.metrics import EngineMetrics

__all__ = [
    "DETECTOR_SETTINGS",
    "ENGINE_SETTINGS",
    "engine_config",
    "load_engine",
    "resolve_checkpoint",
]

log = logging.getLogger("lmukws.server")

#: ``Settings`` fields that are ``EngineConfig``'s own
ENGINE_SETTINGS = (
    "max_sessions",
    "max_batch",
    "max_wait_ms",
    "torch_threads",
    "runtime",
    "window_hop_ms",
)
#: ``Settings`` fields that override the checkpoint's detector defaults when set explicitly
DETECTOR_SETTINGS = (
    "threshold",
    "smoothing_frames",
    "patience_frames",
    "refractory_ms",
    "warmup_ms",
    "early_threshold",
    "rearm_fraction",
    "command_window_ms",
    "command_sensitivity",
    "pooling_ms",
    "background_ms",
    "background_floor",
    "background_ceiling",
    "speech_gate_ms",
    "speech_gate_recent_ms",
)


def resolve_checkpoint(settings: Settings) -> Path:
    """The checkpoint to serve: ``settings.checkpoint`` or the shipped one of ``settings.model``;
    ``models.CheckpointError`` (a ``ValueError``) when it is missing or the name is unknown. A
    window model (``models.WINDOW_MODELS``) is served by windowed recompute (``streaming.window``,
    every ``settings.window_hop_ms``)."""
    from models.checkpoint import CheckpointError, default_checkpoint

    if settings.checkpoint is None:
        return default_checkpoint(settings.model)
    path = Path(settings.checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {settings.checkpoint}")
    return path


def engine_config(settings: Settings, metadata: Mapping[str, Any]) -> EngineConfig:
    """The engine's settings: the checkpoint's detector defaults (``EngineConfig.from_metadata``)
    with the detector settings set explicitly (flag or environment) over them, and the
    engine's own settings."""
    explicit = settings.model_fields_set
    overrides = {name: getattr(settings, name) for name in DETECTOR_SETTINGS if name in explicit}
    engine = {name: getattr(settings, name) for name in ENGINE_SETTINGS}
    return EngineConfig.from_metadata(
        metadata,
        scores_top=protocol.MAX_SCORES_TOP,
        export_in_background=True,  # ready at once, on torch until the ONNX export is in
        **engine,
        **overrides,
    )


def load_engine(
    settings: Settings, metrics: EngineMetrics | None = None, runtime: str | None = None
) -> StreamingEngine:
    """Load the checkpoint named by the settings into a (not yet started) engine; ``runtime``
    replaces the settings' (an engine that never runs a streaming step, such as the server's
    own in front of engine processes, takes "torch" and skips the ONNX export)."""
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
