"""Settings of the service: one class, every option also an ``LMUKWS_*`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import DEFAULT_MODEL
from server import protocol


class Settings(BaseSettings):
    """Every knob of ``lmukws serve``; e.g. ``LMUKWS_PORT=9000``, ``LMUKWS_MAX_SESSIONS=64``."""

    model_config = SettingsConfigDict(env_prefix="LMUKWS_", extra="ignore", frozen=True)

    # model
    checkpoint: Path | None = Field(
        None, description="checkpoint file; None = the shipped default for `model`"
    )
    model: str = Field(DEFAULT_MODEL, description="shipped model used when no checkpoint is named")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    torch_threads: int = Field(0, ge=0, description="torch.set_num_threads; 0 = leave as is")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="what runs the model's streaming steps: onnx = the step exported to ONNX "
        "Runtime (CPU; exported once per checkpoint into $LMUKWS_CACHE_DIR, 1.1-4x faster, "
        "see benchmarks/README.md), torch = the model itself, auto = onnx on the CPU when "
        "onnxruntime is installed",
    )

    # network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    ws_compression: bool = Field(
        False, description="permessage-deflate on websockets (off: PCM audio barely compresses)"
    )

    # engine
    engine_processes: int = Field(
        2,
        ge=0,
        description="child processes that run the model steps, each serving its share of the "
        "sessions, so the event loop keeps a core (0: a worker thread in the server process; "
        "2 measured best on 2 cores, see benchmarks/README.md)",
    )
    max_sessions: int = Field(64, ge=1, description="concurrent websocket sessions")
    max_batch: int = Field(
        256, ge=1, description="sessions per model step (one step serves every ready session)"
    )
    max_wait_ms: float = Field(2.0, ge=0.0, description="how long the worker waits to fill a batch")
    pooling_ms: float = Field(
        1000.0, gt=0.0, description="sliding mean of per-frame logits over this much audio"
    )

    # detector defaults (per-keyword thresholds come from the checkpoint, then the client)
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="threshold without other default")
    smoothing_frames: int = Field(5, ge=1)
    patience_frames: int = Field(3, ge=1)
    refractory_ms: float = Field(1000.0, ge=0.0)
    warmup_ms: float = Field(300.0, ge=0.0)
    early_threshold: float | None = Field(
        0.9, ge=0.0, le=1.0, description="fire after one frame at or above this (None: off)"
    )
    rearm_fraction: float = Field(
        0.8, gt=0.0, le=1.0, description="a keyword re-arms below this fraction of its threshold"
    )
    command_window_ms: float = Field(
        3000.0, gt=0.0, description="wake-word grammar: how long a command may follow the wake word"
    )

    # protocol limits
    max_message_bytes: int = Field(protocol.MAX_MESSAGE_BYTES, ge=1024)
    max_upload_bytes: int = Field(protocol.MAX_UPLOAD_BYTES, ge=1024)
    max_upload_files: int = Field(64, ge=1)
    max_upload_seconds: float = Field(60.0, gt=0.0, description="per classified file")
    idle_timeout_s: float = Field(protocol.IDLE_TIMEOUT_S, gt=0.0)
    scores_every_ms: int = Field(0, ge=0, description="default for `start` without it")
    shutdown_deadline_s: float = Field(5.0, gt=0.0, description="SIGTERM to exit")
    log_level: str = "info"
