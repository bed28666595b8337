"""``lmukws average-checkpoints``: one checkpoint whose weights are the element-wise mean of
several checkpoints of the same model (a "model soup", Wortsman et al., ICML 2022).

Checkpoints fine-tuned from a common start (the epochs of one run, or a stage and the run that
continued it with ``init_from``) lie in one basin of the loss; their mean often generalises
better than any of them, above all to data unlike the training data (here: unseen voices).
Pick the members on validation, never on test:

    lmukws average-checkpoints data/runs/A/best.safetensors data/runs/B/epoch-010.safetensors \\
        data/runs/B/best.safetensors --out data/runs/B-average/average.safetensors
    lmukws evaluate data/runs/B-average/average.safetensors --data data/synth --split validation

Every floating-point tensor (weights and BatchNorm running statistics) is averaged in float64;
integer buffers (BatchNorm's batch counters) are the last member's. The metadata is the last
member's (labels, features, detector, the training record and its ``init_from`` chain), with
``training.averaged_from`` listing the members and no validation metrics (the mean was not
validated by the trainer).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.ship import checkpoint_record


def average_checkpoints(paths: Sequence[Path], out: Path) -> Path:
    """Write the mean of ``paths`` (same model, labels and features) to ``out``; returns it."""
    import torch

    from models import load_checkpoint, save_checkpoint

    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    loaded = [load_checkpoint(path) for path in paths]
    model, meta = loaded[-1]
    for path, (other, other_meta) in zip(paths, loaded, strict=True):
        if other.config != model.config:
            raise ValueError(
                f"{path}: model {other.config.to_dict()} differs from {paths[-1]}'s "
                f"{model.config.to_dict()}"
            )
        for key in ("labels", "features"):
            if other_meta.get(key) != meta.get(key):
                raise ValueError(f"{path}: its {key} differ from {paths[-1]}'s")
    states = [other.state_dict() for other, _ in loaded]
    mean = {
        key: torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in states[-1].items()
    }
    model.load_state_dict(mean)
    averaged = dict(meta)
    training = dict(meta.get("training") or {})
    training["averaged_from"] = [
        checkpoint_record(path, member_meta)
        for path, (_, member_meta) in zip(paths, loaded, strict=True)
    ]
    averaged["training"] = training
    averaged["metrics"] = {}
    averaged["provenance"] = f"mean of {len(paths)} checkpoints (lmukws average-checkpoints)"
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, model, averaged)


def _run(args: argparse.Namespace) -> int:
    try:
        target = average_checkpoints([Path(p) for p in args.checkpoints], Path(args.out))
    except (FileNotFoundError, ValueError) as error:
        print(f"lmukws average-checkpoints: {error}")
        return 2
    print(f"wrote {target}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


def register_average_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``average-checkpoints`` to the ``lmukws`` command."""
    parser = subparsers.add_parser(
        "average-checkpoints",
        help="average the weights of checkpoints of one model (a model soup)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("checkpoints", nargs="+", help="two or more .safetensors checkpoints")
    parser.add_argument("--out", required=True, help="the averaged .safetensors to write")
    parser.set_defaults(func=_run)
    return parser
