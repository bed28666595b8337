"""An ensemble's member weights chosen on validation streams (``lmukws calibrate
--ensemble-weights``).

An ensemble averages its members' per-frame logits with fixed weights (``models.ensemble``),
and the engine pools logits by a mean over frames before its posterior: so the ensemble's
pooled logits are the weighted sum of its members' pooled logits, and its posteriors for any
weights follow from each member's posteriors on the same streams. Each member runs through
the engine once (``member_runs``); every candidate's runs are then combined from them
(``combine_runs``: the posteriors the ensemble would serve with those weights, to float
rounding), and ``calibrate.search_ensemble_weights`` keeps the candidate whose held-out
recall at the target false-alarm rate is best, as it ranks its other choices.

Shapes: T frames, K labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "combine_runs", "member_runs", "parse_candidates", "reweighted",
]  # fmt: skip


def parse_candidates(text: str, members: int | None = None) -> list[tuple[float, ...]]:
    """``"0.7,0.3;0.6,0.4"``: candidates separated by ``;``, positive weights (one per member
    when ``members`` is given), normalised to sum to 1 (duplicates dropped); ``ValueError``
    says what is wrong."""
    out: list[tuple[float, ...]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            raise ValueError(f"expected comma-separated weights, got {part!r}") from None
        if members is not None and len(values) != members:
            raise ValueError(f"{part!r}: {len(values)} weights for an ensemble of {members}")
        if any(not v > 0 for v in values):
            raise ValueError(f"{part!r}: weights must be positive")
        total = sum(values)
        candidate = tuple(v / total for v in values)
        if all(not np.allclose(candidate, known) for known in out):
            out.append(candidate)
    if not out:
        raise ValueError("--ensemble-weights: no candidate given")
    return out


def member_runs(
    checkpoint: str | Path,
    streams: Sequence[Any],
    runtime: str = "auto",
    threads: int = 0,
    progress: bool = True,
) -> list[list[Any]]:
    """Per member of the ensemble at ``checkpoint``: its ``StreamRun``s of ``streams``, from an
    engine with the ensemble's settings and the member's network alone."""
    from models import LMUFormer, load_checkpoint
    from models.config import EnsembleConfig
    from streaming.engine import EngineConfig, StreamingEngine
    from training.stream_eval import run_engine

    model, metadata = load_checkpoint(checkpoint)
    if not isinstance(model.config, EnsembleConfig):
        raise ValueError(f"{checkpoint}: not an ensemble (lmukws ensemble makes one)")
    config = EngineConfig.from_metadata(
        metadata, runtime=runtime, torch_threads=threads, max_sessions=256
    )
    out = []
    for member_config, network in zip(model.config.members, model.network.members, strict=True):
        member = LMUFormer(member_config)
        member.network.load_state_dict(network.state_dict())
        engine = StreamingEngine(member.eval(), metadata, config)
        out.append(run_engine(engine, streams, progress=progress))
        engine.close()
    return out


def _log_scores(posteriors: np.ndarray, posterior: str) -> np.ndarray:
    """Pooled posteriors [T, K] back to scores whose weighted sum gives the ensemble's: the
    logits (sigmoid), or the log-posteriors, which differ from the logits by a per-frame
    constant that the softmax drops."""
    if posterior == "softmax":
        return np.log(np.clip(posteriors, 1e-300, None))
    p = np.clip(posteriors, 1e-300, np.nextafter(1.0, 0.0))
    return np.log(p) - np.log1p(-p)


def combine_runs(
    runs: Sequence[Sequence[Any]], weights: Sequence[float], posterior: str
) -> list[Any]:
    """The ensemble's runs for ``weights`` from its members' (``runs[m][s]``: member m, stream
    s; the same streams in the same order): per frame, the posterior of the members' weighted
    pooled logits. Detections are left empty (calibration replays the detector)."""
    if len(runs) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(runs)} members")
    out = []
    for per_member in zip(*runs, strict=True):
        first = per_member[0]
        shapes = {r.posteriors.shape for r in per_member}
        if len(shapes) != 1 or len({r.stream.name for r in per_member}) != 1:
            raise ValueError(f"members disagree on stream {first.stream.name}: {shapes}")
        z = sum(
            w * _log_scores(r.posteriors, posterior)
            for w, r in zip(weights, per_member, strict=True)
        )
        if posterior == "softmax":
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            p = e / e.sum(axis=-1, keepdims=True)
        else:
            p = 0.5 * (1.0 + np.tanh(0.5 * z))
        out.append(dataclasses.replace(first, posteriors=p, detections=[], smoothed=None,
                                       normalized=None, input_key=()))  # fmt: skip
    return out


def reweighted(model: Any, metadata: dict[str, Any], weights: Sequence[float]) -> Any:
    """``model`` (an ensemble) averaging its members with ``weights``; ``metadata``'s member
    records and provenance are updated in place."""
    from models.ensemble import LogitEnsemble

    config = dataclasses.replace(model.config, weights=tuple(float(w) for w in weights))
    ensemble = LogitEnsemble(config)
    for new, old in zip(ensemble.network.members, model.network.members, strict=True):
        new.load_state_dict(old.state_dict())
    section = metadata.get("ensemble") or {}
    for member, weight in zip(section.get("members") or [], weights, strict=False):
        member["weight"] = float(weight)
    provenance = metadata.get("provenance")
    if isinstance(provenance, str) and " --weights " in provenance:
        head = provenance.rsplit(" --weights ", 1)[0]
        metadata["provenance"] = head + " --weights " + ",".join(f"{w:g}" for w in weights)
    return ensemble.eval()
