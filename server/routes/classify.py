"""``POST /v1/classify``: whole WAV files (any rate, any channels) through the parallel form.

Every file's header is read first; one bad file fails the request with a message that names
it: 415 when it is not a readable audio file, 422 when it is audio the model cannot score
(empty, unsupported rate, too long, NaN samples), 413 when the request is over the size limit,
the file count or the audio budget (``max_request_audio_s``, all files together). Files are
then decoded and classified in batches of at most ``classify_batch_s`` seconds of audio, off
the event loop, so a request's decoded audio in memory stays within that bound. With engine
processes the batches run in the low-priority classification worker
(``streaming.classify_process``), so they never take the interpreter lock from the event loop
of the live streams; 503 if that worker dies during the request (the next gets a new one).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

import numpy as np
from fastapi import APIRouter, File, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from server import protocol
from server.deps import ServiceDep
from server.service import Service
from streaming.classify_process import ClassifyWorkerExitedError

router = APIRouter(tags=["classify"])

MIN_RATE = 4000
MAX_RATE = 192000


class AudioInfo(NamedTuple):
    """What a file's header says: frames per channel, sample rate, channels."""

    frames: int
    rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def probe_audio(name: str, data: bytes | BinaryIO, max_seconds: float) -> AudioInfo:
    """Read a file's header only; HTTPException naming the file: 415 when it is not audio,
    422 when it is empty, has an unsupported rate or lasts over ``max_seconds``."""
    import soundfile

    try:
        with soundfile.SoundFile(_source(data)) as f:
            info = AudioInfo(f.frames, f.samplerate, f.channels)
    except Exception as error:  # libsndfile: not audio, unknown format, corrupt header
        raise HTTPException(
            415, f"file {name!r} is not a readable audio file (WAV expected): {_reason(error)}"
        ) from None
    if info.frames > max_seconds * info.rate:
        raise HTTPException(
            422, f"file {name!r} lasts {info.seconds:.1f} s; the limit is {max_seconds:g} s"
        )
    if info.frames == 0:
        raise HTTPException(422, f"file {name!r} has no samples")
    if not MIN_RATE <= info.rate <= MAX_RATE:
        raise HTTPException(
            422,
            f"file {name!r} has sample rate {info.rate} Hz; expected {MIN_RATE}..{MAX_RATE} Hz",
        )
    return info


def decode_audio(
    name: str, data: bytes | BinaryIO, max_seconds: float
) -> tuple[np.ndarray, int, int]:
    """File bytes (or a seekable binary file) -> (mono float32 samples [n], sample rate,
    channels); HTTPException names the file on failure."""
    import soundfile

    probe_audio(name, data, max_seconds)
    try:
        with soundfile.SoundFile(_source(data)) as f:
            rate, channels = f.samplerate, f.channels
            audio = f.read(dtype="float32", always_2d=True)
    except Exception as error:
        raise HTTPException(
            415, f"file {name!r} is not a readable audio file (WAV expected): {_reason(error)}"
        ) from None
    if audio.shape[0] == 0:
        raise HTTPException(422, f"file {name!r} has no samples")
    if not np.isfinite(audio).all():
        raise HTTPException(422, f"file {name!r} has NaN or infinite samples")
    return audio.mean(axis=1), rate, channels


def _source(data: bytes | BinaryIO) -> BinaryIO:
    if isinstance(data, bytes | bytearray):
        return io.BytesIO(data)
    data.seek(0)
    return data


def batches(seconds: Sequence[float], budget_s: float) -> list[list[int]]:
    """Consecutive indices grouped so each group's seconds add up to at most ``budget_s``
    (a longer file alone)."""
    groups: list[list[int]] = []
    total = budget_s + 1.0
    for i, s in enumerate(seconds):
        if total + s > budget_s:
            groups.append([])
            total = 0.0
        groups[-1].append(i)
        total += s
    return groups


_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _reason(error: Exception) -> str:
    """What libsndfile said, without the object reprs (heap addresses) it puts in messages."""
    text = getattr(error, "error_string", None) or str(error)
    return _REPR.sub("the file", str(text)).strip() or type(error).__name__


@router.post(
    protocol.CLASSIFY_PATH,
    response_model=protocol.ClassifyResponse,
    responses={
        413: {"description": "over the upload size, file count or audio seconds limit"},
        415: {"description": "a file is not a readable audio file"},
        422: {"description": "a file cannot be scored (empty, bad rate, too long, NaN)"},
        503: {"description": "the classification worker exited during the request; retry"},
    },
)
async def classify(
    service: ServiceDep, files: list[UploadFile] = File(..., description="WAV files")
) -> protocol.ClassifyResponse:
    """Classify one or more audio files: per file the best label, top-5 scores, duration."""
    settings = service.settings
    if len(files) > settings.max_upload_files:
        raise HTTPException(
            413, f"{len(files)} files in one request; the limit is {settings.max_upload_files}"
        )
    names = [upload.filename or f"file #{i + 1}" for i, upload in enumerate(files)]
    engine = service.engine
    labels = engine.labels
    results = []
    try:
        infos = [
            await run_in_threadpool(probe_audio, name, upload.file, settings.max_upload_seconds)
            for name, upload in zip(names, files, strict=True)
        ]
        total = sum(info.seconds for info in infos)
        if total > settings.max_request_audio_s:
            raise HTTPException(
                413,
                f"{len(files)} files hold {total:.1f} s of audio; the limit per request is "
                f"{settings.max_request_audio_s:g} s (max_request_audio_s)",
            )
        # decode and classify a bounded batch at a time: memory stays within
        # classify_batch_s of decoded audio whatever the request holds
        for group in batches([info.seconds for info in infos], settings.classify_batch_s):
            clips, rates, meta = [], [], []
            for i in group:
                samples, rate, channels = await run_in_threadpool(
                    decode_audio, names[i], files[i].file, settings.max_upload_seconds
                )
                clips.append(samples)
                rates.append(rate)
                meta.append((names[i], samples.size / rate, rate, channels))
            started = time.perf_counter()
            async with service.classify_lock:
                posteriors = await _classify_batch(service, clips, rates)
            service.metrics.classify_seconds.observe(time.perf_counter() - started)
            service.metrics.classify_files_total.inc(len(clips))
            del clips
            for (name, duration, rate, channels), p in zip(meta, posteriors, strict=True):
                results.append(
                    protocol.ClassifyResult.from_posteriors(
                        name, p, labels, duration_s=duration, sample_rate=rate, channels=channels
                    )
                )
    except HTTPException as error:
        code = {
            413: "upload_too_large",
            415: "unsupported_media",
            422: "invalid_audio",
            503: "classify_worker_exited",
        }
        service.metrics.errors_total.inc(code=code.get(error.status_code, "http_error"))
        raise
    return protocol.ClassifyResponse(model=engine.model_name, results=results)


async def _classify_batch(
    service: Service, clips: list[np.ndarray], rates: list[int]
) -> list[np.ndarray]:
    """Posteriors of one batch: in the classification worker when there is one, else by the
    server's engine in the threadpool. 503 when the worker dies before answering."""
    worker = service.classifier
    if worker is None:
        return await run_in_threadpool(service.engine.classify, clips, rates)
    try:
        return await worker.classify(clips, rates)
    except ClassifyWorkerExitedError as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
