"""Trainer: the paper's clip-level recipe on any manifest corpus, CPU or CUDA, resumable.

``lmukws train --config FILE [--set key=value ...]`` (or ``python -m training.train``) trains
``recipe.model`` on ``recipe.data`` and writes to ``recipe.out``:

- ``last.safetensors`` + ``last_state.pt`` after every epoch (model, optimizer, epoch, history;
  the state holds tensors and plain values only and loads with ``weights_only=True``); a run
  started again with the same out folder resumes from them;
- ``best.safetensors``: the best model on validation so far, in the project's checkpoint format
  with labels, features, recipe, data provenance, metrics and detector defaults;
- ``history.json``: per-epoch metrics;
- with ``keep_epoch_checkpoints``, ``epoch-NNN.safetensors``: every epoch's model (the members
  ``lmukws average-checkpoints`` averages).

The model is trained as in the paper: clip logits = mean of frame logits, BCE-with-logits on
one-hot targets mixed by mixup, SpecAugment, feature noise and roll. Each batch's items are
augmented and their fbank computed at once, in the main process or (``loader_workers``) in
background processes that prepare the next batches while the model steps.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models import FeatureConfig, LMUFormer, build_model, load_checkpoint, save_checkpoint
from models.frontend import mel_band
from streaming.detector import DetectorSettings
from training.augment import feature_noise_roll, mixup, spec_augment, vtlp
from training.dataset import ManifestDataset, read_corpus_info
from training.recipe import Recipe, load_recipe
from training.ship import checkpoint_record
from training.stream_windows import StreamWindowConfig, StreamWindows, pooled_logits
from training.train_args import add_train_arguments

__all__ = ["main", "resolve_device", "run", "train"]

STATE_FILE = "last_state.pt"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
HISTORY_FILE = "history.json"

#: the detector settings written into checkpoints, with ``DetectorSettings``' defaults (the one
#: place they are written); the posterior is added per run, to match the loss
DETECTOR_KEYS = (
    "threshold",
    "smoothing_frames",
    "patience_frames",
    "refractory_frames",
    "warmup_frames",
    "early_threshold",
)
DETECTOR_DEFAULTS: dict[str, Any] = {
    name: getattr(DetectorSettings(), name) for name in DETECTOR_KEYS
}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), read from
    ``cpuinfo``; None where that cannot be told (no such file). Without it, bfloat16 autocast
    is emulated and a training step runs many times slower than in float32."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _epoch_order(n: int, steps: int | None, batch: int, seed: int, epoch: int) -> np.ndarray:
    """Item order of one epoch: a permutation, or ``steps`` full batches drawn from a stream of
    permutations (so short epochs still cover the corpus over consecutive epochs)."""
    if steps is None:
        return np.random.default_rng([seed, epoch, 11]).permutation(n)
    need = steps * batch
    start = epoch * need
    perms = []
    first = start // n
    for k in range(first, (start + need) // n + 1):
        perms.append(np.random.default_rng([seed, k, 13]).permutation(n))
    stream = np.concatenate(perms)
    offset = start - first * n
    return stream[offset : offset + need]


class _BatchTask(torch.utils.data.Dataset):
    """Batch k of an epoch as one DataLoader item: (features [B, T, F], labels [B]), plus the
    stream windows' (features [b, T', F], labels [b]) when the run trains on streams."""

    def __init__(
        self,
        ds: ManifestDataset,
        batches: list[np.ndarray],
        augment: list[bool],
        streams: StreamWindows | None = None,
        stream_batches: list[np.ndarray] | None = None,
        raw: bool = False,
    ):
        self.ds, self.batches, self.augment = ds, batches, augment
        self.streams, self.stream_batches = streams, stream_batches
        self.raw = raw  # waveforms instead of features (recipe.features_on_device)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[Tensor, ...]:
        self.ds.augment = self.augment[k]
        clips = self.ds.batch(self.batches[k], raw=self.raw)
        if self.streams is None or self.stream_batches is None:
            return clips
        self.streams.augment = self.augment[k]
        return (*clips, *self.streams.batch(self.stream_batches[k], raw=self.raw))


def _epoch_batches(
    ds: ManifestDataset,
    batches: list[np.ndarray],
    augment: list[bool],
    workers: int,
    streams: StreamWindows | None = None,
    stream_batches: list[np.ndarray] | None = None,
    raw: bool = False,
) -> Iterator[tuple[Tensor, ...]]:
    """The epoch's batches in order; built ahead by ``workers`` processes when > 0."""
    task = _BatchTask(ds, batches, augment, streams, stream_batches, raw)
    if workers <= 0:
        for k in range(len(task)):
            yield task[k]
        return
    loader = torch.utils.data.DataLoader(
        task, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=2
    )
    yield from loader


def _source_checkpoint(
    key: str, path: str, labels: Sequence[str]
) -> tuple[LMUFormer, dict[str, Any]]:
    """The checkpoint a recipe ``key`` (init_from, warm_start_from, distill_from) names, and
    its metadata; it must have the corpus's labels in the same order."""
    source, meta = load_checkpoint(path)
    if list(meta.get("labels") or []) != list(labels):
        raise ValueError(f"{key} {path}: its labels differ from the corpus labels")
    return source, meta


def _init_weights(model: LMUFormer, path: str, labels: Sequence[str]) -> dict[str, Any]:
    """Load ``path``'s weights into ``model``; its identity for the run's metadata.

    The checkpoint must be the same model (config) with the same labels in the same order.
    """
    source, meta = _source_checkpoint("init_from", path, labels)
    if source.config != model.config:
        raise ValueError(
            f"init_from {path}: model {source.config.to_dict()} differs from the recipe's "
            f"{model.config.to_dict()}"
        )
    model.load_state_dict(source.state_dict())
    # where that run started from in turn: the whole chain of stages
    init_from = (meta.get("training") or {}).get("init_from")
    return {**checkpoint_record(path, meta), "init_from": init_from}


def _load_teacher(
    path: str, labels: Sequence[str], features: FeatureConfig
) -> tuple[LMUFormer, dict[str, Any]]:
    """The frozen ``distill_from`` model (any kind, an ensemble too) and its identity for the
    run's metadata. It must share the corpus's labels (in order) and fbank, since it sees
    the student's very features."""
    teacher, meta = _source_checkpoint("distill_from", path, labels)
    theirs = FeatureConfig.from_dict(meta.get("features") or {})
    ours, theirs = (dataclasses.replace(c, target_length=0) for c in (features, theirs))
    if theirs != ours:
        raise ValueError(f"distill_from {path}: its fbank settings differ from the corpus's")
    _log(f"distilling from {path} ({teacher.config.name})")
    return teacher.eval().requires_grad_(False), checkpoint_record(path, meta)


def _warm_start(model: LMUFormer, path: str, labels: Sequence[str]) -> dict[str, Any]:
    """Copy into ``model`` every tensor of ``path`` (any model) whose name and shape agree;
    its identity and what was copied, for the run's metadata."""
    source, meta = _source_checkpoint("warm_start_from", path, labels)
    theirs, ours = source.state_dict(), model.state_dict()
    copied = [k for k, v in ours.items() if k in theirs and theirs[k].shape == v.shape]
    if not copied:
        raise ValueError(f"warm_start_from {path}: no tensor of it fits {model.config.name}")
    model.load_state_dict({**ours, **{k: theirs[k] for k in copied}})
    total = sum(v.numel() for v in ours.values())
    share = sum(ours[k].numel() for k in copied) / total
    _log(
        f"warm start from {path} ({source.config.name}): {len(copied)} of {len(ours)} tensors, "
        f"{100 * share:.1f} % of the values"
    )
    return {
        **checkpoint_record(path, meta),
        "model": source.config.name,
        "copied_tensors": len(copied),
        "fresh_tensors": sorted(k for k in ours if k not in copied),
        "copied_share": share,
    }


def freeze_norm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer of a model in training mode into eval mode: it normalises with
    its running statistics and no longer updates them, while its affine weights still train."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def clip_loss(logits: Tensor, targets: Tensor, kind: str = "bce") -> Tensor:
    """Mean loss of clip logits [B, K] against (soft) targets [B, K]: the paper's
    BCE-with-logits, or softmax cross-entropy (``"ce"``)."""
    if kind == "ce":
        return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def distilled_targets(
    teacher: Callable[[Tensor], Tensor],
    feats: Tensor,
    targets: Tensor,
    recipe: Recipe,
    device: torch.device,
) -> Tensor:
    """Clip targets [B, K] mixed with a frozen teacher's probabilities on the same features
    [B, T, F]: ``(1 - w) targets + w softmax(teacher(feats))``, ``w = distill_weight``. The
    teacher is the ``init_from`` model (keeps what it knew of clips while stream windows teach
    the rest: learning without forgetting, Li & Hoiem 2017) or ``distill_from``'s (a stronger
    network's soft targets, Hinton et al. 2015); any callable giving logits [B, K]."""
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.precision == "bf16"),
    ):
        probs = torch.softmax(teacher(feats.to(device)).float(), dim=1).cpu()
    w = recipe.distill_weight
    return (1.0 - w) * targets + w * probs


def distilled_stream_targets(
    teacher: LMUFormer,
    sfeats: Tensor,
    targets: Tensor,
    config: StreamWindowConfig,
    recipe: Recipe,
    device: torch.device,
) -> Tensor:
    """Stream window targets [B, K] mixed, as ``distilled_targets`` mixes clips, with a frozen
    teacher's served posterior on the same windows [B, T, F]: the softmax of its pooled logits
    (``pooled_logits``). What the teacher makes of a half-heard word, a near miss or two words
    in one window is the soft target the one-hot label of the window cannot give."""

    def served(windows: Tensor) -> Tensor:
        return pooled_logits(teacher.frame_logits(windows), config)

    return distilled_targets(served, sfeats, targets, recipe, device)


def evaluate_features(
    model: LMUFormer,
    feats: Tensor,
    labels: Tensor,
    batch_size: int,
    device: torch.device,
    loss: str = "bce",
) -> dict[str, Any]:
    """Loss (``loss`` on one-hot targets), accuracy and per-class accuracy of a split."""
    model.eval()
    K = model.num_classes
    correct = torch.zeros(K)
    total = torch.zeros(K)
    loss_sum = 0.0
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            x = feats[start : start + batch_size].to(device)
            y = labels[start : start + batch_size]
            logits = model(x).float().cpu()
            target = nn.functional.one_hot(y, K).float()
            loss_sum += float(clip_loss(logits, target, loss)) * len(y)
            hit = (logits.argmax(1) == y).float()
            correct.index_add_(0, y, hit)
            total.index_add_(0, y, torch.ones_like(hit))
    n = max(1, int(total.sum()))
    per_class = (correct / total.clamp_min(1)).tolist()
    return {
        "acc": float(correct.sum()) / n,
        "loss": loss_sum / n,
        "items": n,
        "per_class_acc": per_class,
    }


def _cat_batches(ds: StreamWindows, items: range, size: int = 256) -> tuple[Tensor, Tensor]:
    parts = [ds.batch(items[i : i + size]) for i in range(0, len(items), size)]
    return torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts])


def evaluate_stream_windows(
    model: LMUFormer,
    feats: Tensor,
    labels: Tensor,
    config: StreamWindowConfig,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Accuracy of the pooled logits on stream windows [N, T, F], and how often a window
    whose label is not a keyword gets a keyword as its arg-max (false keyword rate)."""
    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            x = feats[start : start + batch_size].to(device)
            predictions.append(pooled_logits(model.frame_logits(x), config).argmax(1).cpu())
    pred = torch.cat(predictions)
    scored = labels >= 0  # IGNORE windows (ambiguous_fraction) are left out
    pred, labels = pred[scored], labels[scored]
    K = model.num_classes
    non_keyword = labels >= K - 2  # the corpus's labels end with _unknown_, _silence_
    false_keyword = (pred[non_keyword] < K - 2).float().mean() if non_keyword.any() else 0.0
    return {
        "acc": float((pred == labels).float().mean()),
        "false_keyword_rate": float(false_keyword),
        "items": int(labels.numel()),
    }


def precompute_features(ds: ManifestDataset, batch_size: int) -> tuple[Tensor, Tensor]:
    """A split's features and labels, computed once: ([N, T, F], [N])."""
    feats, labels = [], []
    for x, y in ds.batches(batch_size):
        feats.append(x)
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def _over_budget(
    budget_s: float, elapsed_s: float, history: list[dict[str, Any]], start_epoch: int
) -> bool:
    """Whether another epoch, as long as this run's last one, would end past ``budget_s``."""
    if budget_s <= 0 or len(history) <= start_epoch:
        return False
    return elapsed_s + float(history[-1]["epoch_s"]) > budget_s


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def train(recipe: Recipe, resume: bool = True, progress: bool | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns a summary (best val acc, epoch, paths, history)."""
    from tqdm import tqdm

    torch.set_num_threads(max(1, recipe.threads))
    device = resolve_device(recipe.device)
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)

    info = read_corpus_info(recipe.data)
    labels = list(recipe.labels or info.get("labels") or [])
    common = {
        "labels": labels or None,
        "seed": recipe.seed,
        "window_frames": recipe.window_frames,
        "mode": recipe.mode,
    }
    t0 = time.perf_counter()
    train_ds = ManifestDataset(
        recipe.data,
        recipe.train_split,
        augment=recipe.augment_waveforms,
        augment_config=recipe.augment,
        max_items=recipe.max_train_items,
        **common,  # type: ignore[arg-type]
    )
    labels = train_ds.labels
    common["labels"] = labels
    val_ds = ManifestDataset(
        recipe.data,
        recipe.val_split,
        max_items=recipe.max_val_items,
        **common,  # type: ignore[arg-type]
    )
    val_feats, val_labels = precompute_features(val_ds, recipe.eval_batch_size)
    stream_train: StreamWindows | None = None
    val_stream: tuple[Tensor, Tensor] | None = None
    stream_config = StreamWindowConfig.from_dict(dict(recipe.stream))
    if recipe.stream_fraction > 0:
        stream_train = StreamWindows(
            recipe.data,
            recipe.train_split,
            labels,
            recordings=recipe.stream_recordings,
            hard_negatives=recipe.stream_hard_negatives,
            config=stream_config,
            engine_repeat=recipe.engine_repeat,
            augment_config=recipe.augment,
            seed=recipe.seed,
            augment=recipe.augment_waveforms,
        )
        if recipe.val_stream_items > 0:
            held = StreamWindows(
                recipe.data, recipe.val_split, labels, config=stream_config, augment=False,
                seed=recipe.seed,
            )  # fmt: skip
            items = range(recipe.val_stream_items)
            val_stream = held.batch(items) if len(items) <= 256 else _cat_batches(held, items)
    _log(
        f"data: {len(train_ds)} train / {len(val_ds)} validation items, {len(labels)} labels, "
        f"mode {train_ds.mode}, loaded in {time.perf_counter() - t0:.1f}s; device {device}, "
        f"{torch.get_num_threads()} threads"
    )

    if device.type == "cpu" and recipe.precision == "bf16" and cpu_has_fast_bf16() is False:
        _log(
            "warning: precision bf16 on a CPU without AVX512-BF16 or AMX: bfloat16 autocast "
            "is emulated and runs many times slower than float32 (--set precision=fp32)"
        )
    K = len(labels)
    fc = train_ds.feature_config
    band = mel_band(fc.low_freq, fc.high_freq, fc.sample_rate)  # Hz, for VTLP
    model = build_model(recipe.model, num_classes=K, **recipe.model_config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
    )
    start_epoch, global_step, best_acc = 0, 0, -1.0
    history: list[dict[str, Any]] = []
    state_path = out / STATE_FILE
    init = _init_weights(model, recipe.init_from, labels) if recipe.init_from else None
    warm = _warm_start(model, recipe.warm_start_from, labels) if recipe.warm_start_from else None
    teacher, distilled = None, None
    if recipe.distill_from:
        teacher, distilled = _load_teacher(recipe.distill_from, labels, train_ds.feature_config)
        teacher = teacher.to(device)
    elif recipe.distill_weight > 0:  # the init_from weights, frozen (Recipe checks init_from)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        global_step = int(state["global_step"])
        best_acc = float(state["best_acc"])
        history = json.loads(state["history_json"])
        _log(f"resumed from {state_path}: epoch {start_epoch}, best val acc {best_acc:.4f}")

    feature_config = FeatureConfig(target_length=recipe.window_frames)
    provenance = {
        "train": train_ds.provenance(),
        "validation": val_ds.provenance(),
    }
    if stream_train is not None:
        provenance["stream_windows"] = stream_train.provenance()
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(recipe.seed)
    show = sys.stderr.isatty() if progress is None else progress

    def metadata(metrics: dict[str, Any], epochs_done: int) -> dict[str, Any]:
        return {
            "labels": labels,
            "features": feature_config.to_dict(),
            "training": {
                "recipe": recipe.to_dict(),
                "data": provenance,
                "epochs_trained": epochs_done,
                "global_step": global_step,
                "device": str(device),
                "torch": torch.__version__,
                "parameters": n_params,
                "init_from": init,
                **({"warm_start_from": warm} if warm else {}),
                **({"distilled_from": distilled} if distilled else {}),
            },
            "metrics": metrics,
            # the posterior that matches the loss: softmax after CE, sigmoid after BCE
            "detector": {
                **DETECTOR_DEFAULTS,
                "posterior": "softmax" if recipe.loss == "ce" else "sigmoid",
            },
        }

    pool = train_ds.draw_pool(recipe.engine_repeat)  # row indices, oversampled sources repeated
    t_run = time.perf_counter()
    # the fbank on the training device, when the loaders hand over waveforms
    device_fbank = copy.deepcopy(train_ds.fbank).to(device) if recipe.features_on_device else None
    stopped_early = False
    for epoch in range(start_epoch, recipe.epochs):
        if _over_budget(recipe.time_budget_s, time.perf_counter() - t_run, history, start_epoch):
            stopped_early = True
            _log(
                f"time budget {recipe.time_budget_s:.0f}s: stopping before epoch {epoch + 1} "
                f"(resume with the same config to go on)"
            )
            break
        train_ds.set_epoch(epoch)
        gen.manual_seed(recipe.seed * 1_000_003 + epoch)
        lr_epoch = recipe.lr_at(epoch)
        n_stream = round(recipe.batch_size * recipe.stream_fraction) if stream_train else 0
        bs = recipe.batch_size - n_stream
        order = pool[_epoch_order(len(pool), recipe.steps_per_epoch, bs, recipe.seed, epoch)]
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        stream_batches = None
        if stream_train is not None:
            stream_train.set_epoch(epoch)
            stream_batches = [
                np.arange(k * n_stream, (k + 1) * n_stream) for k in range(len(batches))
            ]
        model.train()
        if recipe.frozen_norm:
            freeze_norm_statistics(model)
        t_epoch = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0.0, 0
        stream_correct, stream_seen = 0.0, 0
        augment_flags = [
            recipe.augment_waveforms and global_step + k >= recipe.clean_steps
            for k in range(len(batches))
        ]
        bar = tqdm(
            zip(
                batches,
                _epoch_batches(
                    train_ds,
                    batches,
                    augment_flags,
                    recipe.loader_workers,
                    stream_train,
                    stream_batches,
                    recipe.features_on_device,
                ),
                strict=True,
            ),
            total=len(batches),
            desc=f"epoch {epoch + 1}/{recipe.epochs}",
            disable=not show,
            mininterval=1.0 if show else 60.0,
            dynamic_ncols=True,
        )
        # where the step's wall time goes: waiting for the loader's batch, the model (forward,
        # backward, optimizer, synchronised by reading the loss), the rest (feature augmentation)
        data_wait_s, model_s = 0.0, 0.0
        t_next = time.perf_counter()
        for i, (idx, (feats, y, *stream_items)) in enumerate(bar):
            data_wait_s += time.perf_counter() - t_next
            if device_fbank is not None:  # waveforms -> features on the training device
                feats = train_ds.features(feats.to(device, non_blocking=True), device_fbank)
                if stream_items:
                    swaves, sy = stream_items
                    sfeats = stream_train.features(swaves.to(device), device_fbank)  # type: ignore[union-attr]
                    stream_items = [sfeats, sy]
            lr = lr_epoch
            if recipe.warmup_steps > 0 and global_step < recipe.warmup_steps:
                lr = lr_epoch * (global_step + 1) / recipe.warmup_steps
            for group in optimizer.param_groups:
                group["lr"] = lr
            full_recipe = global_step >= recipe.clean_steps
            targets = nn.functional.one_hot(y, K).float()
            if full_recipe and recipe.vtlp_warp > 0:
                feats = vtlp(feats, recipe.vtlp_warp, gen, *band)
            if full_recipe and (recipe.freq_mask > 0 or recipe.time_mask > 0):
                feats = spec_augment(
                    feats, recipe.freq_mask, recipe.time_mask, gen, fill=train_ds.pad_value
                )
            if recipe.feature_noise:
                feats = feature_noise_roll(feats, recipe.roll_frames, gen)
            if full_recipe:
                feats, targets = mixup(feats, targets, recipe.mixup_prob, recipe.mixup_alpha, gen)
            t_model = time.perf_counter()
            if teacher is not None:
                targets = distilled_targets(teacher, feats, targets, recipe, device)
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=recipe.precision == "bf16"
            ):
                logits = model(feats.to(device))
                if stream_items:
                    sfeats, sy = stream_items
                    if full_recipe and (recipe.freq_mask > 0 or recipe.time_mask > 0):
                        sfeats = spec_augment(
                            sfeats, recipe.freq_mask, recipe.time_mask, gen,
                            fill=train_ds.pad_value,
                        )  # fmt: skip
                    if recipe.feature_noise:
                        sfeats = feature_noise_roll(sfeats, 0, gen)
                    frame_logits = model.frame_logits(sfeats.to(device))
                    stream_logits = pooled_logits(frame_logits, stream_config)
            logits = logits.float()
            loss = clip_loss(logits, targets.to(device), recipe.loss)
            if stream_items:
                kept = sy >= 0  # IGNORE windows (ambiguous_fraction) carry no loss
                n_kept = int(kept.sum())
                if n_kept:
                    kept_logits = stream_logits.float()[kept.to(device)]
                    stream_targets = nn.functional.one_hot(sy[kept], K).float()
                    if teacher is not None and recipe.distill_streams:
                        stream_targets = distilled_stream_targets(
                            teacher, sfeats[kept], stream_targets, stream_config, recipe, device
                        )
                    stream_targets = stream_targets.to(device)
                    stream_loss = clip_loss(kept_logits, stream_targets, recipe.loss)
                    loss = (loss * len(y) + stream_loss * n_kept) / (len(y) + n_kept)
                    hits = kept_logits.argmax(1).cpu() == sy[kept]
                    stream_correct += float(hits.sum())
                    stream_seen += n_kept
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            global_step += 1
            n = len(idx)
            seen += n
            loss_sum += float(loss.detach()) * n
            model_s += time.perf_counter() - t_model
            correct += float((logits.argmax(1).cpu() == targets.argmax(1)).sum())
            rate = seen / (time.perf_counter() - t_epoch)
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", it_s=f"{rate:.0f}/s"
            )
            if not show and (i + 1) % 25 == 0:
                _log(
                    f"epoch {epoch + 1} step {i + 1}/{len(batches)} loss {loss_sum / seen:.4f} "
                    f"acc {correct / seen:.3f} {rate:.1f} items/s"
                )
            t_next = time.perf_counter()
        bar.close()
        train_s = time.perf_counter() - t_epoch
        val = evaluate_features(
            model, val_feats, val_labels, recipe.eval_batch_size, device, recipe.loss
        )
        stream_val = (
            evaluate_stream_windows(
                model, *val_stream, stream_config, recipe.eval_batch_size, device
            )
            if val_stream is not None
            else None
        )
        row = {
            "epoch": epoch + 1,
            "lr": lr_epoch,
            "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen),
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "train_s": train_s,
            "epoch_s": time.perf_counter() - t_epoch,
            "items_per_s": seen / train_s,
            "global_step": global_step,
            "data_wait_s": data_wait_s,
            "model_s": model_s,
            "model_share": model_s / train_s if train_s > 0 else 0.0,
        }
        if stream_seen:
            row["train_stream_acc"] = stream_correct / stream_seen
        if stream_val is not None:
            row.update({f"val_stream_{k}": v for k, v in stream_val.items()})
        history.append(row)
        metrics = {
            "val_acc": val["acc"],
            "val_loss": val["loss"],
            "val_per_class_acc": dict(zip(labels, val["per_class_acc"], strict=True)),
            "epoch": epoch + 1,
            "train_loss": row["train_loss"],
        }
        if stream_val is not None:
            metrics["val_stream"] = stream_val
        improved = val["acc"] > best_acc
        if improved:
            best_acc = val["acc"]
            save_checkpoint(out / BEST_FILE, model, metadata(metrics, epoch + 1))
        save_checkpoint(out / LAST_FILE, model, metadata(metrics, epoch + 1))
        if recipe.keep_epoch_checkpoints:  # the file just written, under the epoch's name
            shutil.copyfile(out / LAST_FILE, out / f"epoch-{epoch + 1:03d}.safetensors")
        _save_state(
            state_path,
            {
                "epoch": epoch + 1,
                "global_step": global_step,
                "best_acc": best_acc,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "history_json": json.dumps(history),
                "recipe_json": json.dumps(recipe.to_dict()),
            },
        )
        _write_json(out / HISTORY_FILE, history)
        streams_note = (
            f" | stream windows acc {stream_val['acc']:.4f}, keyword on negatives "
            f"{stream_val['false_keyword_rate']:.4f}"
            if stream_val
            else ""
        )
        _log(
            f"epoch {epoch + 1}/{recipe.epochs} lr {lr_epoch:.2e} "
            f"train loss {row['train_loss']:.4f}"
            f" acc {row['train_acc']:.4f} | val loss {val['loss']:.4f} acc {val['acc']:.4f}"
            f"{' (best)' if improved else ''}{streams_note} | {row['epoch_s']:.0f}s, "
            f"{row['items_per_s']:.1f} items/s, model {100 * row['model_share']:.0f} % of the "
            f"training time (waiting for data {100 * data_wait_s / max(train_s, 1e-9):.0f} %)"
        )

    summary: dict[str, Any] = {
        "best_val_acc": best_acc,
        "epochs": len(history),
        "stopped_by_time_budget": stopped_early,
        "out": str(out),
        "best": str(out / BEST_FILE),
        "history": history,
    }
    if recipe.test_split and (out / BEST_FILE).is_file():
        summary["test"] = _test_best(recipe, out / BEST_FILE, common, device)
    return summary


def _test_best(
    recipe: Recipe, best: Path, common: dict[str, Any], device: torch.device
) -> dict[str, Any] | None:
    """Accuracy of the best checkpoint on the test split, added to its metrics."""
    try:
        test_ds = ManifestDataset(recipe.data, str(recipe.test_split), **common)
    except ValueError:
        return None
    model, meta = load_checkpoint(best, device=device)
    if meta.get("metrics", {}).get("test_split") == recipe.test_split and "test_acc" in meta.get(
        "metrics", {}
    ):
        return {"acc": meta["metrics"]["test_acc"]}
    feats, labels = precompute_features(test_ds, recipe.eval_batch_size)
    result = evaluate_features(model, feats, labels, recipe.eval_batch_size, device, recipe.loss)
    meta = dict(meta)
    meta["metrics"] = {
        **meta.get("metrics", {}),
        "test_acc": result["acc"],
        "test_split": recipe.test_split,
        "test_items": result["items"],
        "test_per_class_acc": dict(zip(meta["labels"], result["per_class_acc"], strict=True)),
    }
    meta.get("training", {})["data"] = {
        **meta.get("training", {}).get("data", {}),
        "test": test_ds.provenance(),
    }
    save_checkpoint(best, model, meta)
    _log(f"test accuracy of {best}: {result['acc']:.4f} on {result['items']} items")
    return {"acc": result["acc"], "items": result["items"]}


def run(args: argparse.Namespace) -> int:
    """``lmukws train`` with parsed arguments (``training.train_args.add_train_arguments``)."""
    overrides = list(args.overrides)
    for key in ("data", "out", "model", "device", "threads", "epochs"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    recipe = load_recipe(args.config, overrides)
    if args.print_recipe:
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    summary = train(recipe, resume=not args.no_resume, progress=args.progress)
    summary.pop("history", None)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.train --config FILE``."""
    parser = argparse.ArgumentParser(prog="python -m training.train")
    add_train_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
