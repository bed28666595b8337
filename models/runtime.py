"""What runs a model's streaming step over flat state tensors (the engine's state slab rows).

A streaming runtime has ``stream_leaves(frames, leaves) -> (logits, positions, leaves)``: the
contract of ``LMUFormer.stream_frames`` with the state as ``flatten_state``'s list of tensors, so
the engine gathers rows from its slab and scatters them back without building the state tree
every step. ``TorchStreamStep`` is the model itself; ``models.onnx_step.OnnxStreamStep`` is its
ONNX Runtime export.

Shapes: frames [B, n, F] -> logits [B, n, K], positions [B, n] int64; every leaf [B, ...].
"""

from __future__ import annotations

from typing import Protocol

import torch

from models.lmuformer import LMUFormer
from models.state import flatten_state

__all__ = ["StreamRuntime", "TorchStreamStep"]


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
