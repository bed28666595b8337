"""Spiking self-attention (SSA): the token mixer of the authors' ``attn_ms_conv1d``.

Global attention over the whole window, so it has a parallel form only: every output frame
depends on every input frame of the window, and there is no frame-by-frame streaming form (its
``init_state`` / ``stream`` / ``lookahead`` raise ``NoStreamingFormError``). A served window model
recomputes its window (see docs/architecture.md, "Models").

The authors' ``SSA`` (src/blocks/lmu.py), in their order: BatchNorm and LIF of the input
(``pre_bn``, ``pre_lif``); Q, K and V each a bias-free 1x1 conv of those spikes, a BatchNorm and
a LIF (``{q,k,v}_conv``, ``_bn``, ``_lif``), split into ``num_heads`` heads along the channels;
``(Q Kᵀ) V`` times a fixed scale of 0.25 (no softmax, no 1/sqrt(d)); the heads concatenated
back and a LIF with threshold 0.5 (``attn_lif``); a 1x1 conv with bias and a BatchNorm
(``proj_conv``, ``proj_bn``), whose output (a membrane potential) the block's residual adds.
Their ``attn_drop`` and ``proj_lif`` are built but never called; they are left out. Every LIF
runs over frames (tau 2, hard reset), as in the rest of the network.

Shapes: B batch, T frames (the window), C channels (dim), H heads, D = C / H.
"""

from __future__ import annotations

from typing import NoReturn

import torch
from torch import nn

from models.layers import BatchNorm, PointwiseConv, StreamLIF

#: the authors' fixed attention scale
SSA_SCALE = 0.25


class NoStreamingFormError(ValueError):
    """A window model was asked for a streaming form it does not have."""


class SpikingSelfAttention(nn.Module):
    """The authors' ``SSA`` over channel-last windows [B, T, C] (see the module docstring)."""

    def __init__(self, dim: int, num_heads: int, scale: float = SSA_SCALE) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads must be >= 1 and divide dim {dim}, got {num_heads}")
        self.num_heads = num_heads
        self.scale = scale
        self.pre_bn = BatchNorm(dim)
        self.pre_lif = StreamLIF(dim)
        for name in ("q", "k", "v"):
            self.add_module(f"{name}_conv", PointwiseConv(dim, dim, bias=False))
            self.add_module(f"{name}_bn", BatchNorm(dim))
            self.add_module(f"{name}_lif", StreamLIF(dim))
        self.attn_lif = StreamLIF(dim, v_threshold=0.5)
        self.proj_conv = PointwiseConv(dim, dim)
        self.proj_bn = BatchNorm(dim)

    def _heads(self, name: str, spikes: torch.Tensor) -> torch.Tensor:
        """Q, K or V of the input spikes [B, T, C], split into heads: [B, H, T, D]."""
        conv, bn, lif = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        x = lif(bn(conv(spikes)))
        batch, frames, channels = x.shape
        return x.view(batch, frames, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, C] -> [B, T, C], attending over all T frames.

        With no softmax the product associates, so it is computed as ``Q (Kᵀ V)`` (T·D² per
        head) when T > D, else ``(Q Kᵀ) V`` (T²·D); on spikes both are sums of integers, exact
        in float32 for any window this model sees."""
        spikes = self.pre_lif(self.pre_bn(x))
        q, k, v = (self._heads(name, spikes) for name in ("q", "k", "v"))
        if q.shape[2] > q.shape[3]:
            y = q @ (k.transpose(-2, -1) @ v)
        else:
            y = (q @ k.transpose(-2, -1)) @ v
        y = (y * self.scale).transpose(1, 2).reshape(x.shape)  # heads side by side: [B, T, C]
        return self.proj_bn(self.proj_conv(self.attn_lif(y)))

    @property
    def lookahead(self) -> NoReturn:
        raise NoStreamingFormError(_NO_STREAMING)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> NoReturn:
        raise NoStreamingFormError(_NO_STREAMING)

    def stream(self, x: torch.Tensor, clock: object, state: object) -> NoReturn:
        raise NoStreamingFormError(_NO_STREAMING)


_NO_STREAMING = (
    "spiking self-attention is global over the window: it has no streaming form "
    "(run the model's parallel form over a window)"
)
