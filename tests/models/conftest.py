"""Shared fixtures for the model tests: seeded models with non-trivial BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch

from models import MODEL_NAMES, WINDOW_MODELS, LMUFormer, build_model


def randomise_batchnorm(model: LMUFormer, seed: int = 0) -> LMUFormer:
    """Give every BatchNorm random running statistics and affine terms, so that eval-mode
    streaming is tested with real per-channel scales (fresh BatchNorms are the identity) and
    every LIF layer of the spiking models fires (gains of 1 to 4 lift its inputs to threshold)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 3.0 + 1.0)
            module.bias.data.copy_((torch.rand(n, generator=generator) - 0.5) * 0.5)
    cells = [module for module in model.modules() if module.__class__.__name__ == "LMUCell"]
    for cell in cells:  # the authors' init leaves u silent
        fan_in = cell.W_u.in_features
        cell.W_u.weight.data.normal_(0.0, 2.0 / fan_in**0.5, generator=generator)
    for cell in cells:
        if cell.spiking:
            _centre_u(model, cell, generator)
    return model


def _centre_u(model: LMUFormer, cell: torch.nn.Module, generator: torch.Generator) -> None:
    """Normalise a spiking LMU cell's u input (BatchNorm ``bn_u``) by the statistics of W_u x
    on random features, then scale it by 3 and centre it at 0.5, so that u spikes now and then.
    No constant statistics fit: W_u x sums upstream spikes, whose count depends on the model's
    layout and size."""
    seen: list[torch.Tensor] = []
    hook = cell.W_u.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    training = model.training
    try:
        with torch.no_grad():
            feats = torch.randn(2, 64, model.config.in_features, generator=generator)
            model.eval().frame_logits(feats)
    finally:
        hook.remove()
        model.train(training)
    (u,) = seen
    cell.bn_u.running_mean.fill_(float(u.mean()))
    cell.bn_u.running_var.fill_(float(u.var()) + 1e-3)
    cell.bn_u.weight.data.fill_(3.0)
    cell.bn_u.bias.data.fill_(0.5)


def make_model(name: str, size: str, seed: int = 0, **overrides) -> LMUFormer:
    """A seeded model in eval mode: size "paper" (defaults) or "tiny"."""
    torch.manual_seed(seed)
    config = {} if size == "paper" else {"dim": 16, "num_classes": 5, "in_features": 128}
    if size != "paper" and name in WINDOW_MODELS:
        config["num_heads"] = 4  # heads of 4 channels, as the paper's heads are of 16
    config.update(overrides)
    model = build_model(name, **config)
    return randomise_batchnorm(model, seed).eval()


def no_streaming_form(name: str) -> str:
    """Why a streaming test skips a window model."""
    return f"{name} has no streaming form (global self-attention over the window)"


def streaming_params(names: tuple[str, ...]) -> list:
    """``names`` as pytest parameters, the window models marked to skip with the reason."""
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=no_streaming_form(name)))
        if name in WINDOW_MODELS
        else name
        for name in names
    ]


@pytest.fixture(params=MODEL_NAMES)
def model_name(request: pytest.FixtureRequest) -> str:
    """Every model (the parallel form, shapes, conversion, checkpoints)."""
    return request.param


@pytest.fixture(params=streaming_params(MODEL_NAMES))
def streaming_model_name(request: pytest.FixtureRequest) -> str:
    """Every model with a streaming form; the window models skip with the reason."""
    return request.param
