"""``POST /v1/classify``: whole WAV files (any rate, any channels) through the parallel form.

Every file of a request is decoded first; one bad file fails the request with a message that
names it: 415 when it is not a readable audio file, 422 when it is audio the model cannot score
(empty, unsupported rate, too long, NaN samples), 413 when the request is over the size limit.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
from fastapi import APIRouter, File, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from server import protocol
from server.deps import ServiceDep

router = APIRouter(tags=["classify"])

MIN_RATE = 4000
MAX_RATE = 192000


def decode_audio(name: str, data: bytes, max_seconds: float) -> tuple[np.ndarray, int, int]:
    """File bytes -> (mono float32 samples [n], sample rate, channels); HTTPException names
    the file on failure."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            if frames > max_seconds * rate:
                raise HTTPException(
                    422,
                    f"file {name!r} lasts {frames / rate:.1f} s; the limit is {max_seconds:g} s",
                )
            audio = f.read(dtype="float32", always_2d=True)
    except HTTPException:
        raise
    except Exception as error:  # libsndfile: not audio, unknown format, corrupt header
        raise HTTPException(
            415, f"file {name!r} is not a readable audio file (WAV expected): {_reason(error)}"
        ) from None
    if audio.shape[0] == 0:
        raise HTTPException(422, f"file {name!r} has no samples")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise HTTPException(
            422, f"file {name!r} has sample rate {rate} Hz; expected {MIN_RATE}..{MAX_RATE} Hz"
        )
    if not np.isfinite(audio).all():
        raise HTTPException(422, f"file {name!r} has NaN or infinite samples")
    return audio.mean(axis=1), rate, channels


_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _reason(error: Exception) -> str:
    """What libsndfile said, without the object reprs (heap addresses) it puts in messages."""
    text = getattr(error, "error_string", None) or str(error)
    return _REPR.sub("the file", str(text)).strip() or type(error).__name__


@router.post(
    protocol.CLASSIFY_PATH,
    response_model=protocol.ClassifyResponse,
    responses={
        413: {"description": "request over the upload limit"},
        415: {"description": "a file is not a readable audio file"},
        422: {"description": "a file cannot be scored (empty, bad rate, too long, NaN)"},
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
    clips, rates, infos = [], [], []
    try:
        for i, upload in enumerate(files):
            name = upload.filename or f"file #{i + 1}"
            data = await upload.read()
            samples, rate, channels = decode_audio(name, data, settings.max_upload_seconds)
            clips.append(samples)
            rates.append(rate)
            infos.append((name, samples.size / rate, rate, channels))
    except HTTPException as error:
        code = {413: "upload_too_large", 415: "unsupported_media", 422: "invalid_audio"}
        service.metrics.errors_total.inc(code=code.get(error.status_code, "http_error"))
        raise
    engine = service.engine
    started = time.perf_counter()
    async with service.classify_lock:
        posteriors = await run_in_threadpool(engine.classify, clips, rates)
    service.metrics.classify_seconds.observe(time.perf_counter() - started)
    service.metrics.classify_files_total.inc(len(clips))
    labels = engine.labels
    results = []
    for (name, duration, rate, channels), p in zip(infos, posteriors, strict=True):
        results.append(
            protocol.ClassifyResult.from_posteriors(
                name, p, labels, duration_s=duration, sample_rate=rate, channels=channels
            )
        )
    return protocol.ClassifyResponse(model=engine.model_name, results=results)
