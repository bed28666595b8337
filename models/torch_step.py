"""The model's own streaming step over flat state tensors (a ``models.runtime.StepRuntime``).

Shapes: frames [B, n, F] -> logits [B, n, K], positions [B, n] int64; every leaf [B, ...].
"""

from __future__ import annotations

import torch

from models.lmuformer import LMUFormer
from models.state import flatten_state

__all__ = ["TorchStreamStep"]


class TorchStreamStep:
    """``model.stream_frames`` over ``flatten_state``'s list of tensors."""

    name = "torch"

    def __init__(self, model: LMUFormer) -> None:
        self.model = model
        _, self.layout = flatten_state(model.init_state(1))

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        logits, positions, state = self.model.stream_frames(frames, self.layout.unflatten(leaves))
        return logits, positions, flatten_state(state)[0]
