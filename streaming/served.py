"""What a served checkpoint is, read once from its metadata into one frozen object.

``ServedModel`` holds the facts every layer needs about the model being served: its name and
labels, the front end's settings (sample rate, window, shift), the look-ahead of the network,
the detector defaults of the checkpoint (its ``detector`` section over the library's
``DetectorSettings``) and its calibration (the DET curve that ``sensitivity`` moves along).
The engine, the server's ``/v1/model`` and ``ready`` message, and the in-process client read
them from here; ``server.settings.Settings`` is the only layer that overrides the detector
defaults (``server.loading.engine_config``).

::

    model, metadata = load_checkpoint(path)
    served = ServedModel.from_model(model, metadata)
    served.labels, served.frame_ms, served.algorithmic_latency_ms, served.detector.threshold
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models import FeatureConfig, LMUFormer
from models.config import DEFAULT_WINDOW_HOP_MS, window_hop_frames
from streaming.detector import DetectorSettings
from streaming.sensitivity import SensitivityCurve

__all__ = ["ServedModel"]


@dataclass(frozen=True)
class ServedModel:
    """A checkpoint as the service sees it (see the module docstring).

    ``metadata`` is the checkpoint's JSON metadata as read (``checkpoint``: the file it came
    from, when known); ``parameters`` counts the network's weights.

    A window model (``streaming`` False, ``models.WINDOW_MODELS``) is served by recomputing its
    last ``window_frames`` frames every ``hop_frames`` frames (``streaming.window``); it has no
    look-ahead (0) and both are 0 for a streaming model.
    """

    name: str
    labels: tuple[str, ...]
    features: FeatureConfig
    lookahead_frames: int
    parameters: int
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    calibration: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    streaming: bool = True
    window_frames: int = 0
    hop_frames: int = 0

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"the model's labels are not unique: {list(self.labels)}")

    @classmethod
    def from_model(
        cls,
        model: LMUFormer,
        metadata: Mapping[str, Any] | None = None,
        window_hop_ms: float = DEFAULT_WINDOW_HOP_MS,
    ) -> ServedModel:
        """The description of ``model`` with its checkpoint ``metadata``; ``ValueError`` when
        they disagree (label count). A window model is recomputed every ``window_hop_ms``
        (rounded to whole frames, at least one)."""
        metadata = dict(metadata or {})
        K = model.num_classes
        labels = metadata.get("labels") or [f"class{i}" for i in range(K)]
        if len(labels) != K:
            raise ValueError(f"metadata has {len(labels)} labels but the model outputs {K}")
        features = FeatureConfig.from_dict(metadata.get("features") or {})
        section = dict(metadata.get("detector") or {})
        return cls(
            name=model.config.name,
            labels=tuple(labels),
            features=features,
            lookahead_frames=model.lookahead_frames if model.streaming else 0,
            parameters=sum(p.numel() for p in model.parameters()),
            detector=DetectorSettings().updated(section, features.frame_shift_ms, labels),
            calibration=section.get("calibration") or None,
            metadata=metadata,
            streaming=model.streaming,
            window_frames=0 if model.streaming else model.config.window,
            hop_frames=0
            if model.streaming
            else window_hop_frames(window_hop_ms, features.frame_shift_ms),
        )

    @property
    def sample_rate(self) -> int:
        """The rate of the front end: every session's audio is resampled to it."""
        return self.features.sample_rate

    @property
    def frame_ms(self) -> float:
        """Frame shift (ms)."""
        return self.features.frame_shift_ms

    @property
    def window_ms(self) -> float:
        """Analysis window of one frame (ms)."""
        return self.features.frame_length_ms

    @property
    def hop_ms(self) -> float | None:
        """How often a window model's window is recomputed (ms); None for a streaming model."""
        return None if self.streaming else self.hop_frames * self.frame_ms

    @property
    def model_window_ms(self) -> float | None:
        """The audio a window model scores at each hop (ms, frames × shift); None when
        streaming."""
        return None if self.streaming else self.window_frames * self.frame_ms

    @property
    def algorithmic_latency_ms(self) -> float:
        """Analysis window + look-ahead frames × frame shift (the conv delay analysis). For a
        window model (no look-ahead: the window ends at the hop's frame), the worst case: a
        keyword whose last frame falls just after a hop waits ``hop_frames - 1`` frames for the
        next hop, so analysis window + (hop_frames - 1) × frame shift."""
        if not self.streaming:
            return self.window_ms + (self.hop_frames - 1) * self.frame_ms
        return self.window_ms + self.lookahead_frames * self.frame_ms

    @property
    def pad_value(self) -> float:
        """A zero log-mel after normalisation: what clips were padded with in training."""
        return (0.0 - self.features.norm_mean) / (2.0 * self.features.norm_std)

    @property
    def checkpoint(self) -> str | None:
        """The file the model was read from, when known."""
        return self.metadata.get("checkpoint")

    def frame_end_ms(self, frame: int) -> float:
        """Audio time (ms) of the end of frame ``frame``'s analysis window."""
        return frame * self.frame_ms + self.window_ms

    def sensitivity_curve(self, thresholds: Mapping[str, float]) -> SensitivityCurve:
        """The calibrated DET curve over the keywords of ``thresholds`` (the keywords that can
        fire, at their default thresholds), or a plain curve around them without one."""
        return SensitivityCurve.from_metadata({"calibration": self.calibration}, thresholds)
