"""The benchmark with every model: the spiking LMU streams like the shipped models; the window
model (spiking attention, no streaming form) is costed by its window forward per hop, shows "—"
in the streaming rows, and is refused by the service sections. Shapes only, no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.config import DEFAULT_MODELS, SERVICE_SECTIONS, BenchConfig
from benchmarks.report import NO_STREAM

MODELS = ("spiking-lmu", "spiking-attention")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench-window-models")
    argv = ["--preset", "smoke", "--threads", "1", "--sections", "model,window"]
    assert main([*argv, "--models", ",".join(MODELS), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    return results, (out / "summary.md").read_text()


def test_default_models_stay_the_two_shipped_ones() -> None:
    assert BenchConfig().models == DEFAULT_MODELS == ("lmuformer", "spiking-lmuformer")


def test_streaming_spiking_lmu_gets_every_streaming_row(smoke_run) -> None:
    results, _ = smoke_run
    config = BenchConfig.preset_config("smoke")
    model = results["sections"]["model"]["spiking-lmu"]
    assert model["streaming"] and model["lookahead_frames"] >= 0
    assert [row["batch"] for row in model["stream"]] == list(config.stream_batches)
    (row,) = results["sections"]["window"]["spiking-lmu"]
    assert row["hop"] == "stream" and row["stream_hop"] is not None and row["ratio"] > 0
    assert row["flop_ratio"] > 1 and row["us_per_session_hop"] > 0
    assert row["vs_lmuformer_step"] is None  # lmuformer did not run


def test_window_model_is_costed_by_its_window_forward(smoke_run) -> None:
    results, summary = smoke_run
    model = results["sections"]["model"]["spiking-attention"]
    assert not model["streaming"] and model["stream"] is None
    assert model["lookahead_frames"] is None and model["parallel"]["clips_per_s"] > 0
    (row,) = results["sections"]["window"]["spiking-attention"]
    assert row["hop"] == "window" and row["stream_hop"] is None and row["ratio"] is None
    assert row["window_mflop"] > 0 and row["stream_mflop"] is None
    assert row["hop_ms"] == pytest.approx(row["window_hop"]["median_ms"], rel=1e-3)
    assert row["us_per_session_hop"] > 0 and row["realtime_sessions"] > 0
    lines = {line.split("|")[1].strip(): line for line in summary.splitlines() if "|" in line}
    assert NO_STREAM in lines["streaming step, B=1: ms/step (µs/frame)"]
    assert any(label.startswith("cost per session per hop") for label in lines)


def test_ratio_to_the_lmuformer_step_when_lmuformer_runs(tmp_path: Path) -> None:
    from benchmarks.model_bench import _compare_to_lmuformer

    rows = {
        "lmuformer": [{"batch": 1, "hop_ms": 0.5}],
        "spiking-attention": [{"batch": 1, "hop_ms": 5.0}, {"batch": 64, "hop_ms": 9.0}],
    }
    _compare_to_lmuformer(rows)
    assert rows["lmuformer"][0]["vs_lmuformer_step"] == 1.0
    assert [r["vs_lmuformer_step"] for r in rows["spiking-attention"]] == [10.0, None]


@pytest.mark.parametrize("section", SERVICE_SECTIONS)
def test_service_sections_refuse_window_models(section: str) -> None:
    with pytest.raises(ValueError, match="no streaming form"):
        BenchConfig.preset_config("smoke", sections=("model", section), models=MODELS)
    config = BenchConfig.preset_config("smoke", sections=(section,), models=("spiking-lmu",))
    assert config.models == ("spiking-lmu",)


def test_the_cli_names_the_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--preset", "smoke", "--models", "spiking-attention"]) == 2
    assert "streaming models only; ['spiking-attention']" in capsys.readouterr().err
