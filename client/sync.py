"""Blocking wrapper of the async client, for scripts and notebooks.

The async client runs on an event loop in a background thread, so websocket pings are answered
while the caller's code runs::

    with Client("http://127.0.0.1:8000") as client:
        for message in client.stream_file("yes.wav"):     # ready, detections, scores, end
            print(message)
        print(client.classify(["yes.wav", "no.wav"]))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from client.rest import RestClient
from client.stream import ServerEvent, StreamResult, detect, stream_audio, stream_file
from server.protocol import ClassifyResult, ModelInfo

T = TypeVar("T")


class Client:
    """Blocking client of one server: streaming over the websocket, classification over REST.

    ``url`` may be ``http://host:port`` or ``ws://host:port``; both endpoints derive from it.
    Options of ``stream_*`` and ``detect_*`` are those of ``client.stream.stream_audio``.
    """

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lmukws-client-loop", daemon=True
        )
        self._thread.start()
        self._rest: RestClient | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(agen.aclose())  # type: ignore[attr-defined]

    def stream_array(
        self, samples: np.ndarray, sample_rate: int, **options: Any
    ) -> Iterator[ServerEvent]:
        """Stream [S] samples; yields ``ready``, detections and scores, then ``end``."""
        return self._iterate(stream_audio(self.url, samples, sample_rate, **options))

    def stream_file(self, path: str | Path, **options: Any) -> Iterator[ServerEvent]:
        """Stream an audio file; yields ``ready``, detections and scores, then ``end``."""
        return self._iterate(stream_file(self.url, path, **options))

    def detect_array(self, samples: np.ndarray, sample_rate: int, **options: Any) -> StreamResult:
        """Stream [S] samples and return all detections, scores and the ``end``."""
        return self._run(detect(self.url, samples, sample_rate, **options))

    def detect_file(self, path: str | Path, **options: Any) -> StreamResult:
        """Stream an audio file and return all detections, scores and the ``end``."""
        from client.audio import read_audio

        samples, rate = read_audio(path)
        return self.detect_array(samples, rate, **options)

    def _rest_client(self) -> RestClient:
        if self._rest is None:

            async def make() -> RestClient:
                return RestClient(self.url, timeout=self.timeout)

            self._rest = self._run(make())
        return self._rest

    def classify(self, paths: Sequence[str | Path]) -> list[ClassifyResult]:
        """Classify whole files over ``POST /v1/classify``."""
        return self._run(self._rest_client().classify(paths))

    def model(self) -> ModelInfo:
        """``GET /v1/model``."""
        return self._run(self._rest_client().model())

    def ready(self) -> bool:
        """``GET /readyz`` answered 2xx."""
        return self._run(self._rest_client().ready())

    def close(self) -> None:
        """Close connections and stop the background loop."""
        if self._loop.is_closed():
            return
        if self._rest is not None:
            self._run(self._rest.aclose())
            self._rest = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client"]
