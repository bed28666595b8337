"""What runs a model's streaming step over flat state tensors (the engine's state slab rows).

A streaming runtime has ``stream_leaves(frames, leaves) -> (logits, positions, leaves)``: the
contract of ``LMUFormer.stream_frames`` with the state as ``flatten_state``'s list of tensors, so
the engine gathers rows from its slab and scatters them back without building the state tree
every step. ``TorchStreamStep`` is the model itself; ``models.onnx_step.OnnxStreamStep`` is its
ONNX Runtime export; ``load_runtime`` picks one by name (``models.config.RUNTIMES``).

Shapes: frames [B, n, F] -> logits [B, n, K], positions [B, n] int64; every leaf [B, ...].
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from models.config import RUNTIMES
from models.lmuformer import LMUFormer
from models.state import flatten_state

__all__ = ["StreamRuntime", "TorchStreamStep", "load_runtime"]

log = logging.getLogger("lmukws.runtime")


class StreamRuntime(Protocol):
    name: str

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]: ...


class TorchStreamStep:
    """``model.stream_frames`` over flat state tensors."""

    name = "torch"

    def __init__(self, model: LMUFormer) -> None:
        self.model = model
        _, self.layout = flatten_state(model.init_state(1))

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        logits, positions, state = self.model.stream_frames(frames, self.layout.unflatten(leaves))
        return logits, positions, flatten_state(state)[0]


def load_runtime(
    model: LMUFormer, runtime: str, device: torch.device, threads: int = 0
) -> StreamRuntime:
    """The streaming runtime named ``runtime`` (one of ``RUNTIMES``): "onnx" exports the model's
    streaming step (``models.onnx_step``, CPU only, ``threads`` intra-op threads); "auto" picks
    it on the CPU when ONNX Runtime is installed and falls back to torch, with a warning, when
    the export fails."""
    from models.onnx_step import OnnxStreamStep, onnxruntime_available

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
