"""Python client of the lmukws service, ``lmukws stream|classify|mic`` and the live demo.

Async (``client.stream``)::

    from client import connect

    async with connect("ws://127.0.0.1:8000", sample_rate=16000, scores_every_ms=100) as s:
        await s.send_audio(samples)                 # float32 [S] in [-1, 1]
        await s.stop()
        async for event in s:                       # DetectionMessage | ScoresMessage
            print(event)

Blocking (``client.sync``)::

    from client import Client

    with Client("http://127.0.0.1:8000") as c:
        result = c.detect_file("yes.wav")           # StreamResult(ready, detections, scores, end)
        print(c.classify(["yes.wav"]))              # [ClassifyResult(...)]

Exceptions live in ``client.errors``. Only ``server.protocol`` is imported from the server side.
Names are imported lazily, so ``import client`` (and ``lmukws --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Client": "client.sync",
    "connect": "client.stream",
    "detect": "client.stream",
    "stream_audio": "client.stream",
    "stream_file": "client.stream",
    "StreamResult": "client.stream",
    "StreamSession": "client.stream",
    "RestClient": "client.rest",
    "ClientError": "client.errors",
    "ConnectError": "client.errors",
    "SessionRefusedError": "client.errors",
    "ServerClosedError": "client.errors",
    "ServerShuttingDownError": "client.errors",
    "BadServerReplyError": "client.errors",
    "RequestFailedError": "client.errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from client.errors import (
        BadServerReplyError,
        ClientError,
        ConnectError,
        RequestFailedError,
        ServerClosedError,
        ServerShuttingDownError,
        SessionRefusedError,
    )
    from client.rest import RestClient
    from client.stream import (
        StreamResult,
        StreamSession,
        connect,
        detect,
        stream_audio,
        stream_file,
    )
    from client.sync import Client


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "BadServerReplyError",
    "Client",
    "ClientError",
    "ConnectError",
    "RequestFailedError",
    "RestClient",
    "ServerClosedError",
    "ServerShuttingDownError",
    "SessionRefusedError",
    "StreamResult",
    "StreamSession",
    "connect",
    "detect",
    "stream_audio",
    "stream_file",
]
