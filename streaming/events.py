"""What a session produces: detections, scores, posteriors, the end of the stream, failures.

Every event is a small frozen value; a session hands them out in frame order
(``SessionHandle.poll``). Audio times (``audio_ms``) are the end of a frame's analysis window,
counted from the start or the last reset.

Shapes: m frames, K labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Detection", "End", "Event", "Failure", "Posteriors", "Scores"]


@dataclass(frozen=True)
class Detection:
    """A keyword fired at frame ``frame``; ``audio_ms`` is the end of that frame's window.

    ``received_at`` (``time.perf_counter()``) is when the audio that made the frame final was
    pushed; ``queue_ms`` its wait before the model step, ``compute_ms`` the step's compute.
    """

    keyword: str
    score: float
    frame: int
    audio_ms: float
    received_at: float
    queue_ms: float
    compute_ms: float

    def server_ms(self, now: float | None = None) -> float:
        """Milliseconds from ``received_at`` to ``now`` (default: this moment)."""
        return ((time.perf_counter() if now is None else now) - self.received_at) * 1e3


@dataclass(frozen=True)
class Scores:
    """Top smoothed posteriors ``[(label, p), ...]`` at frame ``frame``."""

    frame: int
    audio_ms: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Posteriors:
    """Pooled posteriors [m, K] of frames ``frame`` .. ``frame + m - 1``, before the detector's
    smoothing (what ``streaming.detector.detect`` takes); only for sessions that ask for them."""

    frame: int
    values: np.ndarray


@dataclass(frozen=True)
class End:
    """After a stop: audio received (ms), frames scored and detections since start/reset."""

    audio_ms: float
    frames: int
    detections: int


@dataclass(frozen=True)
class Failure:
    """The engine failed while processing this session; the session is unusable."""

    message: str


Event = Detection | Scores | Posteriors | End | Failure
