"""Sensitivity: a monotone walk along the calibrated operating points."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.sensitivity import SensitivityCurve

CALIBRATION = {
    "target_fa_per_hour": 2.0,
    "operating_points": [  # deliberately out of order, and "no" not monotone at 5 FA/h
        {"target_fa_per_hour": 5.0, "thresholds": {"yes": 0.6, "no": 0.75}, "recall": 0.9},
        {"target_fa_per_hour": 0.5, "thresholds": {"yes": 0.9, "no": 0.95}, "recall": 0.7},
        {
            "target_fa_per_hour": 2.0,
            "thresholds": {"yes": 0.8, "no": 0.7},
            "recall": 0.85,
            "heldout_recall": 0.8,
            "heldout_fa_per_hour": 2.6,
            "sets": {"mixed": 3.0, "negatives/recorded": 1.2},
        },
        {"target_fa_per_hour": 20.0, "thresholds": {"yes": 0.3, "no": 0.4}, "recall": 0.97},
    ],
}


def test_half_sensitivity_is_the_calibrated_point_and_ends_are_the_extremes() -> None:
    curve = SensitivityCurve.from_calibration(CALIBRATION)
    assert curve.calibrated and [p.target_fa_per_hour for p in curve.points] == [0.5, 2, 5, 20]
    assert curve.thresholds(0.5) == pytest.approx({"yes": 0.8, "no": 0.7})
    assert curve.thresholds(0.0) == pytest.approx({"yes": 0.9, "no": 0.95})
    assert curve.thresholds(1.0) == pytest.approx({"yes": 0.3, "no": 0.4})
    # "no" at 5 FA/h (0.75) is above its 2 FA/h threshold: held at 0.7 so the walk is monotone
    assert curve.points[2].thresholds["no"] == pytest.approx(0.7)


@pytest.mark.parametrize("calibrated", [True, False])
def test_thresholds_never_rise_with_sensitivity(calibrated: bool) -> None:
    if calibrated:
        curve = SensitivityCurve.from_calibration(CALIBRATION)
    else:
        curve = SensitivityCurve.uncalibrated({"yes": 0.5, "no": 0.7})
    grid = np.linspace(0, 1, 101)
    table = np.array([[curve.thresholds(s)[k] for k in ("yes", "no")] for s in grid])
    assert (np.diff(table, axis=0) <= 1e-12).all()
    assert (table > 0).all() and (table < 1).all()
    if not calibrated:
        assert curve.thresholds(0.5) == pytest.approx({"yes": 0.5, "no": 0.7})
        assert curve.thresholds(0.0)["yes"] == pytest.approx(0.99)
        assert curve.thresholds(1.0)["yes"] == pytest.approx(0.01)
        assert curve.describe() == []


def test_describe_names_the_sensitivity_of_each_point() -> None:
    rows = SensitivityCurve.from_calibration(CALIBRATION).describe()
    assert [r["sensitivity"] for r in rows] == [0.0, 0.5, 0.75, 1.0]
    assert [r["default"] for r in rows] == [False, True, False, False]
    # the held-out estimate travels with its point (None where the calibration has none)
    assert (rows[1]["heldout_recall"], rows[1]["heldout_fa_per_hour"]) == (0.8, 2.6)
    assert rows[0]["heldout_fa_per_hour"] is None
    # and so does what it made on each kind of stream (recorded speech apart)
    assert rows[1]["fa_per_hour_by_set"] == {"mixed": 3.0, "negatives/recorded": 1.2}
    assert rows[0]["fa_per_hour_by_set"] == {}
    curve = SensitivityCurve.from_calibration(CALIBRATION)
    for row in rows:
        assert curve.thresholds(row["sensitivity"]) == pytest.approx(row["thresholds"])


def test_a_default_that_is_the_strictest_point_reads_half() -> None:
    """With the default first, every sensitivity up to 0.5 selects it: it is described at 0.5."""
    calibration = {**CALIBRATION, "target_fa_per_hour": 0.5}
    curve = SensitivityCurve.from_calibration(calibration)
    rows = curve.describe()
    assert [r["sensitivity"] for r in rows] == pytest.approx([0.5, 0.6667, 0.8333, 1.0])
    assert rows[0]["default"] and curve.thresholds(0.5) == pytest.approx(rows[0]["thresholds"])
    assert curve.thresholds(0.0) == curve.thresholds(0.5)


def test_bad_sensitivity_and_metadata() -> None:
    curve = SensitivityCurve.uncalibrated({"yes": 0.5})
    with pytest.raises(ValueError, match=r"sensitivity must be in \[0, 1\], got 1.5"):
        curve.thresholds(1.5)
    with pytest.raises(ValueError, match="no operating_points"):
        SensitivityCurve.from_calibration({"operating_points": []})
    plain = SensitivityCurve.from_metadata({"threshold": 0.5}, {"yes": 0.6})
    assert not plain.calibrated and plain.thresholds(0.5) == pytest.approx({"yes": 0.6})
