"""Sensitivity: one number in [0, 1] that moves a session along the calibrated DET curve.

``lmukws calibrate`` stores a ladder of operating points in the checkpoint
(``detector.calibration.operating_points``): for each target rate of false alarms per hour, from
strict to loose, one threshold per keyword, with the recall and false-alarm rate measured there.
``SensitivityCurve.thresholds(s)`` maps s = 0.5 to the shipped default point, s = 0 to the
strictest point and s = 1 to the loosest, interpolating each keyword's threshold in logit space
between neighbouring points; thresholds never rise as s grows (monotone by construction).

A checkpoint without a calibration gets a plain curve around its default thresholds: s moves
every threshold by the same amount in logit space, from ~0.99 (s = 0) to ~0.01 (s = 1) for a
default of 0.5.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_SENSITIVITY", "OperatingPoint", "SensitivityCurve"]

DEFAULT_SENSITIVITY = 0.5
_UNCALIBRATED_SPAN = math.log(0.99 / 0.01)  # logit distance from s = 0.5 to either end
_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class OperatingPoint:
    """One calibrated point: per-keyword thresholds for a target false-alarm rate, with the
    recall and FA/h measured on the calibration streams and, held out, on voices whose
    thresholds came from the other voices (what unseen speakers should expect)."""

    target_fa_per_hour: float
    thresholds: Mapping[str, float]
    recall: float | None = None
    fa_per_hour: float | None = None
    heldout_recall: float | None = None
    heldout_fa_per_hour: float | None = None
    #: FA/h on each kind of calibration stream (``negatives/recorded``: real recorded speech
    #: without keywords; ``negatives/synthetic``; ``mixed``), as ``lmukws calibrate`` measured
    fa_per_hour_by_set: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_fa_per_hour": self.target_fa_per_hour,
            "thresholds": dict(self.thresholds),
            "recall": self.recall,
            "fa_per_hour": self.fa_per_hour,
            "heldout_recall": self.heldout_recall,
            "heldout_fa_per_hour": self.heldout_fa_per_hour,
            "fa_per_hour_by_set": dict(self.fa_per_hour_by_set),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingPoint:
        def number(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(
            target_fa_per_hour=float(data["target_fa_per_hour"]),
            thresholds={k: float(v) for k, v in dict(data["thresholds"]).items()},
            recall=number("recall"),
            fa_per_hour=number("fa_per_hour"),
            heldout_recall=number("heldout_recall"),
            heldout_fa_per_hour=number("heldout_fa_per_hour"),
            fa_per_hour_by_set={k: float(v) for k, v in dict(data.get("sets") or {}).items()},
        )


@dataclass(frozen=True)
class SensitivityCurve:
    """Operating points from strict to loose; ``default`` indexes the shipped one."""

    points: tuple[OperatingPoint, ...]
    default: int
    calibrated: bool

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a sensitivity curve needs at least one operating point")
        if not 0 <= self.default < len(self.points):
            raise ValueError(f"default point {self.default} of {len(self.points)}")

    @classmethod
    def from_calibration(
        cls, calibration: Mapping[str, Any], keywords: Sequence[str] | None = None
    ) -> SensitivityCurve:
        """The curve stored by ``lmukws calibrate`` (``detector.calibration``). Points are
        sorted strict to loose and each keyword's threshold is made non-increasing along them."""
        raw = [OperatingPoint.from_dict(p) for p in calibration.get("operating_points") or ()]
        if not raw:
            raise ValueError("the calibration has no operating_points")
        default_target = float(calibration.get("target_fa_per_hour", raw[0].target_fa_per_hour))
        order = sorted(range(len(raw)), key=lambda i: raw[i].target_fa_per_hour)
        points = [raw[i] for i in order]
        names = list(keywords) if keywords is not None else sorted(points[0].thresholds)
        running = {k: math.inf for k in names}
        monotone = []
        for point in points:
            thresholds = {}
            for k in names:
                if k in point.thresholds:
                    running[k] = min(running[k], point.thresholds[k])
                if math.isfinite(running[k]):
                    thresholds[k] = running[k]
            monotone.append(dataclasses.replace(point, thresholds=thresholds))
        targets = [p.target_fa_per_hour for p in points]
        default = min(range(len(targets)), key=lambda i: abs(math.log(targets[i] / default_target)))
        return cls(tuple(monotone), default, calibrated=True)

    @classmethod
    def uncalibrated(cls, thresholds: Mapping[str, float]) -> SensitivityCurve:
        """A curve around default ``thresholds``: s = 0.5 gives them."""
        point = OperatingPoint(math.nan, dict(thresholds))
        return cls((point,), 0, calibrated=False)

    @classmethod
    def from_metadata(
        cls, detector: Mapping[str, Any] | None, thresholds: Mapping[str, float]
    ) -> SensitivityCurve:
        """The checkpoint's calibrated curve, or an uncalibrated one around ``thresholds``."""
        calibration = (detector or {}).get("calibration")
        if calibration and calibration.get("operating_points"):
            return cls.from_calibration(calibration, list(thresholds) or None)
        return cls.uncalibrated(thresholds)

    def thresholds(self, sensitivity: float) -> dict[str, float]:
        """Per-keyword thresholds at ``sensitivity`` in [0, 1] (0.5: the default point)."""
        s = float(sensitivity)
        if not 0.0 <= s <= 1.0 or math.isnan(s):
            raise ValueError(f"sensitivity must be in [0, 1], got {sensitivity}")
        if not self.calibrated:
            shift = (DEFAULT_SENSITIVITY - s) * 2 * _UNCALIBRATED_SPAN
            base = self.points[0].thresholds
            return {k: _sigmoid(_logit(t) + shift) for k, t in base.items()}
        last = len(self.points) - 1
        if s <= DEFAULT_SENSITIVITY:
            position = self.default * s / DEFAULT_SENSITIVITY
        else:
            position = self.default + (last - self.default) * (s - 0.5) / 0.5
        lo = min(math.floor(position), last)
        hi = min(lo + 1, last)
        w = position - lo
        a, b = self.points[lo].thresholds, self.points[hi].thresholds
        out = {}
        for k, t in a.items():
            u = b.get(k, t)
            out[k] = _sigmoid((1 - w) * _logit(t) + w * _logit(u)) if w > 0 else t
        return out

    def describe(self) -> list[dict[str, Any]]:
        """The calibrated operating points as JSON, each with the sensitivity that selects it
        (none for an uncalibrated curve)."""
        if not self.calibrated:
            return []
        last = len(self.points) - 1
        out = []
        for i, point in enumerate(self.points):
            if i <= self.default:
                s = DEFAULT_SENSITIVITY * i / self.default if self.default else DEFAULT_SENSITIVITY
            else:
                s = 0.5 + 0.5 * (i - self.default) / (last - self.default)
            out.append(
                {"sensitivity": round(s, 4), **point.to_dict(), "default": i == self.default}
            )
        return out
