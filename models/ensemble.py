"""Ensembles: streaming models whose per-frame logits are averaged, served as one model.

``LogitEnsemble`` is an ``LMUFormer`` whose network is ``AveragedNetworks``: every member
network sees the same frames and the weighted mean of their per-frame logits is the output,
in the parallel form and frame by frame alike (the members' states side by side in one state
tree, so the engine, the state slab and the ONNX export take it as they take one model).
Clip logits stay the mean of the frame logits, so they are the weighted mean of the members'.
The engine pools logits before its sigmoid, so the served posterior's log-odds are the
members' weighted mean: a geometric mean of their odds.

::

    ensemble = ensemble_models([lmuformer, spiking], weights=(0.7, 0.3))
    state = ensemble.init_state(1)
    logits, state = ensemble.stream(frames, state)   # == the members' weighted mean

Shapes: B batch, T frames, F mel bins, K labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from models.config import (
    MODEL_NAMES,
    EnsembleConfig,
    ModelConfig,
    check_model_name,
    ensemble_member_names,
)
from models.layers import StreamClock
from models.lmuformer import LMUFormer, build_model

__all__ = [
    "AveragedNetworks", "LogitEnsemble", "build_from_config", "build_named", "ensemble_models",
]  # fmt: skip


class AveragedNetworks(nn.Module):
    """Networks over the same frames, outputs averaged with fixed ``weights``: [B, T, F] ->
    [B, T, K]. Their look-aheads must agree, so their frames stay aligned."""

    def __init__(self, networks: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        lookaheads = sorted({int(n.lookahead) for n in networks})
        if len(lookaheads) != 1:
            raise ValueError(f"the members look ahead by different frames: {lookaheads}")
        self.members = nn.ModuleList(networks)
        self.weights = tuple(float(w) for w in weights)
        self.lookahead = lookaheads[0]

    def _mean(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        total = outputs[0] * self.weights[0]
        for out, w in zip(outputs[1:], self.weights[1:], strict=True):
            total = total + out * w
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean([net(x) for net in self.members])

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> tuple:
        return tuple(net.init_state(batch_size, device, dtype) for net in self.members)

    def stream(
        self, x: torch.Tensor, clock: StreamClock, state: tuple
    ) -> tuple[torch.Tensor, tuple]:
        outputs, states = [], []
        for net, member_state in zip(self.members, state, strict=True):
            out, member_state = net.stream(x, clock, member_state)
            outputs.append(out)
            states.append(member_state)
        return self._mean(outputs), tuple(states)


class LogitEnsemble(LMUFormer):
    """An ``LMUFormer`` whose network averages the member networks of ``config`` (see the
    module docstring); every entry point (parallel, ``stream``, ``finish``) is LMUFormer's."""

    def __init__(self, config: EnsembleConfig) -> None:
        nn.Module.__init__(self)
        self.config = config  # type: ignore[assignment]
        networks = [LMUFormer(member).network for member in config.members]
        self.network = AveragedNetworks(networks, config.weights)  # type: ignore[assignment]


def ensemble_models(models: Sequence[LMUFormer], weights: Sequence[float]) -> LogitEnsemble:
    """The ensemble of ``models`` (their weights copied) averaged with ``weights``."""
    configs = []
    for model in models:
        if isinstance(model, LogitEnsemble):
            raise ValueError("an ensemble's members are single models, not ensembles")
        configs.append(model.config)
    ensemble = LogitEnsemble(EnsembleConfig(tuple(configs), tuple(float(w) for w in weights)))
    for member, model in zip(ensemble.network.members, models, strict=True):
        member.load_state_dict(model.network.state_dict())
    return ensemble.eval()


def build_from_config(config: ModelConfig | EnsembleConfig) -> LMUFormer:
    """The (untrained) model of a checkpoint's config: an ensemble or one model."""
    if isinstance(config, EnsembleConfig):
        return LogitEnsemble(config)
    return LMUFormer(config)


def build_named(name: str, **config: Any) -> LMUFormer:
    """An untrained model named ``name``: one of ``MODEL_NAMES``, or an ensemble of streaming
    models (``"lmuformer+spiking-lmuformer"``) with equal weights, every member built with
    ``config`` (the benchmarks' sizes; costs do not depend on the weights)."""
    if check_model_name(name) in MODEL_NAMES:
        return build_model(name, **config)
    members = tuple(ModelConfig(name=member, **config) for member in ensemble_member_names(name))
    return LogitEnsemble(EnsembleConfig(members, tuple(1.0 / len(members) for _ in members)))
