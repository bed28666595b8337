"""The LIF scan of :mod:`models.lif` fused into one Triton kernel per direction, for CUDA.

The Python scan launches a few small kernels per frame, forward and backward, so on a GPU a
spiking layer costs thousands of launches per training step. Here one program owns a block of
neurons (columns of ``x`` laid out ``[T, N]``) and walks the frames inside the kernel, keeping
its membranes in registers: one launch per layer call forward and one backward. The math is
:func:`models.lif.lif_step` and the scan's analytic surrogate backward, in float32:

    forward   h_t = v_{t-1} (1 - 1/tau) + x_t / tau;  s_t = [h_t >= v_th];  v_t = h_t (1 - s_t)
    backward  g_h = g_s sigma'(h_t - v_th) + g_v (1 - s_t);  g_x = g_h / tau;  g_v = g_h (1 - 1/tau)

The compiler may contract a multiply and an add into one rounding, so a membrane can differ
from the scan's in its last bit; spikes then differ only where ``h`` ties the threshold.

Used by :func:`models.lif.lif_scan` for CUDA tensors when Triton imports (it ships with CUDA
builds of torch); ``LMUKWS_FUSED_LIF=0`` turns it off. With ``TRITON_INTERPRET=1`` set before
import, Triton's interpreter runs the same kernels on CPU tensors (slowly), which is how the
test suite checks them on a machine without a GPU.
"""

from __future__ import annotations

import os

import torch

try:  # triton is an optional dependency: CUDA builds of torch bring it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

BLOCK = 128  # neurons per program: one warp-friendly block of columns


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(x: torch.Tensor) -> bool:
    """Whether :func:`fused_lif_scan` can run on ``x``: Triton present, float32, and ``x`` on
    CUDA (or on the CPU under the interpreter); not when ``LMUKWS_FUSED_LIF=0``."""
    if triton is None or os.environ.get("LMUKWS_FUSED_LIF", "1") == "0":
        return False
    if x.dtype != torch.float32:
        return False
    return x.is_cuda or (interpreting() and x.device.type == "cpu")


if triton is not None:

    @triton.jit
    def _lif_forward(x_ptr, s_ptr, h_ptr, steps, n, decay, inv_tau, v_th, block: tl.constexpr):
        cols = tl.program_id(0) * block + tl.arange(0, block)
        mask = cols < n
        v = tl.zeros([block], dtype=tl.float32)
        for t in range(steps):
            offsets = t * n + cols
            x = tl.load(x_ptr + offsets, mask=mask, other=0.0)
            h = v * decay + x * inv_tau
            fired = h >= v_th
            tl.store(s_ptr + offsets, fired.to(tl.float32), mask=mask)
            tl.store(h_ptr + offsets, h, mask=mask)
            v = tl.where(fired, 0.0, h)

    @triton.jit
    def _lif_backward(
        gs_ptr, s_ptr, h_ptr, gx_ptr, steps, n, decay, inv_tau, v_th, alpha, block: tl.constexpr
    ):
        cols = tl.program_id(0) * block + tl.arange(0, block)
        mask = cols < n
        grad_v = tl.zeros([block], dtype=tl.float32)
        for i in range(steps):
            offsets = (steps - 1 - i) * n + cols
            grad_s = tl.load(gs_ptr + offsets, mask=mask, other=0.0)
            spike = tl.load(s_ptr + offsets, mask=mask, other=0.0)
            h = tl.load(h_ptr + offsets, mask=mask, other=0.0)
            sig = tl.sigmoid(alpha * (h - v_th))
            grad_h = grad_s * (alpha * sig * (1.0 - sig)) + grad_v * (1.0 - spike)
            tl.store(gx_ptr + offsets, grad_h * inv_tau, mask=mask)
            grad_v = grad_h * decay


class _FusedLIFScan(torch.autograd.Function):
    """LIF over the leading axis of a [T, N] float32 tensor, one kernel launch per direction."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, v_threshold: float, alpha: float) -> torch.Tensor:  # type: ignore[override]
        steps, n = x.shape
        spikes = torch.empty_like(x)
        charged = torch.empty_like(x)
        grid = (triton.cdiv(n, BLOCK),)
        _lif_forward[grid](x, spikes, charged, steps, n, 1.0 - 1.0 / tau, 1.0 / tau,
                           v_threshold, block=BLOCK)  # fmt: skip
        ctx.save_for_backward(spikes, charged)
        ctx.tau, ctx.v_threshold, ctx.alpha = tau, v_threshold, alpha
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):  # type: ignore[override]
        spikes, charged = ctx.saved_tensors
        steps, n = spikes.shape
        grad_x = torch.empty_like(spikes)
        grid = (triton.cdiv(n, BLOCK),)
        _lif_backward[grid](grad_spikes.contiguous(), spikes, charged, grad_x, steps, n,
                            1.0 - 1.0 / ctx.tau, 1.0 / ctx.tau, ctx.v_threshold,
                            ctx.alpha, block=BLOCK)  # fmt: skip
        return grad_x, None, None, None


def fused_lif_scan(
    x: torch.Tensor, tau: float = 2.0, v_threshold: float = 1.0, alpha: float = 4.0
) -> torch.Tensor:
    """Spikes of a LIF layer run from rest over the leading axis, fused. x: [T, ...] -> [T, ...]
    (float32; see :func:`available`). ``alpha``: the surrogate's slope, the scan's
    ``models.lif.SURROGATE_ALPHA`` (this module imports nothing of the project)."""
    if not available(x):
        raise RuntimeError("the fused LIF scan needs Triton and a float32 CUDA tensor")
    if x.numel() == 0:
        return torch.zeros_like(x)
    flat = x.reshape(x.shape[0], -1).contiguous()
    if x.requires_grad and torch.is_grad_enabled():
        spikes = _FusedLIFScan.apply(flat, tau, v_threshold, alpha)
    else:
        with torch.no_grad():
            spikes = _FusedLIFScan.apply(flat, tau, v_threshold, alpha)
    return spikes.reshape(x.shape)
