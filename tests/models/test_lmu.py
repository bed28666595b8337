"""The LMU memory: discretisation, FFT form, recurrence and the streaming window agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import cont2discrete

from models.lmu import (
    LMUCell,
    fft_memory,
    impulse_response,
    legendre_continuous,
    legendre_discrete,
    lmu_step,
    window_memory,
    window_memory_reversed,
)


@pytest.mark.parametrize("memory_size", [4, 256, 512])
def test_zoh_discretisation_equals_scipy(memory_size: int) -> None:
    a, b = legendre_continuous(memory_size, 128.0)
    c, d = np.ones((1, memory_size)), np.zeros((1,))
    expected_a, expected_b, *_ = cont2discrete((a, b, c, d), dt=1.0, method="zoh")
    got_a, got_b = legendre_discrete(memory_size, 128.0)
    np.testing.assert_allclose(got_a.numpy(), expected_a, atol=1e-10)
    np.testing.assert_allclose(got_b.numpy(), expected_b, atol=1e-10)


@pytest.mark.parametrize("memory_size", [8, 256, 512])
def test_fft_memory_equals_the_recurrence(memory_size: int) -> None:
    a, b = legendre_discrete(memory_size, 128.0)
    a, b = a.float(), b.float()
    h = impulse_response(a, b, 128)
    u = torch.rand(3, 128, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(3, memory_size)
    steps = []
    for t in range(128):
        m = lmu_step(m, u[:, t : t + 1], a, b)
        steps.append(m)
    recurrent = torch.stack(steps, dim=1)
    parallel = fft_memory(u, h)
    assert parallel.shape == (3, 128, memory_size)
    assert (parallel - recurrent).abs().max().item() < 1e-4 * max(1.0, recurrent.abs().max().item())


def test_window_memory_equals_fft_memory_and_slides() -> None:
    a, b = legendre_discrete(64, 32.0)
    h = impulse_response(a.float(), b.float(), 32)
    u = torch.rand(2, 100)
    parallel = fft_memory(u, h)  # truncated to the last 32 values of u
    history = torch.cat((torch.zeros(2, 31), u), dim=1)
    streamed = window_memory(history, h)
    assert (streamed - parallel).abs().max().item() < 1e-5
    # frame 80 sees exactly u[49..80]: zeroing older values changes nothing
    older_zeroed = u.clone()
    older_zeroed[:, :49] = 0
    assert torch.allclose(fft_memory(older_zeroed, h)[:, 80], parallel[:, 80], atol=1e-5)


def test_impulse_response_columns_are_powers_of_a() -> None:
    a, b = legendre_discrete(16, 8.0)
    h = impulse_response(a, b, 5)
    expected = torch.linalg.matrix_power(a, 4) @ b
    assert torch.allclose(h[:, 4:5], expected, atol=1e-12)


@pytest.mark.parametrize("spiking", [False, True])
def test_cell_stream_equals_cell_forward(spiking: bool) -> None:
    torch.manual_seed(0)
    cell = LMUCell(
        input_size=8, hidden_size=6, memory_size=12, theta=16.0, window=16, spiking=spiking
    )
    cell.eval()
    x = torch.randn(2, 40, 8) * 3
    with torch.inference_mode():
        expected = cell(x)
        state = cell.init_state(2, x.device, x.dtype)
        outputs = []
        for piece in x.split(7, dim=1):
            valid = torch.ones(piece.shape[:2], dtype=torch.bool)
            y, state = cell.stream(piece, valid, state)
            outputs.append(y)
    assert (torch.cat(outputs, dim=1) - expected).abs().max().item() < 1e-5
    assert state.u_ring.shape == (2, 15)


def _stream_whole(cell: LMUCell, x: torch.Tensor) -> torch.Tensor:
    state = cell.init_state(x.shape[0], x.device, x.dtype)
    y, _ = cell.stream(x, None, state)
    return y


def test_folded_streaming_weights_equal_the_two_products() -> None:
    """G = H_taps @ W_m^T: the u ring times G equals W_m times the window memory."""
    torch.manual_seed(1)
    cell = LMUCell(input_size=8, hidden_size=6, memory_size=12, theta=16.0, window=16).eval()
    history = torch.randn(3, 15 + 4)
    with torch.no_grad():
        g, w_x = cell.streaming_weights()
        w_m = cell.W_h.weight[:, :12]
        two_products = window_memory_reversed(history, cell.H_taps) @ w_m.T
        folded = window_memory_reversed(history, g)
    assert g.shape == (16, 6) and w_x.shape == (6, 8)
    assert torch.allclose(folded, two_products, atol=1e-5)


def test_folded_streaming_weights_follow_weight_changes() -> None:
    """The fold is cached per weight version: an in-place edit (an optimiser step, a load)
    is seen by the next streaming call; with gradients on, the step stays differentiable."""
    torch.manual_seed(2)
    cell = LMUCell(input_size=8, hidden_size=6, memory_size=12, theta=16.0, window=16).eval()
    x = torch.randn(2, 20, 8)
    with torch.inference_mode():
        first = _stream_whole(cell, x)
    with torch.no_grad():
        cell.W_h.weight.mul_(-1.5)
    with torch.inference_mode():
        after_edit = _stream_whole(cell, x)
        expected = cell(x)
    assert not torch.allclose(first, after_edit)
    assert (after_edit - expected).abs().max().item() < 1e-5
    cell.load_state_dict({k: v * 0.5 for k, v in cell.state_dict().items()})
    with torch.inference_mode():
        assert (_stream_whole(cell, x) - cell(x)).abs().max().item() < 1e-5
    y = _stream_whole(cell, x)
    y.sum().backward()
    assert cell.W_h.weight.grad is not None and cell.W_h.weight.grad.abs().sum() > 0
