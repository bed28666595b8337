"""Fixtures and helpers for the server tests: an in-process app on the tone model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from server.app import create_app
from server.protocol import encode_pcm
from server.settings import Settings


@pytest.fixture(autouse=True)
def restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_client(tone_checkpoint: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)`` -> a started TestClient on the tone model."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        params: dict[str, Any] = {"checkpoint": tone_checkpoint, "torch_threads": 1}
        params.update(overrides)
        client = TestClient(create_app(Settings(**params)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(max_sessions=4)


def stream_signal(
    ws: Any,
    x: np.ndarray,
    chunk: int,
    rate: int = 16000,
    encoding: str = "pcm_s16le",
    start: dict[str, Any] | None = None,
) -> tuple[dict, list[dict]]:
    """Run one whole session on an open TestClient websocket: (ready, messages up to end)."""
    ws.send_json({"type": "start", "sample_rate": rate, "encoding": encoding, **(start or {})})
    ready = ws.receive_json()
    assert ready["type"] == "ready", ready
    for i in range(0, x.size, chunk):
        ws.send_bytes(encode_pcm(x[i : i + chunk], encoding))
    ws.send_json({"type": "stop"})
    messages = []
    while True:
        message = ws.receive_json()
        messages.append(message)
        if message["type"] in ("end", "error"):
            break
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()
    assert closed.value.code == 1000
    return ready, messages


def detections(messages: list[dict]) -> list[tuple[str, float]]:
    return [(m["keyword"], m["audio_ms"]) for m in messages if m["type"] == "detection"]
