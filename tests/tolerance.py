"""What the suite promises about floats that come from different computations.

Two results of the model are bit-identical only when they come from the same computation: the
same batch shape, frame count, thread count and runtime on the same machine (a replay, a reset
session against a fresh one in the same batch shape). Anything else (a session batched with
different neighbours, another chunking, another process, ONNX Runtime against torch) may differ
in the last digits: on MKL with AVX-512 a GEMM's rounding depends on its batch size. There the
promise is:

- detections are identical in keyword, frame and audio time;
- scores agree within ``SCORE_TOLERANCE``;
- ``End`` summaries are identical (they hold counts and audio time only).

``assert_same_events`` checks exactly that; ``batch_dependent_rounding`` makes a model's
streaming logits depend on the batch composition on any CPU, so the tests that compare sessions
batched differently exercise the promise here too, not only on the machines whose BLAS rounds
that way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from streaming.session import Detection, End, Event, Failure, Scores

#: the largest difference allowed between two scores of one frame computed differently
SCORE_TOLERANCE = 1e-5
#: the relative rounding noise that ``batch_dependent_rounding`` adds (MKL's is ~1e-7..1e-6)
ROUNDING = 1e-6


def assert_same_events(got: Sequence[Event], want: Sequence[Event]) -> None:
    """The same events in the same order: exact frames, times, keywords and counts, scores
    within ``SCORE_TOLERANCE`` (a ``Scores`` top list may swap labels whose scores tie within
    it, or trade its last label for one that tied with it)."""
    assert len(got) == len(want), (len(got), len(want), got, want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g) is type(w), (i, g, w)
        if isinstance(g, Detection):
            assert (g.keyword, g.frame, g.audio_ms) == (w.keyword, w.frame, w.audio_ms), (i, g, w)
            assert g.score == pytest.approx(w.score, abs=SCORE_TOLERANCE), (i, g, w)
        elif isinstance(g, Scores):
            assert (g.frame, g.audio_ms) == (w.frame, w.audio_ms), (i, g, w)
            _assert_same_top(g.top, w.top, i)
        elif isinstance(g, End | Failure):
            assert g == w, (i, g, w)
        else:  # pragma: no cover - a new event type needs a rule here
            raise AssertionError(f"no comparison rule for {type(g).__name__}")


def _assert_same_top(got: list[tuple[str, float]], want: list[tuple[str, float]], i: int) -> None:
    assert len(got) == len(want), (i, got, want)
    a, b = dict(got), dict(want)
    slack = SCORE_TOLERANCE + 1e-6  # scores are sent rounded to 6 decimals
    for label in a.keys() | b.keys():
        if label in a and label in b:
            assert a[label] == pytest.approx(b[label], abs=slack), (i, label, got, want)
        else:  # only at the cut of the top list, tied with the other list's last score
            mine, other = (a, b) if label in a else (b, a)
            assert math.isclose(mine[label], min(other.values()), abs_tol=slack), (i, got, want)


def batch_dependent_rounding(
    step: Callable[[torch.Tensor, Any], tuple[Any, ...]],
) -> Callable[[torch.Tensor, Any], tuple[Any, ...]]:
    """Wrap ``model.stream_frames`` so its logits [B, n, K] carry a relative error of about
    ``ROUNDING`` that depends on the batch size B and frame count n, as MKL's GEMMs do."""

    def rounded(frames: torch.Tensor, state: Any) -> tuple[Any, ...]:
        logits, *rest = step(frames, state)
        B, n = frames.shape[:2]
        index = torch.arange(logits[0].numel(), dtype=torch.float64).reshape(logits.shape[1:])
        pattern = torch.sin(index * 0.7 + 1.3 * B + 2.9 * n)
        return ((logits.double() * (1 + ROUNDING * pattern)).to(logits.dtype), *rest)

    return rounded
