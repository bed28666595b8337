"""The wake-word grammar's calibration (``lmukws calibrate --wake-word W``): where the commands sit.

Under a wake word a command fires only in the window after the wake word has fired
(``streaming.detector``), so a false command needs a false wake word first: the commands can
take a looser point of the calibrated DET curve than the wake word (``start.command_sensitivity``).
Which point is a trade the checkpoint should make once, on validation data, not every user.

With the thresholds calibrated, ``calibrate_grammar`` runs the validation commands streams
(``training.streams.build_command_streams``: each validation voice says W, then one of its
other keywords) through the engine, and replays the grammar with the wake word at its default
point and the commands at each sensitivity of ``COMMAND_GRID`` over them (the recall of the
commands) and over the validation streams the thresholds were calibrated on (the grammar's false
alarms per hour). The loosest point whose false alarms meet the grammar's target is stored as
``detector.command_sensitivity``, the default of every session with a wake word (any wake word:
W stands for them); where even the wake word's own point misses the target, none is stored and
the commands keep the session's sensitivity.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.stream_report import SENSITIVITY_GRID

__all__ = [
    "COMMAND_GRID",
    "GRAMMAR_TARGET_FA_PER_HOUR",
    "calibrate_grammar",
    "choose_command_sensitivity",
]

#: the commands' points tried: from the wake word's default point (0.5) to the loosest
COMMAND_GRID = tuple(s for s in SENSITIVITY_GRID if s >= 0.5)
#: the grammar's default budget: the stream issue's target for a command recogniser
GRAMMAR_TARGET_FA_PER_HOUR = 2.0


def choose_command_sensitivity(
    points: Sequence[dict[str, Any]], target_fa_per_hour: float
) -> int | None:
    """Index of the loosest of ``points`` (``grammar_sweep`` rows, strict to loose) whose
    false alarms per hour meet ``target_fa_per_hour`` with every stricter point meeting it too
    (the first that misses ends the walk); None where the first misses."""
    chosen = None
    for i, point in enumerate(points):
        if point["false_alarms_per_hour"] > target_fa_per_hour:
            break
        chosen = i
    return chosen


def calibrate_grammar(
    checkpoint: str | Path,
    runs: Sequence[Any],
    data: str | Path,
    wake_word: str,
    target_fa_per_hour: float = GRAMMAR_TARGET_FA_PER_HOUR,
    *,
    split: str = "validation",
    seed: int = 0,
    max_voices: int | None = None,
    runtime: str = "auto",
    threads: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The grammar's record for ``checkpoint`` (calibrated: its thresholds are the wake word's
    default point): ``command_sensitivity`` (None: no point meets the target), the sweep's
    ``points`` and the data. ``runs``: the engine's runs of the validation streams the
    thresholds were calibrated on (their recorded posteriors; the grammar does not change
    them). ``calibrate`` checks ``wake_word`` and the target before its long runs."""
    from training.stream_eval import grammar_sweep
    from training.stream_report import commands_streams_summary, load_engine, run_commands_streams

    started = time.monotonic()
    engine = load_engine(checkpoint, runtime, threads)
    requests, command_runs = run_commands_streams(
        engine, data, split, wake_word, seed=seed, max_voices=max_voices, progress=progress
    )
    said = commands_streams_summary(requests)
    configs = [
        (c, engine.detector_config(wake_word=wake_word, command_sensitivity=c))
        for c in COMMAND_GRID
    ]
    points = grammar_sweep(runs, command_runs, configs)
    chosen = choose_command_sensitivity(points, target_fa_per_hour)
    for i, point in enumerate(points):
        point["chosen"] = i == chosen
    best = points[chosen] if chosen is not None else None
    return {
        "wake_word": wake_word,
        "target_fa_per_hour": float(target_fa_per_hour),
        "command_sensitivity": None if best is None else best["parameter"],
        "command_recall": None if best is None else best["command_recall"],
        "wake_recall": points[0]["wake_recall"],
        "fa_per_hour": None if best is None else best["false_alarms_per_hour"],
        "rule": "the wake word at its default point; the loosest commands' sensitivity whose "
        "grammar false alarms per hour on the validation streams meet the target (every "
        "stricter one meeting it too); none: the commands keep the session's sensitivity",
        "data": {
            "split": split,
            "seed": seed,
            "commands_streams": said["streams"],
            "commands": said["commands"],
            "commands_hours": round(said["hours"], 3),
            "hours": round(sum(r.stream.scored_seconds for r in runs) / 3600, 3),
        },
        "points": points,
        "seconds": round(time.monotonic() - started, 1),
    }
