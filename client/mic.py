"""Microphone capture with PortAudio (``sounddevice``, the ``mic`` extra), delivered to asyncio.

``Microphone`` opens an input stream at the device's own rate (or a requested one) and hands
float32 mono blocks to the event loop with their capture time. Every way the audio stack can be
missing raises ``MicrophoneError`` with a message that says what to install or pick.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from server.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

FALLBACK_RATES = (48000, 44100, 32000, 16000)


class MicrophoneError(RuntimeError):
    """No usable audio input: PortAudio or sounddevice missing, no device, bad device or rate."""


def load_sounddevice() -> ModuleType:
    """Import ``sounddevice``; ``MicrophoneError`` says what is missing."""
    try:
        import sounddevice
    except ModuleNotFoundError:
        raise MicrophoneError(
            "the Python package sounddevice is not installed: pip install 'lmukws[mic]'"
        ) from None
    except OSError as error:  # sounddevice raises OSError when libportaudio is absent
        raise MicrophoneError(
            f"PortAudio is missing ({error}): install it, e.g. apt-get install libportaudio2"
        ) from None
    return sounddevice


def input_devices(sd: ModuleType | None = None) -> list[dict[str, Any]]:
    """Every device with input channels: dicts with index, name, channels, default rate."""
    sd = sd or load_sounddevice()
    try:
        devices = sd.query_devices()
    except Exception as error:  # PortAudioError on a broken host API
        raise MicrophoneError(f"cannot list audio devices: {error}") from None
    default = _default_input(sd)
    return [
        {
            "index": i,
            "name": d["name"],
            "channels": int(d["max_input_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
            "default": i == default,
        }
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def _default_input(sd: ModuleType) -> int | None:
    try:
        index = sd.default.device[0]
    except (AttributeError, IndexError, TypeError):
        return None
    return None if index is None or index < 0 else int(index)


def resolve_device(spec: str | int | None, sd: ModuleType | None = None) -> dict[str, Any]:
    """The input device named by ``spec`` (index, or a substring of the name; None: default)."""
    sd = sd or load_sounddevice()
    devices = input_devices(sd)
    if not devices:
        raise MicrophoneError("no audio input device found (is a microphone connected?)")
    if spec is None or spec == "":
        default = _default_input(sd)
        for device in devices:
            if device["index"] == default:
                return device
        return devices[0]
    text = str(spec)
    if text.isdigit():
        for device in devices:
            if device["index"] == int(text):
                return device
        raise MicrophoneError(
            f"no input device with index {text}; inputs: "
            + ", ".join(f"{d['index']} {d['name']!r}" for d in devices)
        )
    matches = [d for d in devices if text.lower() in d["name"].lower()]
    if not matches:
        raise MicrophoneError(
            f"no input device named like {text!r}; inputs: "
            + ", ".join(f"{d['index']} {d['name']!r}" for d in devices)
        )
    return matches[0]


def choose_rate(device: dict[str, Any], requested: int | None, sd: ModuleType) -> int:
    """The capture rate: ``requested``, else the device's own when the protocol allows it
    (8–48 kHz), else the first of 48, 44.1, 32, 16 kHz that the device accepts."""
    candidates = [requested] if requested else []
    own = round(device["default_samplerate"])
    if not requested:
        if MIN_SAMPLE_RATE <= own <= MAX_SAMPLE_RATE:
            candidates.append(own)
        candidates.extend(r for r in FALLBACK_RATES if r != own)
    for rate in candidates:
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise MicrophoneError(
                f"capture rate {rate} Hz is outside the protocol's {MIN_SAMPLE_RATE}-"
                f"{MAX_SAMPLE_RATE} Hz"
            )
        try:
            sd.check_input_settings(
                device=device["index"], channels=1, samplerate=rate, dtype="float32"
            )
        except Exception:
            continue
        return int(rate)
    raise MicrophoneError(
        f"input device {device['name']!r} accepts none of the rates {candidates} Hz"
    )


@dataclass(frozen=True)
class Block:
    """One captured block: float32 mono samples [n] and its capture time (monotonic, s)."""

    samples: np.ndarray
    captured_at: float


class Microphone:
    """Async source of captured blocks: ``async with Microphone(...) as mic: await mic.read()``.

    ``overflows`` counts blocks PortAudio reported as overflowed (audio was lost).
    """

    def __init__(
        self, device: str | int | None = None, rate: int | None = None, block_ms: float = 50.0
    ) -> None:
        self._sd = load_sounddevice()
        self.device = resolve_device(device, self._sd)
        self.rate = choose_rate(self.device, rate, self._sd)
        self.block_size = max(16, round(self.rate * block_ms / 1000.0))
        self.overflows = 0
        self._queue: asyncio.Queue[Block] = asyncio.Queue()
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _callback(self, indata: np.ndarray, frames: int, info: Any, status: Any) -> None:
        now = time.monotonic()
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        block = Block(indata[:, 0].astype(np.float32, copy=True), now)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._queue.put_nowait, block)

    async def __aenter__(self) -> Microphone:
        self._loop = asyncio.get_running_loop()
        try:
            self._stream = self._sd.InputStream(
                device=self.device["index"],
                channels=1,
                samplerate=self.rate,
                blocksize=self.block_size,
                dtype="float32",
                callback=self._callback,
            )
            self._stream.start()
        except Exception as error:  # sounddevice.PortAudioError
            raise MicrophoneError(
                f"cannot open input device {self.device['name']!r} at {self.rate} Hz: {error}"
            ) from None
        return self

    async def read(self) -> Block:
        """The next captured block."""
        return await self._queue.get()

    async def read_all(self, timeout: float) -> list[Block]:
        """Every block captured so far, waiting at most ``timeout`` s for the first one."""
        try:
            blocks = [await asyncio.wait_for(self._queue.get(), timeout)]
        except asyncio.TimeoutError:
            return []
        while not self._queue.empty():
            blocks.append(self._queue.get_nowait())
        return blocks

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


__all__ = [
    "Block",
    "Microphone",
    "MicrophoneError",
    "choose_rate",
    "input_devices",
    "load_sounddevice",
    "resolve_device",
]
