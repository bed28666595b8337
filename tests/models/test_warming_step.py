"""The "auto" runtime with no cached export: the torch step serves at once while the export is
made in the background, then the exported step takes over mid-stream; one process exports a
model at a time, the others load its files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from benchmarks.checkpoints import children
from models import onnx_step, runtime
from models.onnx_step import OnnxStreamStep, exported, onnxruntime_available
from models.runtime import WarmingStep, load_runtime
from models.state import flatten_state
from tests.models.conftest import make_model

pytestmark = pytest.mark.skipif(not onnxruntime_available(), reason="ONNX Runtime is not installed")
TOLERANCE = 1e-4  # as tests/models/test_streaming.py
CPU = torch.device("cpu")


@pytest.fixture
def cold_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LMUKWS_CACHE_DIR", str(tmp_path))
    return tmp_path / "onnx"


def stream(step: runtime.StepRuntime, feats: torch.Tensor, leaves: list, chunk: int) -> tuple:
    """``feats`` [1, T, F] through ``step`` in chunks: (the logits of the frames it could
    score [1, <= T, K], leaves)."""
    outputs = []
    for start in range(0, feats.shape[1], chunk):
        logits, positions, leaves = step.stream_leaves(feats[:, start : start + chunk], leaves)
        outputs.append(logits[:, positions[0] >= 0])
    return torch.cat(outputs, dim=1), leaves


@torch.inference_mode()
def test_torch_serves_until_the_export_is_in_then_onnx_mid_stream(cold_cache: Path) -> None:
    model = make_model("lmuformer", "tiny", seed=3)
    assert not exported(model)
    step = load_runtime(model, "auto", CPU, threads=1, background=True)
    assert isinstance(step, WarmingStep)
    feats = torch.randn(1, 40, 128, generator=torch.Generator().manual_seed(1))
    leaves, layout = flatten_state(model.init_state(1))
    first, leaves = stream(step, feats[:, :20], leaves, 4)  # torch or onnx, whichever is in
    assert step.ready.wait(300) and step.name == "onnx"
    rest, leaves = stream(step, feats[:, 20:], leaves, 4)  # the same session, on ONNX Runtime
    tail, _ = model.finish(layout.unflatten(leaves))
    streamed = torch.cat([first, rest, tail], dim=1)
    assert (streamed - model.frame_logits(feats)).abs().max().item() <= TOLERANCE
    # the next load finds the export and loads it at once
    assert exported(model)
    assert isinstance(load_runtime(model, "auto", CPU, threads=1, background=True), OnnxStreamStep)


def test_a_failed_export_leaves_the_steps_in_torch(
    cold_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no graph today")

    monkeypatch.setattr(runtime, "export_elsewhere", broken)
    with caplog.at_level(logging.WARNING, logger="lmukws.runtime"):
        model = make_model("lmuformer", "tiny", seed=4)
        step = load_runtime(model, "auto", CPU, threads=1, background=True)
        assert isinstance(step, WarmingStep) and step.ready.wait(60)
    assert step.name == "torch" and "no graph today" in caplog.text


def test_one_export_at_a_time_the_others_load_it(
    cold_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two loads of a model at once (two engine processes at a cold start) export it once: the
    cache file's lock makes the second wait for the first's graphs."""
    model = make_model("lmuformer", "tiny", seed=5)
    calls = []
    export = OnnxStreamStep._export

    def counted(self: OnnxStreamStep, path: Path, frames: int | None) -> bool:
        calls.append(frames)
        return export(self, path, frames)

    monkeypatch.setattr(onnx_step.OnnxStreamStep, "_export", counted)
    steps: list[OnnxStreamStep] = []
    threads = [
        threading.Thread(target=lambda: steps.append(OnnxStreamStep(model, threads=1)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(steps) == 2 and calls == [None]  # one export, for any frame count
    assert all(list(step.graphs) == [None] for step in steps)


def test_the_export_process_says_why_it_failed(tmp_path: Path) -> None:
    """``python -m models.onnx_export`` on a file that is no checkpoint: exit 1, the reason."""
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint at all")
    command = [sys.executable, "-m", "models.onnx_export", str(tmp_path / "bad.safetensors")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1 and "the ONNX export failed" in result.stderr


def test_the_export_process_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """An engine process killed mid-export leaves no exporter running behind it."""
    script = (
        "import torch; from models import build_model; from models.runtime import "
        "export_elsewhere; torch.manual_seed(7); "
        "export_elsewhere(build_model('spiking-lmuformer', dim=16, num_classes=5))"
    )
    env = {**os.environ, "LMUKWS_CACHE_DIR": str(tmp_path)}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        exporters: list[int] = []
        while not exporters:
            assert time.monotonic() < deadline and parent.poll() is None, "no exporter started"
            exporters = children(parent.pid)
            time.sleep(0.05)
        time.sleep(1.0)  # well into its imports
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 60
        while any(running(pid) for pid in exporters):
            assert time.monotonic() < deadline, "the exporter outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is reaped by init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@torch.inference_mode()
def test_an_unwritable_cache_is_replaced_by_one_folder_for_both_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache that cannot be written (a read-only home): the exporting process and the
    engine use the same temporary folder, so the engine loads the graphs instead of exporting
    them again in its own process."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("LMUKWS_CACHE_DIR", str(blocked))
    monkeypatch.setattr(OnnxStreamStep, "_export", lambda *a: pytest.fail("exported in process"))
    step = load_runtime(make_model("lmuformer", "tiny", seed=6), "auto", CPU, 1, background=True)
    assert isinstance(step, WarmingStep) and step.ready.wait(300)
    assert step.name == "onnx"
