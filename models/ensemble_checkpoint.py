"""``lmukws ensemble``: streaming checkpoints averaged into one checkpoint (``models.ensemble``).

The members must agree on labels and features (the ensemble reads one feature stream and
averages logits label by label). The ensemble's metadata keeps, per member, the file it came
from, its model, weight, the SHA-256 of that file and of its weights alone (``weights_sha256``,
which a later recalibration of the member's file leaves as it is), and its test metrics; its
detector section keeps the settings every member shares, but no thresholds, calibration or
background: the ensemble's scores are new, so it must be calibrated (``lmukws calibrate``)
before it is served as a detector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    weights_digest,
)
from models.ensemble import LogitEnsemble, ensemble_models

__all__ = ["SHARED_DETECTOR_KEYS", "write_ensemble"]

#: detector settings an ensemble takes from its members when they all agree (the rest are
#: calibrated on the ensemble's own scores)
SHARED_DETECTOR_KEYS = (
    "threshold", "smoothing_frames", "patience_frames", "refractory_frames", "warmup_frames",
    "early_threshold", "posterior", "pooling_frames", "rearm_fraction",
)  # fmt: skip


def write_ensemble(
    checkpoints: Sequence[str | Path],
    weights: Sequence[float] | None,
    out: str | Path,
) -> tuple[LogitEnsemble, dict[str, Any]]:
    """Average ``checkpoints`` with ``weights`` (normalised to sum to 1; None: equal) and save
    the ensemble to ``out``; returns (ensemble, its metadata)."""
    if len(checkpoints) < 2:
        raise ValueError(f"an ensemble needs at least two checkpoints, got {len(checkpoints)}")
    weights = [1.0] * len(checkpoints) if weights is None else [float(w) for w in weights]
    if len(weights) != len(checkpoints):
        raise ValueError(f"{len(weights)} weights for {len(checkpoints)} checkpoints")
    if any(not w > 0 for w in weights):
        raise ValueError(f"weights must be positive, got {weights}")
    weights = [w / sum(weights) for w in weights]
    loaded = [load_checkpoint(path) for path in checkpoints]
    first = loaded[0][1]
    for path, (_, meta) in zip(checkpoints, loaded, strict=True):
        for key in ("labels", "features"):
            if meta.get(key) != first.get(key):
                raise CheckpointError(
                    f"{path}: its {key} differ from those of {checkpoints[0]}; an ensemble's "
                    "members read the same features and score the same labels"
                )
    ensemble = ensemble_models([model for model, _ in loaded], weights)
    detectors = [meta.get("detector") or {} for _, meta in loaded]
    shared = {
        key: detectors[0][key]
        for key in SHARED_DETECTOR_KEYS
        if key in detectors[0] and all(d.get(key) == detectors[0][key] for d in detectors)
    }
    members = []
    for path, weight, (model, meta) in zip(checkpoints, weights, loaded, strict=True):
        test = (meta.get("metrics") or {}).get("test") or {}
        members.append(
            {
                "checkpoint": str(path),
                "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                "weights_sha256": weights_digest(model),
                "model": model.config.name,
                "weight": weight,
                "test_accuracy": test.get("accuracy"),
            }
        )
    metadata = {
        "labels": first.get("labels"),
        "features": first.get("features"),
        "detector": shared,
        "ensemble": {"members": members},
        "provenance": "lmukws ensemble "
        + " ".join(str(p) for p in checkpoints)
        + " --weights "
        + ",".join(f"{w:g}" for w in weights),
    }
    save_checkpoint(out, ensemble, metadata)
    return ensemble, metadata
