"""Checkpoints: one ``.safetensors`` file per model, JSON metadata inside, nothing unpickled.

The metadata (a JSON object stored under the safetensors header key ``lmukws``) holds the model
name and config, the labels, the feature settings and normalisation, the training data and
recipe, metrics and detector defaults. ``load_checkpoint`` rebuilds the model from it alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.config import DEFAULT_MODEL, check_model_name, model_config_from_dict
from models.ensemble import build_from_config
from models.lmuformer import LMUFormer

METADATA_KEY = "lmukws"
FORMAT_VERSION = 1
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, not ours, or does not match its model."""


def save_checkpoint(
    path: str | Path, model: LMUFormer, metadata: dict[str, Any] | None = None
) -> Path:
    """Write the model's weights and ``metadata`` (JSON-serialisable) to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = dict(metadata or {})
    meta["format_version"] = FORMAT_VERSION
    meta["model"] = model.config.to_dict()
    labels = meta.get("labels")
    if labels is not None and len(labels) != model.num_classes:
        raise CheckpointError(
            f"metadata has {len(labels)} labels but the model has {model.num_classes} classes"
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    tmp.chmod(0o644)  # a checkpoint is shipped and served: readable like any other file
    tmp.replace(path)
    return path


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of a model's tensors: every state-dict entry in name order, its name,
    dtype, shape and bytes. Unlike the file's hash it survives a recalibration, which rewrites
    only the metadata, so it names the weights a checkpoint was made from."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading its weights."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if raw is None:
        raise CheckpointError(f"{path}: no lmukws metadata; not an lmukws checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({error})") from error
    if "model" not in meta:
        raise CheckpointError(f"{path}: metadata has no model config")
    return meta


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[LMUFormer, dict[str, Any]]:
    """Rebuild the model from a checkpoint; returns (model in eval mode, metadata)."""
    from safetensors.torch import load_file

    path = _existing(path)
    meta = read_metadata(path)
    try:
        config = model_config_from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: bad model config in metadata ({error})") from error
    model = build_from_config(config)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read weights, file truncated? ({error})") from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            details.append(
                "wrong shape "
                + ", ".join(
                    f"{k}: {tuple(tensors[k].shape)} != {tuple(expected[k].shape)}"
                    for k in wrong[:5]
                )
            )
        raise CheckpointError(f"{path}: weights do not match {config.name}: " + "; ".join(details))
    model.load_state_dict(tensors)
    return model.to(device).eval(), meta


def default_checkpoint(name: str = DEFAULT_MODEL) -> Path:
    """The shipped checkpoint of model ``name``: ``models/checkpoints/NAME.safetensors`` (an
    ensemble's name joins its members': ``lmuformer+spiking-lmuformer``)."""
    check_model_name(name)
    path = CHECKPOINT_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"no shipped checkpoint for {name} at {path}; train one (lmukws train) and pass "
            "its file (--checkpoint PATH)"
        )
    return path


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size < 8:
        raise CheckpointError(f"{path}: file is truncated ({path.stat().st_size} bytes)")
    return path
