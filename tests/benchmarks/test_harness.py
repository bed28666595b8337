"""Smoke tests of the benchmark harness on a tiny model: it runs, writes JSON, a table and PNGs.

No timing assertions: the numbers of a smoke run mean nothing; only their shape is checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.config import BenchConfig
from benchmarks.run import run

MODEL_SECTIONS = ("model", "window", "runtime", "train")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig.preset_config("smoke", sections=MODEL_SECTIONS, threads=1)
    return run(config, out, command="test", log=lambda _: None), out


def test_model_sections_write_json_table_and_plots(smoke_results) -> None:
    _, out = smoke_results
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["sections"].keys() == set(MODEL_SECTIONS)
    assert on_disk["environment"]["torch_threads"] == 1
    plots = ("stream_cost.png", "window_vs_stream.png", "runtime_speedup.png", "train_step.png")
    for name in plots:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "| metric" in summary and "spiking-lmuformer" in summary
    assert "load average" in summary


def test_model_section_reports_every_model_and_batch(smoke_results) -> None:
    results, _ = smoke_results
    config = BenchConfig.preset_config("smoke")
    model = results["sections"]["model"]
    for name in config.models:
        assert model[name]["parameters"] > 0
        assert [row["batch"] for row in model[name]["stream"]] == list(config.stream_batches)
        for row in model[name]["stream"]:
            assert row["us_per_frame"] > 0 and row["step"]["rounds"] == config.rounds
        assert model[name]["parallel"]["clips_per_s"] > 0
        window = results["sections"]["window"][name][0]
        assert window["ratio"] > 0
        # the window hop runs the network on window_frames frames, the step on one (plus the
        # LMU's fixed taps, which weigh more in the tiny smoke model than in the real one)
        assert 1 < window["flop_ratio"] <= 1.2 * window["window_frames"]
        assert window["window_mflop"] / window["stream_mflop"] == pytest.approx(
            window["flop_ratio"], rel=0.05
        )
        (row,) = results["sections"]["runtime"][name]  # smoke: B=2 x 1 frame
        assert (row["batch"], row["frames"]) == (2, 1)
        assert row["torch_us_per_frame"] > 0 and row["onnx_us_per_frame"] > 0
        assert row["speedup"] > 0
    assert results["sections"]["train"]["spiking_ratio"] > 0


def test_engine_section_streams_real_time_sessions(tmp_path: Path) -> None:
    config = BenchConfig.preset_config("smoke", sections=("engine",), threads=1)
    results = run(config, tmp_path, log=lambda _: None)
    engine = results["sections"]["engine"]
    for name in config.models:
        (row,) = engine[name]["runs"]
        assert row["sessions"] == config.engine_sessions[0]
        assert row["frames_per_s"] > 0 and row["steps"] > 0
        assert row["step_compute_ms"]["p99"] >= row["step_compute_ms"]["p50"] > 0
        assert engine[name]["weights"] == "random"
    assert (tmp_path / "engine_sessions.png").is_file()
    assert "engine: most real-time sessions" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_rest_and_load_sections_against_a_real_server(tmp_path: Path) -> None:
    """A real ``lmukws serve`` on 127.0.0.1: REST clips and two websocket clients."""
    config = BenchConfig.preset_config(
        "smoke", sections=("rest", "load"), models=("lmuformer",), threads=1
    )
    results = run(config, tmp_path, log=lambda _: None)
    (rest,) = results["sections"]["rest"]["lmuformer"]["runs"]
    assert rest["rest_clips_per_s"] > 0 and rest["direct_clips_per_s"] > 0
    (load,) = results["sections"]["load"]["lmuformer"]["runs"]
    assert load["completed"] == load["clients"] == config.load_clients[0]
    assert load["errors"] == 0
    assert load["dropped_ms"]["total"] == 0 and load["frames_missing"] == 0
    assert load["detections"] > 0  # thresholds 0: detections whatever the weights
    assert load["server_ms"]["p50"] is not None
    assert load["other_cpu"] >= 0 and load["steal_cpu"] >= 0
    assert 0 < load["server_pss_mb"][0] < load["server_rss_mb"][0]
    for name in ("rest_clips.png", "load_latency.png"):
        assert (tmp_path / name).is_file()


@pytest.mark.slow
def test_soak_section_serves_through_an_engine_kill(tmp_path: Path) -> None:
    """A few seconds of soak on the tiny model: normal clients, a slow reader, tiny REST
    requests, churn and one engine process killed; the server keeps serving and recovers."""
    from server.settings import Settings

    config = BenchConfig.preset_config(
        "smoke", sections=("soak",), models=("lmuformer",), threads=1
    )
    results = run(config, tmp_path, log=lambda _: None)
    soak = results["sections"]["soak"]["lmuformer"]
    normal, server, kill = soak["normal"], soak["server"], soak["kill"]
    assert normal["sessions"] > normal["failed_by_kill"] and normal["completed"] > 0
    assert normal["failed"] == 0, normal["error_examples"]
    assert normal["audio_lost_ms"] == 0 and normal["frames_missing"] == 0
    assert normal["detections"] > 0 and normal["server_ms"]["p99"] is not None
    assert soak["slow"]["sessions"] >= 1 and soak["slow"]["errors"] == 0
    assert soak["churn"]["sessions"] > 0 and soak["churn"]["errors"] == 0
    assert soak["rest"]["done"] > 0 and soak["rest"]["failed"] == 0
    # the engine processes were told apart from the classification worker, one was killed
    assert kill["engines_found"] == Settings().engine_processes
    assert kill["pid"] > 0 and kill["recovery_s"] > 0
    assert server["engine_restarts"] == 1
    assert server["healthz_always_200"]  # the other engine process kept serving
    assert server["rss_mb_peak"] >= server["rss_mb_start"] > 0
    # children share the fork server's pages: their proportional sum is below the summed RSS
    assert 0 < server["pss_mb_start"] < server["rss_mb_start"]
    assert server["sessions_left"] == 0
    assert soak["timeline"] and len(soak["detections"]) == normal["detections"]
    assert (tmp_path / "soak_timeline.png").is_file()
    assert "soak: engine kill" in (tmp_path / "summary.md").read_text()


def test_metric_total_sums_the_series_of_a_prometheus_metric() -> None:
    from benchmarks.soak_bench import metric_total

    text = (
        "# TYPE lmukws_errors_total counter\n"
        'lmukws_errors_total{code="slow_consumer"} 3\n'
        'lmukws_errors_total{code="internal_error"} 2\n'
        "lmukws_errors_total_created 1.7e9\n"
        "lmukws_scores_dropped_total 41\n"
    )
    assert metric_total(text, "lmukws_errors_total") == 5
    assert metric_total(text, "lmukws_errors_total", 'code="slow_consumer"') == 3
    assert metric_total(text, "lmukws_scores_dropped_total") == 41
    assert metric_total(text, "lmukws_engine_restarts_total") == 0


def test_a_missing_section_is_recorded_not_fatal(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import run as run_module

    monkeypatch.setitem(run_module.SECTION_RUNNERS, "engine", ("benchmarks.no_such_module", "f"))
    config = BenchConfig.preset_config("smoke", sections=("engine",), models=("lmuformer",))
    results = run(config, tmp_path, log=lambda _: None)
    assert "no_such_module" in results["sections"]["engine"]["error"]
    assert "skipped: engine" in (tmp_path / "summary.md").read_text()


def test_bench_command_is_registered_and_light() -> None:
    from lmukws.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--sections", "model,train"])
    assert args.quick and args.sections == ("model", "train")
    args = build_parser().parse_args(["bench", "--load-chunk-ms", "100", "--engine-chunk-ms", "10"])
    assert args.load_chunk_ms == 100.0 and args.engine_chunk_ms == 10.0
    code = "import sys, benchmarks.cli; print('torch' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "False"


def test_bad_options_name_the_bad_value() -> None:
    from benchmarks.run import resolve_device

    with pytest.raises(ValueError, match="unknown sections"):
        BenchConfig.preset_config("quick", sections=("model", "gpu"))
    with pytest.raises(ValueError, match="load_chunk_ms must be"):
        BenchConfig.preset_config("quick", load_chunk_ms=0)
    with pytest.raises(ValueError, match="must be cpu or cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_ab_step_imports_a_revisions_models_beside_this_checkouts(tmp_path) -> None:
    """benchmarks.ab_step: HEAD's ``models`` under another name, its imports rewritten, builds
    a model that streams like this checkout's on the same weights."""
    import torch

    import models
    from benchmarks.ab_step import BASELINE_PACKAGE, extract_baseline

    baseline = extract_baseline("HEAD", tmp_path)
    assert baseline.__name__ == BASELINE_PACKAGE
    assert Path(baseline.__file__).is_relative_to(tmp_path)
    torch.manual_seed(0)
    new = models.build_model("lmuformer", dim=16, num_classes=5).eval()
    old = baseline.build_model("lmuformer", dim=16, num_classes=5).eval()
    assert type(old).__module__ == f"{BASELINE_PACKAGE}.lmuformer"
    old.load_state_dict(new.state_dict())
    feats = torch.randn(1, 30, 128)
    with torch.inference_mode():
        got, _ = old.stream(feats, old.init_state(1))
        expected, _ = new.stream(feats, new.init_state(1))
    assert torch.allclose(got, expected, atol=1e-5)


def test_tree_pss_counts_pages_a_forked_child_shares_once() -> None:
    """A process holding 64 MiB of touched memory forks a child: the summed RSS counts those
    pages twice, the summed PSS once (each process gets half of every shared page)."""
    from benchmarks.checkpoints import process_tree, tree_pss_bytes, tree_rss_bytes

    code = (
        "import os, sys, time\n"
        "block = bytearray(64 << 20)\n"
        "block[::4096] = b'x' * len(block[::4096])\n"
        "if os.fork() == 0:\n"
        "    time.sleep(60); os._exit(0)\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        tree = process_tree(parent.pid)
        assert len(tree) == 2
        rss, pss = tree_rss_bytes(parent.pid), tree_pss_bytes(parent.pid)
        assert rss - pss > 48 << 20  # the shared 64 MiB counted once, not twice
        assert pss > 64 << 20
    finally:
        for pid in process_tree(parent.pid)[1:]:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_host_cpu_seconds_reads_busy_and_stolen_time() -> None:
    """/proc/stat's first line: busy = user + nice + system + irq + softirq + steal."""
    import os

    from benchmarks.checkpoints import host_cpu_seconds

    hz = os.sysconf("SC_CLK_TCK")
    text = "cpu  400 10 60 5000 30 5 15 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    busy, steal = host_cpu_seconds(text)
    assert busy == (400 + 10 + 60 + 5 + 15 + 10) / hz
    assert steal == 10 / hz
    assert host_cpu_seconds("intr 1 2 3\n") == (0.0, 0.0)
    live_busy, live_steal = host_cpu_seconds()
    assert live_busy > 0 and 0 <= live_steal <= live_busy
