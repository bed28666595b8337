"""Streaming state as data: frozen dataclasses of tensors, and helpers over trees of them.

Every streaming layer keeps its per-session state in a small frozen dataclass whose tensor fields
all have the batch (session) axis first. A model's state is a tree of those dataclasses (and
tuples of them); the helpers here stack the states of many sessions into one batch, pick
sessions out of a batch, and measure a state's size, all by walking the dataclass fields.
``flatten_state`` / ``StateLayout.unflatten`` turn a tree into its list of tensor leaves and back,
for code that keeps many sessions' states in preallocated batched tensors (``streaming.slab``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

S = TypeVar("S")


def map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], state: S) -> S:
    """Apply ``fn`` to every tensor in a state tree, keeping its structure."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        changes = {
            f.name: map_tensors(fn, getattr(state, f.name)) for f in dataclasses.fields(state)
        }
        return dataclasses.replace(state, **changes)
    if isinstance(state, tuple):
        return tuple(map_tensors(fn, item) for item in state)  # type: ignore[return-value]
    return state


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """The structure of a state tree without its tensors: rebuilds a tree from its leaves."""

    kind: str  # "tensor", "dataclass", "tuple" or "value"
    cls: Any = None  # the dataclass type ("dataclass"), or the value ("value")
    names: tuple[str, ...] = ()
    children: tuple[StateLayout, ...] = ()
    num_leaves: int = 0

    def unflatten(self, leaves: Sequence[torch.Tensor]) -> Any:
        """The tree with this layout whose tensors are ``leaves`` (in ``flatten_state`` order)."""
        if len(leaves) != self.num_leaves:
            raise ValueError(f"layout has {self.num_leaves} leaves, got {len(leaves)}")
        return self._build(iter(leaves))

    def _build(self, leaves: Any) -> Any:
        if self.kind == "tensor":
            return next(leaves)
        if self.kind == "value":
            return self.cls
        built = [child._build(leaves) for child in self.children]
        if self.kind == "tuple":
            return tuple(built)
        return self.cls(**dict(zip(self.names, built, strict=True)))


def flatten_state(state: Any) -> tuple[list[torch.Tensor], StateLayout]:
    """(tensor leaves in field order, layout) of a state tree; ``layout.unflatten`` inverts it.

    Dataclass fields must all be constructor arguments (true of every streaming state).
    """
    leaves: list[torch.Tensor] = []

    def walk(node: Any) -> StateLayout:
        if isinstance(node, torch.Tensor):
            leaves.append(node)
            return StateLayout("tensor", num_leaves=1)
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            fields = dataclasses.fields(node)
            children = tuple(walk(getattr(node, f.name)) for f in fields)
            return StateLayout(
                "dataclass",
                type(node),
                tuple(f.name for f in fields),
                children,
                sum(c.num_leaves for c in children),
            )
        if isinstance(node, tuple):
            children = tuple(walk(item) for item in node)
            return StateLayout(
                "tuple", children=children, num_leaves=sum(c.num_leaves for c in children)
            )
        return StateLayout("value", node)

    layout = walk(state)
    return leaves, layout


def _zip_trees(states: Sequence[Any]) -> Any:
    """Combine a list of same-shaped trees into a tree of lists at the tensor leaves."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return list(states)
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        for other in states[1:]:
            if type(other) is not type(first):
                raise ValueError(f"cannot stack {type(first).__name__} with {type(other).__name__}")
        return dataclasses.replace(
            first,
            **{
                f.name: _zip_trees([getattr(s, f.name) for s in states])
                for f in dataclasses.fields(first)
            },
        )
    if isinstance(first, tuple):
        if any(len(s) != len(first) for s in states):
            raise ValueError("cannot stack states with different numbers of layers")
        return tuple(_zip_trees([s[i] for s in states]) for i in range(len(first)))
    return first


def _cat_leaves(tree: Any) -> Any:
    if isinstance(tree, list):
        return torch.cat(tree, dim=0)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(
            tree, **{f.name: _cat_leaves(getattr(tree, f.name)) for f in dataclasses.fields(tree)}
        )
    if isinstance(tree, tuple):
        return tuple(_cat_leaves(item) for item in tree)
    return tree


def stack_states(states: Sequence[S]) -> S:
    """Concatenate the states of several sessions (or batches) along the batch axis."""
    if not states:
        raise ValueError("stack_states needs at least one state")
    if len(states) == 1:
        return states[0]
    return _cat_leaves(_zip_trees(states))


def select_state(state: S, index: torch.Tensor | slice | int) -> S:
    """Pick sessions out of a batched state; an int keeps the batch axis (size 1)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return map_tensors(lambda t: t[index], state)


def unstack_state(state: S) -> list[S]:
    """Split a batched state into one state per session (each with batch size 1)."""
    size = batch_size(state)
    return [select_state(state, i) for i in range(size)]


def batch_size(state: Any) -> int:
    """The batch size of a state tree (the size of the first axis of its tensors)."""
    sizes: set[int] = set()
    map_tensors(lambda t: sizes.add(t.shape[0]) or t, state)
    if len(sizes) != 1:
        raise ValueError(f"state has inconsistent batch sizes {sorted(sizes)}")
    return sizes.pop()


def state_nbytes(state: Any) -> int:
    """Bytes held by every tensor of a state tree."""
    total = [0]

    def count(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    map_tensors(count, state)
    return total[0]


def state_shapes(state: Any) -> list[tuple[int, ...]]:
    """Shapes of every tensor of a state tree, in field order."""
    shapes: list[tuple[int, ...]] = []
    map_tensors(lambda t: shapes.append(tuple(t.shape)) or t, state)
    return shapes
