"""What runs a model's streaming step over flat state tensors (the engine's state slab rows).

A step runtime has ``stream_leaves(frames, leaves) -> (logits, positions, leaves)``: the
contract of ``LMUFormer.stream_frames`` with the state as ``flatten_state``'s list of tensors, so
the engine gathers rows from its slab and scatters them back without building the state tree
every step. ``models.torch_step.TorchStreamStep`` is the model itself;
``models.onnx_step.OnnxStreamStep`` is its ONNX Runtime export; ``load_runtime`` picks one by
name (``models.config.RUNTIMES``). ``WarmingStep`` runs the torch step while the export is
made in the background, then the exported one: "auto" does that for the server when the
export is not cached yet, so the service is ready at once instead of after minutes of
exporting.

Shapes: frames [B, n, F] -> logits [B, n, K], positions [B, n] int64; every leaf [B, ...].
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

import torch

from models.config import RUNTIMES
from models.lmuformer import LMUFormer
from models.onnx_step import (
    OnnxStreamStep,
    exported,
    onnxruntime_available,
    writable_cache_dir,
)
from models.torch_step import TorchStreamStep

__all__ = ["StepRuntime", "StreamRuntime", "TorchStreamStep", "WarmingStep", "load_runtime"]

log = logging.getLogger("lmukws.runtime")


class StepRuntime(Protocol):
    """Runs the streaming step: ``name`` ("torch" or "onnx") and ``stream_leaves``."""

    name: str

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]: ...


StreamRuntime = StepRuntime  # the earlier name


class WarmingStep:
    """The torch step until the ONNX export is ready, then the exported step (a
    ``StepRuntime``). The export runs in a process of its own at low priority
    (``models.onnx_export``: it holds the interpreter lock for seconds at a time, which would
    stall this process's steps and heartbeats); a background thread waits for it, loads the
    cached graphs and checks them against torch, and the next step after that runs on ONNX
    Runtime: both take the same flat state, so sessions carry on mid-stream. If the export
    fails the steps stay in torch (a warning)."""

    def __init__(self, model: LMUFormer, threads: int = 0) -> None:
        self._torch = TorchStreamStep(model)
        self.active: StepRuntime = self._torch
        #: set once the export has finished (or failed)
        self.ready = threading.Event()
        copied = copy.deepcopy(model).eval()  # the check never touches the served module
        self._thread = threading.Thread(
            target=self._warm, args=(copied, threads), name="lmukws-onnx-export", daemon=True
        )
        self._thread.start()

    @property
    def name(self) -> str:
        return self.active.name

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        return self.active.stream_leaves(frames, leaves)

    def _warm(self, model: LMUFormer, threads: int) -> None:
        started = time.monotonic()
        log.info("exporting the streaming step to ONNX in the background; torch runs it meanwhile")
        try:
            cache = writable_cache_dir()  # the one folder both processes use
            export_elsewhere(model, threads, cache)
            onnx = OnnxStreamStep(model, threads=threads, cache_dir=cache)  # loads its graphs
        except Exception as error:  # the service keeps serving on torch
            log.warning("the ONNX streaming step failed to load (%s): the model's steps stay in "
                        "torch", error)  # fmt: skip
        else:
            self.active = onnx
            log.info("the streaming steps run on ONNX Runtime now (ready after %.0f s)",
                     time.monotonic() - started)  # fmt: skip
        finally:
            self.ready.set()


def export_elsewhere(model: LMUFormer, threads: int = 1, cache_dir: Path | None = None) -> None:
    """Export ``model``'s streaming step into the ONNX cache (``cache_dir``, else the usual) in
    a child process (``python -m models.onnx_export``, niced); raises RuntimeError with its
    reason if it fails."""
    from models.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="lmukws-export-") as folder:
        path = save_checkpoint(Path(folder) / "model.safetensors", model)
        command = [sys.executable, "-m", "models.onnx_export", str(path), "--parent"]
        command += [str(os.getpid()), "--threads", str(threads)]
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RuntimeError(reason)


def load_runtime(
    model: LMUFormer,
    runtime: str,
    device: torch.device,
    threads: int = 0,
    background: bool = False,
) -> StepRuntime:
    """The step runtime named ``runtime`` (one of ``RUNTIMES``): "onnx" exports the model's
    streaming step (``models.onnx_step``, CPU only, ``threads`` intra-op threads) before it
    returns; "auto" picks it on the CPU when ONNX Runtime is installed, exporting first too,
    unless ``background`` and the export is not cached yet: then a ``WarmingStep`` (torch
    now, ONNX once exported in the background, for a service that must be ready at once); it
    falls back to torch, with a warning, when the export fails."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "torch":
        return TorchStreamStep(model)
    if device.type != "cpu":
        if runtime == "onnx":
            raise ValueError(f"the onnx runtime runs on the CPU; use runtime torch on {device}")
        return TorchStreamStep(model)
    if runtime == "auto" and not onnxruntime_available():
        log.warning("onnxruntime is not installed: the model's steps run in torch")
        return TorchStreamStep(model)
    if runtime == "auto" and background and not exported(model):
        return WarmingStep(model, threads)
    try:
        return OnnxStreamStep(model, threads=threads)
    except Exception as error:
        if runtime == "onnx":
            raise
        log.warning("the ONNX streaming step failed to load (%s): the model's steps run in torch",
                    error)  # fmt: skip
        return TorchStreamStep(model)
