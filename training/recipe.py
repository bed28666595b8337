"""The training recipe: the paper's settings as a frozen dataclass, overridable from a file.

Defaults are the paper's (LMUFormer's Speech Commands recipe, after AST): Adam lr 2.5e-3 with
betas (0.95, 0.999) and weight decay 5e-7, BCE-with-logits on one-hot targets mixed by mixup
(probability 0.6, λ ~ Beta(10, 10)), SpecAugment freq 48 / time 48, uniform feature noise and a
±10-frame roll, batch 128, 200 epochs, LR ×0.85 every 10 epochs from epoch 10.
``clean_steps`` runs the first steps on clean, centred clips (no waveform augmentation, no
mixup, no SpecAugment), so a short CPU schedule gets off the class prior quickly;
``precision = "bf16"`` trains under bfloat16 autocast (faster on CPUs with AVX512-BF16;
evaluation and the saved weights stay float32).
``init_from`` fine-tunes from a checkpoint of the same model (continuing a run under a new
schedule); ``loader_workers`` builds batches in background processes, overlapping the waveform
augmentation with the model step (one worker is enough on two cores). ``time_budget_s`` stops a
run at an epoch boundary before it would overrun a lent machine's time (resume goes on).
``loss = "ce"`` swaps BCE for softmax cross-entropy on the same (mixed) targets: on short
schedules BCE over many classes can sit at the class prior for a long time.

A config file is JSON (``.json``) or TOML (``.toml``, Python 3.11+): top-level keys are Recipe
fields; ``augment`` (waveform augmentation) and ``model_config`` (ModelConfig keys) are tables.
``base`` names another recipe file (relative to this one) that this file overlays: its keys
first, then this file's, tables merged key by key (a stage of a run is its model's base recipe
plus what the stage changes). ``--set key=value`` overrides any field after the file; values
parse as JSON when they can (``--set epochs=20 --set augment.noise_prob=0.4
--set model_config.dim=64``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.augment import AugmentConfig

__all__ = ["Recipe", "load_recipe"]


@dataclass(frozen=True)
class Recipe:
    """Every knob of a training run."""

    # model
    model: str = "spiking-lmuformer"
    model_config: dict[str, Any] = field(default_factory=dict)
    # data
    data: str = "data/synth"
    out: str = "runs/train"
    labels: tuple[str, ...] | None = None
    window_frames: int = 128
    mode: str | None = None
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str | None = "test"
    max_train_items: int | None = None
    max_val_items: int | None = None
    augment_waveforms: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # optimisation (paper)
    epochs: int = 200
    batch_size: int = 128
    lr: float = 2.5e-3
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 5e-7
    lr_decay: float = 0.85
    lr_decay_start: int = 10
    lr_decay_every: int = 10
    warmup_steps: int = 0
    clean_steps: int = 0
    precision: str = "fp32"
    loss: str = "bce"
    steps_per_epoch: int | None = None
    #: start from these weights (a checkpoint of the same model and labels) instead of random
    init_from: str | None = None
    #: start from the matching tensors of another model's checkpoint (same labels): every
    #: tensor whose name and shape agree is copied, the rest keeps its initialisation (e.g. the
    #: spiking-lmuformer's embedding and channel mixer for spiking-lmu or spiking-attention)
    warm_start_from: str | None = None
    #: loaders hand over augmented waveforms and the fbank runs batched on the training device
    #: (a GPU), instead of in the loader processes (same features on the CPU, to float rounding)
    features_on_device: bool = False
    # feature augmentation (paper)
    mixup_prob: float = 0.6
    mixup_alpha: float = 10.0
    freq_mask: int = 48
    time_mask: int = 48
    feature_noise: bool = True
    roll_frames: int = 10
    #: vocal-tract-length perturbation (not in the paper; 0 = off): each item's mel axis warped
    #: by a factor in [1 - vtlp_warp, 1 + vtlp_warp] (training.augment.vtlp)
    vtlp_warp: float = 0.0
    # stream training (not in the paper; 0 = off): this share of every batch is stream windows
    # (training.stream_windows: windows cut from continuous speech at random offsets, their
    # loss on the served pooled logits), the rest the recipe's clips
    stream_fraction: float = 0.0
    #: ``lmukws data recordings`` folder whose use=train speech stream windows draw from
    stream_recordings: str | None = None
    #: ``lmukws mine-negatives`` folder: an earlier model's false alarms on training speech
    stream_hard_negatives: str | None = None
    #: StreamWindowConfig keys (geometry, scene mix)
    stream: dict[str, Any] = field(default_factory=dict)
    #: validation stream windows scored every epoch (0: none)
    val_stream_items: int = 0
    #: clip targets mixed with the teacher's softmax at this weight (0: off): by default the
    #: ``init_from`` model, so fine-tuning for streams keeps the clip accuracy it started from
    distill_weight: float = 0.0
    #: the teacher instead of ``init_from``: a checkpoint of any model (an ensemble too) with
    #: the corpus's labels and fbank, e.g. a stronger network distilled into a smaller one
    distill_from: str | None = None
    #: the stream half learns from the teacher too: each stream window's target mixed with the
    #: teacher's softmax of its pooled logits (the served posterior) at ``distill_weight``
    distill_streams: bool = False
    #: voice sources to oversample: the manifest's ``engine`` → how many times each of its
    #: training clips is drawn per pass, and its voices' weight when stream windows pick a
    #: voice (e.g. ``{"kokoro": 3}``; a source not named counts once)
    engine_repeat: dict[str, int] = field(default_factory=dict)
    #: BatchNorm layers normalise with their running statistics and keep them while the rest
    #: trains (a fine-tune): the statistics of the starting weights, e.g. a soup's, stay those
    #: the weights are served with, instead of drifting to the batches' mix of clips and
    #: stream windows
    frozen_norm: bool = False
    # runtime
    seed: int = 0
    device: str = "auto"
    threads: int = 2
    #: processes that build (augment + fbank) the next batches while the model trains
    loader_workers: int = 0
    eval_batch_size: int = 256
    #: wall-clock seconds this invocation may train (0: no limit): no epoch starts that the last
    #: epoch's duration says would end past it; the run stays resumable for the rest
    time_budget_s: float = 0.0
    #: also keep every epoch's weights as ``epoch-NNN.safetensors`` (members for
    #: ``lmukws average-checkpoints``)
    keep_epoch_checkpoints: bool = False
    notes: str = ""

    def lr_at(self, epoch: int) -> float:
        """The LR of 0-based ``epoch``: ×decay at each milestone start, start+every, ...

        (MultiStepLR over ``range(start, ∞, every)`` stepped after every epoch, as in the
        authors' code: with start 10, epochs 0-9 use lr, 10-19 lr·0.85, ...)
        """
        if epoch < self.lr_decay_start or self.lr_decay_every <= 0:
            return self.lr
        steps = (epoch - self.lr_decay_start) // self.lr_decay_every + 1
        return self.lr * self.lr_decay**steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(fields)}")
        values = dict(data)
        if values.get("loss", "bce") not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {values['loss']!r}")
        if float(values.get("time_budget_s", 0.0)) < 0:
            raise ValueError(f"time_budget_s must be >= 0, got {values['time_budget_s']!r}")
        if not 0.0 <= float(values.get("stream_fraction", 0.0)) <= 1.0:
            raise ValueError(
                f"stream_fraction must be in [0, 1], got {values['stream_fraction']!r}"
            )
        if not 0.0 <= float(values.get("distill_weight", 0.0)) <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {values['distill_weight']!r}")
        distilling = float(values.get("distill_weight", 0.0)) > 0
        if distilling and not (values.get("init_from") or values.get("distill_from")):
            raise ValueError(
                "distill_weight needs init_from or distill_from (the model it distils from)"
            )
        if values.get("distill_streams") and not distilling:
            raise ValueError("distill_streams needs distill_weight > 0 (how much to learn)")
        if values.get("distill_from") and not distilling:
            raise ValueError("distill_from needs distill_weight > 0 (how much of it to learn)")
        for engine, times in dict(values.get("engine_repeat") or {}).items():
            if not isinstance(times, int) or isinstance(times, bool) or times < 1:
                raise ValueError(
                    f"engine_repeat[{engine!r}] must be a whole number >= 1, got {times!r}"
                )
        if values.get("warm_start_from") and values.get("init_from"):
            raise ValueError("init_from and warm_start_from exclude each other: pick one start")
        if not 0.0 <= float(values.get("vtlp_warp", 0.0)) < 1.0:
            raise ValueError(f"vtlp_warp must be in [0, 1), got {values['vtlp_warp']!r}")
        if values.get("precision", "fp32") not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {values['precision']!r}")
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        for key in ("labels", "betas"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _read_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The keys of one recipe file, over those of its ``base`` file (and that file's base)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    chain = (*seen, path.resolve())
    if base_path in chain:
        raise ValueError(f"recipe {path}: base {base!r} leads back to {base_path.name}")
    return _overlay(_read_file(base_path, chain), data)


def _overlay(base: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the keys of ``data`` over it; tables (dicts) merged key by key."""
    merged = dict(base)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_recipe(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Recipe:
    """The recipe from a JSON/TOML file over its ``base`` (or the defaults), with ``key=value``
    overrides."""
    data: dict[str, Any] = _read_file(Path(path)) if path else {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override must be key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        target = data
        for part in parts[:-1]:
            node = target.get(part)
            if dataclasses.is_dataclass(node):
                node = dataclasses.asdict(node)  # type: ignore[arg-type]
            target[part] = dict(node or {})
            target = target[part]
        target[parts[-1]] = _parse_value(raw)
    return Recipe.from_dict(data)
