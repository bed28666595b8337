"""Model and feature configuration: the paper's recipe facts in frozen objects.

Shapes used across ``models``: B batch, T frames, F mel bins (128), C channels (dim), K labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL_NAMES = ("lmuformer", "spiking-lmuformer", "spiking-lmu", "spiking-attention")
#: the models with LIF neurons between their layers (the authors' act_type "spike")
SPIKING_MODELS = ("spiking-lmuformer", "spiking-lmu", "spiking-attention")
#: the models with the membrane-shortcut layout (the authors' ``*Ms`` modules)
MEMBRANE_SHORTCUT_MODELS = ("spiking-lmuformer", "spiking-attention")
#: the models whose token mixer is global self-attention over the window: a parallel form only
#: (``forward`` over a whole window), no frame-by-frame streaming form
WINDOW_MODELS = ("spiking-attention",)
#: the models with a streaming form (an LMU token mixer)
STREAMING_MODELS = tuple(name for name in MODEL_NAMES if name not in WINDOW_MODELS)
#: how often a served window model's window is recomputed by default (ms)
DEFAULT_WINDOW_HOP_MS = 100.0
#: joins an ensemble's member names into its name (``lmuformer+spiking-lmuformer``)
ENSEMBLE_JOIN = "+"
#: the ensembles with a shipped checkpoint (``models/checkpoints/NAME.safetensors``)
SHIPPED_ENSEMBLES = ("lmuformer+spiking-lmuformer",)


def ensemble_member_names(name: str) -> tuple[str, ...]:
    """The members of the ensemble named ``name`` (``"lmuformer+spiking-lmuformer"``): two or
    more streaming models. Raises ValueError saying what is wrong."""
    members = tuple(name.split(ENSEMBLE_JOIN))
    if len(members) < 2:
        raise ValueError(f"{name!r} is not an ensemble name: members joined by {ENSEMBLE_JOIN!r}")
    bad = [m for m in members if m not in STREAMING_MODELS]
    if bad:
        raise ValueError(
            f"{name!r}: {bad} are not streaming models; an ensemble's members are some of "
            f"{list(STREAMING_MODELS)}"
        )
    return members


def check_model_name(name: str) -> str:
    """``name`` if it names one model (``MODEL_NAMES``) or an ensemble of streaming models
    (``lmuformer+spiking-lmuformer``); else a ValueError listing the choices."""
    if name in MODEL_NAMES:
        return name
    if ENSEMBLE_JOIN in name:
        ensemble_member_names(name)
        return name
    raise ValueError(
        f"unknown model name {name!r}; expected one of {MODEL_NAMES} or streaming models "
        f"joined by {ENSEMBLE_JOIN!r} (an ensemble)"
    )


def window_hop_frames(hop_ms: float, frame_shift_ms: float) -> int:
    """A window model's recompute period ``hop_ms`` in whole frames (at least one)."""
    return max(1, round(hop_ms / frame_shift_ms))


# The model served when no checkpoint is named. The design's default is the Spiking LMUFormer
# (the paper's headline model); until its shipped checkpoint meets its accuracy bar (see
# models/checkpoints/spiking-lmuformer.md) it is served inside an ensemble: the LMUFormer and
# the Spiking LMUFormer averaged frame by frame (0.7 / 0.3), which fires less on speech than
# either alone (docs/streams.md#ensembles) for about 2.5 times one model's cost per frame
# (docs/benchmarks.md#ensembles). Each model alone is one flag away (--model lmuformer).
DEFAULT_MODEL = "lmuformer+spiking-lmuformer"
#: what runs a model's streaming step (models.runtime): "auto" = "onnx" on the CPU when ONNX
#: Runtime is installed, else "torch"
RUNTIMES = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class FeatureConfig:
    """Kaldi-compatible log-mel fbank settings and the paper's normalisation."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hanning"
    htk_compat: bool = True
    use_energy: bool = False
    dither: float = 0.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    norm_mean: float = -6.845978
    norm_std: float = 5.5654526
    target_length: int = 128

    @property
    def frame_length(self) -> int:
        """Samples per analysis window (400 at 16 kHz)."""
        return round(self.sample_rate * self.frame_length_ms / 1000.0)

    @property
    def frame_shift(self) -> int:
        """Samples per hop (160 at 16 kHz)."""
        return round(self.sample_rate * self.frame_shift_ms / 1000.0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of an LMUFormer; the defaults are the paper's (dim 256, one block, theta 128).

    ``name`` fixes the layout (``models.lmuformer`` builds it): ``lmuformer`` (the authors'
    ``lmu_rnn_conv1d``), ``spiking-lmuformer`` (``slmu_rnn_ms_conv1d``: spiking, with membrane
    shortcuts), ``spiking-lmu`` (``slmu_rnn_conv1d``: spiking, without) and
    ``spiking-attention`` (``attn_ms_conv1d``: the spiking LMUFormer with spiking self-attention
    over the whole window in place of the LMU; no streaming form). ``memory_size`` of ``None``
    means the paper's choice: dim for the non-spiking model and 2 * dim for the spiking ones
    (LMU models only). ``num_heads`` is the self-attention's (the authors' 16; attention model
    only). ``window`` is the LMU's training window, or the attention model's window in frames.
    ``causal`` pads every convolution on the left only, so the network needs no future frames
    (``lookahead_frames == 0``).
    """

    name: str = "lmuformer"
    num_classes: int = 35
    in_features: int = 128
    dim: int = 256
    depth: int = 1
    memory_size: int | None = None
    theta: float = 128.0
    window: int = 128
    mlp_ratio: float = 4.0
    num_embed_convs: int = 4
    num_heads: int = 16
    causal: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model name {self.name!r}; expected one of {MODEL_NAMES}")
        for attr in ("num_classes", "in_features", "dim", "depth", "window", "num_embed_convs"):
            if int(getattr(self, attr)) < 1:
                raise ValueError(f"{attr} must be >= 1, got {getattr(self, attr)!r}")
        if self.memory_size is not None and self.memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {self.memory_size!r}")
        if self.theta <= 0:
            raise ValueError(f"theta must be > 0, got {self.theta!r}")
        if not self.streaming and (self.num_heads < 1 or self.dim % self.num_heads):
            raise ValueError(
                f"num_heads must be >= 1 and divide dim {self.dim}, got {self.num_heads!r}"
            )

    @property
    def spiking(self) -> bool:
        """LIF neurons between the layers (``SPIKING_MODELS``)."""
        return self.name in SPIKING_MODELS

    @property
    def membrane_shortcut(self) -> bool:
        """The spiking LMUFormer's layout: each unit is BatchNorm, LIF, then the conv, so the
        residual paths add membrane potentials (conv outputs) rather than spikes, and the
        head has a BatchNorm and a LIF before its linear layer. Otherwise each conv comes first,
        its BatchNorm and activation (a LIF in ``spiking-lmu``) after it, and the head is
        linear."""
        return self.name in MEMBRANE_SHORTCUT_MODELS

    @property
    def streaming(self) -> bool:
        """The model has an exact frame-by-frame streaming form (an LMU token mixer); the
        ``WINDOW_MODELS`` (global self-attention over the window) have a parallel form only."""
        return self.name not in WINDOW_MODELS

    @property
    def resolved_memory_size(self) -> int:
        if self.memory_size is not None:
            return self.memory_size
        return 2 * self.dim if self.spiking else self.dim

    @property
    def hidden_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class EnsembleConfig:
    """Streaming models over the same features and labels whose per-frame logits are averaged
    with ``weights`` (``models.ensemble``): a second model of another kind (the spiking
    LMUFormer beside the LMUFormer) errs on other audio, so the average fires less on speech
    that only one of them takes for a keyword.

    ``members``: each model's ``ModelConfig`` (streaming models, one look-ahead); ``weights``:
    one per member, positive, summing to 1.
    """

    members: tuple[ModelConfig, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(self.members)}")
        if len(self.weights) != len(self.members):
            raise ValueError(
                f"{len(self.weights)} weights for {len(self.members)} members: one per member"
            )
        if any(not w > 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {list(self.weights)}")
        windowed = [m.name for m in self.members if not m.streaming]
        if windowed:
            raise ValueError(
                f"{windowed} have no streaming form: only streaming models are averaged frame "
                f"by frame (one of {list(STREAMING_MODELS)})"
            )
        for attr in ("num_classes", "in_features"):
            values = {getattr(m, attr) for m in self.members}
            if len(values) > 1:
                raise ValueError(f"the members differ in {attr}: {sorted(values)}")

    @property
    def name(self) -> str:
        """The members' names joined by ``+`` (``lmuformer+spiking-lmuformer``)."""
        return ENSEMBLE_JOIN.join(m.name for m in self.members)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    @property
    def in_features(self) -> int:
        return self.members[0].in_features

    @property
    def streaming(self) -> bool:
        return True

    @property
    def window(self) -> int:
        return max(m.window for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"members": [m.to_dict() for m in self.members], "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleConfig:
        unknown = set(data) - {"members", "weights"}
        if unknown:
            raise ValueError(f"unknown ensemble config keys {sorted(unknown)}")
        members = tuple(ModelConfig.from_dict(dict(m)) for m in data["members"])
        return cls(members, tuple(float(w) for w in data["weights"]))


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig | EnsembleConfig:
    """A checkpoint's ``model`` section: an ensemble's (``members``) or one model's."""
    if "members" in data:
        return EnsembleConfig.from_dict(data)
    return ModelConfig.from_dict(data)
