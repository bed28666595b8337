"""LMUFormer and Spiking LMUFormer (Liu et al., ICLR 2024) with exact frame-by-frame streaming.

The network is a convolutional patch embedding (four k=3 convs over frames plus a residual "rpe"
conv), ``depth`` LMU blocks (token mixer: LMU cell, 1x1 conv, BatchNorm; channel mixer: two 1x1
convs, ratio 4), and a linear head per frame. Clip logits are the mean of the per-frame logits.

The three LMU models differ only in where the activations sit (``ModelConfig.spiking`` and
``membrane_shortcut``): ``lmuformer`` has ReLU / GELU; ``spiking-lmu`` puts a LIF layer where
those are (after each conv's BatchNorm, and after the token mixer's); ``spiking-lmuformer``
puts BatchNorm and LIF before each conv instead, so its residual paths add membrane potentials
(the membrane shortcuts), and adds a BatchNorm and a LIF to the head. ``spiking-attention``
is the spiking LMUFormer with the authors' spiking self-attention (``models.attention``) in
place of the LMU: global over the window, so it has the parallel form only (``streaming``
False).

Two entry points, no mode flags:

- parallel: ``model(feats)`` -> [B, K] and ``model.frame_logits(feats)`` -> [B, T, K];
- streaming: ``state = model.init_state(B)``, ``logits, state = model.stream(frames, state)``
  for each chunk, then ``logits, state = model.finish(state)``. The concatenated outputs equal
  ``frame_logits`` on the whole clip. Outputs lag inputs by ``lookahead_frames``.

Example::

    model = build_model("lmuformer").eval()
    state = model.init_state(1)
    for chunk in feats.split(10, dim=1):          # feats: [1, T, 128], normalised fbank
        logits, state = model.stream(chunk, state)  # [1, m, 35]
    tail, state = model.finish(state)

Shapes: B batch, T frames, F mel bins (128), C channels (dim), K labels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.attention import NoStreamingFormError, SpikingSelfAttention
from models.config import ModelConfig
from models.layers import (
    GELU,
    NO_END,
    BatchNorm,
    Linear,
    PointwiseConv,
    ReLU,
    Residual,
    StreamClock,
    StreamingSequential,
    StreamLIF,
    StreamLMU,
    TemporalConv,
    fold_in_streaming,
)


@dataclass(frozen=True)
class ModelState:
    """Per-session streaming state of a whole LMUFormer.

    frames_in: [B] int64, frames fed so far; layers: the state tree of the network's layers
    (conv rings, residual delay lines, LMU u rings, LIF membranes).
    """

    frames_in: torch.Tensor
    layers: tuple


def _embedding(config: ModelConfig) -> StreamingSequential:
    """The convolutional patch embedding: ``num_embed_convs`` k=3 convs and a residual "rpe"
    conv. The authors' ``Tokenizer`` (conv, ReLU, BatchNorm), ``Conv1d4EB`` (conv, BatchNorm,
    LIF; the rpe branch likewise) and ``Conv1d4EBMs`` (the last conv's BatchNorm and LIF open
    the rpe branch, so its shortcut adds the conv's output, a membrane potential)."""
    dim, causal, n = config.dim, config.causal, config.num_embed_convs
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = config.in_features
    for i in range(n):
        layers[f"conv{i}"] = TemporalConv(channels, dim, causal=causal)
        channels = dim
        if not config.spiking:
            layers[f"relu{i}"] = ReLU()
            layers[f"bn{i}"] = BatchNorm(dim)
        elif i < n - 1 or not config.membrane_shortcut:
            layers.update(_bn_lif(f"bn{i}", f"lif{i}", dim))
    rpe: OrderedDict[str, nn.Module] = OrderedDict(conv=TemporalConv(dim, dim, causal=causal))
    if config.spiking:
        rpe.update(_bn_lif("bn", "lif", dim))
        if config.membrane_shortcut:  # BatchNorm and LIF before the conv
            rpe.move_to_end("conv")
    layers["rpe"] = Residual(StreamingSequential(rpe), dim)
    return StreamingSequential(layers)


def _bn_lif(
    bn: str, lif: str, channels: int, v_threshold: float = 1.0
) -> OrderedDict[str, nn.Module]:
    """A BatchNorm and a LIF layer, named ``bn`` and ``lif``."""
    return OrderedDict(
        [(bn, BatchNorm(channels)), (lif, StreamLIF(channels, v_threshold=v_threshold))]
    )


def _token_mixer(config: ModelConfig) -> StreamingSequential:
    """The LMU (u, memory, h), a 1x1 conv and a BatchNorm: the authors' ``LMU``; ``SLMUMs``
    puts a BatchNorm and a LIF (threshold 0.5) in front, ``SLMU`` a LIF after. The window
    models' is the authors' ``SSA`` (``models.attention``) instead."""
    dim = config.dim
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if not config.streaming:
        layers["attn"] = SpikingSelfAttention(dim, config.num_heads)
        return StreamingSequential(layers)
    if config.membrane_shortcut:
        layers.update(_bn_lif("prev_bn", "prev_lif", dim, v_threshold=0.5))
    layers["lmu"] = StreamLMU(
        input_size=dim,
        hidden_size=dim,
        memory_size=config.resolved_memory_size,
        theta=config.theta,
        window=config.window,
        spiking=config.spiking,
    )
    layers["proj_conv"] = conv = PointwiseConv(dim, dim)
    layers["proj_bn"] = bn = BatchNorm(dim)
    if not config.spiking:
        fold_in_streaming(conv, bn)
    elif not config.membrane_shortcut:
        layers["proj_lif"] = StreamLIF(dim)
    return StreamingSequential(layers)


def _channel_mixer(config: ModelConfig) -> StreamingSequential:
    """Two 1x1 convs (ratio ``mlp_ratio``). The authors' ``ConvFFN``: conv, BatchNorm, then
    GELU / ReLU (LIF / LIF when spiking); ``ConvFFNMs``: BatchNorm, LIF, then conv."""
    dim, hidden = config.dim, config.hidden_dim
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, c_in, c_out, act in (("fc1", dim, hidden, GELU), ("fc2", hidden, dim, ReLU)):
        conv = PointwiseConv(c_in, c_out)
        if config.membrane_shortcut:  # BatchNorm and LIF of the conv's input
            layers.update(_bn_lif(f"{name}_bn", f"{name}_lif", c_in))
            layers[f"{name}_conv"] = conv
        elif config.spiking:
            layers[f"{name}_conv"] = conv
            layers.update(_bn_lif(f"{name}_bn", f"{name}_lif", c_out))
        else:
            layers[f"{name}_conv"] = conv
            layers[f"{name}_bn"] = bn = BatchNorm(c_out)
            layers[f"{name}_act"] = act()
            fold_in_streaming(conv, bn)
    return StreamingSequential(layers)


def _block(config: ModelConfig) -> StreamingSequential:
    """One block: token mixer (LMU, or self-attention) and channel mixer (1x1 convs), both
    residual."""
    return StreamingSequential(
        OrderedDict(
            mixer=Residual(_token_mixer(config), config.dim),
            ffn=Residual(_channel_mixer(config), config.dim),
        )
    )


def _head(config: ModelConfig) -> StreamingSequential:
    """A linear layer per frame; the spiking LMUFormer's has a BatchNorm and a LIF before it."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if config.membrane_shortcut:
        layers.update(_bn_lif("bn", "lif", config.dim))
    layers["linear"] = Linear(config.dim, config.num_classes)
    return StreamingSequential(layers)


class LMUFormer(nn.Module):
    """LMUFormer / Spiking LMUFormer with a parallel and an exact streaming form; the window
    models (``streaming`` False) have the parallel form only, and their streaming entry points
    raise ``NoStreamingFormError``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        blocks = OrderedDict((f"block{i}", _block(config)) for i in range(config.depth))
        self.network = StreamingSequential(
            OrderedDict(
                embed=_embedding(config), blocks=StreamingSequential(blocks), head=_head(config)
            )
        )
        self.apply(_init_weights)

    @property
    def streaming(self) -> bool:
        """Whether the model has a streaming form (``ModelConfig.streaming``)."""
        return self.config.streaming

    def _require_streaming(self) -> None:
        if not self.config.streaming:
            raise NoStreamingFormError(
                f"{self.config.name} has no streaming form: its self-attention is global over "
                f"the window, so run the parallel form (model(feats) over a window of "
                f"{self.config.window} frames)"
            )

    @property
    def lookahead_frames(self) -> int:
        """Frames of future context needed before a frame's logits are final (streaming
        models only)."""
        self._require_streaming()
        return self.network.lookahead

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _check_feats(self, feats: torch.Tensor) -> None:
        if feats.dim() != 3 or feats.shape[-1] != self.config.in_features:
            raise ValueError(
                f"expected features [B, T, {self.config.in_features}], got {tuple(feats.shape)}"
            )

    def frame_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-frame logits (parallel form). feats: [B, T, F] -> [B, T, K]."""
        self._check_feats(feats)
        return self.network(feats)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Clip logits, the mean of the per-frame logits as in the paper. [B, T, F] -> [B, K]."""
        return self.frame_logits(feats).mean(dim=1)

    def init_state(self, batch_size: int = 1) -> ModelState:
        """A fresh streaming state for ``batch_size`` sessions."""
        self._require_streaming()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        param = next(self.parameters())
        return ModelState(
            frames_in=torch.zeros(batch_size, dtype=torch.int64, device=param.device),
            layers=self.network.init_state(batch_size, param.device, param.dtype),
        )

    def stream_frames(
        self, frames: torch.Tensor, state: ModelState
    ) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        """Rectangular streaming step for sessions at any point of their streams.

        frames: [B, n, F] -> (logits [B, n, K], positions [B, n] int64, state). Output j of
        session b is the logits of frame positions[b, j] of that session's stream; positions
        below 0 are not frames yet (the start-up delay of the look-ahead) and must be dropped.
        """
        self._require_streaming()
        self._check_feats(frames)
        if frames.shape[0] != state.frames_in.shape[0]:
            raise ValueError(
                f"frames have batch {frames.shape[0]} but the state has {state.frames_in.shape[0]}"
            )
        # past the start-up delay every layer sees real frames only: skip all masking
        all_valid = bool(state.frames_in.min() >= self.lookahead_frames)
        return self._stream_clocked(frames, state, all_valid)

    def stream_frames_masked(
        self, frames: torch.Tensor, state: ModelState
    ) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        """``stream_frames`` without its steady-state shortcut: every layer masks its inputs by
        frame position, whether or not a session is in its start-up delay (same results). No
        data-dependent branch, so it traces and exports (``models.onnx_step``).
        frames: [B, n, F] -> (logits [B, n, K], positions [B, n] int64, state)."""
        self._require_streaming()
        return self._stream_clocked(frames, state, False)

    def _stream_clocked(
        self, frames: torch.Tensor, state: ModelState, all_valid: bool
    ) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        n = frames.shape[1]
        pos = state.frames_in[:, None] + torch.arange(n, device=frames.device)
        end = torch.full_like(state.frames_in, NO_END)
        clock = StreamClock(pos, end, all_valid)
        logits, layers = self.network.stream(frames, clock, state.layers)
        return logits, pos - self.lookahead_frames, ModelState(state.frames_in + n, layers)

    def stream(self, frames: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """Feed the next frames. frames: [B, n, F] -> (logits [B, m, K] of every frame that
        became final, state). m = n once ``lookahead_frames`` frames have been fed."""
        logits, positions, state = self.stream_frames(frames, state)
        return _keep_uniform(logits, positions >= 0), state

    def finish(self, state: ModelState) -> tuple[torch.Tensor, ModelState]:
        """End the clip: logits [B, m, K] of the frames still waiting for look-ahead, as if the
        clip ended here (zero padding, as in the parallel form), and a fresh state."""
        self._require_streaming()
        batch = state.frames_in.shape[0]
        lookahead = self.lookahead_frames
        param = next(self.parameters())
        if lookahead == 0:
            empty = torch.zeros(batch, 0, self.num_classes, device=param.device, dtype=param.dtype)
            return empty, self.init_state(batch)
        pad = torch.zeros(
            batch, lookahead, self.config.in_features, device=param.device, dtype=param.dtype
        )
        pos = state.frames_in[:, None] + torch.arange(lookahead, device=param.device)
        clock = StreamClock(pos, state.frames_in)
        logits, _ = self.network.stream(pad, clock, state.layers)
        out_pos = pos - lookahead
        keep = out_pos >= 0
        return _keep_uniform(logits, keep), self.init_state(batch)


def _keep_uniform(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Drop the columns not kept; every session must keep the same number of frames."""
    counts = keep.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(
            "sessions in this batch are at different points of their streams; "
            "use stream_frames(), which returns positions, to batch them"
        )
    m = int(counts[0])
    return logits[:, logits.shape[1] - m :]


def _init_weights(module: nn.Module) -> None:
    """The authors' initialisation: truncated-normal (std 0.02) Linear weights, zero biases;
    convolutions keep PyTorch's defaults."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(name: str = "lmuformer", **config: Any) -> LMUFormer:
    """Build one of ``MODEL_NAMES`` (``"lmuformer"``, ``"spiking-lmuformer"``,
    ``"spiking-lmu"``, ``"spiking-attention"``); the defaults are the paper's sizes."""
    return LMUFormer(ModelConfig(name=name, **config))
