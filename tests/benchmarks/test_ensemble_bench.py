"""The benchmark takes an ensemble by its name (``lmuformer+spiking-lmuformer``): the model
sections build its members, the engine serves a given ensemble checkpoint. Shapes only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.cli import main
from benchmarks.config import BenchConfig
from models import build_model, save_checkpoint
from models.ensemble import ensemble_models

ENSEMBLE = "lmuformer+spiking-lmuformer"
SMOKE = ["--preset", "smoke", "--threads", "1"]


def test_model_sections_measure_an_ensemble_beside_one_model(tmp_path: Path) -> None:
    argv = [*SMOKE, "--sections", "model,window", "--models", f"lmuformer,{ENSEMBLE}"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    overrides = BenchConfig.preset_config("smoke").model_overrides
    members = [build_model(name, **overrides) for name in ENSEMBLE.split("+")]
    ensemble = sections["model"][ENSEMBLE]
    assert ensemble["parameters"] == sum(p.numel() for m in members for p in m.parameters())
    assert ensemble["streaming"] and ensemble["config"]["weights"] == [0.5, 0.5]
    assert len(ensemble["stream"]) == len(sections["model"]["lmuformer"]["stream"])
    (row,) = sections["window"][ENSEMBLE]
    assert row["hop"] == "stream" and row["vs_lmuformer_step"] > 0
    assert ENSEMBLE in (tmp_path / "summary.md").read_text()


def test_the_engine_serves_a_given_ensemble_checkpoint(tmp_path: Path) -> None:
    overrides = {**BenchConfig.preset_config("smoke").model_overrides}
    torch.manual_seed(0)
    members = [build_model(name, **overrides) for name in ENSEMBLE.split("+")]
    path = tmp_path / "ensemble.safetensors"
    labels = ["yes", "no", "go", "_unknown_", "_silence_"]
    save_checkpoint(path, ensemble_models(members, (0.7, 0.3)), {"labels": labels})
    argv = [*SMOKE, "--sections", "engine", "--models", ENSEMBLE, "--checkpoint", str(path)]
    # torch: the ONNX export is test_harness's and test_ensemble's, not this test's
    assert main([*argv, "--runtime", "torch", "--out", str(tmp_path / "out")]) == 0
    engine = json.loads((tmp_path / "out" / "results.json").read_text())["sections"]["engine"]
    assert engine[ENSEMBLE]["weights"] == "given"
    (row,) = engine[ENSEMBLE]["runs"]
    assert row["sessions"] == 2 and row["frames_per_s"] > 0


def test_names_that_cannot_be_averaged_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMOKE, "--models", "lmuformer+spiking-attention"]) == 2
    assert "not streaming models" in capsys.readouterr().err
