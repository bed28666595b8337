"""The step runtime of a window model: recompute the last window every hop, batched.

A window model (``models.WINDOW_MODELS``: global self-attention, a parallel form only) has no
frame-by-frame state, so it is served by recompute. Per session, ``WindowState`` keeps a ring
of the last ``window_frames`` normalised feature frames (the training window, 128 frames =
1.28 s), the frames seen since start or reset, and the last window's logits. Frame ``t`` (from
0, since start or reset) is a hop when ``t % hop_frames == 0``; at a hop the model's parallel
form scores the window ending at frame ``t`` (``model(window)``: the clip logits, the mean of
its per-frame logits, as in training). Every hop due in one call, across every session of the
group, runs as one forward over [P, window_frames, F].

Every frame gets logits: those of the latest hop at or before it (sample and hold), so the
engine's frame accounting, audio times and the detector's settings in milliseconds keep their
meaning; the engine sets its pooling to one frame (the window is the pooling). Until a full
window has arrived, the window is left-padded with ``pad_value``, the value a zero log-mel
takes after normalisation (what the training data pads clips with, ``training.dataset``).

``WindowStep`` has the ``StepRuntime`` contract (``stream_leaves`` over the state's flat list of
tensors), so the engine's ``StateSlab`` keeps its rows like any model state.

Shapes: B sessions, n new frames, W window frames, F mel bins, K labels, P hops in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models import LMUFormer

__all__ = ["WindowState", "WindowStep"]


@dataclass(frozen=True)
class WindowState:
    """ring [B, W, F]: the last W frames, oldest first (``pad_value`` before the first frame);
    seen [B] int64: frames since start or reset; last [B, K]: the latest hop's logits."""

    ring: torch.Tensor
    seen: torch.Tensor
    last: torch.Tensor


class WindowStep:
    """Windowed recompute of a window model every ``hop_frames`` frames (module docstring)."""

    name = "torch"

    def __init__(self, model: LMUFormer, hop_frames: int, pad_value: float) -> None:
        if hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
        self.model = model
        self.hop_frames = hop_frames
        self.window_frames = model.config.window
        self.pad_value = pad_value

    def init_state(self, batch_size: int = 1) -> WindowState:
        """A fresh state for ``batch_size`` sessions (a padded window, nothing seen)."""
        device = next(self.model.parameters()).device
        features = self.model.config.in_features
        return WindowState(
            ring=torch.full(
                (batch_size, self.window_frames, features), self.pad_value, device=device
            ),
            seen=torch.zeros(batch_size, dtype=torch.int64, device=device),
            last=torch.zeros(batch_size, self.model.num_classes, device=device),
        )

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """frames [B, n, F] and the state's leaves (ring, seen, last) -> logits [B, n, K] (each
        frame: the latest hop's window logits), positions [B, n] (each frame's index since
        start or reset; all final) and the new leaves."""
        ring, seen, last = leaves
        B, n, _ = frames.shape
        W = self.window_frames
        ext = torch.cat((ring, frames.to(ring.dtype)), dim=1)  # [B, W + n, F]
        positions = seen[:, None] + torch.arange(n, device=seen.device)  # [B, n]
        b, j = torch.nonzero(positions % self.hop_frames == 0, as_tuple=True)  # P hops
        logits = last[:, None].expand(B, n, last.shape[-1])
        if b.numel():
            # the window ending at new frame j is ext[j + 1 : j + 1 + W]
            index = (j + 1)[:, None] + torch.arange(W, device=j.device)  # [P, W]
            scores = self.model(ext[b[:, None], index]).to(last.dtype)  # [P, K]
            hop = torch.full((B, n), -1, dtype=torch.int64, device=b.device)
            hop[b, j] = torch.arange(b.numel(), device=b.device)
            hop = torch.cummax(hop, dim=1).values  # [B, n] latest hop at or before each frame
            logits = torch.where((hop >= 0)[..., None], scores[hop.clamp(min=0)], logits)
        return logits, positions, [ext[:, ext.shape[1] - W :], seen + n, logits[:, -1]]
