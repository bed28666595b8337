"""Streaming rational resampler (any integer rate -> 16 kHz) whose output ignores the chunking.

Output sample n sits at input time t = n * M / L (L / M = out_rate / in_rate in lowest terms)
and is a Kaiser-windowed sinc interpolation of the inputs within ``half`` samples of t, with the
cutoff at the lower of the two Nyquist frequencies. Inputs before the first sample are zeros; so
are inputs after the last one when the stream is flushed. Output n only depends on absolute
sample positions, never on how the input was cut into chunks.

Shapes: n input samples in a chunk, m output samples, P = L phases, J = 2 * half taps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ZERO_CROSSINGS = 16  # sinc zero crossings on each side, at the cutoff frequency
KAISER_BETA = 8.6  # ~ -80 dB side lobes
ROLLOFF = 0.94  # cutoff as a fraction of the lower Nyquist frequency


@functools.lru_cache(maxsize=16)
def _filter_bank(in_rate: int, out_rate: int) -> tuple[int, int, int, np.ndarray]:
    """(L, M, half, taps [P, J] float32) for one rate pair; cached across sessions."""
    g = math.gcd(in_rate, out_rate)
    L, M = out_rate // g, in_rate // g
    cutoff = ROLLOFF * min(1.0, L / M)  # in cycles per input sample, relative to input Nyquist
    half = math.ceil(ZERO_CROSSINGS / cutoff)
    phases = np.arange(L, dtype=np.float64)[:, None] / L  # fractional position of t
    j = np.arange(2 * half, dtype=np.float64)[None, :]
    # tap j multiplies input base - half + 1 + j, at distance x = t - k from the output time
    x = phases + (half - 1) - j
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (x / half) ** 2, 0.0, None)))
    window /= np.i0(KAISER_BETA)
    window[np.abs(x) >= half] = 0.0
    taps = cutoff * np.sinc(cutoff * x) * window
    return L, M, half, taps.astype(np.float32)


@dataclass(frozen=True)
class ResamplerState:
    """Per-stream state: the input tail still needed and the sample counters."""

    buffer: np.ndarray  # [r] float32 input samples from absolute index ``start``
    start: int  # absolute input index of buffer[0] (negative at first: left zero padding)
    consumed: int  # input samples received so far
    produced: int  # output samples emitted so far


class StreamingResampler:
    """Stateless resampler from ``in_rate`` to ``out_rate``; state lives in ResamplerState.

    ``process(x, state) -> (y, state)``; ``flush(state) -> (y, state)`` emits the outputs that
    need inputs beyond the end (zeros), for a total of ceil(N * out_rate / in_rate) samples.
    With in_rate == out_rate the samples pass through unchanged.
    """

    def __init__(self, in_rate: int, out_rate: int = 16000) -> None:
        if in_rate < 1 or out_rate < 1:
            raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.identity = self.in_rate == self.out_rate
        if self.identity:
            self.L = self.M = 1
            self.half = 0
            self.taps = np.ones((1, 1), dtype=np.float32)
        else:
            self.L, self.M, self.half, self.taps = _filter_bank(self.in_rate, self.out_rate)

    def init_state(self) -> ResamplerState:
        pad = max(self.half - 1, 0)
        return ResamplerState(
            buffer=np.zeros(pad, dtype=np.float32), start=-pad, consumed=0, produced=0
        )

    def output_length(self, num_inputs: int) -> int:
        """Outputs a flushed stream of ``num_inputs`` samples has in total."""
        return -(-num_inputs * self.L // self.M)

    def _run(self, buf: np.ndarray, start: int, produced: int, n_end: int) -> np.ndarray:
        n = np.arange(produced, n_end, dtype=np.int64)
        base = n * self.M // self.L
        phase = n * self.M % self.L
        index = (base - self.half + 1 - start)[:, None] + np.arange(2 * self.half)[None, :]
        return np.einsum("mj,mj->m", buf[index], self.taps[phase]).astype(np.float32)

    def process(self, x: np.ndarray, state: ResamplerState) -> tuple[np.ndarray, ResamplerState]:
        """Input samples [n] -> every output sample [m] they complete, and the new state."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if self.identity:
            return x.copy(), ResamplerState(
                state.buffer, state.start, state.consumed + x.size, state.produced + x.size
            )
        buf = np.concatenate((state.buffer, x)) if state.buffer.size else x
        consumed = state.consumed + x.size
        end = state.start + buf.size  # one past the last available absolute index
        # output n is ready when base(n) + half <= end - 1
        n_end = max(state.produced, -(-(end - self.half) * self.L // self.M))
        y = self._run(buf, state.start, state.produced, n_end)
        keep_from = n_end * self.M // self.L - self.half + 1  # first input output n_end needs
        keep_from = min(max(keep_from, state.start), end)
        tail = buf[keep_from - state.start :].copy()
        return y, ResamplerState(tail, keep_from, consumed, n_end)

    def flush(self, state: ResamplerState) -> tuple[np.ndarray, ResamplerState]:
        """The remaining outputs, as if zeros followed; the state is spent afterwards."""
        total = self.output_length(state.consumed)
        if self.identity or state.produced >= total:
            return np.zeros(0, dtype=np.float32), state
        pad = np.zeros(2 * self.half + self.M, dtype=np.float32)
        buf = np.concatenate((state.buffer, pad))
        y = self._run(buf, state.start, state.produced, total)
        return y, ResamplerState(np.zeros(0, np.float32), state.start, state.consumed, total)


def resample(x: np.ndarray, in_rate: int, out_rate: int = 16000) -> np.ndarray:
    """Whole-signal resampling [n] -> [ceil(n * out_rate / in_rate)] with the same filter."""
    r = StreamingResampler(in_rate, out_rate)
    y, state = r.process(x, r.init_state())
    tail, _ = r.flush(state)
    return np.concatenate((y, tail))
