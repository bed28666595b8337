"""The Legendre Memory Unit: the memory math and the (spiking) LMU cell.

The memory m_t ∈ R^d is the state of the linear system m_t = A m_{t-1} + B u_t, with the
Legendre (A, B) of Voelker et al. discretised by zero-order hold (dt = 1). Unrolled, it is a
convolution of u with the impulse response H[:, k] = A^k B; the paper trains with H truncated to
``window`` (128) taps, so the memory sees the last ``window`` values of u:

    m_t = sum_{k < window} H[:, k] u_{t-k}

The parallel form computes this with one FFT convolution; the streaming form keeps a ring of the
last ``window`` values of u and takes one matrix-vector product per frame. For a clip no longer
than the window both equal the recurrence ``lmu_step`` exactly (in exact arithmetic); for an
unbounded stream the ring gives the training window's semantics with a bounded state (and, unlike
the recurrence with an A^window correction term, no drift in float32).

Shapes: B batch, T frames, C input channels, D memory size, W window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.fold import derived
from models.lif import LIF, LIFState


def legendre_continuous(memory_size: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The continuous-time Legendre delay system (A [D, D], B [D, 1]) in float64."""
    q = np.arange(memory_size, dtype=np.float64).reshape(-1, 1)
    r = (2 * q + 1) / theta
    i, j = np.meshgrid(q, q, indexing="ij")
    a = r * np.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    b = r * ((-1.0) ** q)
    return a, b


def legendre_discrete(
    memory_size: int, theta: float, dt: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order-hold discretisation of the Legendre system: (A [D, D], B [D, 1]) in float64.

    exp([[A, B], [0, 0]] * dt) = [[Ad, Bd], [0, I]], the same result as
    ``scipy.signal.cont2discrete(..., method="zoh")``.
    """
    a, b = legendre_continuous(memory_size, theta)
    d = memory_size
    block = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    block[:d, :d] = torch.from_numpy(a)
    block[:d, d:] = torch.from_numpy(b)
    expm = torch.linalg.matrix_exp(block * dt)
    return expm[:d, :d].clone(), expm[:d, d:].clone()


def impulse_response(a: torch.Tensor, b: torch.Tensor, window: int) -> torch.Tensor:
    """H [D, W] with H[:, k] = A^k B, computed in the dtype of A and B."""
    columns = []
    column = b[:, 0]
    for _ in range(window):
        columns.append(column)
        column = a @ column
    return torch.stack(columns, dim=1)


def lmu_step(m: torch.Tensor, u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One step of the LMU memory. m: [B, D], u: [B, 1] -> m_t = A m + B u, [B, D]."""
    return m @ a.T + u @ b.T


def fft_memory(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Parallel memory: u [B, T] convolved with H [D, W] (causal, truncated) -> m [B, T, D]."""
    if u.dtype in (torch.float16, torch.bfloat16):
        u = u.float()  # FFTs in float32 under bfloat16 autocast (float64 models stay float64)
    steps = u.shape[-1]
    window = h.shape[-1]
    n = 1 << (steps + window - 1).bit_length()
    spectrum = torch.fft.rfft(u, n=n, dim=-1)[:, None, :] * torch.fft.rfft(h, n=n, dim=-1)[None]
    m = torch.fft.irfft(spectrum, n=n, dim=-1)[..., :steps]
    return m.transpose(1, 2)


def window_memory(u_history: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Streaming memory from the ring of recent u.

    u_history: [B, W - 1 + n] (oldest first; the last n entries are this chunk's u),
    h: [D, W] -> m [B, n, D] for the chunk's n frames.
    """
    return window_memory_reversed(u_history, reversed_taps(h))


def reversed_taps(h: torch.Tensor) -> torch.Tensor:
    """H [D, W] -> its taps oldest first, [W, D]: row j multiplies u_{t - (W - 1 - j)}."""
    return h.flip(-1).T.contiguous()


def window_memory_reversed(u_history: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``window_memory`` with the taps already reversed (see ``reversed_taps``).

    u_history: [B, W - 1 + n], taps: [W, D] -> m [B, n, D].
    """
    window = taps.shape[0]
    frames = u_history.unfold(1, window, 1)  # [B, n, W], oldest first (overlapping views)
    batch, n = frames.shape[0], frames.shape[1]
    # one [B * n, W] @ [W, D] product: matmul on the overlapping 3-d view would run a bmm with
    # the taps expanded per batch row, ~10x slower for n > 1
    return (frames.reshape(batch * n, window) @ taps).view(batch, n, -1)


@dataclass(frozen=True)
class LMUState:
    """State of one LMU cell: ring of the last W - 1 inputs u [B, W - 1]; LIF states if spiking."""

    u_ring: torch.Tensor
    lif_u: LIFState | None = None
    lif_m: LIFState | None = None
    lif_h: LIFState | None = None


class LMUCell(nn.Module):
    """u = f(W_u x), memory m (Legendre), h = f(W_h [m; x]) over channel-last [B, T, C].

    Non-spiking: f = ReLU. Spiking: u, m and h each go through BatchNorm and a LIF layer, so u,
    m and h are spikes.
    """

    lookahead = 0

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_size: int,
        theta: float = 128.0,
        window: int = 128,
        spiking: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.memory_size = memory_size
        self.theta = theta
        self.window = window
        self.spiking = spiking
        self.W_u = nn.Linear(input_size, 1)
        self.W_h = nn.Linear(memory_size + input_size, hidden_size)
        a, b = legendre_discrete(memory_size, theta)
        self.register_buffer("A", a.float(), persistent=False)
        self.register_buffer("B", b.float(), persistent=False)
        self.register_buffer("H", impulse_response(a, b, window).float(), persistent=False)
        self.register_buffer("H_taps", reversed_taps(self.H), persistent=False)  # streaming
        if spiking:
            self.bn_u = nn.BatchNorm1d(1)
            self.bn_m = nn.BatchNorm1d(memory_size)
            self.bn_h = nn.BatchNorm1d(hidden_size)
            self.lif_u = LIF(1)
            self.lif_m = LIF(memory_size)
            self.lif_h = LIF(hidden_size)

    @staticmethod
    def _bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of u: [B, T, C] -> [B, T, 1]."""
        u = self.W_u(x)
        return self._bn(self.bn_u, u) if self.spiking else u

    def _hidden_input(self, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.W_h(torch.cat((m, x), dim=-1))
        return self._bn(self.bn_h, h) if self.spiking else h

    def streaming_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-spiking streaming step's weights with W_h's memory half folded into the
        taps: (G [W, hidden], W_x [hidden, C]) with G = H_taps @ W_m^T, where W_h = [W_m, W_x].

        h = W_m m_t + W_x x_t + b and m_t = sum_j H_taps[j] u_{t-W+1+j}, so W_m m_t is the
        u ring times G: one [W, hidden] product per frame instead of [W, D] then [D, hidden]
        (65k fewer multiply-adds per frame at the paper's size). Cached per weight version
        (``models.fold``).
        """
        weight = self.W_h.weight
        return derived(self, "_streaming_weights", (weight, self.H_taps), self._fold)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.W_h.weight
        w_m, w_x = weight[:, : self.memory_size], weight[:, self.memory_size :]
        # the product in float64: G is then as exact as the two products it replaces
        return (self.H_taps.double() @ w_m.double().T).to(weight.dtype), w_x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, C] -> h [B, T, hidden], from a zero memory."""
        if self.spiking:
            u = self.lif_u(self._input(x))
            m = self.lif_m(self._bn(self.bn_m, fft_memory(u[..., 0], self.H)))
            return self.lif_h(self._hidden_input(m, x))
        u = torch.relu(self._input(x))
        m = fft_memory(u[..., 0], self.H)
        return torch.relu(self._hidden_input(m, x))

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> LMUState:
        ring = torch.zeros(batch_size, self.window - 1, device=device, dtype=dtype)
        if not self.spiking:
            return LMUState(u_ring=ring)
        return LMUState(
            u_ring=ring,
            lif_u=self.lif_u.init_state(batch_size, device, dtype),
            lif_m=self.lif_m.init_state(batch_size, device, dtype),
            lif_h=self.lif_h.init_state(batch_size, device, dtype),
        )

    def stream(
        self, x: torch.Tensor, valid: torch.Tensor | None, state: LMUState
    ) -> tuple[torch.Tensor, LMUState]:
        """x: [B, n, C], valid: [B, n] or None (all valid) -> h [B, n, hidden]; invalid frames
        feed u = 0."""
        if self.spiking:
            u, lif_u = self.lif_u.stream(self._input(x), valid, state.lif_u)
        else:
            u = torch.relu(self._input(x))
            if valid is not None:
                u = u * valid[..., None]
        history = torch.cat((state.u_ring, u[..., 0]), dim=1)
        ring = history[:, history.shape[1] - (self.window - 1) :]
        if not self.spiking:
            g, w_x = self.streaming_weights()
            h = window_memory_reversed(history, g) + F.linear(x, w_x, self.W_h.bias)
            return torch.relu(h), LMUState(u_ring=ring)
        m = window_memory_reversed(history, self.H_taps)
        m, lif_m = self.lif_m.stream(self._bn(self.bn_m, m), valid, state.lif_m)
        h, lif_h = self.lif_h.stream(self._hidden_input(m, x), valid, state.lif_h)
        return h, LMUState(u_ring=ring, lif_u=lif_u, lif_m=lif_m, lif_h=lif_h)
