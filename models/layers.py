"""Streaming building blocks: every layer has a parallel and an exact streaming form.

Each layer works on channel-last sequences [B, T, C] and offers

- ``forward(x)``: the parallel form over a whole clip (training, batch classification);
- ``init_state(batch, device, dtype)``: its per-session state (a frozen dataclass, or None);
- ``stream(x, clock, state)``: the next n frames [B, n, C] -> n outputs [B, n, C'] that lag the
  inputs by the layer's ``lookahead`` frames, and the new state;
- ``lookahead``: the frames of future context the layer needs (declared from its kernel).

Streaming is rectangular so that sessions at different points of their streams batch together:
every call takes n frames and gives n outputs, and a ``StreamClock`` carries the absolute frame
position of each input (and where the clip ends, when it is being finished). Positions before the
start or past the end stand for the parallel form's zero padding: convolutions zero those inputs,
LIF neurons and the LMU memory ignore them, and the model drops those outputs.

Shapes: B batch, T frames, n frames of one streaming call, C channels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.fold import derived, tracing
from models.lif import LIF
from models.lmu import LMUCell

NO_END = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class StreamClock:
    """Absolute positions of the frames of one streaming call.

    pos: [B, n] int64 position of each input frame; end: [B] int64 length of the clip when it is
    being finished (``NO_END`` while streaming). ``all_valid`` promises that every frame any
    layer sees in this call is a real frame (no start-up padding, no end), so layers may skip
    masking: the model sets it once all sessions are past the look-ahead and not finishing.
    """

    pos: torch.Tensor
    end: torch.Tensor
    all_valid: bool = False

    @property
    def valid(self) -> torch.Tensor:
        """[B, n] bool: the frame is a real frame of the clip (not padding)."""
        return (self.pos >= 0) & (self.pos < self.end[:, None])

    @property
    def mask(self) -> torch.Tensor | None:
        """``valid``, or None when every frame of every layer is valid (``all_valid``: the
        steady state of a stream, where layers skip masking altogether)."""
        return None if self.all_valid else self.valid

    def delayed(self, frames: int) -> StreamClock:
        """The clock of a layer's outputs, which lag its inputs by ``frames``."""
        return self if frames == 0 else StreamClock(self.pos - frames, self.end, self.all_valid)


class Stateless(nn.Module):
    """A per-frame layer: no state, no look-ahead; streaming applies it frame by frame."""

    lookahead = 0

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        return None

    def stream(self, x: torch.Tensor, clock: StreamClock, state: None) -> tuple[torch.Tensor, None]:
        return self(x), None


class BatchNorm(nn.BatchNorm1d, Stateless):
    """BatchNorm1d over the channels of [B, T, C] (statistics over batch and time).

    ``folded``: set by ``fold_in_streaming``: in eval-mode streaming the PointwiseConv before
    this BatchNorm applies it, and its own stream passes frames through.
    """

    folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def stream(self, x: torch.Tensor, clock: StreamClock, state: None) -> tuple[torch.Tensor, None]:
        if self.folded and not self.training:
            return x, None
        return self(x), None


class PointwiseConv(nn.Conv1d, Stateless):
    """A 1x1 Conv1d (kept as a conv for the paper's parameter layout) on [B, T, C_in]."""

    #: the BatchNorm after this conv that streaming folds in (a tuple, so that it is not
    #: registered as a second parent of that module)
    _streamed_bn: tuple[BatchNorm, ...] = ()

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[..., 0], self.bias)

    def stream(self, x: torch.Tensor, clock: StreamClock, state: None) -> tuple[torch.Tensor, None]:
        if self._streamed_bn and not self._streamed_bn[0].training:
            return F.linear(x, *derived(self, "_with_bn", self._fold_sources(), self._fold)), None
        return self(x), None

    def _fold_sources(self) -> tuple[torch.Tensor, ...]:
        (bn,) = self._streamed_bn
        tensors = (self.weight, self.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias)
        return tuple(t for t in tensors if t is not None)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        return fold_batchnorm(self.weight[..., 0], self.bias, self._streamed_bn[0])


def fold_in_streaming(conv: PointwiseConv, bn: BatchNorm) -> None:
    """Stream ``bn``, which follows ``conv``, as part of it: in eval mode the conv applies the
    folded affine map (one product instead of a product and a pass over its output) and ``bn``
    passes its input through. For the non-spiking model only: in the spiking model these
    BatchNorms feed LIF thresholds, where a changed rounding could flip a spike."""
    conv._streamed_bn = (bn,)
    bn.folded = True


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [C_out, C_in], bias [C_out]) of ``bn(x @ weight.T + bias)`` in eval mode, as one
    affine map, computed in float64."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
    folded_bias = shift if bias is None else bias.double() * scale + shift
    return (weight.double() * scale[:, None]).to(weight.dtype), folded_bias.to(weight.dtype)


class Linear(nn.Linear, Stateless):
    """nn.Linear applied per frame."""


class ReLU(nn.ReLU, Stateless):
    """nn.ReLU applied per frame."""


class GELU(nn.GELU, Stateless):
    """nn.GELU applied per frame."""


@dataclass(frozen=True)
class ConvState:
    """The last kernel_size - 1 inputs of a temporal convolution. ring: [B, K - 1, C_in]."""

    ring: torch.Tensor


class TemporalConv(nn.Conv1d):
    """Conv1d over frames with 'same' zero padding (symmetric, or left-only when causal).

    A symmetric kernel of size k needs (k - 1) // 2 future frames: that is its look-ahead.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        causal: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        self.causal = causal
        right = 0 if causal else (kernel_size - 1) // 2
        self.padding_frames = (kernel_size - 1 - right, right)
        self.lookahead = right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, C_in] -> [B, T, C_out]."""
        y = F.conv1d(F.pad(x.transpose(1, 2), self.padding_frames), self.weight, self.bias)
        return y.transpose(1, 2)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> ConvState:
        width = self.kernel_size[0] - 1
        return ConvState(
            ring=torch.zeros(batch_size, width, self.in_channels, device=device, dtype=dtype)
        )

    def stream(
        self, x: torch.Tensor, clock: StreamClock, state: ConvState
    ) -> tuple[torch.Tensor, ConvState]:
        """x: [B, n, C_in] at clock.pos -> [B, n, C_out] at clock.pos - lookahead.

        The convolution is one matrix product of the frames' windows [B * n, k * C_in]
        (frame-major) with the weight viewed as [C_out, k * C_in] (``streaming_weight``): for
        one frame the window is the ring plus the frame as they lie in memory, no copy.
        """
        if not clock.all_valid:
            x = x * clock.valid[..., None].to(x.dtype)
        frames = torch.cat((state.ring, x), dim=1)  # [B, k - 1 + n, C_in]
        batch, n = x.shape[0], x.shape[1]
        k = self.kernel_size[0]
        if n == 1 and not tracing(x):
            columns = frames.reshape(batch, k * self.in_channels)
        else:
            shifted = [frames[:, j : j + n] for j in range(k)]
            columns = torch.cat(shifted, dim=-1).reshape(batch * n, k * self.in_channels)
        y = F.linear(columns, self.streaming_weight(), self.bias)
        width = state.ring.shape[1]
        return y.view(batch, n, -1), ConvState(ring=frames[:, frames.shape[1] - width :])

    def streaming_weight(self) -> torch.Tensor:
        """The weight [C_out, C_in, k] as [C_out, k * C_in], frame-major (cached, models.fold)."""
        return derived(self, "_streaming_weight", (self.weight,), self._frame_major)

    def _frame_major(self) -> torch.Tensor:
        return self.weight.permute(0, 2, 1).reshape(self.out_channels, -1).contiguous()


class StreamLIF(nn.Module):
    """Adapter giving the LIF layer the common streaming signature (see models.lif)."""

    lookahead = 0

    def __init__(self, channels: int, tau: float = 2.0, v_threshold: float = 1.0) -> None:
        super().__init__()
        self.lif = LIF(channels, tau, v_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(x)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Any:
        return self.lif.init_state(batch_size, device, dtype)

    def stream(self, x: torch.Tensor, clock: StreamClock, state: Any) -> tuple[torch.Tensor, Any]:
        return self.lif.stream(x, clock.mask, state)


class StreamLMU(nn.Module):
    """Adapter giving the LMU cell the common streaming signature (see models.lmu)."""

    lookahead = 0

    def __init__(self, **cell_config: Any) -> None:
        super().__init__()
        self.cell = LMUCell(**cell_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x)

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> Any:
        return self.cell.init_state(batch_size, device, dtype)

    def stream(self, x: torch.Tensor, clock: StreamClock, state: Any) -> tuple[torch.Tensor, Any]:
        return self.cell.stream(x, clock.mask, state)


class StreamingSequential(nn.Sequential):
    """Streaming layers in a row (``nn.Sequential`` with a streaming form): the look-ahead adds
    up, and so does the streaming delay."""

    def __init__(self, layers: OrderedDict[str, nn.Module]) -> None:
        super().__init__(layers)

    @property
    def lookahead(self) -> int:
        return sum(self._lookaheads())

    def _lookaheads(self) -> tuple[int, ...]:
        """Each layer's look-ahead (fixed once built; cached, as streaming asks every frame)."""
        cached = self.__dict__.get("_lookahead_cache")
        if cached is None or len(cached) != len(self):
            cached = tuple(int(layer.lookahead) for layer in self)
            self.__dict__["_lookahead_cache"] = cached
        return cached

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> tuple:
        return tuple(layer.init_state(batch_size, device, dtype) for layer in self)

    def stream(
        self, x: torch.Tensor, clock: StreamClock, state: tuple
    ) -> tuple[torch.Tensor, tuple]:
        new_states = []
        for layer, lookahead, layer_state in zip(self, self._lookaheads(), state, strict=True):
            x, layer_state = layer.stream(x, clock, layer_state)
            clock = clock.delayed(lookahead)
            new_states.append(layer_state)
        return x, tuple(new_states)


@dataclass(frozen=True)
class ResidualState:
    """State of a residual connection: the skip path's delay line [B, L, C] and the branch's."""

    skip: torch.Tensor | None
    branch: tuple


class Residual(nn.Module):
    """x + branch(x). When the branch looks ahead L frames, the skip path is delayed by L
    frames in streaming (kws_streaming's Delay), so both paths meet at the same frame."""

    def __init__(self, branch: StreamingSequential, channels: int) -> None:
        super().__init__()
        self.branch = branch
        self.channels = channels  # of x, for the skip path's delay line

    @property
    def lookahead(self) -> int:
        return self.branch.lookahead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)

    def init_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> ResidualState:
        skip = None
        if self.lookahead:
            shape = (batch_size, self.lookahead, self.channels)
            skip = torch.zeros(shape, device=device, dtype=dtype)
        return ResidualState(skip=skip, branch=self.branch.init_state(batch_size, device, dtype))

    def stream(
        self, x: torch.Tensor, clock: StreamClock, state: ResidualState
    ) -> tuple[torch.Tensor, ResidualState]:
        y, branch_state = self.branch.stream(x, clock, state.branch)
        if state.skip is None:
            return x + y, ResidualState(skip=None, branch=branch_state)
        line = torch.cat((state.skip, x), dim=1)
        n = x.shape[1]
        return line[:, :n] + y, ResidualState(skip=line[:, n:], branch=branch_state)
