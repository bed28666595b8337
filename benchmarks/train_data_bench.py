"""The ``train`` section's real-data-path rows (``--train-data CORPUS``): the trainer itself.

Compute alone (``model_bench.train_case``: random features already on the device) says what the
model costs; what a training run gets is that plus the data path: the loader processes reading
and augmenting waveforms, the fbank (on the loaders, or batched on the training device with the
recipe's ``features_on_device``), SpecAugment and mixup. This runs ``training.train`` on the
corpus for two short epochs of ``train_data_steps`` steps each (a recipe file's settings, else
the defaults, at the bench's batch, device and model) and reports the second epoch (loaders
warm, kernels compiled): step time, items/s, and the share of the step's wall time spent in the
model (forward, backward, optimizer), the rest being the wait for data and the feature
augmentation. The trainer measures those itself (``history.json``'s ``model_s``,
``data_wait_s``, ``model_share``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.config import BenchConfig, SectionUnavailableError

#: Epochs of a data-path run: the first warms up (loader start, autotuning, JIT), the second counts.
EPOCHS = 2


def data_path_run(
    name: str, config: BenchConfig, device: torch.device, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train ``name`` on ``config.train_data`` for :data:`EPOCHS` short epochs; the last
    epoch's step time, items/s and model share, with the recipe settings that shape them."""
    try:
        from training.recipe import load_recipe
        from training.train import train
    except ImportError as error:  # pragma: no cover - training is part of the project
        raise SectionUnavailableError(f"training: {error}") from error
    recipe = load_recipe(config.train_recipe or None)
    model_config = {k: v for k, v in config.model_overrides.items() if k != "num_classes"}
    with tempfile.TemporaryDirectory(prefix="lmukws-bench-train-") as out:
        changes: dict[str, Any] = {
            "model": name,
            "model_config": {**recipe.model_config, **model_config},
            "data": config.train_data,
            "out": out,
            "epochs": EPOCHS,
            "steps_per_epoch": config.train_data_steps,
            "batch_size": config.train_batch,
            "device": str(device),
            "threads": config.threads or recipe.threads,
            "max_val_items": config.train_batch,  # validation is outside the timed steps
            "val_stream_items": 0,
            "test_split": None,
            "keep_epoch_checkpoints": False,
            "time_budget_s": 0.0,
            "init_from": None,
            "warm_start_from": None,
            "distill_weight": 0.0,
        }
        recipe = type(recipe).from_dict({**recipe.to_dict(), **changes})
        log(
            f"{name}: the trainer on {config.train_data}, {EPOCHS} epochs of "
            f"{config.train_data_steps} steps at batch {config.train_batch}"
        )
        summary = train(recipe, resume=False, progress=False)
    last = summary["history"][-1]
    steps = config.train_data_steps
    return {
        "corpus": config.train_data,
        "recipe": config.train_recipe or "defaults",
        "batch": config.train_batch,
        "frames": recipe.window_frames,
        "steps": steps,
        "precision": recipe.precision,
        "features_on_device": recipe.features_on_device,
        "loader_workers": recipe.loader_workers,
        "stream_fraction": recipe.stream_fraction,
        "step_ms": round(1000.0 * last["train_s"] / steps, 3),
        "model_step_ms": round(1000.0 * last["model_s"] / steps, 3),
        "items_per_s": round(last["items_per_s"], 1),
        "model_share": round(last["model_share"], 3),
        "data_wait_share": round(last["data_wait_s"] / last["train_s"], 3),
    }
