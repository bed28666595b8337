"""Leaky integrate-and-fire neurons in pure PyTorch, with an explicit membrane state.

The neuron is spikingjelly's multi-step LIF as the paper uses it: decay_input, v_reset 0 (hard
reset), detached reset, Heaviside spike with a sigmoid surrogate gradient (alpha 4):

    h_t = v_{t-1} + (x_t - v_{t-1}) / tau      charge
    s_t = [h_t >= v_threshold]                  fire
    v_t = h_t * (1 - s_t)                       reset (s_t detached)

Time runs along the frame axis, so membranes carry from frame to frame. ``lif_step`` is the one
piece of math; the parallel form ``lif_scan`` runs the same step over all frames with a
hand-written backward pass (no autograd graph per step), which keeps a spiking training step on
the CPU within a small factor of a non-spiking one; on CUDA it runs fused, one Triton kernel per
direction (:mod:`models.lif_triton`).

Shapes: B batch, T frames, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SURROGATE_ALPHA = 4.0


def surrogate_grad(x: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """Derivative of sigmoid(alpha * x): the surrogate of d spike / d x."""
    sig = torch.sigmoid(alpha * x)
    return alpha * sig * (1.0 - sig)


def lif_step(
    v: torch.Tensor, x: torch.Tensor, tau: float, v_threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LIF step. v, x: [..., C] -> (spike, new membrane, charged potential h), all [..., C].

    h = v + (x - v) / tau is computed as v * (1 - 1/tau) + x / tau, and the reset as a masked
    fill: the same float operations as the parallel scan (which runs this function), so the
    streaming and parallel forms agree bit for bit on equal inputs.
    """
    h = torch.add(v * (1.0 - 1.0 / tau), x, alpha=1.0 / tau)
    fired = h >= v_threshold
    return fired.to(x.dtype), h.masked_fill(fired, 0.0), h


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, sigmoid-surrogate backward (used by the reference step loop)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x)


def spike_fn(x: torch.Tensor) -> torch.Tensor:
    """Heaviside(x) with the sigmoid surrogate gradient."""
    return _SurrogateSpike.apply(x)


def lif_loop_reference(x: torch.Tensor, tau: float, v_threshold: float) -> torch.Tensor:
    """Autograd through a plain step loop (the slow reference). x: [T, ...] -> spikes [T, ...]."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau
        s = spike_fn(h - v_threshold)
        v = h * (1.0 - s.detach())
        out.append(s)
    return torch.stack(out)


class _LIFScan(torch.autograd.Function):
    """LIF over the leading time axis with an analytic surrogate backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float) -> torch.Tensor:  # type: ignore[override]
        steps = x.shape[0]
        spikes = torch.empty_like(x)
        charged = torch.empty_like(x)
        v = torch.zeros_like(x[0])
        for t in range(steps):
            s, v, h = lif_step(v, x[t], tau, v_threshold)
            charged[t] = h
            spikes[t] = s
        ctx.save_for_backward(spikes, charged)
        ctx.tau = tau
        ctx.v_threshold = v_threshold
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):  # type: ignore[override]
        spikes, charged = ctx.saved_tensors
        tau = ctx.tau
        decay = 1.0 - 1.0 / tau
        direct = grad_spikes * surrogate_grad(charged - ctx.v_threshold)
        keep = 1.0 - spikes
        grad_x = torch.empty_like(direct)
        grad_v = torch.zeros_like(direct[0])
        for t in range(direct.shape[0] - 1, -1, -1):
            grad_h = torch.addcmul(direct[t], grad_v, keep[t])
            grad_x[t] = grad_h
            grad_v = grad_h * decay
        return grad_x / tau, None, None


def lif_scan(x: torch.Tensor, tau: float = 2.0, v_threshold: float = 1.0) -> torch.Tensor:
    """Spikes of a LIF layer run from rest over the leading axis. x: [T, ...] -> [T, ...].

    On CUDA, the fused Triton kernels of :mod:`models.lif_triton` when they can run."""
    if x.is_cuda:
        from models.lif_triton import available, fused_lif_scan

        if available(x):
            return fused_lif_scan(x, tau, v_threshold, SURROGATE_ALPHA)
    if x.requires_grad and torch.is_grad_enabled():
        return _LIFScan.apply(x, tau, v_threshold)
    with torch.no_grad():
        return _LIFScan.forward(_NoCtx(), x, tau, v_threshold)


class _NoCtx:
    """Stand-in autograd context for running the scan's forward without building a graph."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        pass


@dataclass(frozen=True)
class LIFState:
    """Membrane potentials of one LIF layer. v: [B, C]."""

    v: torch.Tensor


class LIF(nn.Module):
    """A layer of LIF neurons over channel-last sequences [B, T, C] (no parameters)."""

    lookahead = 0

    def __init__(self, channels: int, tau: float = 2.0, v_threshold: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.tau = tau
        self.v_threshold = v_threshold

    def extra_repr(self) -> str:
        return f"channels={self.channels}, tau={self.tau}, v_threshold={self.v_threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, C] -> spikes [B, T, C], starting from rest.

        Membranes integrate in float32 even under bfloat16 autocast (spikes are exact in any
        dtype, the threshold comparison is not)."""
        low = x.dtype in (torch.float16, torch.bfloat16)  # float64 models stay float64
        spikes = lif_scan(
            x.transpose(0, 1).float() if low else x.transpose(0, 1), self.tau, self.v_threshold
        )
        return spikes.transpose(0, 1).to(x.dtype)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> LIFState:
        return LIFState(v=torch.zeros(batch_size, self.channels, device=device, dtype=dtype))

    def stream(
        self, x: torch.Tensor, valid: torch.Tensor | None, state: LIFState
    ) -> tuple[torch.Tensor, LIFState]:
        """x: [B, n, C], valid: [B, n] bool -> spikes [B, n, C]; invalid frames leave v alone.

        ``valid`` None means every frame is valid (the steady state: no masking)."""
        v = state.v
        n = x.shape[1]
        if n == 0:
            return x.new_zeros(x.shape), state
        if valid is None and n == 1:
            spike, v, _ = lif_step(v, x[:, 0], self.tau, self.v_threshold)
            return spike[:, None], LIFState(v=v)
        out = []
        for t in range(n):
            spike, v_next, _ = lif_step(v, x[:, t], self.tau, self.v_threshold)
            if valid is None:
                v = v_next
            else:
                keep = valid[:, t, None]
                v = torch.where(keep, v_next, v)
                spike = spike * keep
            out.append(spike)
        return torch.stack(out, dim=1), LIFState(v=v)
