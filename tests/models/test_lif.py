"""LIF neurons: the fused scan equals the step loop, forward and gradient; streaming carries
membranes across chunks."""

from __future__ import annotations

import pytest
import torch

from models.lif import LIF, lif_loop_reference, lif_scan, lif_step


@pytest.mark.parametrize("v_threshold", [1.0, 0.5])
def test_scan_equals_step_loop_forward_and_gradient(v_threshold: float) -> None:
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 4, 32, generator=generator) * 1.5).requires_grad_()
    grad_out = torch.randn(64, 4, 32, generator=generator)

    fused = lif_scan(x, 2.0, v_threshold)
    (fused * grad_out).sum().backward()
    fused_grad = x.grad.clone()
    x.grad = None

    looped = lif_loop_reference(x, 2.0, v_threshold)
    (looped * grad_out).sum().backward()

    assert torch.equal(fused, looped)
    assert 0.05 < fused.mean().item() < 0.95
    assert torch.allclose(fused_grad, x.grad, atol=1e-6)
    assert fused_grad.abs().sum() > 0


def test_lif_step_fires_and_hard_resets() -> None:
    v = torch.zeros(1, 3)
    x = torch.tensor([[0.5, 2.0, 4.0]])
    spike, v_next, h = lif_step(v, x, tau=2.0, v_threshold=1.0)
    assert torch.equal(h, torch.tensor([[0.25, 1.0, 2.0]]))  # h = v + (x - v) / tau
    assert torch.equal(spike, torch.tensor([[0.0, 1.0, 1.0]]))  # fires at h >= threshold
    assert torch.equal(v_next, torch.tensor([[0.25, 0.0, 0.0]]))  # hard reset to 0


def test_layer_stream_carries_membranes_across_chunks() -> None:
    layer = LIF(channels=8)
    x = torch.randn(3, 50, 8) * 2
    expected = layer(x)
    state = layer.init_state(3, x.device, x.dtype)
    pieces = []
    for piece in x.split(6, dim=1):
        spikes, state = layer.stream(piece, torch.ones(piece.shape[:2], dtype=torch.bool), state)
        pieces.append(spikes)
    assert torch.equal(torch.cat(pieces, dim=1), expected)


def test_invalid_frames_leave_the_membrane_untouched() -> None:
    layer = LIF(channels=4)
    state = layer.init_state(1, torch.device("cpu"), torch.float32)
    spikes, after = layer.stream(
        torch.full((1, 3, 4), 5.0), torch.zeros(1, 3, dtype=torch.bool), state
    )
    assert torch.equal(after.v, state.v)
    assert spikes.abs().sum() == 0


def test_scan_without_grad_builds_no_graph() -> None:
    x = torch.randn(10, 2, 3, requires_grad=True)
    with torch.no_grad():
        out = lif_scan(x)
    assert out.grad_fn is None
