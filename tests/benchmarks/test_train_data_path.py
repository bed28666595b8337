"""The train section's data-path rows: the real trainer on a tiny corpus, its second epoch's
step time and model share beside compute alone. Shapes and bounds only, no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.config import BenchConfig
from tests.training.test_dataset import make_tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"), per_voice=2)


def test_the_trainer_runs_beside_compute_alone(corpus: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.json"  # the smoke preset's 20-frame shape: the ratio is reported
    recipe.write_text(
        json.dumps({"window_frames": 20, "features_on_device": True, "precision": "bf16"})
    )
    out = tmp_path / "out"
    argv = ["--preset", "smoke", "--threads", "1", "--sections", "train", "--models", "lmuformer"]
    argv += ["--train-data", str(corpus), "--train-recipe", str(recipe), "--out", str(out)]
    assert main(argv) == 0
    section = json.loads((out / "results.json").read_text())["sections"]["train"]
    run = section["lmuformer"]["data_path"]
    assert (run["batch"], run["frames"], run["steps"]) == (4, 20, 2)
    assert run["corpus"] == str(corpus) and run["recipe"] == str(recipe)
    assert run["features_on_device"] is True and run["precision"] == "bf16"
    assert 0.0 < run["model_share"] <= 1.0 and 0.0 <= run["data_wait_share"] < 1.0
    assert 0.0 < run["model_step_ms"] <= run["step_ms"]
    assert run["items_per_s"] > 0 and run["vs_compute_alone"] > 0
    summary = (out / "summary.md").read_text()
    assert "training step with the trainer's data path" in summary and "model " in summary


def test_without_a_corpus_only_compute_alone(tmp_path: Path) -> None:
    argv = ["--preset", "smoke", "--threads", "1", "--sections", "train", "--models", "lmuformer"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    section = json.loads((tmp_path / "results.json").read_text())["sections"]["train"]
    assert "data_path" not in section["lmuformer"]


def test_a_recipe_needs_a_corpus() -> None:
    with pytest.raises(ValueError, match="train_recipe needs train_data"):
        BenchConfig.preset_config("smoke", train_recipe="x.json")
    with pytest.raises(ValueError, match="train_data_steps must be >= 1"):
        BenchConfig.preset_config("smoke", train_data_steps=0)
