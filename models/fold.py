"""Weights that the streaming step derives from a module's parameters, cached per version.

The streaming step folds constant products of weights into one (an LMU's impulse response into
its hidden projection, a BatchNorm into the 1x1 convolution before it), so each frame costs
fewer operations. Folded tensors are derived data, never session state: computed once per
version of their source tensors and kept on the module, computed again whenever a source
changes in place (an optimiser step, ``load_state_dict``) or moves (``.to``), computed afresh
where gradients flow, and left in the graph while it is traced (ONNX Runtime folds a product
of constants when it loads the graph).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def tracing(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is being traced (TorchScript, torch.compile, torch.export / ONNX)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    return type(tensor).__name__ in ("FakeTensor", "FunctionalTensor")


def derived(
    module: nn.Module, name: str, sources: Sequence[torch.Tensor], compute: Callable[[], T]
) -> T:
    """``compute()``, cached on ``module`` under ``name`` until any of ``sources`` changes."""
    if (torch.is_grad_enabled() and any(source.requires_grad for source in sources)) or tracing(
        sources[0]
    ):
        return compute()
    try:  # a new storage (.to, a replaced tensor) has a new address; an in-place edit bumps
        key = [(source.data_ptr(), source._version) for source in sources]
    except RuntimeError:  # an inference tensor has no version counter: never cache it
        return compute()
    cached = module.__dict__.get(name)
    if cached is None or cached[0] != key:
        cached = (key, compute())
        module.__dict__[name] = cached
    return cached[1]
