"""An ensemble's member weights searched on validation streams: the posteriors combined from
its members' runs are those the ensemble serves, and calibrate stores the winner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lmukws.cli import main
from models import build_model, load_checkpoint, read_metadata, save_checkpoint
from models.ensemble import ensemble_models
from training.calibrate import calibrate
from training.dataset import read_corpus_info
from training.ensemble_weights import combine_runs, member_runs, parse_candidates, reweighted
from training.stream_eval import run_engine
from training.stream_report import load_engine, load_streams


def _tiny_ensemble(corpus: Path, tmp_path: Path, posterior: str) -> Path:
    """Untrained dim-16 lmuformer and spiking-lmuformer, averaged 0.7 / 0.3."""
    labels = read_corpus_info(corpus)["labels"]
    torch.manual_seed(0)
    members = [
        build_model(name, dim=16, num_classes=len(labels), num_embed_convs=2)
        for name in ("lmuformer", "spiking-lmuformer")
    ]
    records = [
        {"model": m.config.name, "weight": w} for m, w in zip(members, (0.7, 0.3), strict=True)
    ]
    metadata = {
        "labels": labels,
        "detector": {"posterior": posterior},
        "ensemble": {"members": records},
    }
    path = tmp_path / f"ensemble-{posterior}.safetensors"
    return save_checkpoint(path, ensemble_models(members, (0.7, 0.3)), metadata)


@pytest.mark.parametrize("posterior", ["softmax", "sigmoid"])
def test_member_runs_combine_into_the_ensembles_posteriors_for_any_weights(
    stream_corpus: Path, tmp_path: Path, posterior: str
) -> None:
    path = _tiny_ensemble(stream_corpus, tmp_path, posterior)
    # two streams' first 4 s: 400 frames to compare, little to run
    streams = [
        dataclasses.replace(s, audio=s.audio[: 4 * 16000])
        for s in load_streams(stream_corpus, "validation")[:2]
    ]
    model, meta = load_checkpoint(path)
    meta = dict(meta)
    members = member_runs(model, meta, streams, runtime="torch", progress=False)
    assert len(members) == 2 and all(len(runs) == len(streams) for runs in members)
    other = reweighted(model, meta, (0.2, 0.8))
    assert other.config.weights == (0.2, 0.8)
    assert [m["weight"] for m in meta["ensemble"]["members"]] == [0.2, 0.8]
    moved = save_checkpoint(tmp_path / "moved.safetensors", other, meta)
    for checkpoint, weights in ((path, (0.7, 0.3)), (moved, (0.2, 0.8))):
        served = run_engine(load_engine(checkpoint, "torch"), streams, progress=False)
        combined = combine_runs(members, weights, posterior)
        for want, got in zip(served, combined, strict=True):
            assert got.stream.name == want.stream.name and got.detections == []
            np.testing.assert_allclose(got.posteriors, want.posteriors, atol=2e-5)


def test_candidates_are_parsed_and_normalised() -> None:
    assert parse_candidates("7,3; 0.6,0.4;0.7,0.3") == [(0.7, 0.3), (0.6, 0.4)]
    assert parse_candidates("1,1,2", members=3) == [(0.25, 0.25, 0.5)]
    for text, message in (
        ("0.5,0.5", "2 weights for an ensemble of 3"),
        ("0.5,-1,1", "positive"),
        ("a,b,c", "comma-separated"),
        (";", "no candidate"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_candidates(text, members=3)


def test_calibrate_searches_the_weights_and_stores_the_winner(
    stream_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tiny_ensemble(stream_corpus, tmp_path, "softmax")
    out = tmp_path / "calibrated.safetensors"
    # the training split: three voices, so a held-out estimate (the validation split has one)
    record = calibrate(path, stream_corpus, 20.0, out=out, split="train", runtime="torch",
                       ensemble_weights=[(0.2, 0.8), (0.7, 0.3)], progress=False)  # fmt: skip
    rows = record["ensemble_weight_search"]["candidates"]
    assert [row["weights"] for row in rows] == [[0.7, 0.3], [0.2, 0.8]]  # its own first, once
    (chosen,) = [row for row in rows if row["chosen"]]
    best = max(row["heldout_recall_at_target"] or 0.0 for row in rows)
    assert (chosen["heldout_recall_at_target"] or 0.0) == best
    model, meta = load_checkpoint(out)
    assert list(model.config.weights) == pytest.approx(chosen["weights"])
    assert [m["weight"] for m in meta["ensemble"]["members"]] == pytest.approx(chosen["weights"])
    assert meta["detector"]["calibration"]["ensemble_weight_search"]["candidates"] == rows
    single = tmp_path / "single.safetensors"
    labels = read_metadata(path)["labels"]
    save_checkpoint(single, build_model("lmuformer", dim=16, num_classes=len(labels)),
                    {"labels": labels})  # fmt: skip
    with pytest.raises(ValueError, match="ensemble checkpoint"):
        calibrate(single, stream_corpus, 20.0, split="train", runtime="torch",
                  ensemble_weights=[(0.5, 0.5)], progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="--folds >= 2"):
        calibrate(path, stream_corpus, 20.0, folds=0, ensemble_weights=[(0.5, 0.5)])
    with pytest.raises(ValueError, match="2 positive weights per candidate"):
        calibrate(path, stream_corpus, 20.0, ensemble_weights=[(0.2, 0.3, 0.5)])
    # the command says what is wrong, without a traceback
    argv = ["calibrate", str(single), "--data", str(stream_corpus), "--target-fa-per-hour",
            "20", "--ensemble-weights", "0.5,0.5"]  # fmt: skip
    assert main(argv) == 2
    assert "needs an ensemble checkpoint" in capsys.readouterr().err
