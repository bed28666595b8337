"""In-process model for ``lmukws classify`` without ``--url`` and ``lmukws mic --local``.

The only client module that imports ``models``, ``streaming`` and the server's loader (lazily,
inside functions), so the rest of the client needs neither torch nor the engine. The engine is
loaded exactly as the server loads it (``server.loading.load_engine`` with ``Settings``, so
``LMUKWS_*`` variables apply here too). ``LocalSession`` gives an engine session the interface
of ``client.stream.StreamSession`` and speaks in protocol messages, so the live view cannot tell
the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from client.audio import read_audio
from server.protocol import (
    ClassifyResult,
    DetectionMessage,
    EndMessage,
    ScoresMessage,
    detection_message,
    end_message,
    ready_message,
)

if TYPE_CHECKING:  # pragma: no cover
    from server.settings import Settings
    from streaming.engine import StreamingEngine
    from streaming.session import SessionHandle


def local_settings(
    checkpoint: str | Path | None = None, model: str | None = None, device: str | None = None
) -> Settings:
    """``Settings`` for an engine in this process: the arguments given, then ``LMUKWS_*``.
    Unless ``LMUKWS_RUNTIME`` says otherwise, the steps run in torch (no export to wait for).
    ``FileNotFoundError`` names a missing checkpoint or an unknown model."""
    from models.checkpoint import CheckpointError
    from server.loading import resolve_checkpoint
    from server.settings import Settings

    given = {"checkpoint": checkpoint, "model": model, "device": device}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if "runtime" not in settings.model_fields_set:
        settings = settings.model_copy(update={"runtime": "torch"})
    try:
        resolve_checkpoint(settings)
    except CheckpointError as error:
        raise FileNotFoundError(str(error)) from None
    return settings


def load_engine(
    checkpoint: str | Path | None = None, model: str | None = None, device: str = "cpu"
) -> StreamingEngine:
    """The engine for a checkpoint (default: the shipped one), not yet started."""
    from server import loading

    return loading.load_engine(local_settings(checkpoint, model, device))


class Clip(NamedTuple):
    """A decoded file: mono float32 ``samples`` [S] at ``rate``, and what its header says
    (``duration_s``, ``sample_rate`` and ``channels`` of the file as it is on disk)."""

    name: str
    samples: np.ndarray
    rate: int
    duration_s: float
    sample_rate: int
    channels: int


def decode_file(path: str | Path, rate: int | None = None) -> Clip:
    """Read an audio file into a ``Clip``, resampled to ``rate`` when given (else the engine
    resamples it). ``ValueError`` naming the file when it is not audio, holds no samples or
    has NaN samples, as ``POST /v1/classify`` refuses them."""
    import soundfile as sf

    samples, clip_rate = read_audio(path)
    if samples.size == 0:
        raise ValueError(f"audio file {str(path)!r} has no samples")
    if not np.isfinite(samples).all():
        raise ValueError(f"audio file {str(path)!r} has NaN or infinite samples")
    info = sf.info(str(path))
    if rate is not None and rate != clip_rate:
        from streaming.resample import resample

        samples, clip_rate = resample(samples, clip_rate, rate), rate
    duration = info.frames / info.samplerate
    return Clip(Path(path).name, samples, clip_rate, duration, info.samplerate, info.channels)


def classify_clips(engine: StreamingEngine, clips: Sequence[Clip]) -> list[ClassifyResult]:
    """Label decoded clips with the engine's parallel form (one batch per clip length)."""
    posteriors = engine.classify([c.samples for c in clips], [c.rate for c in clips])
    return [
        ClassifyResult.from_posteriors(
            c.name,
            p,
            engine.labels,
            duration_s=c.duration_s,
            sample_rate=c.sample_rate,
            channels=c.channels,
        )
        for c, p in zip(clips, posteriors, strict=True)
    ]


def classify_files(
    paths: Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    model: str | None = None,
    device: str = "cpu",
    engine: StreamingEngine | None = None,
) -> list[ClassifyResult]:
    """Label whole files in this process, with the same results as ``POST /v1/classify``."""
    clips = [decode_file(path) for path in paths]
    return classify_clips(engine or load_engine(checkpoint, model, device), clips)


class LocalSession:
    """An engine session behind the interface of ``StreamSession`` (``ready``, ``send_audio``,
    ``poll``, ``finish``, ``close``), producing protocol messages."""

    def __init__(
        self,
        engine: StreamingEngine,
        *,
        sample_rate: int,
        keywords: list[str] | None = None,
        thresholds: dict[str, float] | None = None,
        sensitivity: float | None = None,
        wake_word: str | None = None,
        command_window_ms: int | None = None,
        command_sensitivity: float | None = None,
        speech_gate_ms: int | None = None,
        scores_every_ms: int = 0,
    ) -> None:
        self.engine = engine
        engine.start()
        self.session: SessionHandle = engine.create_session(
            sample_rate=sample_rate,
            keywords=keywords,
            thresholds=thresholds,
            sensitivity=sensitivity,
            wake_word=wake_word,
            command_window_ms=command_window_ms,
            command_sensitivity=command_sensitivity,
            speech_gate_ms=speech_gate_ms,
            scores_every_ms=scores_every_ms,
        )
        self.ready = ready_message(engine.served, self.session, sample_rate)
        self.end: EndMessage | None = None
        self.samples_sent = 0
        self._backlog: list[DetectionMessage | ScoresMessage] = []

    async def send_audio(self, samples: np.ndarray) -> None:
        """Queue float32 samples [n] at the session's rate (resampled in this thread)."""
        self.session.push(np.asarray(samples, dtype=np.float32).reshape(-1))
        self.samples_sent += int(np.asarray(samples).size)

    def _convert(self, events: list[Any]) -> list[DetectionMessage | ScoresMessage]:
        from streaming.events import Detection, End, Failure, Scores

        out: list[DetectionMessage | ScoresMessage] = []
        now = time.perf_counter()
        for event in events:
            if isinstance(event, Detection):
                out.append(detection_message(event, self.engine.algorithmic_latency_ms, now))
            elif isinstance(event, Scores):
                out.append(ScoresMessage(audio_ms=event.audio_ms, top=list(event.top)))
            elif isinstance(event, End):
                self.end = end_message(event)
            elif isinstance(event, Failure):
                raise RuntimeError(f"the engine failed: {event.message}")
        return out

    def poll(self) -> list[DetectionMessage | ScoresMessage]:
        """Events produced so far."""
        out, self._backlog = self._backlog + self._convert(self.session.poll()), []
        return out

    async def finish(self, timeout: float = 10.0) -> EndMessage:
        """Stop and wait for the end; events that came meanwhile stay for ``poll()``."""
        import asyncio

        self.session.push_stop()
        deadline = time.monotonic() + timeout
        while self.end is None and time.monotonic() < deadline:
            self._backlog.extend(self._convert(self.session.poll()))
            if self.end is None:
                await asyncio.sleep(0.02)
        if self.end is None:
            raise TimeoutError(f"the engine did not finish within {timeout:g} s")
        return self.end

    async def close(self) -> None:
        self.session.close()
        self.engine.close()


__all__ = [
    "Clip",
    "LocalSession",
    "classify_clips",
    "classify_files",
    "decode_file",
    "load_engine",
    "local_settings",
]
