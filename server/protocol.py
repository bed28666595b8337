"""Wire protocol of ``WS /v1/stream``: message types, close codes, error codes and limits.

Both the server and the client import this module, so it imports nothing heavy (no torch, no
fastapi; numpy only inside the PCM helpers).

Conversation::

    client                                   server
    {"type":"start","sample_rate":16000,...} ->
                                             <- {"type":"ready",...}
    binary audio (little-endian mono PCM)    ->
                                             <- {"type":"detection",...}   (any time)
                                             <- {"type":"scores",...}      (if asked for)
    {"type":"reset"}                         ->   (total reset; no reply)
    {"type":"stop"}                          ->
                                             <- {"type":"end",...}, then close 1000

Every fatal error is an ``{"type":"error","code","message"}`` followed by a close whose code is
``ERROR_CLOSE_CODES[code]``. A server shutting down flushes, sends ``end`` and closes with 1001.
The limits below are defaults of the server's settings; docs/hardening.md says what happens
past each one (``slow_consumer``, pending connections, origins, upload budgets).

Times are audio times in milliseconds of 16 kHz audio from the last ``start`` or ``reset``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.config import FeatureConfig

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

STREAM_PATH = "/v1/stream"
CLASSIFY_PATH = "/v1/classify"
MODEL_PATH = "/v1/model"

# Audio
_FEATURES = FeatureConfig()
TARGET_SAMPLE_RATE = _FEATURES.sample_rate  # the model's rate; other rates are resampled to it
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
ENCODINGS = ("pcm_s16le", "pcm_f32le")
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4}
FRAME_MS = _FEATURES.frame_shift_ms  # frame shift of the front end
WINDOW_MS = _FEATURES.frame_length_ms  # analysis window of the front end

# Limits (defaults; the server's settings may lower or raise them)
MAX_MESSAGE_BYTES = 1 << 20  # one websocket message, text or binary (1 MiB, ~5 s of 48 kHz f32)
MAX_UPLOAD_BYTES = 32 << 20  # one POST /v1/classify request
MAX_SCORES_TOP = 5  # entries in ``scores.top``
IDLE_TIMEOUT_S = 60.0  # no message for this long closes the session
HANDSHAKE_TIMEOUT_S = 5.0  # no ``start`` this long after connecting closes the connection
MAX_OUTBOUND_MESSAGES = 64  # unsent messages per session; ``scores`` beyond are dropped
SLOW_CONSUMER_TIMEOUT_S = 10.0  # a message unsent this long closes the session (slow_consumer)
MAX_SAMPLE_MAGNITUDE = 1e3  # |x| of pcm_f32le samples beyond this is bad_audio
MAX_JSON_DEPTH = 16  # nesting of a text message (``start`` needs 3)
MAX_REQUEST_AUDIO_S = 600.0  # audio seconds in one POST /v1/classify, all files together
CLASSIFY_BATCH_S = 60.0  # audio seconds decoded and classified at once by POST /v1/classify
HTTP_HEADER_TIMEOUT_S = 10.0  # an HTTP request's headers must be complete this long after it began
HTTP_BODY_TIMEOUT_S = 30.0  # an HTTP request body that receives no bytes this long is abandoned


class CloseCode(enum.IntEnum):
    """Websocket close codes used by the server (RFC 6455 and IANA registry)."""

    NORMAL = 1000  # after ``end``
    GOING_AWAY = 1001  # server shutting down
    INVALID_DATA = 1007  # bad data: broken or too deeply nested JSON, bad fields, bad samples
    POLICY_VIOLATION = 1008  # protocol misuse: audio before start, unknown type, bad rate, a
    # client that stopped reading (slow_consumer), no ``start`` in time...
    MESSAGE_TOO_BIG = 1009  # a message over the size limit
    INTERNAL_ERROR = 1011  # the server failed
    TRY_AGAIN_LATER = 1013  # server full (session cap)


class ErrorCode(str, enum.Enum):
    """``code`` of an ``error`` message."""

    BAD_JSON = "bad_json"  # a text message that is not a JSON object, or nested too deeply
    INVALID_MESSAGE = "invalid_message"  # JSON of a known type with missing or bad fields
    UNKNOWN_TYPE = "unknown_type"  # ``type`` missing or not a client message type
    NOT_STARTED = "not_started"  # audio, reset or stop before ``start``
    ALREADY_STARTED = "already_started"  # a second ``start`` on one connection
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"  # outside 8000..48000 Hz
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # not one of ``ENCODINGS``
    UNKNOWN_KEYWORD = "unknown_keyword"  # a keyword or threshold key not among the labels
    # byte count not a whole number of samples; NaN/inf or float samples beyond
    # ``MAX_SAMPLE_MAGNITUDE``
    BAD_AUDIO = "bad_audio"
    MESSAGE_TOO_BIG = "message_too_big"
    # no message for ``idle_timeout`` seconds, or no ``start`` within ``HANDSHAKE_TIMEOUT_S``
    IDLE_TIMEOUT = "idle_timeout"
    # the client took no message for ``SLOW_CONSUMER_TIMEOUT_S`` while some waited (new in
    # 0.2; a client that does not know it reads an unknown code, then the 1008 close)
    SLOW_CONSUMER = "slow_consumer"
    SERVER_FULL = "server_full"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal_error"


ERROR_CLOSE_CODES: dict[ErrorCode, CloseCode] = {
    ErrorCode.BAD_JSON: CloseCode.INVALID_DATA,
    ErrorCode.INVALID_MESSAGE: CloseCode.INVALID_DATA,
    ErrorCode.BAD_AUDIO: CloseCode.INVALID_DATA,
    ErrorCode.UNKNOWN_TYPE: CloseCode.POLICY_VIOLATION,
    ErrorCode.NOT_STARTED: CloseCode.POLICY_VIOLATION,
    ErrorCode.ALREADY_STARTED: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNSUPPORTED_SAMPLE_RATE: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNSUPPORTED_ENCODING: CloseCode.POLICY_VIOLATION,
    ErrorCode.UNKNOWN_KEYWORD: CloseCode.POLICY_VIOLATION,
    ErrorCode.IDLE_TIMEOUT: CloseCode.POLICY_VIOLATION,
    ErrorCode.SLOW_CONSUMER: CloseCode.POLICY_VIOLATION,
    ErrorCode.MESSAGE_TOO_BIG: CloseCode.MESSAGE_TOO_BIG,
    ErrorCode.SERVER_FULL: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.SHUTTING_DOWN: CloseCode.GOING_AWAY,
    ErrorCode.INTERNAL: CloseCode.INTERNAL_ERROR,
}


class ProtocolError(ValueError):
    """A client message that breaks the protocol; ``close_code`` is the close that follows."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> CloseCode:
        return ERROR_CLOSE_CODES[self.code]


# ---------------------------------------------------------------------------------------------
# client -> server


def _check_encoding(value: Any) -> Any:
    if value not in ENCODINGS:
        raise PydanticCustomError(
            ErrorCode.UNSUPPORTED_ENCODING.value,
            "encoding {value} is not supported; expected one of {expected}",
            {"value": repr(value), "expected": ", ".join(ENCODINGS)},
        )
    return value


Encoding = Annotated[Literal["pcm_s16le", "pcm_f32le"], BeforeValidator(_check_encoding)]


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StartMessage(_ClientMessage):
    """First message: the audio format and, optionally, keywords, thresholds and score reports.

    ``keywords`` restricts detections to a subset of the model's labels (default: every label
    except ``_unknown_`` and ``_silence_``); ``thresholds`` overrides the per-keyword thresholds
    (keys must be labels, values in [0, 1]); ``sensitivity`` (0..1, default 0.5: the checkpoint's
    calibrated operating point) moves every keyword along the calibrated DET curve, from fewest
    false alarms (0) to fewest misses (1), under any explicit ``thresholds``; ``wake_word`` (a
    label) lets every other keyword fire only within ``command_window_ms`` after the wake word
    fired, at ``command_sensitivity`` (0..1, with a wake word only; default ``sensitivity``)
    while the wake word keeps ``sensitivity``; ``speech_gate_ms`` sets the detector's speech
    gate (0: off; default: the checkpoint's or the server's); ``scores_every_ms`` > 0 asks for
    a ``scores`` message about every that many milliseconds of audio (whole 10 ms frames).
    """

    type: Literal["start"] = "start"
    sample_rate: int
    encoding: Encoding = "pcm_s16le"
    keywords: list[str] | None = None
    thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] | None = None
    sensitivity: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    wake_word: str | None = None
    command_window_ms: Annotated[int, Field(ge=100, le=60_000)] | None = None
    command_sensitivity: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    speech_gate_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None
    scores_every_ms: Annotated[int, Field(ge=0, le=60_000)] = 0

    @model_validator(mode="after")
    def _commands_follow_a_wake_word(self) -> StartMessage:
        if self.command_sensitivity is not None and self.wake_word is None:
            raise ValueError("command_sensitivity applies to the commands after a wake_word")
        return self

    @field_validator("sample_rate", mode="before")
    @classmethod
    def _check_rate(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise PydanticCustomError(
                    ErrorCode.UNSUPPORTED_SAMPLE_RATE.value,
                    "sample_rate must be a whole number of Hz, got {value}",
                    {"value": repr(value)},
                )
        if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
            raise PydanticCustomError(
                ErrorCode.UNSUPPORTED_SAMPLE_RATE.value,
                "sample_rate {value} Hz is not supported; expected {lo}..{hi} Hz",
                {"value": value, "lo": MIN_SAMPLE_RATE, "hi": MAX_SAMPLE_RATE},
            )
        return value

    @property
    def bytes_per_sample(self) -> int:
        return BYTES_PER_SAMPLE[self.encoding]


class ResetMessage(_ClientMessage):
    """Total reset: the session behaves exactly like a new one with the same ``start``."""

    type: Literal["reset"] = "reset"


class StopMessage(_ClientMessage):
    """End of audio: the server flushes the look-ahead, sends ``end`` and closes with 1000."""

    type: Literal["stop"] = "stop"


ClientMessage = Annotated[StartMessage | ResetMessage | StopMessage, Field(discriminator="type")]
CLIENT_MESSAGE_TYPES = ("start", "reset", "stop")

# ---------------------------------------------------------------------------------------------
# server -> client


class _ServerMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ReadyMessage(_ServerMessage):
    """Answer to ``start``: the session is open and these are the model's facts.

    ``sample_rate`` is the accepted input rate (the one announced in ``start``); the model works
    at 16 kHz with one frame every ``frame_ms``. ``keywords`` and ``thresholds`` are the ones in
    force for this session. ``replica`` names the Ray Serve replica that holds the session, and
    is left out of the JSON when there is none (a plain ``lmukws serve``).
    """

    type: Literal["ready"] = "ready"
    session_id: str
    model: str
    labels: list[str]
    sample_rate: int
    frame_ms: float = FRAME_MS
    lookahead_frames: int
    algorithmic_latency_ms: float
    keywords: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    wake_word: str | None = None
    command_window_ms: float | None = None
    speech_gate_ms: float = 0.0
    replica: str | None = None

    @model_serializer(mode="wrap")
    def _without_replica(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("replica") is None:
            data.pop("replica", None)
        return data


class Latency(_ServerMessage):
    """Latency of one detection, in milliseconds.

    ``algorithmic_ms``: analysis window + look-ahead frames × frame shift (fixed by the model;
    a window model's: analysis window + (hop - 1 frame), its worst wait for the next hop);
    ``queue_ms``: wait of the triggering frame before its model step; ``compute_ms``: that
    step's compute; ``server_ms``: receipt of the audio that completed the triggering frame to
    the event being sent (includes queue and compute).
    """

    algorithmic_ms: float
    queue_ms: float
    compute_ms: float
    server_ms: float


class DetectionMessage(_ServerMessage):
    """A keyword fired; ``audio_ms`` is the end of the triggering frame's window."""

    type: Literal["detection"] = "detection"
    keyword: str
    score: float
    audio_ms: float
    latency: Latency


class ScoresMessage(_ServerMessage):
    """Periodic report of the top smoothed posteriors as ``[[label, p], ...]``."""

    type: Literal["scores"] = "scores"
    audio_ms: float
    top: list[tuple[str, float]]


class ErrorMessage(_ServerMessage):
    """An error; fatal ones are followed by the close ``ERROR_CLOSE_CODES[code]``."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str


class EndMessage(_ServerMessage):
    """Last message after ``stop`` (or shutdown): audio seen, frames processed, detections."""

    type: Literal["end"] = "end"
    audio_ms: float
    frames: int
    detections: int


ServerMessage = Annotated[
    ReadyMessage | DetectionMessage | ScoresMessage | ErrorMessage | EndMessage,
    Field(discriminator="type"),
]

# ---------------------------------------------------------------------------------------------
# REST responses (GET /v1/model, POST /v1/classify); errors are FastAPI's {"detail": "..."}


class ModelInfo(_ServerMessage):
    """``GET /v1/model``: what the server serves."""

    name: str
    labels: list[str]
    keywords: list[str]  # labels that can fire by default
    thresholds: dict[str, float]  # default detection thresholds of those keywords
    calibrated: bool = False  # thresholds calibrated on validation streams (lmukws calibrate)
    # the calibrated DET curve: per point its sensitivity, target and measured FA/h, recall and
    # thresholds ([] without a calibration)
    operating_points: list[dict[str, Any]] = Field(default_factory=list)
    # the commands' default point of that curve in a session with a wake word (the checkpoint's,
    # from lmukws calibrate --wake-word, or the server's); null: the session's sensitivity
    command_sensitivity: float | None = None
    # the speech gate of a session that sets none (the checkpoint's or the server's; 0: off)
    speech_gate_ms: float = 0.0
    parameters: int
    sample_rate: int = TARGET_SAMPLE_RATE
    frame_ms: float = FRAME_MS
    window_ms: float = WINDOW_MS
    lookahead_frames: int
    algorithmic_latency_ms: float
    # false for a window model, served by recomputing its last model_window_ms of audio every
    # hop_ms (both null for a streaming model)
    streaming: bool = True
    model_window_ms: float | None = None
    hop_ms: float | None = None
    runtime: str = "torch"  # what runs the streaming steps: "torch" or "onnx"
    checkpoint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ClassifyResult(_ServerMessage):
    """One file of ``POST /v1/classify``: best label, top scores, duration and format."""

    filename: str
    label: str
    score: float
    top: list[tuple[str, float]]
    duration_s: float
    sample_rate: int
    channels: int

    @classmethod
    def from_posteriors(
        cls,
        filename: str,
        posteriors: Sequence[float],
        labels: Sequence[str],
        *,
        duration_s: float,
        sample_rate: int,
        channels: int,
    ) -> ClassifyResult:
        """The result of one file from its posteriors [K] (``labels`` in the same order): the
        top ``MAX_SCORES_TOP`` labels, ties kept in label order."""
        order = sorted(range(len(labels)), key=lambda j: -float(posteriors[j]))
        top = [(labels[j], round(float(posteriors[j]), 6)) for j in order[:MAX_SCORES_TOP]]
        return cls(
            filename=filename,
            label=top[0][0],
            score=top[0][1],
            top=top,
            duration_s=round(duration_s, 6),
            sample_rate=sample_rate,
            channels=channels,
        )


class ClassifyResponse(_ServerMessage):
    model: str
    results: list[ClassifyResult]


_CLIENT_ADAPTER: TypeAdapter[StartMessage | ResetMessage | StopMessage] = TypeAdapter(ClientMessage)
_SERVER_ADAPTER: TypeAdapter[
    ReadyMessage | DetectionMessage | ScoresMessage | ErrorMessage | EndMessage
] = TypeAdapter(ServerMessage)


# ---------------------------------------------------------------------------------------------
# helpers


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings are
    not counted), without parsing it: O(len(text)) and no recursion."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    brackets = _BRACKETS.sub("", _STRINGS.sub('""', text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[^\[\]{}]")


def _load_object(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    count = text.count("[") + text.count("{") if isinstance(text, str) else max_depth + 1
    if count > max_depth and json_depth(text) > max_depth:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is nested deeper than {max_depth} levels")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {error}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "message is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            ErrorCode.BAD_JSON, f"message must be a JSON object, got {type(data).__name__}"
        )
    return data


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(p) for p in item["loc"][1:]) or "message"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def parse_client_message(
    text: str | bytes, max_depth: int = MAX_JSON_DEPTH
) -> StartMessage | ResetMessage | StopMessage:
    """Parse one text message from a client; raises ``ProtocolError`` naming what was wrong
    (``bad_json`` for JSON nested deeper than ``max_depth``, checked before parsing)."""
    data = _load_object(text, max_depth)
    kind = data.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_MESSAGE_TYPES)}",
        )
    try:
        return _CLIENT_ADAPTER.validate_python(data)
    except ValidationError as error:
        code = ErrorCode.INVALID_MESSAGE
        for item in error.errors(include_url=False):
            if item["type"] in (
                ErrorCode.UNSUPPORTED_SAMPLE_RATE.value,
                ErrorCode.UNSUPPORTED_ENCODING.value,
            ):
                code = ErrorCode(item["type"])
                break
        raise ProtocolError(code, f"bad {kind!r} message: {_describe(error)}") from None


def parse_server_message(
    text: str | bytes,
) -> ReadyMessage | DetectionMessage | ScoresMessage | ErrorMessage | EndMessage:
    """Parse one text message from the server (for clients); raises ``ValueError``."""
    data = _load_object(text)
    return _SERVER_ADAPTER.validate_python(data)


def dump_message(message: BaseModel) -> str:
    """Serialize any protocol message to its JSON text."""
    return message.model_dump_json()


def ready_message(
    served: Any, session: Any, sample_rate: int, replica: str | None = None
) -> ReadyMessage:
    """``ready`` for a new engine session (``streaming.ServedModel``, a ``SessionHandle``) on
    ``replica`` (the Ray Serve replica, or None)."""
    detector = session.detector_config
    return ReadyMessage(
        session_id=session.id,
        model=served.name,
        labels=list(served.labels),
        sample_rate=sample_rate,
        frame_ms=served.frame_ms,
        lookahead_frames=served.lookahead_frames,
        algorithmic_latency_ms=served.algorithmic_latency_ms,
        keywords=detector.keywords,
        thresholds=detector.keyword_thresholds,
        wake_word=detector.labels[detector.wake_label] if detector.wake_label >= 0 else None,
        command_window_ms=detector.command_frames * served.frame_ms
        if detector.wake_label >= 0
        else None,
        speech_gate_ms=detector.speech_gate_frames * served.frame_ms,
        replica=replica,
    )


def detection_message(event: Any, algorithmic_ms: float, now: float) -> DetectionMessage:
    """``detection`` for an engine ``Detection`` sent at ``now`` (``time.perf_counter()``)."""
    return DetectionMessage(
        keyword=event.keyword,
        score=round(event.score, 6),
        audio_ms=event.audio_ms,
        latency=Latency(
            algorithmic_ms=algorithmic_ms,
            queue_ms=round(event.queue_ms, 3),
            compute_ms=round(event.compute_ms, 3),
            server_ms=round(event.server_ms(now), 3),
        ),
    )


def end_message(event: Any) -> EndMessage:
    """``end`` for an engine ``End``."""
    return EndMessage(audio_ms=event.audio_ms, frames=event.frames, detections=event.detections)


def error_message(code: ErrorCode, message: str) -> ErrorMessage:
    return ErrorMessage(code=code, message=message)


def decode_pcm(
    data: bytes, encoding: str, max_magnitude: float = MAX_SAMPLE_MAGNITUDE
) -> np.ndarray:
    """Binary audio message -> float32 samples [S] in [-1, 1]; raises ``ProtocolError``.

    The byte count must be a whole number of samples and float samples must be finite and at
    most ``max_magnitude`` in absolute value (huge finite samples overflow the front end).
    """
    import numpy as np

    if encoding not in BYTES_PER_SAMPLE:
        raise ProtocolError(ErrorCode.UNSUPPORTED_ENCODING, f"unknown encoding {encoding!r}")
    width = BYTES_PER_SAMPLE[encoding]
    if len(data) % width:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO,
            f"binary message of {len(data)} bytes is not a whole number of {encoding} samples "
            f"({width} bytes each)",
        )
    if encoding == "pcm_s16le":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise ProtocolError(
            ErrorCode.BAD_AUDIO, f"{bad} of {samples.size} pcm_f32le samples are NaN or infinite"
        )
    if samples.size and float(np.abs(samples).max()) > max_magnitude:
        bad = int(np.count_nonzero(np.abs(samples) > max_magnitude))
        raise ProtocolError(
            ErrorCode.BAD_AUDIO,
            f"{bad} of {samples.size} pcm_f32le samples are beyond ±{max_magnitude:g} "
            "(samples are expected in [-1, 1])",
        )
    return samples


def encode_pcm(samples: np.ndarray, encoding: str) -> bytes:
    """Float samples [S] in [-1, 1] -> little-endian bytes in ``encoding`` (s16 is clipped)."""
    import numpy as np

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if encoding == "pcm_s16le":
        ints = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
        return ints.tobytes()
    if encoding == "pcm_f32le":
        return samples.astype("<f4").tobytes()
    raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")


__all__ = [
    "BYTES_PER_SAMPLE",
    "CLASSIFY_BATCH_S",
    "CLASSIFY_PATH",
    "CLIENT_MESSAGE_TYPES",
    "ENCODINGS",
    "ERROR_CLOSE_CODES",
    "FRAME_MS",
    "HANDSHAKE_TIMEOUT_S",
    "HTTP_BODY_TIMEOUT_S",
    "HTTP_HEADER_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_OUTBOUND_MESSAGES",
    "MAX_REQUEST_AUDIO_S",
    "MAX_SAMPLE_MAGNITUDE",
    "MAX_SAMPLE_RATE",
    "MAX_SCORES_TOP",
    "MAX_UPLOAD_BYTES",
    "MIN_SAMPLE_RATE",
    "MODEL_PATH",
    "SLOW_CONSUMER_TIMEOUT_S",
    "STREAM_PATH",
    "TARGET_SAMPLE_RATE",
    "WINDOW_MS",
    "ClassifyResponse",
    "ClassifyResult",
    "ClientMessage",
    "CloseCode",
    "DetectionMessage",
    "EndMessage",
    "ErrorCode",
    "ErrorMessage",
    "Latency",
    "ModelInfo",
    "ProtocolError",
    "ReadyMessage",
    "ResetMessage",
    "ScoresMessage",
    "ServerMessage",
    "StartMessage",
    "StopMessage",
    "decode_pcm",
    "dump_message",
    "encode_pcm",
    "error_message",
    "json_depth",
    "parse_client_message",
    "parse_server_message",
]
