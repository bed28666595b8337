"""``lmukws calibrate CHECKPOINT --data CORPUS --target-fa-per-hour X``: per-keyword thresholds.

On validation streams (``training.streams``: the corpus's validation voices, which the test
streams never use, plus, with ``--recordings``, real recorded speech of use ``train``; never the
evaluation-only recordings), the engine's pooled posteriors are recorded once. Then, for every
keyword alone, the detector is replayed over a grid of thresholds to measure its hits and false
alarms (``run_curves``). For a budget of B false alarms per hour for the whole vocabulary, each
keyword takes the threshold that maximises hits − λ · false alarms, with λ bisected so the sum
of false alarms fits B (``allocate``): keywords whose false alarms are cheap in recall get low
thresholds, the confusable ones high thresholds. A keyword's few false alarms on hours of
validation are a noisy count, and thresholds picked just above them overfit (other voices see
more), so each keyword's threshold is then pulled halfway, in logit space, toward the one
threshold that would fit B for all keywords alike (``thresholds_for_budget``;
``--keyword-weight`` sets how far). A ladder of budgets around X gives the operating points
that ``start.sensitivity`` moves along; every point is then measured with all keywords on
together (the numbers stored with it).

Every point also gets a **held-out** estimate (``heldout``): the voices are split into folds;
each fold is measured with the thresholds that the other folds' curves pick for the point's
budget, so the recall and FA/h it reports are those of voices the thresholds never saw.

With ``--smoothing-ms``, ``--patience-ms``, ``--background-s`` and ``--background-ceiling``
(lists), the detector's posterior smoothing, patience and background normalisation
(``streaming.detector``: each keyword weighed against what the session's audio has given it so
far, counting posteriors up to the ceiling) are searched too:
thresholds are calibrated as above for every combination, and the one with the best held-out
recall at X (with ``--folds``; else recall on all voices) whose median detection delay stays
within ``--max-delay-ms`` wins (longer smoothing and patience trade delay for fewer brief false
peaks; a background raises the bar of the keywords a voice keeps lifting). With ``--kinds
mixed,negatives,repeats`` the validation streams include a user repeating commands
(``training.streams``), so every saying of a repeated keyword counts in the recall that picks
the winner: the background must not learn to ignore a command said clearly again and again.

For an ensemble, ``--ensemble-weights`` searches its member weights first: each member runs
once, every candidate's posteriors are combined from theirs (``training.ensemble_weights``), and
the candidate with the best held-out recall at X (its own weights first, kept on ties) is
calibrated as above and stored in the checkpoint.

With ``--speech-gate-ms`` (a list, 0: off) the detector's speech gate is searched with the
other settings: keywords are held back right after a long stretch of what the model calls
other speech (``streaming.detector.speech_gate``), so the thresholds can be lower elsewhere.

With ``--wake-word W`` the wake-word grammar is calibrated last (``training.grammar_calibration``):
the commands' point of the new curve, stored as ``detector.command_sensitivity``.

Writes ``detector.thresholds`` (the point at X), the chosen ``smoothing_frames``,
``patience_frames``, ``background_frames`` (and ``speech_gate_frames`` when searched), and
``detector.calibration`` (target, measured recall and FA/h, data, operating points, the
search) into the checkpoint's metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.command_errors import exits_2_on_bad_input
from training.grammar_calibration import GRAMMAR_TARGET_FA_PER_HOUR, calibrate_grammar
from training.stream_report import DEFAULT_KINDS, parse_kinds

__all__ = [
    "FOLDS",
    "KEYWORD_WEIGHT",
    "LADDER",
    "MAX_DELAY_MS",
    "WEIGHTS",
    "allocate",
    "calibrate",
    "choose_keyword_weight",
    "heldout",
    "register_calibrate_parser",
    "run_curves",
    "search_detector",
    "search_ensemble_weights",
    "shared_threshold",
    "thresholds_for_budget",
    "voice_folds",
]

#: the detector search's bound on the median delay after a keyword's end (ms), look-ahead
#: included: the issue's 150 ms, of which 75 ms are the models' algorithmic latency
MAX_DELAY_MS = 150.0
#: budgets (false alarms per hour, whole vocabulary) of the operating points besides the target
LADDER = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: thresholds tried per keyword (denser near 1, where low false-alarm rates live)
GRID = tuple(
    float(x)
    for x in np.unique(
        np.round(1 / (1 + np.exp(-np.linspace(-1.0, 8.0, 46))), 5)  # 0.27 .. 0.9997
    )
)


#: how far each keyword's threshold goes from the vocabulary's shared threshold toward its own
#: allocation (logit space; 1: per-keyword allocation alone, 0: one threshold for all). Chosen
#: by the held-out estimate on the shipped lmuformer's validation streams (docs/streams.md).
KEYWORD_WEIGHT = 0.5
#: voice folds of the held-out estimate of every operating point
FOLDS = 5
#: the keyword weights ``--keyword-weight auto`` chooses among
WEIGHTS = (0.25, 0.5, 0.75, 1.0)


def run_curves(
    runs: Sequence[Any],
    base: Any,
    keywords: Sequence[str],
    grid: Sequence[float] = GRID,
    progress: str | None = None,
) -> np.ndarray:
    """[len(runs), len(keywords), len(grid), 2]: per run, keyword and threshold of ``grid``,
    (hits, false alarms) with only that keyword enabled, replaying the detector over the run's
    posteriors. Counts add over runs, so any subset's curves are a sum (``heldout``).
    ``progress``: a progress bar over the keywords, with this label (the slow part of a
    calibration: one replay per keyword and threshold)."""
    from tqdm import tqdm

    from training.stream_eval import firings_as_found, score

    index = {label: i for i, label in enumerate(base.labels)}
    out = np.zeros((len(runs), len(keywords), len(grid), 2))
    bar = tqdm(keywords, desc=progress, unit="keyword", disable=progress is None, leave=False)
    for j, k in enumerate(bar):
        for g, t in enumerate(grid):
            thresholds = np.full(len(base.labels), math.inf)
            thresholds[index[k]] = t
            config = dataclasses.replace(base, thresholds=thresholds)
            for r, run in enumerate(runs):
                found = firings_as_found(run, config)
                if not found:  # no detection: neither hit nor false alarm
                    continue
                result = score([run], lambda _run, f=found: f, examples=0)
                row = result["per_keyword"].get(k, {"hits": 0, "false_alarms": 0})
                out[r, j, g] = (row["hits"], row["false_alarms"])
    return out


def _tables(counts: np.ndarray, keywords: Sequence[str]) -> dict[str, np.ndarray]:
    """[K, G, 2] counts as one [G, 2] table per keyword."""
    return {k: counts[j] for j, k in enumerate(keywords)}


def allocate(
    tables: dict[str, np.ndarray], grid: Sequence[float], budget: float
) -> dict[str, float]:
    """Thresholds (one per keyword) maximising total hits with total false alarms <= budget
    (counts), by bisection on the Lagrange multiplier λ: each keyword picks the threshold of
    ``grid`` maximising hits − λ · false alarms (the highest such threshold on ties)."""
    grid_a = np.asarray(grid)

    def choose(lam: float) -> tuple[dict[str, int], float]:
        picks, total = {}, 0.0
        for k, table in tables.items():
            value = table[:, 0] - lam * table[:, 1]
            best = np.flatnonzero(value >= value.max() - 1e-12)
            picks[k] = int(best.max())  # highest threshold among the best
            total += table[picks[k], 1]
        return picks, total

    lo, hi = 0.0, 1.0
    while choose(hi)[1] > budget and hi < 1e9:
        hi *= 4.0
    picks, total = choose(lo)
    if total > budget:
        for _ in range(60):
            mid = (lo + hi) / 2
            if choose(mid)[1] > budget:
                lo = mid
            else:
                hi = mid
        picks, _ = choose(hi)
    return {k: float(grid_a[i]) for k, i in picks.items()}


def shared_threshold(tables: dict[str, np.ndarray], grid: Sequence[float], budget: float) -> float:
    """The lowest threshold of ``grid`` at which all keywords' false alarms together fit
    ``budget`` (counts); the highest one when none does."""
    total = sum(table[:, 1] for table in tables.values())
    fits = np.flatnonzero(np.asarray(total) <= budget)
    return float(grid[int(fits.min()) if fits.size else len(grid) - 1])


def thresholds_for_budget(
    tables: dict[str, np.ndarray],
    grid: Sequence[float],
    budget: float,
    keyword_weight: float = KEYWORD_WEIGHT,
) -> dict[str, float]:
    """Per keyword: ``allocate``'s threshold pulled toward ``shared_threshold`` in logit
    space, ``keyword_weight`` of the way from the shared one to the keyword's own. Counts of a
    few false alarms per keyword are noisy; the pull keeps a threshold from sitting just above
    the validation voices' peaks, which unseen voices exceed."""
    if not 0.0 <= keyword_weight <= 1.0:
        raise ValueError(f"keyword_weight must be in [0, 1], got {keyword_weight}")
    own = allocate(tables, grid, budget)
    if keyword_weight == 1.0:
        return own
    shared = shared_threshold(tables, grid, budget)
    if keyword_weight == 0.0:
        return {k: shared for k in own}

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    return {
        k: 1 / (1 + math.exp(-(keyword_weight * logit(t) + (1 - keyword_weight) * logit(shared))))
        for k, t in own.items()
    }


def voice_folds(runs: Sequence[Any], folds: int, seed: int = 0) -> np.ndarray:
    """[len(runs)] fold of each run: its voice's, the voices shuffled (``seed``) and dealt
    round robin into min(``folds``, voices) folds, so no voice is in two folds."""
    voices = sorted({run.stream.voice for run in runs})
    np.random.default_rng(seed).shuffle(voices)
    fold_of = {voice: i % max(1, min(folds, len(voices))) for i, voice in enumerate(voices)}
    return np.array([fold_of[run.stream.voice] for run in runs], dtype=int)


def heldout(
    runs: Sequence[Any],
    config: Any,
    counts: np.ndarray,
    targets: Sequence[float],
    *,
    folds: int = FOLDS,
    seed: int = 0,
    keyword_weight: float = KEYWORD_WEIGHT,
    grid: Sequence[float] = GRID,
) -> list[dict[str, Any]] | None:
    """Per target (FA/h): recall and FA/h on voices the thresholds were not picked on. Each
    voice fold is measured, all keywords on, with the thresholds that the other folds' curves
    (``counts``, from ``run_curves``) give for the target times their hours; the folds' hits,
    events, false alarms and hours are pooled. None with fewer than two voices."""
    from training.stream_eval import firings_as_found, score

    fold = voice_folds(runs, folds, seed)
    n_folds = int(fold.max()) + 1 if len(runs) else 0
    if n_folds < 2:
        return None
    hours = np.array([run.stream.scored_seconds for run in runs]) / 3600
    out = []
    for target in targets:
        hits = events = false_alarms = scored = 0.0
        for f in range(n_folds):
            rest = fold != f
            tables = _tables(counts[rest].sum(axis=0), config.keywords)
            picked = thresholds_for_budget(tables, grid, target * hours[rest].sum(), keyword_weight)
            values = np.array([picked.get(label, math.inf) for label in config.labels])
            measured = dataclasses.replace(config, thresholds=values)
            inside = [runs[i] for i in np.flatnonzero(~rest)]
            result = score(inside, lambda run, c=measured: firings_as_found(run, c), examples=0)
            hits += result["hits"]
            events += result["events"]
            false_alarms += result["false_alarms"]
            scored += result["hours"]
        out.append(
            {
                "target_fa_per_hour": float(target),
                "recall": hits / events if events else None,
                "fa_per_hour": false_alarms / scored if scored else None,
            }
        )
    return out


def _recall_at(points: Sequence[dict[str, Any]], fa_per_hour: float) -> float | None:
    """Recall at ``fa_per_hour`` read off ``heldout``'s points as the DET tables read a curve
    (``stream_report.recall_at``)."""
    from training.stream_report import recall_at

    curve = [{"false_alarms_per_hour": p["fa_per_hour"], "recall": p["recall"]} for p in points]
    return recall_at(curve, fa_per_hour)


def _heldout_row(points: Sequence[dict[str, Any]], target_fa_per_hour: float) -> dict[str, Any]:
    """A candidate's held-out figures: recall at the target rate read off its ladder
    (``_recall_at``), and the FA/h when calibrated to the target."""
    calibrated = next(p for p in points if p["target_fa_per_hour"] == target_fa_per_hour)
    return {
        "heldout_recall_at_target": _recall_at(points, target_fa_per_hour),
        "heldout_fa_per_hour": calibrated["fa_per_hour"],
    }


def _mark_best(rows: list[dict[str, Any]]) -> int:
    """The row with the best held-out recall at the target (a row without one ranks last; the
    first on ties), marked ``chosen`` among ``rows``."""
    best = max(
        range(len(rows)),
        key=lambda i: (rows[i]["heldout_recall_at_target"] is not None,
                       rows[i]["heldout_recall_at_target"] or 0.0, -i),
    )  # fmt: skip
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    return best


def choose_keyword_weight(
    runs: Sequence[Any],
    config: Any,
    counts: np.ndarray,
    target_fa_per_hour: float,
    *,
    weights: Sequence[float] = WEIGHTS,
    folds: int = FOLDS,
    seed: int = 0,
    known: dict[float, list[dict[str, Any]]] | None = None,
    progress: bool = False,
) -> tuple[float, list[dict[str, Any]], list[dict[str, Any]]]:
    """The keyword weight whose held-out curve (``heldout`` over the ladder and the target)
    finds the most keywords at ``target_fa_per_hour``, read off in log FA/h as the DET tables
    are (a curve that does not reach the rate ranks last; the first weight on ties). Returns
    it, one row per weight (its held-out recall at the target rate, and the held-out FA/h
    when calibrated to the target) and the winner's held-out points. ``known``: held-out
    points already measured for some weights (the detector search's), not measured again;
    ``progress``: a progress bar over the weights."""
    from tqdm import tqdm

    targets = sorted({*LADDER, float(target_fa_per_hour)})
    rows, curves_of = [], []
    for weight in tqdm(weights, desc="keyword weights", disable=not progress, leave=False):
        points = (known or {}).get(weight) or heldout(
            runs, config, counts, targets, folds=folds, seed=seed, keyword_weight=weight
        )
        if points is None:
            raise ValueError("--keyword-weight auto needs at least two validation voices")
        rows.append({"keyword_weight": weight, **_heldout_row(points, target_fa_per_hour)})
        curves_of.append(points)
    best = _mark_best(rows)
    return float(weights[best]), rows, curves_of[best]


def _joint(runs: Sequence[Any], config: Any) -> dict[str, Any]:
    """All keywords on together under ``config``: recall, FA/h, per set, median delay."""
    from training.stream_eval import firings_as_found, score

    joint = score(runs, lambda run, c=config: firings_as_found(run, c), examples=0)
    return {
        "recall": joint["recall"],
        "fa_per_hour": joint["false_alarms_per_hour"],
        "sets": {k: v["false_alarms_per_hour"] for k, v in joint["sets"].items()},
        "delay_median_ms": joint["delay_ms"]["median"],
    }


def _operating_point(
    runs: Sequence[Any],
    config: Any,
    tables: dict[str, np.ndarray],
    budget: float,
    keyword_weight: float = KEYWORD_WEIGHT,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The per-keyword thresholds for ``budget`` false alarms (a count) under ``config``'s
    detector settings (``thresholds_for_budget``), and what they give with all keywords on
    (``_joint``)."""
    thresholds = thresholds_for_budget(tables, GRID, budget, keyword_weight)
    values = np.array([thresholds.get(label, math.inf) for label in config.labels])
    return thresholds, _joint(runs, dataclasses.replace(config, thresholds=values))


def search_detector(
    runs: Sequence[Any],
    base: Any,
    hours: float,
    target_fa_per_hour: float,
    candidates: Sequence[tuple[int, int, int, float] | tuple[int, int, int, float, int]],
    max_delay_ms: float = MAX_DELAY_MS,
    lookahead_ms: float = 0.0,
    keyword_weight: float = KEYWORD_WEIGHT,
    folds: int = 0,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Any, np.ndarray, list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Calibrate thresholds at ``target_fa_per_hour`` for every (smoothing, patience,
    background frames, background ceiling[, speech-gate frames]) of ``candidates`` (background
    0: none; speech gate 0: none, left out: ``base``'s); returns the winner
    (``base`` with those settings), its per-run curves (``run_curves``), one row per
    candidate and the winner's held-out points (``heldout`` over the ladder and the target at
    ``keyword_weight``; None without ``folds``), which ``calibrate`` keeps. The winner finds
    the most keywords at the target rate among the candidates whose median delay plus
    ``lookahead_ms`` (the model's look-ahead, which a stream run's detection times leave out)
    is within ``max_delay_ms``: held-out recall (``heldout`` read off at the target as
    ``choose_keyword_weight`` does) with ``folds``, else the recall measured on all voices
    (the first candidate on ties; the least delayed one when none is within). ``progress``:
    a progress bar over each candidate's curves."""
    targets = sorted({*LADDER, float(target_fa_per_hour)})
    rows, counts_of, heldout_of = [], [], []
    for i, (smoothing, patience, background, ceiling, *gate) in enumerate(candidates, start=1):
        config = dataclasses.replace(
            base,
            smoothing_frames=smoothing,
            patience_frames=patience,
            background_frames=background,
            background_ceiling=float(ceiling),
            speech_gate_frames=int(gate[0]) if gate else base.speech_gate_frames,
        )
        label = f"detector settings {i}/{len(candidates)}" if progress else None
        counts = run_curves(runs, config, config.keywords, progress=label)
        tables = _tables(counts.sum(axis=0), config.keywords)
        _, measured = _operating_point(
            runs, config, tables, target_fa_per_hour * hours, keyword_weight
        )
        row = {
            "smoothing_frames": smoothing,
            "patience_frames": patience,
            "background_frames": background,
            "background_ceiling": float(ceiling),
            "speech_gate_frames": config.speech_gate_frames,
            **measured,
        }
        points = None
        if folds:
            points = heldout(
                runs, config, counts, targets, folds=folds, seed=seed, keyword_weight=keyword_weight
            )
            row["heldout_recall_at_target"] = _recall_at(points or [], target_fa_per_hour)
        rows.append(row)
        counts_of.append((config, counts))
        heldout_of.append(points)
    key = "heldout_recall_at_target" if folds else "recall"
    delays = [r["delay_median_ms"] for r in rows]
    within = [i for i, d in enumerate(delays) if d is not None and d + lookahead_ms <= max_delay_ms]
    if within:
        best = max(within, key=lambda i: (rows[i][key] or 0.0, -i))
    else:
        best = min(range(len(rows)), key=lambda i: math.inf if delays[i] is None else delays[i])
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    config, counts = counts_of[best]
    return config, counts, rows, heldout_of[best]


def search_ensemble_weights(
    runs: Sequence[Sequence[Any]],
    candidates: Sequence[Sequence[float]],
    base: Any,
    target_fa_per_hour: float,
    *,
    posterior: str,
    folds: int,
    seed: int = 0,
    keyword_weight: float,
    progress: bool = False,
) -> tuple[tuple[float, ...], list[Any], list[dict[str, Any]]]:
    """The member weights among ``candidates`` whose runs, combined from the members' ``runs``
    (``ensemble_weights.combine_runs``; ``posterior``: the engine's sigmoid or softmax), find
    the most keywords at ``target_fa_per_hour`` on held-out voices (``heldout`` over the
    ladder under ``base``'s detector, read off at the target as ``choose_keyword_weight``
    does; the first on ties): its weights, its runs and one row per candidate. ``progress``:
    a progress bar over each candidate's curves."""
    from training.ensemble_weights import combine_runs

    if folds < 2:
        raise ValueError("--ensemble-weights chooses by the held-out estimate: --folds >= 2")
    targets = sorted({*LADDER, float(target_fa_per_hour)})
    rows, combined = [], []
    for i, weights in enumerate(candidates, start=1):
        candidate_runs = combine_runs(runs, weights, posterior)
        label = f"member weights {i}/{len(candidates)}" if progress else None
        counts = run_curves(candidate_runs, base, base.keywords, progress=label)
        points = heldout(candidate_runs, base, counts, targets, folds=folds, seed=seed,
                         keyword_weight=keyword_weight)  # fmt: skip
        if points is None:
            raise ValueError("--ensemble-weights needs at least two validation voices")
        row = {"weights": [float(w) for w in weights], **_heldout_row(points, target_fa_per_hour)}
        rows.append(row)
        combined.append(candidate_runs)
    best = _mark_best(rows)
    return tuple(float(w) for w in candidates[best]), combined[best], rows


def calibrate(
    checkpoint: str | Path,
    data: str | Path,
    target_fa_per_hour: float,
    *,
    out: str | Path | None = None,
    recordings: str | Path | None = None,
    split: str = "validation",
    seed: int = 0,
    max_voices: int | None = None,
    runtime: str = "auto",
    threads: int = 0,
    smoothing_ms: Sequence[float] = (),
    patience_ms: Sequence[float] = (),
    background_s: Sequence[float] = (),
    background_ceiling: Sequence[float] = (),
    speech_gate_ms: Sequence[float] = (),
    kinds: Sequence[str] = DEFAULT_KINDS,
    max_delay_ms: float = MAX_DELAY_MS,
    keyword_weight: float | str = KEYWORD_WEIGHT,
    folds: int = FOLDS,
    ensemble_weights: Sequence[Sequence[float]] = (),
    wake_word: str | None = None,
    grammar_target_fa_per_hour: float = GRAMMAR_TARGET_FA_PER_HOUR,
    progress: bool = True,
) -> dict[str, Any]:
    """Calibrate ``checkpoint`` (see the module docstring); writes it to ``out`` (default: in
    place) and returns the ``detector.calibration`` record. ``smoothing_ms``, ``patience_ms``
    and ``background_s`` (the background normalisation's time constant, 0: none): the
    detector search's values (empty: the checkpoint's own), rounded to whole frames.
    ``background_ceiling``: the background counts only posteriors up to it; searched like the
    others (empty: the checkpoint's own) and stored in the checkpoint when given; so is
    ``speech_gate_ms`` (the speech gate's other-speech length, 0: none). ``kinds``:
    the kinds of validation stream (``training.streams.KINDS``).
    ``keyword_weight``: see ``thresholds_for_budget``, or ``"auto"`` (``choose_keyword_weight``,
    after the detector search, which uses the default weight); ``folds``: voice folds of the
    held-out estimate (0: none). ``ensemble_weights``: for an ensemble, candidate member
    weights searched first (``training.ensemble_weights``; its own weights are always one);
    the winner is stored in the calibrated checkpoint. ``wake_word``: then calibrate the
    grammar too (``training.grammar_calibration``): the commands' sensitivity whose grammar meets
    ``grammar_target_fa_per_hour``, stored as ``detector.command_sensitivity``."""
    from models import load_checkpoint, save_checkpoint
    from training.stream_eval import run_engine
    from training.stream_report import load_engine, load_streams

    if not target_fa_per_hour > 0:
        raise ValueError(f"--target-fa-per-hour must be > 0, got {target_fa_per_hour}")
    for name, values in (("smoothing_ms", smoothing_ms), ("patience_ms", patience_ms)):
        if any(not v > 0 for v in values):
            raise ValueError(f"{name} must be > 0, got {list(values)}")
    if any(not v >= 0 for v in background_s):
        raise ValueError(f"background_s must be >= 0 (0: none), got {list(background_s)}")
    if any(not 0 < v <= 1 for v in background_ceiling):
        raise ValueError(f"background_ceiling must be in (0, 1], got {list(background_ceiling)}")
    if any(not v >= 0 for v in speech_gate_ms):
        raise ValueError(f"speech_gate_ms must be >= 0 (0: none), got {list(speech_gate_ms)}")
    if not kinds:
        raise ValueError("kinds: at least one kind of stream")
    auto = keyword_weight == "auto"
    if not auto and not (isinstance(keyword_weight, int | float) and 0 <= keyword_weight <= 1):
        raise ValueError(f"--keyword-weight must be in [0, 1] or auto, got {keyword_weight!r}")
    if folds < 0 or folds == 1:
        raise ValueError(f"--folds must be 0 (no held-out estimate) or at least 2, got {folds}")
    if auto and not folds:
        raise ValueError("--keyword-weight auto chooses by the held-out estimate: --folds >= 2")
    weight = KEYWORD_WEIGHT if auto else float(keyword_weight)
    if split == "test":
        raise ValueError("calibrate on validation streams; the test streams are for evaluation")
    if ensemble_weights and folds < 2:
        raise ValueError("--ensemble-weights chooses by the held-out estimate: --folds >= 2")
    if wake_word is not None and not grammar_target_fa_per_hour > 0:
        raise ValueError(
            f"--grammar-target-fa-per-hour must be > 0, got {grammar_target_fa_per_hour}"
        )
    started = time.monotonic()
    model, meta = load_checkpoint(checkpoint)
    meta = dict(meta)
    weight_candidates: list[tuple[float, ...]] = []  # the ensemble's own weights first
    if ensemble_weights:
        from training.ensemble_weights import normalised

        own = tuple(float(w) for w in getattr(model.config, "weights", ()))
        if not own:
            raise ValueError(f"{checkpoint}: --ensemble-weights needs an ensemble checkpoint")
        weight_candidates = normalised([own, *ensemble_weights], members=len(own))
    # searching weights, the ensemble itself never runs: its members do (no export needed)
    engine = load_engine(checkpoint, "torch" if ensemble_weights else runtime, threads)
    if wake_word is not None:
        engine.detector_config(wake_word=wake_word)  # ValueError for a label it does not know
    streams = load_streams(
        data, split, recordings=recordings, recordings_use="train", seed=seed,
        max_voices=max_voices, kinds=kinds,
    )  # fmt: skip
    base = engine.detector_config()
    member_weight_search: list[dict[str, Any]] = []
    if ensemble_weights:
        from training.ensemble_weights import member_runs, reweighted

        per_member = member_runs(model, meta, streams, runtime, threads, progress)
        chosen_weights, runs, member_weight_search = search_ensemble_weights(
            per_member, weight_candidates, base, float(target_fa_per_hour),
            posterior=engine.config.posterior, folds=folds, seed=seed, keyword_weight=weight,
            progress=progress,
        )  # fmt: skip
        model = reweighted(model, meta, chosen_weights)
    else:
        runs = run_engine(engine, streams, progress=progress)
    hours = sum(r.stream.scored_seconds for r in runs) / 3600
    search: list[dict[str, Any]] = []
    searched: list[dict[str, Any]] | None = None  # the search winner's held-out points
    lookahead_ms = engine.served.lookahead_frames * engine.frame_ms
    if smoothing_ms or patience_ms or background_s or background_ceiling or speech_gate_ms:
        backgrounds = [round(v * 1000 / engine.frame_ms) for v in background_s]
        ceilings = [float(c) for c in dict.fromkeys(background_ceiling)]
        gates = list(dict.fromkeys(round(v / engine.frame_ms) for v in speech_gate_ms))
        from streaming.detector import OTHER_SPEECH

        if any(gates) and OTHER_SPEECH not in engine.labels:
            raise ValueError(f"--speech-gate-ms needs a model with an {OTHER_SPEECH} label")
        candidates = [
            (s, p, b, c, g)
            for s in (_frames(smoothing_ms, engine.frame_ms) or [base.smoothing_frames])
            for p in (_frames(patience_ms, engine.frame_ms) or [base.patience_frames])
            for b in (list(dict.fromkeys(backgrounds)) or [base.background_frames])
            # without a background the ceiling does nothing: one candidate
            for c in ((ceilings if b else ceilings[:1]) or [base.background_ceiling])
            for g in (gates or [base.speech_gate_frames])
        ]
        base, counts, search, searched = search_detector(
            runs, base, hours, target_fa_per_hour, candidates, max_delay_ms, lookahead_ms,
            weight, folds=folds, seed=seed, progress=progress,
        )  # fmt: skip
    else:
        counts = run_curves(runs, base, base.keywords, progress="curves" if progress else None)
    tables = _tables(counts.sum(axis=0), base.keywords)
    targets = sorted({*LADDER, float(target_fa_per_hour)})
    weight_search: list[dict[str, Any]] = []
    known = {weight: searched} if searched else {}  # the search's, at this weight
    if auto:
        weight, weight_search, estimates = choose_keyword_weight(
            runs, base, counts, float(target_fa_per_hour), folds=folds, seed=seed, known=known,
            progress=progress,
        )  # fmt: skip
    elif folds:
        estimates = known.get(weight) or heldout(
            runs, base, counts, targets, folds=folds, seed=seed, keyword_weight=weight
        )
    else:
        estimates = None
    points = []
    for i, target in enumerate(targets):
        thresholds, joint = _operating_point(runs, base, tables, target * hours, weight)
        point = {
            "target_fa_per_hour": target,
            "thresholds": {k: round(v, 5) for k, v in thresholds.items()},
            "recall": joint["recall"],
            "fa_per_hour": joint["fa_per_hour"],
            "sets": joint["sets"],
        }
        if estimates is not None:
            point["heldout_recall"] = estimates[i]["recall"]
            point["heldout_fa_per_hour"] = estimates[i]["fa_per_hour"]
        points.append(point)
    chosen = next(p for p in points if p["target_fa_per_hour"] == float(target_fa_per_hour))
    record = {
        "target_fa_per_hour": float(target_fa_per_hour),
        "recall": chosen["recall"],
        "fa_per_hour": chosen["fa_per_hour"],
        "heldout": None
        if estimates is None
        else {
            "recall": chosen["heldout_recall"],
            "fa_per_hour": chosen["heldout_fa_per_hour"],
            "folds": int(voice_folds(runs, folds, seed).max()) + 1,
            "by": "voice",
        },
        "keyword_weight": weight,
        "method": "per-keyword hits and false alarms on a threshold grid, budget split by a "
        "Lagrange multiplier, each threshold pulled toward the vocabulary's shared one by "
        "keyword_weight in logit space; every point measured with all keywords on, and "
        "held out: thresholds picked on the other voice folds",
        "data": {
            "corpus": str(data),
            "split": split,
            "recordings": None if recordings is None else str(recordings),
            "recordings_use": "train",
            "seed": seed,
            "kinds": list(kinds),
            "streams": len(streams),
            "hours": round(hours, 3),
            "events": sum(len(s.events) for s in streams),
        },
        "detector": {
            "smoothing_frames": base.smoothing_frames,
            "patience_frames": base.patience_frames,
            "refractory_frames": base.refractory_frames,
            "rearm_fraction": base.rearm_fraction,
            "background_frames": base.background_frames,
            "background_floor": base.background_floor,
            "background_ceiling": base.background_ceiling,
            "speech_gate_frames": base.speech_gate_frames,
            "speech_gate_recent_frames": base.speech_gate_recent_frames,
        },
        "operating_points": points,
        "seconds": round(time.monotonic() - started, 1),
    }
    if weight_search:
        record["keyword_weight_search"] = {
            "rule": "the weight whose held-out curve has the best recall at the target FA/h",
            "candidates": weight_search,
        }
    if member_weight_search:
        record["ensemble_weight_search"] = {
            "rule": "the member weights whose held-out curve has the best recall at the target "
            "FA/h (the checkpoint's own weights first, kept on ties); each candidate's "
            "posteriors combined from the members' runs",
            "candidates": member_weight_search,
        }
    if search:
        record["detector_search"] = {
            "max_delay_ms": max_delay_ms,
            "lookahead_ms": lookahead_ms,
            "rule": f"best {'held-out ' if folds else ''}recall at the target among the "
            "candidates whose median delay after the keyword's end plus the look-ahead is within "
            "max_delay_ms",
            "candidates": search,
        }
    detector = dict(meta.get("detector") or {})
    earlier = (detector.get("calibration") or {}).get("grammar") or {}
    if "command_sensitivity" in earlier and detector.get("command_sensitivity") == earlier.get(
        "command_sensitivity"
    ):  # chosen on the old curve by an earlier --wake-word; one set by hand stays
        detector.pop("command_sensitivity", None)
    detector["thresholds"] = chosen["thresholds"]
    detector["smoothing_frames"] = base.smoothing_frames
    detector["patience_frames"] = base.patience_frames
    detector["background_frames"] = base.background_frames
    if background_ceiling:
        detector["background_ceiling"] = base.background_ceiling
    if speech_gate_ms:
        detector["speech_gate_frames"] = base.speech_gate_frames
    detector["calibration"] = record
    meta["detector"] = detector
    meta.pop("checkpoint", None)
    target_path = save_checkpoint(out or checkpoint, model, meta)
    if wake_word is not None:  # on the calibrated checkpoint: its thresholds are the wake word's
        grammar = calibrate_grammar(
            target_path, runs, data, wake_word, grammar_target_fa_per_hour, split=split,
            seed=seed, max_voices=max_voices, runtime=runtime, threads=threads,
            progress=progress,
        )  # fmt: skip
        record["grammar"] = grammar
        if grammar["command_sensitivity"] is None:
            detector.pop("command_sensitivity", None)
        else:
            detector["command_sensitivity"] = grammar["command_sensitivity"]
        record["seconds"] = round(time.monotonic() - started, 1)
        save_checkpoint(target_path, model, meta)
    return record


def register_calibrate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``calibrate`` to the ``lmukws`` subcommands."""
    p = subparsers.add_parser(
        "calibrate",
        help="per-keyword thresholds for a target of false alarms per hour",
        description="Pick per-keyword detection thresholds on validation streams so that the "
        "whole vocabulary meets --target-fa-per-hour, plus a ladder of operating points for "
        "start.sensitivity; store them in the checkpoint's metadata (detector.thresholds, "
        "detector.calibration).",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", required=True, type=Path, help="synthetic corpus (with continuous)")
    p.add_argument("--target-fa-per-hour", required=True, type=float)
    p.add_argument(
        "--out", type=Path, help="write the calibrated checkpoint here (default: in place)"
    )
    p.add_argument(
        "--recordings", type=Path, help="lmukws data recordings folder (its use=train speech)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-voices", type=int, help="first N voices only (a quick run)")
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--smoothing-ms",
        type=_number_list("ms"),
        default=(),
        help="search the detector's posterior smoothing too: comma-separated ms (10 ms frames)",
    )
    p.add_argument(
        "--patience-ms",
        type=_number_list("ms"),
        default=(),
        help="search the detector's patience (time above threshold) too: comma-separated ms",
    )
    p.add_argument(
        "--background-s",
        type=_number_list("seconds", zero=True),
        default=(),
        help="search the background normalisation too: comma-separated time constants in "
        "seconds (0: none), e.g. 0,30,100,300",
    )
    p.add_argument(
        "--background-ceiling",
        type=_ceilings,
        default=(),
        help="the background counts only posteriors up to this (default: the checkpoint's, "
        "0.5 unless set); lower keeps a keyword said clearly, again and again, from raising its "
        "own bar; comma-separated values are searched, e.g. 0.2,0.5 (with --kinds ...,repeats)",
    )
    p.add_argument(
        "--speech-gate-ms",
        type=_number_list("ms", zero=True),
        default=(),
        help="search the speech gate too: comma-separated ms of other speech after which "
        "keywords are held back for a second (0: off), e.g. 0,1500,2000",
    )
    p.add_argument(
        "--kinds",
        type=parse_kinds,
        default=DEFAULT_KINDS,
        help="comma-separated kinds of validation stream: mixed, negatives, repeats (a user "
        "repeating a command, so the search weighs repeated sayings); default mixed,negatives",
    )
    p.add_argument(
        "--max-delay-ms",
        type=float,
        default=MAX_DELAY_MS,
        help="the search keeps pairs whose median delay after the keyword's end, look-ahead "
        "included, is within this (default 150)",
    )
    p.add_argument(
        "--keyword-weight",
        type=_weight,
        default=KEYWORD_WEIGHT,
        help="how far each keyword's threshold goes from the vocabulary's shared one toward "
        f"its own (logit space; 1: per keyword alone, 0: one for all; default {KEYWORD_WEIGHT}),"
        f" or auto: the one of {', '.join(f'{w:g}' for w in WEIGHTS)} with the best held-out "
        "recall at the target",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=FOLDS,
        help=f"voice folds of each point's held-out recall and FA/h (0: none; default {FOLDS})",
    )
    p.add_argument(
        "--ensemble-weights",
        type=_candidates,
        default=(),
        help="an ensemble's member weights to search first, candidates separated by ';', e.g. "
        "'0.7,0.3;0.6,0.4' (its own weights are always one): each member runs once, the best "
        "held-out recall at the target wins and is stored",
    )
    p.add_argument(
        "--wake-word",
        help="calibrate the wake-word grammar too: on validation commands streams (this word, "
        "then a command), store as detector.command_sensitivity the loosest commands' point "
        "whose grammar meets --grammar-target-fa-per-hour (the default of sessions with any "
        "wake word)",
    )
    p.add_argument(
        "--grammar-target-fa-per-hour",
        type=float,
        default=GRAMMAR_TARGET_FA_PER_HOUR,
        help=f"the grammar's false alarms per hour (default {GRAMMAR_TARGET_FA_PER_HOUR:g})",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    return p


def _weight(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or auto, got {text!r}")
    return value


def _candidates(text: str) -> list[tuple[float, ...]]:
    from training.ensemble_weights import parse_candidates

    try:
        return parse_candidates(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number_list(unit: str, zero: bool = False) -> Any:
    """An argparse type: comma-separated ``unit`` values, positive (or >= 0 with ``zero``)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected comma-separated {unit}: {error}") from None
        if not values or any(not (v >= 0 if zero else v > 0) for v in values):
            what = f"{unit} >= 0 (0: none)" if zero else f"positive {unit}"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values

    return parse


def _ceilings(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated background ceilings in (0, 1]."""
    values = _number_list("ceilings")(text)
    if any(v > 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected ceilings in (0, 1], got {text!r}")
    return values


def _frames(values_ms: Sequence[float], frame_ms: float) -> list[int]:
    """Milliseconds as whole frames (at least one), duplicates dropped, in order."""
    return list(dict.fromkeys(max(1, round(v / frame_ms)) for v in values_ms))


@exits_2_on_bad_input
def _run(args: argparse.Namespace) -> int:
    record = calibrate(
        args.checkpoint,
        args.data,
        args.target_fa_per_hour,
        out=args.out,
        recordings=args.recordings,
        seed=args.seed,
        max_voices=args.max_voices,
        runtime=args.runtime,
        threads=args.threads,
        smoothing_ms=args.smoothing_ms,
        patience_ms=args.patience_ms,
        background_s=args.background_s,
        background_ceiling=args.background_ceiling,
        speech_gate_ms=args.speech_gate_ms,
        kinds=args.kinds,
        max_delay_ms=args.max_delay_ms,
        keyword_weight=args.keyword_weight,
        folds=args.folds,
        ensemble_weights=args.ensemble_weights,
        wake_word=args.wake_word,
        grammar_target_fa_per_hour=args.grammar_target_fa_per_hour,
        progress=not args.no_progress,
    )
    keys = ("target_fa_per_hour", "recall", "fa_per_hour", "heldout", "keyword_weight", "data")
    summary = {k: record[k] for k in keys}
    if "ensemble_weight_search" in record:
        summary["ensemble_weight_search"] = record["ensemble_weight_search"]["candidates"]
    if "keyword_weight_search" in record:
        summary["keyword_weight_search"] = record["keyword_weight_search"]["candidates"]
    if "detector_search" in record:
        summary["detector_search"] = record["detector_search"]["candidates"]
    if "grammar" in record:
        grammar = record["grammar"]
        summary["grammar"] = {
            **{k: grammar[k] for k in ("wake_word", "target_fa_per_hour", "command_sensitivity")},
            "points": [
                (p["parameter"], p["command_recall"], p["false_alarms_per_hour"])
                for p in grammar["points"]
            ],
        }
    summary["operating_points"] = [
        (p["target_fa_per_hour"], p["recall"], p["fa_per_hour"], p.get("heldout_fa_per_hour"))
        for p in record["operating_points"]
    ]
    print(json.dumps(summary, indent=1))
    return 0
