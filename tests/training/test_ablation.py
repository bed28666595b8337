"""``lmukws ablate``: what changed against the control, per-engine accuracy, and a whole run
(train in a child process, resume, evaluate, tabulate) on a tiny tone corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmukws.cli import main
from tests.training.test_dataset import make_tiny_corpus
from training.ablation import engine_accuracy, recipe_diff, standard_error


def test_recipe_diff_names_nested_keys_and_ignores_out_and_notes() -> None:
    control = {"lr": 1e-3, "out": "a", "notes": "x", "augment": {"room_prob": 0.0, "snr": [5, 25]}}
    other = {"lr": 1e-3, "out": "b", "notes": "y", "augment": {"room_prob": 0.5, "snr": [5, 25]}}
    assert recipe_diff(control, other) == {"augment.room_prob": 0.5}
    assert recipe_diff(control, {**control, "data": "data/synth-k"}) == {"data": "data/synth-k"}
    assert recipe_diff(control, control) == {}


def test_engine_accuracy_pools_the_engines_voices() -> None:
    per_voice = {
        "kokoro:alp55+gon45+p1": {"count": 10, "correct": 9},
        "kokoro:teb60+kum40+p2": {"count": 10, "correct": 5},
        "kokorofake:x": {"count": 10, "correct": 0},
        "flite:kal": {"count": 10, "correct": 10},
    }
    shown = engine_accuracy(per_voice, "kokoro")
    assert shown == {"count": 20, "correct": 14, "accuracy": 0.7, "voices": 2}
    assert engine_accuracy(per_voice, "pico") is None
    assert standard_error(0.5, 100) == pytest.approx(0.05)


def test_ablate_trains_resumes_evaluates_and_tabulates(tmp_path: Path) -> None:
    corpus = make_tiny_corpus(tmp_path / "corpus", per_voice=2)
    common = {
        "model": "lmuformer",
        "model_config": {"dim": 16},
        "data": str(corpus),
        "batch_size": 16,
        "epochs": 2,
        "steps_per_epoch": 2,
        "threads": 1,
        "keep_epoch_checkpoints": True,
    }
    control = tmp_path / "lmuformer-control.json"
    control.write_text(json.dumps({**common, "out": str(tmp_path / "runs" / "control")}))
    change = tmp_path / "lmuformer-rooms.json"
    change.write_text(
        json.dumps(
            {
                "base": control.name,
                "out": str(tmp_path / "runs" / "rooms"),
                "augment": {"room_prob": 1.0},
                "notes": "rooms on every clip",
            }
        )
    )
    out = tmp_path / "report"
    args = ["ablate", str(control), str(change), "--out", str(out), "--eval", str(corpus)]
    assert main([*args, "--threads", "1"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    runs = {run["name"]: run for run in result["runs"]}
    assert runs["lmuformer-control"]["role"] == "control"
    assert runs["lmuformer-rooms"]["changed"] == {"augment.room_prob": 1.0}
    for run in runs.values():
        assert run["checkpoint"].endswith("last.safetensors")
        scored = run["eval"][str(corpus)]
        assert scored["count"] > 0 and 0.0 <= scored["accuracy"] <= 1.0
        assert (out / run["name"] / "corpus" / "metrics.json").is_file()
    readme = (out / "README.md").read_text()
    assert "`augment.room_prob`=1.0" in readme and "rooms on every clip" in readme
    assert "| `lmuformer-rooms` |" in readme
    # a second call trains nothing and re-evaluates nothing: the reports are newer
    before = (out / "lmuformer-rooms" / "corpus" / "metrics.json").stat().st_mtime_ns
    history = (tmp_path / "runs" / "rooms" / "history.json").stat().st_mtime_ns
    baseline = tmp_path / "shipped.safetensors"
    baseline.write_bytes((tmp_path / "runs" / "control" / "last.safetensors").read_bytes())
    assert main([*args, "--threads", "1", "--baseline", str(baseline)]) == 0
    assert (out / "lmuformer-rooms" / "corpus" / "metrics.json").stat().st_mtime_ns == before
    rows = json.loads((out / "ablation.json").read_text())["runs"]
    assert (rows[0]["name"], rows[0]["role"]) == ("shipped", "baseline")
    assert "| `shipped` | (evaluated only) |" in (out / "README.md").read_text()
    assert (tmp_path / "runs" / "rooms" / "history.json").stat().st_mtime_ns == history


def test_ablate_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ablate", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r"), "--eval", "x"]
    assert main(args) == 2
    assert "nope.json" in capsys.readouterr().err
