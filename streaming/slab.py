"""Every session's numeric stream state in preallocated batched arrays: one row (slot) each.

Two parts share the slots: the network's state (torch tensors, the model's state tree
flattened) and the pooling window of per-frame logits (numpy: a ring of the last W - 1 logits
and their running sum, so pooling a frame touches two rows, not W).

A step of the engine gathers the rows of the sessions it runs (one ``index_select`` per state
tensor), runs ``model.stream_frames`` on that batch, and scatters the new state back (one
``index_copy_`` per tensor). Stacking and splitting per-session state trees instead costs a tree
walk per session per step, which dominated the worker at a few hundred sessions.

Its tensors are inference tensors (every method runs under ``torch.inference_mode()``, so a slab
grown inside the engine's step and reset outside it behaves the same). The slab belongs to the
engine's worker: ``allocate``, ``gather``, ``scatter``, ``reset`` and ``release`` are called by
whichever thread runs the steps, never concurrently. It grows by
doubling when every slot is taken (a copy; rare, bounded by ``max_sessions``).

Shapes: C slots (capacity), B sessions in a step, m frames, K labels, W pooling frames; every
state tensor is [C, ...] in the slab.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.lmuformer import LMUFormer, ModelState
from models.state import flatten_state

__all__ = ["StateSlab"]


class StateSlab:
    """The model states and pooling windows of up to ``capacity`` sessions (grows on demand).

    ``pooling_frames`` W: the sliding mean of per-frame logits that ``pool`` computes;
    ``initial``: one session's fresh state (batch 1), ``model.init_state(1)`` by default (a
    window model's is its runtime's, ``streaming.window.WindowState``).
    """

    def __init__(
        self,
        model: LMUFormer,
        capacity: int = 16,
        device: torch.device | None = None,
        pooling_frames: int = 100,
        initial: Any = None,
    ):
        if pooling_frames < 1:
            raise ValueError(f"pooling_frames must be >= 1, got {pooling_frames}")
        self.pooling_frames = pooling_frames
        self.num_classes = model.num_classes
        self.pool_ring = np.zeros((0, pooling_frames - 1, model.num_classes))  # [C, W - 1, K]
        self.pool_head = np.zeros(0, dtype=np.int64)  # [C] ring index of the oldest logits
        self.pool_sum = np.zeros((0, model.num_classes))  # [C, K] sum of the ring
        self.pool_seen = np.zeros(0, dtype=np.int64)  # [C] frames pooled since start/reset
        if initial is None:
            initial = model.init_state(1)
        leaves, self.layout = flatten_state(initial)
        device = device or next(model.parameters()).device
        #: one session's fresh state, per tensor: [1, ...]
        self._initial = [t.to(device) for t in leaves]
        self.leaves: list[torch.Tensor] = []
        self._free: list[int] = []
        self._grow(max(1, capacity))

    @property
    def capacity(self) -> int:
        return self.leaves[0].shape[0]

    @property
    def in_use(self) -> int:
        return self.capacity - len(self._free)

    @torch.inference_mode()
    def _grow(self, capacity: int) -> None:
        old = self.capacity if self.leaves else 0
        grown = []
        for i, init in enumerate(self._initial):
            rows = init.expand(capacity, *init.shape[1:]).clone()
            if old:
                rows[:old] = self.leaves[i]
            grown.append(rows)
        self.leaves = grown
        extra = capacity - old
        self.pool_ring = np.concatenate(
            (self.pool_ring, np.zeros((extra, *self.pool_ring.shape[1:])))
        )
        self.pool_head = np.concatenate((self.pool_head, np.zeros(extra, dtype=np.int64)))
        self.pool_sum = np.concatenate((self.pool_sum, np.zeros((extra, self.num_classes))))
        self.pool_seen = np.concatenate((self.pool_seen, np.zeros(extra, dtype=np.int64)))
        self._free.extend(range(capacity - 1, old - 1, -1))  # pop() hands out low slots first

    def allocate(self) -> int:
        """A free slot holding a fresh state."""
        if not self._free:
            self._grow(2 * self.capacity)
        slot = self._free.pop()
        self.reset(torch.tensor([slot]))
        return slot

    def release(self, slot: int) -> None:
        """Give a slot back (its contents are overwritten by the next ``allocate``)."""
        if not 0 <= slot < self.capacity or slot in self._free:
            raise ValueError(f"slot {slot} is not in use")
        self._free.append(slot)

    @torch.inference_mode()
    def reset(self, slots: torch.Tensor) -> None:
        """Write a fresh state (model and pooling) into ``slots`` [B] (int64)."""
        index = slots.cpu().numpy()
        self.pool_ring[index] = 0.0
        self.pool_head[index] = 0
        self.pool_sum[index] = 0.0
        self.pool_seen[index] = 0
        slots = slots.to(self.leaves[0].device)
        for rows, init in zip(self.leaves, self._initial, strict=True):
            rows.index_copy_(0, slots, init.expand(slots.numel(), *init.shape[1:]))

    def pool(self, slots: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Sliding means [B, m, K] of the last W per-frame logits (fewer at the start), for
        new logits [B, m, K] (float64) of ``slots`` [B]; the windows move on by m frames.

        Per frame: mean = (ring sum + new) / min(W, seen + 1), then the oldest row leaves the
        running sum. The same operations per frame whatever the batching or chunking, so every
        session gets the same bits as alone.
        """
        m = logits.shape[1]
        W = self.pooling_frames
        if W == 1:
            self.pool_seen[slots] += m
            return logits.copy()
        pooled = np.empty_like(logits)
        head = self.pool_head[slots]
        total = self.pool_sum[slots]
        seen = self.pool_seen[slots]
        for i in range(m):
            x = logits[:, i]
            total = total + x
            np.divide(total, np.minimum(seen + i + 1, W)[:, None], out=pooled[:, i])
            total = total - self.pool_ring[slots, head]
            self.pool_ring[slots, head] = x
            head = (head + 1) % (W - 1)
        self.pool_head[slots] = head
        self.pool_sum[slots] = total
        self.pool_seen[slots] = seen + m
        return pooled

    def pool_window(self, slot: int) -> np.ndarray:
        """The last W - 1 logits of ``slot``, oldest first: [W - 1, K]."""
        return np.roll(self.pool_ring[slot], -int(self.pool_head[slot]), axis=0)

    def initial(self) -> ModelState:
        """A fresh state of one session (batch 1), a copy."""
        return self.layout.unflatten([t.clone() for t in self._initial])

    @torch.inference_mode()
    def gather(self, slots: torch.Tensor) -> ModelState:
        """The batched state [B, ...] of ``slots`` [B] (int64), a copy."""
        return self.layout.unflatten(self.gather_leaves(slots))

    @torch.inference_mode()
    def gather_leaves(self, slots: torch.Tensor) -> list[torch.Tensor]:
        """``gather`` as the state's flat list of tensors (``flatten_state`` order)."""
        slots = slots.to(self.leaves[0].device)
        return [rows.index_select(0, slots) for rows in self.leaves]

    @torch.inference_mode()
    def scatter(self, slots: torch.Tensor, state: ModelState) -> None:
        """Store the batched state [B, ...] of ``slots`` [B] back into the slab."""
        self.scatter_leaves(slots, flatten_state(state)[0])

    @torch.inference_mode()
    def scatter_leaves(self, slots: torch.Tensor, leaves: list[torch.Tensor]) -> None:
        """``scatter`` from the state's flat list of tensors."""
        slots = slots.to(self.leaves[0].device)
        if len(leaves) != len(self.leaves):
            raise ValueError(f"state has {len(leaves)} tensors, the slab {len(self.leaves)}")
        for rows, new in zip(self.leaves, leaves, strict=True):
            rows.index_copy_(0, slots, new.to(rows.dtype))
