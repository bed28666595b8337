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
from typing import Any

import numpy as np

__all__ = [
    "combine_runs", "member_runs", "normalised", "parse_candidates", "reweighted",
]  # fmt: skip


def normalised(
    candidates: Sequence[Sequence[float]], members: int | None = None
) -> list[tuple[float, ...]]:
    """``candidates``: positive weights (one per member when ``members`` is given), each
    normalised to sum to 1, in order, duplicates dropped; ``ValueError`` says what is wrong."""
    out: list[tuple[float, ...]] = []
    for given in candidates:
        values = [float(v) for v in given]
        if members is not None and len(values) != members:
            raise ValueError(f"{values}: {len(values)} weights for an ensemble of {members}; "
                             f"{members} positive weights per candidate")  # fmt: skip
        if any(not v > 0 for v in values):
            raise ValueError(f"{values}: weights must be positive")
        candidate = tuple(v / sum(values) for v in values)
        if not any(len(k) == len(candidate) and np.allclose(candidate, k) for k in out):
            out.append(candidate)
    return out


def parse_candidates(text: str, members: int | None = None) -> list[tuple[float, ...]]:
    """``"0.7,0.3;0.6,0.4"``: candidates separated by ``;`` (``normalised``)."""
    parsed = []
    for part in text.split(";"):
        if not part.strip():
            continue
        try:
            parsed.append([float(v) for v in part.split(",")])
        except ValueError:
            raise ValueError(f"expected comma-separated weights, got {part!r}") from None
    if not parsed:
        raise ValueError("--ensemble-weights: no candidate given")
    return normalised(parsed, members)


def _members(ensemble: Any) -> list[Any]:
    """Each member of ``ensemble`` (a ``LogitEnsemble``) as a model of its own; ``ValueError``
    for a single model."""
    from models import LMUFormer
    from models.config import EnsembleConfig

    if not isinstance(ensemble.config, EnsembleConfig):
        raise ValueError(f"{ensemble.config.name}: not an ensemble (lmukws ensemble makes one)")
    out = []
    for config, network in zip(ensemble.config.members, ensemble.network.members, strict=True):
        member = LMUFormer(config)
        member.network.load_state_dict(network.state_dict())
        out.append(member.eval())
    return out


def member_runs(
    ensemble: Any,
    metadata: Any,
    streams: Sequence[Any],
    runtime: str = "auto",
    threads: int = 0,
    progress: bool = True,
) -> list[list[Any]]:
    """Per member of ``ensemble`` (with its checkpoint's ``metadata``): its ``StreamRun``s of
    ``streams``, from an engine with the ensemble's settings and the member's network alone."""
    from streaming.engine import EngineConfig, StreamingEngine
    from training.stream_eval import run_engine

    config = EngineConfig.from_metadata(
        metadata, runtime=runtime, torch_threads=threads, max_sessions=256
    )
    out = []
    for member in _members(ensemble):
        engine = StreamingEngine(member, metadata, config)
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
    from streaming.step import posteriors_of

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
        p = posteriors_of(z, posterior)  # as the engine turns pooled logits into posteriors
        out.append(dataclasses.replace(first, posteriors=p, detections=[], smoothed=None,
                                       normalized=None, input_key=()))  # fmt: skip
    return out


def reweighted(model: Any, metadata: dict[str, Any], weights: Sequence[float]) -> Any:
    """``model`` (an ensemble) averaging its members with ``weights``; ``metadata``'s member
    records and provenance are updated in place."""
    from models.ensemble import ensemble_models

    ensemble = ensemble_models(_members(model), weights)
    section = metadata.get("ensemble") or {}
    for member, weight in zip(section.get("members") or [], weights, strict=False):
        member["weight"] = float(weight)
    provenance = metadata.get("provenance")
    if isinstance(provenance, str) and " --weights " in provenance:
        head = provenance.rsplit(" --weights ", 1)[0]
        metadata["provenance"] = head + " --weights " + ",".join(f"{w:g}" for w in weights)
    return ensemble
