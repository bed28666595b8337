"""What runs a model's streaming step over flat state tensors (the engine's state slab rows).

A step runtime has ``stream_leaves(frames, leaves) -> (logits, positions, leaves)``: the
contract of ``LMUFormer.stream_frames`` with the state as ``flatten_state``'s list of tensors, so
the engine gathers rows from its slab and scatters them back without building the state tree
every step. ``models.torch_step.TorchStreamStep`` is the model itself;
``models.onnx_step.OnnxStreamStep`` is its ONNX Runtime export; ``load_runtime`` picks one by
name (``models.config.RUNTIMES``).

Shapes: frames [B, n, F] -> logits [B, n, K], positions [B, n] int64; every leaf [B, ...].
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from models.config import RUNTIMES
from models.lmuformer import LMUFormer
from models.onnx_step import OnnxStreamStep, onnxruntime_available
from models.torch_step import TorchStreamStep

__all__ = ["StepRuntime", "StreamRuntime", "TorchStreamStep", "load_runtime"]

log = logging.getLogger("lmukws.runtime")


class StepRuntime(Protocol):
    """Runs the streaming step: ``name`` ("torch" or "onnx") and ``stream_leaves``."""

    name: str

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]: ...


StreamRuntime = StepRuntime  # the earlier name


def load_runtime(
    model: LMUFormer, runtime: str, device: torch.device, threads: int = 0
) -> StepRuntime:
    """The step runtime named ``runtime`` (one of ``RUNTIMES``): "onnx" exports the model's
    streaming step (``models.onnx_step``, CPU only, ``threads`` intra-op threads); "auto" picks
    it on the CPU when ONNX Runtime is installed and falls back to torch, with a warning, when
    the export fails."""
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
    try:
        return OnnxStreamStep(model, threads=threads)
    except Exception as error:
        if runtime == "onnx":
            raise
        log.warning("the ONNX streaming step failed to load (%s): the model's steps run in torch",
                    error)  # fmt: skip
        return TorchStreamStep(model)
