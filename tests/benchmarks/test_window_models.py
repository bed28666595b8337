"""The benchmark with every model: the spiking LMU streams like the shipped models; the window
model (spiking attention, no streaming form) is costed by its window forward per hop, shows "—"
in the streaming rows, and is served by the service sections with its window recomputed every
hop. Shapes only, no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.config import DEFAULT_MODELS, BenchConfig
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


def test_service_sections_serve_a_window_model(tmp_path: Path) -> None:
    """The engine and a real server recompute the window every --window-hop-ms, as serve does:
    the engine row says the hop, the server's latency is window + (hop frames - 1) frames."""
    argv = ["--preset", "smoke", "--threads", "1", "--sections", "engine,load"]
    argv += ["--models", "spiking-attention", "--window-hop-ms", "50", "--out", str(tmp_path)]
    assert main(argv) == 0
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    (row,) = sections["engine"]["spiking-attention"]["runs"]
    assert row["window_hop_ms"] == 50.0 and row["sessions"] == 2
    assert row["frames_per_s"] > 0 and row["steps"] > 0
    (run,) = sections["load"]["spiking-attention"]["runs"]
    assert run["algorithmic_ms"] == pytest.approx(25.0 + (5 - 1) * 10.0)
    summary = (tmp_path / "summary.md").read_text()
    assert "engine: most real-time sessions that keep up" in summary


def test_streaming_models_have_no_window_hop_in_engine_rows(tmp_path: Path) -> None:
    argv = ["--preset", "smoke", "--threads", "1", "--sections", "engine", "--runtime", "torch"]
    assert main([*argv, "--models", "spiking-lmu", "--out", str(tmp_path)]) == 0
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    (row,) = sections["engine"]["spiking-lmu"]["runs"]
    assert "window_hop_ms" not in row


def test_a_negative_window_hop_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--preset", "smoke", "--window-hop-ms", "-5"]) == 2
    assert "window_hop_ms must be >= 0" in capsys.readouterr().err
