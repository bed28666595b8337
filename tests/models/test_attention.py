"""spiking-attention: the authors' attn_ms_conv1d, a window model with a parallel form only.

Its token mixer is spiking self-attention (SSA, ``models.attention``) over the whole window;
the rest is spiking-lmuformer's membrane-shortcut embedding, channel mixer and head. The
streaming tests skip it (tests/models/conftest.py, ``streaming_model_name``); these check what
it has instead: the authors' SSA arithmetic, global dependence, and a clear refusal to stream.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import STREAMING_MODELS, WINDOW_MODELS, NoStreamingFormError, build_model
from models.attention import SpikingSelfAttention
from models.lif import lif_loop_reference
from tests.models.conftest import make_model, randomise_batchnorm
from tests.models.test_streaming import spike_rates


def authors_ssa(ssa: SpikingSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The authors' ``SSA.forward`` step by step in their layout: x [B, C, N] -> [B, C, N].

    BatchNorm1d over [B, C, N]; each LIF over [N, C, B] (frames first); heads split as
    ``[B, N, H, D] -> [B, H, N, D]``; ``(q @ kᵀ) @ v * 0.25``; heads joined by
    ``transpose(2, 3).reshape(B, C, N)``."""
    B, C, N = x.shape
    H = ssa.num_heads

    def bn(module: torch.nn.BatchNorm1d, y: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            y, module.running_mean, module.running_var, module.weight, module.bias, False
        )

    def lif(y: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
        return lif_loop_reference(y.permute(2, 1, 0), 2.0, threshold).permute(2, 1, 0)

    def conv(module: torch.nn.Conv1d, y: torch.Tensor) -> torch.Tensor:
        return F.conv1d(y, module.weight, module.bias)

    s = lif(bn(ssa.pre_bn, x))
    heads = []
    for name in "qkv":
        y = lif(bn(getattr(ssa, f"{name}_bn"), conv(getattr(ssa, f"{name}_conv"), s)))
        heads.append(y.transpose(-1, -2).reshape(B, N, H, C // H).permute(0, 2, 1, 3))
    q, k, v = heads
    y = ((q @ k.transpose(-2, -1)) @ v) * 0.25
    y = lif(y.transpose(2, 3).reshape(B, C, N), 0.5)
    return bn(ssa.proj_bn, conv(ssa.proj_conv, y))


def dense_ssa() -> SpikingSelfAttention:
    """A seeded SSA (dim 64, 4 heads of D = 16) whose Q, K and V fire often enough (BatchNorm
    bias 0.5) that the attention's sums cross ``attn_lif``'s threshold now and then."""
    model = make_model("spiking-attention", "tiny", dim=64, num_heads=4)
    ssa = model.network.blocks.block0.mixer.branch.attn
    for name in "qkv":
        getattr(ssa, f"{name}_bn").bias.data.fill_(0.5)
    return ssa


@pytest.mark.parametrize("frames", [8, 40])  # T < D (the (Q Kᵀ) V order) and T > D (Q (Kᵀ V))
@torch.inference_mode()
def test_ssa_is_the_authors_arithmetic(frames: int) -> None:
    ssa = dense_ssa()
    x = torch.randn(2, frames, 64, generator=torch.Generator().manual_seed(2)) * 4.0
    spikes: list[torch.Tensor] = []
    hook = ssa.attn_lif.register_forward_hook(lambda _m, _i, out: spikes.append(out))
    try:
        ours = ssa(x)
    finally:
        hook.remove()
    theirs = authors_ssa(ssa, x.transpose(1, 2)).transpose(1, 2)
    assert ours.shape == x.shape
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert 0.0 < spikes[0].mean().item() < 1.0  # the attention's spikes are not vacuous


@pytest.mark.parametrize("size", ["tiny", "paper"])
@torch.inference_mode()
def test_every_lif_layer_fires(size: str) -> None:
    """Not vacuous: each of the 12 LIF layers (3 in the embedding, the rpe branch's, SSA's 5,
    the channel mixer's 2, the head's) fires, and not always."""
    tiny = {"dim": 64, "num_heads": 4}  # heads of 16 channels: attn_lif reaches threshold
    model = make_model("spiking-attention", size, **(tiny if size == "tiny" else {}))
    feats = torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(4))
    assert model(feats).shape == (2, model.num_classes)
    rates = spike_rates(model, feats)
    assert len(rates) == 12
    assert all(0.0 < r < 1.0 for r in rates), rates


@torch.inference_mode()
def test_attention_is_global_over_the_window() -> None:
    """Why there is no streaming form: the last frame of the window changes the attention's
    output at the first frame (an LMU's output at a frame depends on no later frame)."""
    ssa = dense_ssa().double()
    x = torch.randn(1, 40, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    base = ssa(x)
    changed = []
    for trial in range(5):
        bumped = x.clone()
        bumped[:, -1] += torch.randn(64, dtype=torch.float64) * (3.0 + trial)
        changed.append((ssa(bumped) - base)[0, 0].abs().max().item() > 1e-9)
    assert any(changed)


def test_streaming_is_declared_and_refused_by_name() -> None:
    assert {name: build_model(name, dim=8).streaming for name in STREAMING_MODELS} == dict.fromkeys(
        STREAMING_MODELS, True
    )
    for name in WINDOW_MODELS:
        model = build_model(name, dim=16, num_heads=4).eval()
        assert not model.streaming and not model.config.streaming
        message = rf"{name} has no streaming form: .* window of 128 frames"
        with pytest.raises(NoStreamingFormError, match=message):
            model.init_state(1)
        with pytest.raises(NoStreamingFormError, match=message):
            _ = model.lookahead_frames
        with pytest.raises(NoStreamingFormError, match=message):
            model.stream_frames(torch.randn(1, 2, 128), None)  # type: ignore[arg-type]
        with pytest.raises(NoStreamingFormError, match=message):
            model.finish(None)  # type: ignore[arg-type]
        with pytest.raises(NoStreamingFormError, match="global over the window"):
            model.network.init_state(1, torch.device("cpu"), torch.float32)


def test_heads_must_divide_the_channels() -> None:
    with pytest.raises(ValueError, match="num_heads must be >= 1 and divide dim 16, got 5"):
        build_model("spiking-attention", dim=16, num_heads=5)
    build_model("lmuformer", dim=16, num_heads=5)  # the LMU models have no heads


@torch.inference_mode()
def test_windows_of_a_batch_are_independent() -> None:
    """What batching sessions' windows needs: in eval mode each window's logits are its own."""
    model = randomise_batchnorm(build_model("spiking-attention", dim=16, num_heads=4), 1).eval()
    feats = torch.randn(3, 50, 128, generator=torch.Generator().manual_seed(7))
    batched = model(feats)
    for b in range(3):
        assert (model(feats[b : b + 1])[0] - batched[b]).abs().max().item() <= 1e-5
