"""Shared fixtures for the model tests: seeded models with non-trivial BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch

from models import LMUFormer, build_model


def randomise_batchnorm(model: LMUFormer, seed: int = 0) -> LMUFormer:
    """Give every BatchNorm random running statistics and affine terms, so that eval-mode
    streaming is tested with real per-channel scales (fresh BatchNorms are the identity) and
    every LIF layer of the spiking model fires (gains of 1 to 4 lift its inputs to threshold)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 3.0 + 1.0)
            module.bias.data.copy_((torch.rand(n, generator=generator) - 0.5) * 0.5)
    for module in model.modules():
        if module.__class__.__name__ == "LMUCell":  # the authors' init leaves u silent
            fan_in = module.W_u.in_features
            module.W_u.weight.data.normal_(0.0, 2.0 / fan_in**0.5, generator=generator)
            if module.spiking:  # centre u's LIF input near threshold so u spikes now and then
                module.bn_u.running_mean.zero_()
                module.bn_u.running_var.fill_(1.0)
                module.bn_u.weight.data.fill_(3.0)
                module.bn_u.bias.data.fill_(0.5)
    return model


def make_model(name: str, size: str, seed: int = 0, **overrides) -> LMUFormer:
    """A seeded model in eval mode: size "paper" (defaults) or "tiny"."""
    torch.manual_seed(seed)
    config = {} if size == "paper" else {"dim": 16, "num_classes": 5, "in_features": 128}
    config.update(overrides)
    model = build_model(name, **config)
    return randomise_batchnorm(model, seed).eval()


@pytest.fixture(params=["lmuformer", "spiking-lmuformer"])
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param
