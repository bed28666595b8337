"""Smoke test of the detector cost benchmark: it runs and reports every case (no timings
asserted: a smoke run's numbers mean nothing)."""

from __future__ import annotations

import pytest

from benchmarks.detector_cost import main, measure


def test_detector_cost_runs_and_reports_each_case(capsys: pytest.CaptureFixture[str]) -> None:
    rows = measure("lmuformer", [1, 3], frames=2, rounds=1, round_seconds=0.001)
    assert [r["sessions"] for r in rows] == [1, 3]
    for row in rows:
        cases = {"model", "detector", "detector_background", "detector_gate"}
        assert set(row["us_per_session_frame"]) == cases
        assert all(v > 0 for v in row["us_per_session_frame"].values())
        assert row["detector_ratio_with_background"] > 0
    assert (
        main(["--sessions", "2", "--frames", "1", "--rounds", "1", "--round-seconds", "0.001"]) == 0
    )
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| sessions |") and table[2].startswith("| 2 |")
