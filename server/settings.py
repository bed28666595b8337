"""Settings of the service: one class, every option also an ``LMUKWS_*`` environment variable.

The only layer that overrides what a checkpoint says: the detector settings below default to
the library's (``streaming.detector.DetectorSettings``, in milliseconds of the model's 10 ms
frames), and only those set explicitly (flag or environment) override the checkpoint's
``detector`` section (``server.loading.engine_config``). The ``lmukws serve`` flags and their
help are made from these fields (``server.cli``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.config import DEFAULT_MODEL, DEFAULT_WINDOW_HOP_MS, FeatureConfig
from server import protocol
from streaming.detector import DetectorSettings

_DETECTOR = DetectorSettings()
_FRAME_MS = FeatureConfig().frame_shift_ms


def _detector(default: float | None, description: str, **bounds: float) -> Any:
    """A detector setting: the library's default, overriding the checkpoint's only when set."""
    text = f"{description}; the checkpoint's value wins unless this is set"
    return Field(default, description=text, **bounds)


def _ms(frames: int) -> float:
    return frames * _FRAME_MS


class Settings(BaseSettings):
    """Every knob of ``lmukws serve``; e.g. ``LMUKWS_PORT=9000``, ``LMUKWS_MAX_SESSIONS=64``."""

    model_config = SettingsConfigDict(env_prefix="LMUKWS_", extra="ignore", frozen=True)

    # model
    checkpoint: Path | None = Field(
        None, description="checkpoint file (.safetensors); none: the shipped one of `model`"
    )
    model: str = Field(
        DEFAULT_MODEL, description="shipped model served when no checkpoint is named"
    )
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    torch_threads: int = Field(0, ge=0, description="torch.set_num_threads (0: torch's default)")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="what runs the model's streaming steps: onnx = the step exported to ONNX "
        "Runtime (CPU; exported once per checkpoint into $LMUKWS_CACHE_DIR), torch = the model "
        "itself, auto = onnx on the CPU when onnxruntime is installed",
    )
    window_hop_ms: float = Field(
        DEFAULT_WINDOW_HOP_MS,
        gt=0,
        description="a window model (spiking-attention) recomputes its window this often",
    )

    # network
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port (0 picks a free one)")

    ws_compression: bool = Field(
        False, description="permessage-deflate on websockets (off: PCM audio barely compresses)"
    )

    # engine
    engine_processes: int = Field(
        2,
        ge=0,
        description="child processes that run the model steps, each serving its share of the "
        "sessions, so the event loop keeps a core (0: a worker thread in the server process; "
        "see benchmarks/README.md)",
    )
    engine_heartbeat_timeout_s: float = Field(
        10.0,  # streaming.process.HEARTBEAT_TIMEOUT_S (not imported: it loads torch)
        gt=1.0,  # streaming.process.RESPONSIVE_S
        description="an engine process silent this long is hung: it is killed (its sessions "
        "closed with 1011) and replaced, as a dead one is",
    )
    classify_process: bool = Field(
        True,
        description="with engine processes, POST /v1/classify runs in its own low-priority "
        "worker process, so it never takes the event loop's interpreter lock and yields the "
        "cores to the engine processes (false: in the server's threadpool, as without engine "
        "processes)",
    )
    classify_nice: int = Field(
        10, ge=0, le=19, description="niceness added to the classification worker (0: unchanged)"
    )
    classify_threads: int = Field(
        1, ge=0, description="torch threads of the classification worker (0: torch's default)"
    )
    max_sessions: int = Field(64, ge=1, description="concurrent streaming sessions")
    max_batch: int = Field(
        256, ge=1, description="sessions per model step (one step serves every ready session)"
    )
    max_wait_ms: float = Field(2.0, ge=0.0, description="how long the worker waits to fill a batch")
    pooling_ms: float = _detector(
        _ms(_DETECTOR.pooling_frames), "sliding mean of per-frame logits over this much audio", gt=0
    )

    # detector defaults (per-keyword thresholds come from the checkpoint, then the client)
    threshold: float = _detector(
        _DETECTOR.threshold, "threshold of keywords without one of their own", ge=0, le=1
    )
    smoothing_frames: int = _detector(
        _DETECTOR.smoothing_frames, "frames of the posteriors' moving average", ge=1
    )
    patience_frames: int = _detector(
        _DETECTOR.patience_frames, "frames a keyword stays on top above its threshold", ge=1
    )
    refractory_ms: float = _detector(
        _ms(_DETECTOR.refractory_frames), "no detection this long after one", ge=0
    )
    warmup_ms: float = _detector(
        _ms(_DETECTOR.warmup_frames), "no detection this early after start or reset", ge=0
    )
    early_threshold: float | None = _detector(
        _DETECTOR.early_threshold, "fire after one frame at or above this (None: off)", ge=0, le=1
    )
    rearm_fraction: float = _detector(
        _DETECTOR.rearm_fraction,
        "a keyword re-arms below this fraction of its threshold",
        gt=0,
        le=1,
    )
    command_window_ms: float = _detector(
        _ms(_DETECTOR.command_window_frames), "wake word: how long a command may follow it", gt=0
    )
    command_sensitivity: float | None = _detector(
        _DETECTOR.command_sensitivity,
        "wake word: the commands' point on the calibrated DET curve (None: the session's "
        "sensitivity)",
        ge=0,
        le=1,
    )
    background_ms: float = _detector(
        _ms(_DETECTOR.background_frames),
        "time constant of each keyword's background in a session (0: off)",
        ge=0,
    )
    background_floor: float = _detector(
        _DETECTOR.background_floor, "background level that starts to raise the bar", gt=0
    )
    background_ceiling: float = _detector(
        _DETECTOR.background_ceiling,
        "posteriors above this (a keyword said clearly) leave the background as it is",
        gt=0,
        le=1,
    )
    speech_gate_ms: float = _detector(
        _ms(_DETECTOR.speech_gate_frames),
        "hold keywords back after this much other speech that ended within "
        "speech_gate_recent_ms (0: off)",
        ge=0,
    )
    speech_gate_recent_ms: float = _detector(
        _ms(_DETECTOR.speech_gate_recent_frames),
        "the speech gate: how long after other speech it stays closed",
        gt=0,
    )

    # protocol limits
    max_message_bytes: int = Field(
        protocol.MAX_MESSAGE_BYTES,
        ge=1024,
        description="largest websocket message, text or binary (bigger: 1009 message_too_big)",
    )
    max_upload_bytes: int = Field(
        protocol.MAX_UPLOAD_BYTES,
        ge=1024,
        description="largest POST /v1/classify body, chunked or not (bigger: 413)",
    )
    max_upload_files: int = Field(64, ge=1, description="files in one POST /v1/classify")
    max_upload_seconds: float = Field(
        60.0, gt=0.0, description="longest file POST /v1/classify takes, in seconds (longer: 422)"
    )
    max_request_audio_s: float = Field(
        protocol.MAX_REQUEST_AUDIO_S,
        gt=0.0,
        description="audio seconds in one POST /v1/classify, all files together (more: 413)",
    )
    classify_batch_s: float = Field(
        protocol.CLASSIFY_BATCH_S,
        gt=0.0,
        description="audio seconds decoded and classified at once; bounds a request's memory",
    )
    idle_timeout_s: float = Field(
        protocol.IDLE_TIMEOUT_S,
        gt=0.0,
        description="a started session with no message for this long is closed (1008)",
    )
    handshake_timeout_s: float = Field(
        protocol.HANDSHAKE_TIMEOUT_S,
        gt=0.0,
        description="a connection without `start` this long after connecting is closed (1008)",
    )
    http_header_timeout_s: float = Field(
        protocol.HTTP_HEADER_TIMEOUT_S,
        gt=0.0,
        description="an HTTP connection, or the next request on a kept-alive one, without "
        "complete request headers this long after it opened (its first byte) gets 408 and is "
        "closed",
    )
    http_body_timeout_s: float = Field(
        protocol.HTTP_BODY_TIMEOUT_S,
        gt=0.0,
        description="an HTTP request body that receives no bytes for this long (not a total) "
        "gets 408 and its connection is closed",
    )
    max_pending_connections: int = Field(
        64,
        ge=1,
        description="connections waiting for their `start` (they do not count as sessions)",
    )
    max_outbound_messages: int = Field(
        protocol.MAX_OUTBOUND_MESSAGES,
        ge=1,
        description="unsent messages per session; `scores` beyond it are dropped (never "
        "detections or `end`)",
    )
    slow_consumer_timeout_s: float = Field(
        protocol.SLOW_CONSUMER_TIMEOUT_S,
        gt=0.0,
        description="a client that takes no message for this long while some wait is closed "
        "(1008 slow_consumer) and its session freed",
    )
    max_sample_magnitude: float = Field(
        protocol.MAX_SAMPLE_MAGNITUDE,
        gt=0.0,
        description="pcm_f32le samples beyond this magnitude are bad_audio (1007)",
    )
    max_json_depth: int = Field(
        protocol.MAX_JSON_DEPTH,
        ge=2,
        description="nesting of a JSON text message, checked before parsing (deeper: 1007)",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        [],
        description="browser origins allowed besides the server's own, comma-separated, e.g. "
        "https://app.example (* allows any; clients without Origin are always allowed)",
    )
    scores_every_ms: int = Field(0, ge=0, description="default for `start` without it")
    shutdown_deadline_s: float = Field(5.0, gt=0.0, description="SIGTERM to exit")
    log_level: str = Field("info", description="uvicorn log level")

    # Ray Serve (server.ray_serve, docs/ray.md)
    ray_replicas: int = Field(
        0,
        ge=0,
        description="serve through Ray Serve's HTTP proxy with this many replicas, each with "
        "its own engine, max_sessions sessions each (0: one uvicorn server, no Ray; needs "
        "pip install 'lmukws[ray]')",
    )
    ray_address: str | None = Field(
        None,
        description="with ray_replicas: join this Ray cluster (e.g. HEAD:6379, or auto) instead "
        "of starting a local one",
    )
    ray_min_replicas: int | None = Field(
        None,
        ge=0,
        description="with ray_replicas: autoscale on active sessions, down to this many replicas",
    )
    ray_max_replicas: int | None = Field(
        None,
        ge=1,
        description="with ray_replicas: autoscale on active sessions, up to this many replicas",
    )
    ray_replica_cpus: float = Field(
        2.0,
        gt=0.0,
        description="CPUs each replica reserves; they set its engine processes (one per whole "
        "CPU from 2 up, else 0) and torch threads, unless those are set",
    )
    replica: str | None = Field(
        None,
        description="this server's replica name, sent in `ready` (set per replica by Ray Serve)",
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """``"https://a.example, https://b.example"`` (flag or environment) -> a list."""
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value
