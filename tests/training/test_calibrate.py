"""Calibration: per-keyword thresholds that meet a false-alarm budget, stored for the server."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_model, read_metadata, save_checkpoint
from training.calibrate import allocate, calibrate
from training.dataset import read_corpus_info

GRID = (0.5, 0.7, 0.9, 0.99)
# per keyword, per threshold of GRID: (hits, false alarms)
TABLES = {
    "yes": np.array([[10, 9], [9, 4], [8, 1], [5, 0]]),
    "no": np.array([[10, 2], [10, 1], [9, 0], [7, 0]]),
    "go": np.array([[10, 30], [6, 10], [3, 2], [1, 0]]),
}


def _brute(budget: float) -> int:
    best = -1
    for picks in itertools.product(range(len(GRID)), repeat=len(TABLES)):
        fa = sum(t[p, 1] for t, p in zip(TABLES.values(), picks, strict=True))
        if fa <= budget:
            best = max(best, sum(t[p, 0] for t, p in zip(TABLES.values(), picks, strict=True)))
    return best


@pytest.mark.parametrize("budget", [0, 1, 3, 5, 12, 50])
def test_allocation_meets_the_budget_on_given_scores(budget: float) -> None:
    thresholds = allocate(TABLES, GRID, budget)
    picks = {k: GRID.index(t) for k, t in thresholds.items()}
    fa = sum(TABLES[k][i, 1] for k, i in picks.items())
    hits = sum(TABLES[k][i, 0] for k, i in picks.items())
    assert fa <= budget
    # the Lagrangian optimum is on the convex hull: within a keyword's step of the brute force
    assert hits >= _brute(budget) - 3
    if budget == 0:
        assert thresholds == {"yes": 0.99, "no": 0.9, "go": 0.99}
    if budget >= 50:
        assert set(thresholds.values()) <= {0.5, 0.7}


def test_calibrate_writes_operating_points_the_server_reads(
    stream_corpus: Path, tmp_path: Path
) -> None:
    from streaming.engine import EngineConfig, StreamingEngine

    labels = read_corpus_info(stream_corpus)["labels"]
    torch.manual_seed(0)
    model = build_model("lmuformer", dim=16, num_classes=len(labels)).eval()
    path = save_checkpoint(
        tmp_path / "m.safetensors", model, {"labels": labels, "detector": {"posterior": "softmax"}}
    )
    out = tmp_path / "calibrated.safetensors"
    record = calibrate(path, stream_corpus, 5.0, out=out, runtime="torch", progress=False)
    meta = read_metadata(out)
    assert meta["detector"]["calibration"]["target_fa_per_hour"] == 5.0
    assert meta["detector"]["thresholds"] == record["operating_points"][4]["thresholds"]
    assert record["data"]["split"] == "validation" and record["data"]["hours"] > 0
    targets = [p["target_fa_per_hour"] for p in record["operating_points"]]
    assert targets == sorted(targets) and 5.0 in targets
    for p in record["operating_points"]:  # measured on the validation streams, all keywords on
        assert 0.0 <= p["recall"] <= 1.0 and p["fa_per_hour"] >= 0.0
    engine = StreamingEngine.from_checkpoint(out, EngineConfig.from_metadata(meta))
    assert engine.sensitivity.calibrated
    default = engine.detector_config().keyword_thresholds
    assert default == pytest.approx(meta["detector"]["thresholds"])
    assert engine.detector_config(sensitivity=0.5).keyword_thresholds == pytest.approx(default)
    strict = engine.detector_config(sensitivity=0.0).keyword_thresholds
    assert all(strict[k] >= default[k] for k in default)
    with pytest.raises(ValueError, match="validation streams"):
        calibrate(path, stream_corpus, 5.0, split="test")
