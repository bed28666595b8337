"""``lmukws evaluate-streams CHECKPOINT --data CORPUS --out DIR``: the detector on streams.

Builds the test streams of the corpus's held-out voices (``training.streams``; plus real
recorded speech from ``--recordings``), runs them through the engine as the server does, and
writes to DIR:

- ``streams.json``: recall and false alarms per hour (overall, per set, per keyword) at the
  checkpoint's operating point, detection delay after the keyword's end (median, p90), what
  triggered each false alarm, the DET curve, and what the streams were;
- ``det.png``: miss rate against false alarms per hour, swept over the detector's threshold (or
  over ``sensitivity`` for a calibrated checkpoint), the operating point marked, and the curves
  of ``--compare`` reports beside it;
- ``det_by_voice.png``: the same sweep, each voice source's miss rate against the false alarms
  of all streams (how e.g. the neural voices fare as the detector is loosened);
- with ``--wake-word``, ``det_wake.png``: the wake-word grammar's curve, the miss rate of
  commands said right after the wake word (``training.streams.build_command_streams``) against
  the false alarms per hour of the same streams under the grammar, beside the plain detector's;
- ``README.md``: the same in tables.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.command_errors import exits_2_on_bad_input

__all__ = [
    "RECALL_AT_FA_PER_HOUR",
    "commands_streams_summary",
    "evaluate_streams",
    "plot_det",
    "plot_det_wake",
    "recall_at",
    "recall_at_rates",
    "register_evaluate_streams_parser",
    "run_commands_streams",
]

THRESHOLD_GRID = (
    0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999,
)  # fmt: skip
SENSITIVITY_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))
#: the commands' sensitivity of the grammar's second curve (``wake_word_result``)
LOOSE_COMMANDS = 1.0
#: ``training.streams.DEFAULT_KINDS`` (a test checks they agree), written out because this
#: module's parser must not import ``training.streams``: ``lmukws --help`` stays torch-free
DEFAULT_KINDS = ("mixed", "negatives")


def load_streams(
    data: str | Path,
    split: str,
    *,
    recordings: str | Path | None = None,
    recordings_use: str = "eval",
    seed: int = 0,
    max_voices: int | None = None,
    kinds: Sequence[str] = DEFAULT_KINDS,
) -> list[Any]:
    """The split's streams of ``kinds`` (``training.streams``), plus recorded negatives of
    ``recordings_use``."""
    from training.streams import build_streams, streams_from_recordings

    streams = build_streams(data, split, seed=seed, max_voices=max_voices, kinds=kinds)
    if recordings is not None:
        streams += streams_from_recordings(
            recordings, use=recordings_use, allow_eval=recordings_use == "eval", seed=seed
        )
    return streams


def load_engine(checkpoint: str | Path, runtime: str = "auto", threads: int = 0) -> Any:
    """The engine the server would build for ``checkpoint`` (its detector section applied)."""
    from models import read_metadata
    from streaming.engine import EngineConfig, StreamingEngine

    config = EngineConfig.from_metadata(
        read_metadata(checkpoint), runtime=runtime, torch_threads=threads, max_sessions=256
    )
    return StreamingEngine.from_checkpoint(checkpoint, config)


def evaluate_streams(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    recordings: str | Path | None = None,
    seed: int = 0,
    max_voices: int | None = None,
    runtime: str = "auto",
    threads: int = 0,
    wake_word: str | None = None,
    compare: Sequence[str | Path] = (),
    kinds: Sequence[str] = DEFAULT_KINDS,
    command_sensitivity: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the split's streams of ``kinds``; write the report to
    ``out``. ``wake_word``: also score its grammar (``wake_word_result``), with the commands
    at ``command_sensitivity`` (default: the checkpoint's, else the wake word's)."""
    if command_sensitivity is not None and wake_word is None:
        raise ValueError("--command-sensitivity is the commands' point under a --wake-word")
    from training.stream_eval import run_engine, score, sweep

    started = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = load_engine(checkpoint, runtime, threads)
    streams = load_streams(
        data, split, recordings=recordings, seed=seed, max_voices=max_voices, kinds=kinds
    )
    runs = run_engine(engine, streams, progress=progress)
    keywords = engine.detector_config().keywords
    result = score(runs, keywords=keywords)
    parameter, configs = det_configs(engine)
    det = sweep(runs, configs)
    report: dict[str, Any] = {
        "command": command_line(
            checkpoint,
            data,
            out,
            split=split,
            recordings=recordings,
            seed=seed,
            max_voices=max_voices,
            runtime=runtime,
            wake_word=wake_word,
            compare=compare,
            kinds=kinds,
            command_sensitivity=command_sensitivity,
        ),
        "checkpoint": shown_path(checkpoint),
        "model": engine.model_name,
        "runtime": engine.runtime,
        "split": split,
        "seed": seed,
        "calibrated": engine.sensitivity.calibrated,
        "operating_point": {
            "thresholds": engine.detector_config().keyword_thresholds,
            "detector": _detector_settings(engine.detector_config()),
            "calibration": (engine.metadata.get("detector") or {}).get("calibration"),
        },
        **result,
        "det": {
            "parameter": parameter,
            "points": det,
            "recall_at": recall_at_rates(det),
            "recall_at_by_voice": recall_at_rates_by_voice(det),
        },
        "streams": [s.describe() for s in streams],
        "data": {
            "corpus": shown_path(data),
            "recordings": None if recordings is None else shown_path(recordings),
        },
    }
    if wake_word is not None:
        report["wake_word"] = wake_word_result(
            engine, runs, data, split, wake_word, seed=seed, max_voices=max_voices,
            command_sensitivity=command_sensitivity, progress=progress,
        )  # fmt: skip
    report["seconds"] = round(time.monotonic() - started, 1)
    (out / "streams.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    others = [_load_curve(Path(c)) for c in compare]
    plot_det(report, out / "det.png", others)
    plot_det_by_voice(report, out / "det_by_voice.png")
    if wake_word is not None:
        plot_det_wake(report, out / "det_wake.png")
    (out / "README.md").write_text(markdown(report, others), encoding="utf-8")
    return report


def det_configs(
    engine: Any, wake_word: str | None = None, command_sensitivity: float | None = None
) -> tuple[str, list[tuple[float, Any]]]:
    """The DET sweep's parameter and detector configs: the sensitivity ladder of a calibrated
    checkpoint, else one threshold for every keyword; ``wake_word``: with its grammar. With
    commands at a sensitivity of their own (``command_sensitivity``, else the engine's
    default), only the wake word moves along the ladder (calibrated or not)."""
    from training.stream_eval import threshold_configs

    if wake_word is not None and command_sensitivity is None:
        command_sensitivity = engine.config.command_sensitivity
    if engine.sensitivity.calibrated or command_sensitivity is not None:

        def config(s: float) -> Any:
            return engine.detector_config(
                sensitivity=s, wake_word=wake_word, command_sensitivity=command_sensitivity
            )

        name = "sensitivity" if command_sensitivity is None else "wake-word sensitivity"
        return name, [(s, config(s)) for s in SENSITIVITY_GRID]
    return "threshold", threshold_configs(
        engine.detector_config(wake_word=wake_word), THRESHOLD_GRID
    )


def wake_word_result(
    engine: Any,
    runs: Sequence[Any],
    data: str | Path,
    split: str,
    wake_word: str,
    *,
    seed: int = 0,
    max_voices: int | None = None,
    command_sensitivity: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The wake-word grammar, run through the engine as a session with ``wake_word`` (and
    ``command_sensitivity``) sees it:

    - on the evaluation's own streams: its false alarms, and a recall over every keyword
      event there, most of which no wake word precedes; replayed over the posteriors of
      ``runs``, the engine's run of those streams (the grammar does not change the posteriors, and
      the replay gives the engine's detections: tests/training/test_streams.py);
    - ``commands``: on the split's commands streams (``build_command_streams``: the wake word,
      then a command), the recall of the commands (``recall_by["context:command"]``) and of the
      wake word;
    - ``det``: the grammar's sweep (``det_configs``, ``stream_eval.grammar_sweep``) over the
      recorded posteriors of ``runs`` (the grammar does not change them) and of the commands;
      ``loose_commands``: the same with the commands at sensitivity ``LOOSE_COMMANDS``, only
      the wake word moving (``start.command_sensitivity``).
    """
    from training.stream_eval import (
        command_false_alarms_per_hour,
        firings_as_found,
        grammar_sweep,
        score,
    )

    if command_sensitivity is None:  # the engine's default, what a session gets
        command_sensitivity = engine.config.command_sensitivity
    grammar = {"wake_word": wake_word, "command_sensitivity": command_sensitivity}
    session = engine.detector_config(**grammar)
    requests, command_runs = run_commands_streams(
        engine, data, split, wake_word, seed=seed, max_voices=max_voices, session=grammar,
        progress=progress,
    )  # fmt: skip
    parameter, configs = det_configs(engine, wake_word, command_sensitivity)
    points = grammar_sweep(runs, command_runs, configs)
    det: dict[str, Any] = {"parameter": parameter, "points": points}
    if command_sensitivity != LOOSE_COMMANDS:  # the same ladder, the commands at the loosest
        _, configs = det_configs(engine, wake_word, LOOSE_COMMANDS)
        det["loose_commands"] = grammar_sweep(runs, command_runs, configs)
    heard = score(
        runs, lambda run: firings_as_found(run, session), keywords=session.keywords, examples=50
    )
    return {
        "word": wake_word,
        "command_sensitivity": command_sensitivity,
        **heard,
        "command_false_alarms_per_hour": command_false_alarms_per_hour(heard, session),
        "commands": {
            **commands_streams_summary(requests),
            **score(command_runs, keywords=session.keywords, examples=20),
        },
        "det": det,
    }


def run_commands_streams(
    engine: Any,
    data: str | Path,
    split: str,
    wake_word: str,
    *,
    seed: int = 0,
    max_voices: int | None = None,
    session: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[list[Any], list[Any]]:
    """The split's commands streams (``training.streams.build_command_streams``) and the
    engine's runs of them (``stream_eval.run_engine``, sessions opened with ``session``'s
    options, e.g. the grammar; the posteriors do not depend on them)."""
    from training.stream_eval import run_engine
    from training.streams import build_command_streams

    requests = build_command_streams(data, split, wake_word, seed=seed, max_voices=max_voices)
    return requests, run_engine(engine, requests, progress=progress, **(session or {}))


def commands_streams_summary(requests: Sequence[Any]) -> dict[str, Any]:
    """How many commands streams, commands said in them, and hours of audio."""
    return {
        "streams": len(requests),
        "commands": sum(e.context == "command" for r in requests for e in r.events),
        "hours": sum(r.seconds for r in requests) / 3600,
    }


def shown_path(path: str | Path) -> str:
    """``path`` as a report shows it: relative to the working directory when inside it (so a
    committed report names repository paths, not one machine's), else as given."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def command_line(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    recordings: str | Path | None = None,
    seed: int = 0,
    max_voices: int | None = None,
    runtime: str = "auto",
    wake_word: str | None = None,
    compare: Sequence[str | Path] = (),
    kinds: Sequence[str] = DEFAULT_KINDS,
    command_sensitivity: float | None = None,
) -> str:
    """The ``lmukws evaluate-streams`` command that writes this report (every option that
    changes it; the thread count does not)."""
    parts = [
        "lmukws evaluate-streams",
        shown_path(checkpoint),
        f"--data {shown_path(data)}",
        f"--split {split}",
    ]
    if recordings is not None:
        parts.append(f"--recordings {shown_path(recordings)}")
    if seed:
        parts.append(f"--seed {seed}")
    if max_voices is not None:
        parts.append(f"--max-voices {max_voices}")
    if runtime != "auto":
        parts.append(f"--runtime {runtime}")
    if wake_word is not None:
        parts.append(f"--wake-word {wake_word}")
    if command_sensitivity is not None:
        parts.append(f"--command-sensitivity {command_sensitivity:g}")
    if tuple(kinds) != DEFAULT_KINDS:
        parts.append(f"--kinds {','.join(kinds)}")
    parts += [f"--compare {shown_path(c)}" for c in compare]
    parts.append(f"--out {shown_path(out)}")
    return " ".join(parts)


#: False-alarm rates at which a report reads recall off its DET curve (equal-FA comparisons).
RECALL_AT_FA_PER_HOUR = (20.0, 50.0, 100.0)


def recall_at(points: Sequence[dict[str, Any]], fa_per_hour: float) -> float | None:
    """Recall at ``fa_per_hour`` read off a DET curve (``sweep``'s points): interpolated in
    log FA/h between the two operating points around it, the better recall where several have
    the same FA/h; None where the curve does not reach that rate (it starts above or ends
    below it), since recall there is not measured."""
    best: dict[float, float] = {}
    for p in points:
        fa, recall = p.get("false_alarms_per_hour"), p.get("recall")
        if fa is None or recall is None:
            continue
        best[float(fa)] = max(float(recall), best.get(float(fa), 0.0))
    curve = sorted(best.items())
    if not curve or not curve[0][0] <= fa_per_hour <= curve[-1][0]:
        return None
    for (fa0, r0), (fa1, r1) in itertools.pairwise(curve):
        if fa0 <= fa_per_hour <= fa1:
            if fa1 == fa0:
                return max(r0, r1)
            # from zero false alarms there is no log scale: linear there
            w = math.log(fa_per_hour / fa0) / math.log(fa1 / fa0) if fa0 > 0 else fa_per_hour / fa1
            return r0 + w * (r1 - r0)
    return curve[0][1]  # a curve of one rate, asked for exactly that rate


def recall_at_rates(points: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Recall at each of ``RECALL_AT_FA_PER_HOUR`` on a DET curve, keyed by the rate ("20")."""
    return {f"{t:g}": recall_at(points, t) for t in RECALL_AT_FA_PER_HOUR}


def recall_at_rates_by_voice(points: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """Per voice source, its recall at each of ``RECALL_AT_FA_PER_HOUR`` (the false alarms of
    all streams, where the sensitivity is set): how each kind of voice fares as the detector
    is loosened. Empty for curves measured before sweeps kept ``recall_by_voice``."""
    return {
        source: recall_at_rates(
            [{**p, "recall": (p.get("recall_by_voice") or {}).get(source)} for p in points]
        )
        for source in voice_sources(points)
    }


def voice_sources(points: Sequence[dict[str, Any]]) -> list[str]:
    """The voice sources whose recall a DET curve's points keep, sorted."""
    return sorted({v for p in points for v in p.get("recall_by_voice") or {}})


def _recall_by_lines(r: dict[str, Any]) -> list[str]:
    """One sentence per kind of condition: "Recall by context: alone 0.41, ..."."""
    groups: dict[str, list[str]] = {}
    for key, value in r.get("recall_by", {}).items():
        kind, name = key.split(":", 1)
        if kind != "voice":
            groups.setdefault(kind, []).append(f"{name} {value:.3f}")
    lines: list[str] = []
    for kind, parts in groups.items():
        lines += ["", f"Recall by {kind}: {', '.join(parts)}."]
    return lines


def _voice_table(r: dict[str, Any]) -> list[str]:
    """Recall and false alarms per voice source (synthesiser engine, or recorded speech): how
    the model meets voices of each kind, e.g. the neural voices against the formant ones."""
    from training.stream_eval import recall_by_voice

    fas = r.get("false_alarms_by_voice") or {}
    recalls = recall_by_voice(r)
    if not fas and not recalls:
        return []
    lines = [
        "",
        "By voice source (synthesiser engine of the held-out voice, or recorded speech):",
        "",
        "| voice source | recall | false alarms | hours | FA/h |",
        "|---|---|---|---|---|",
    ]
    for source in sorted(set(fas) | set(recalls)):
        f = fas.get(source, {})
        lines.append(
            f"| {source} | {_fmt(recalls.get(source))} | {f.get('false_alarms', '')} | "
            f"{_fmt(f.get('hours'), 2)} | {_fmt(f.get('false_alarms_per_hour'), 1)} |"
        )
    return lines


def _load_curve(folder: Path) -> dict[str, Any]:
    path = folder / "streams.json" if folder.is_dir() else folder
    if not path.is_file():
        raise FileNotFoundError(f"--compare {folder}: no streams.json there")
    report = json.loads(path.read_text(encoding="utf-8"))
    report["folder"] = shown_path(path.parent)
    return report


def _label(report: dict[str, Any]) -> str:
    """The model and checkpoint file; a compared report also names its folder (one checkpoint
    may be compared with itself under other thresholds)."""
    folder = f", {report['folder']}" if report.get("folder") else ""
    return f"{report['model']} ({Path(report['checkpoint']).name}{folder})"


def plot_det(report: dict[str, Any], path: Path, others: Sequence[dict[str, Any]] = ()) -> Path:
    """Miss rate against false alarms per hour (log), one curve per report."""
    from training.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, r in enumerate([report, *others]):
        pts, fa = _measured(r["det"]["points"])
        miss = [p["miss_rate"] for p in pts]
        line = ax.plot(fa, miss, marker=".", label=_label(r), linestyle="-" if i == 0 else "--")
        if r.get("false_alarms_per_hour") is not None:
            ax.plot(
                max(r["false_alarms_per_hour"], 0.1),
                1 - r["recall"],
                marker="*",
                markersize=14,
                color=line[0].get_color(),
                label=f"operating point: recall {r['recall']:.3f}, "
                f"{r['false_alarms_per_hour']:.1f} FA/h",
            )
    title = f"DET on {report['split']} streams, held-out voices"
    return _save_det(plt, fig, ax, path, "miss rate (keyword events)", title)


def plot_det_wake(report: dict[str, Any], path: Path) -> Path | None:
    """The wake-word grammar's DET curve (miss rate of the commands said after the wake word)
    beside the plain detector's (of every keyword event), both against the false alarms per
    hour of the evaluation's streams (log); None (no file) without a grammar result."""
    wake = report.get("wake_word") or {}
    if "det" not in wake:
        return None
    from training.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    pts, fa = _measured(report["det"]["points"])
    ax.plot(fa, [p["miss_rate"] for p in pts], marker=".", label="every keyword, no grammar")
    fa, miss = _command_misses(wake["det"]["points"])
    line = ax.plot(fa, miss, marker=".", label=f"commands after {wake['word']!r}, with the grammar")
    recall = wake["commands"]["recall_by"].get("context:command")
    if recall is not None and wake.get("false_alarms_per_hour") is not None:
        ax.plot(
            max(wake["false_alarms_per_hour"], 0.1), 1 - recall, marker="*", markersize=14,
            color=line[0].get_color(),
            label=f"operating point: command recall {recall:.3f}, "
            f"{wake['false_alarms_per_hour']:.1f} FA/h",
        )  # fmt: skip
    if wake["det"].get("loose_commands"):
        fa, miss = _command_misses(wake["det"]["loose_commands"])
        ax.plot(fa, miss, marker=".", linestyle="--",
                label=f"the same, commands at sensitivity {LOOSE_COMMANDS:g}")  # fmt: skip
    fa, miss = _command_misses(wake["det"]["points"], "command_false_alarms_per_hour")
    if len(fa):  # reports from before the commands' own rate: no such curve
        ax.plot(fa, miss, marker=".", linestyle=":", color=line[0].get_color(),
                label="the grammar, counting only the commands' false alarms")  # fmt: skip
    title = f"{report['model']}: wake-word grammar, {report['split']} streams"
    return _save_det(plt, fig, ax, path, "miss rate", title)


def _command_misses(
    points: Sequence[dict[str, Any]], rate: str = "false_alarms_per_hour"
) -> tuple[np.ndarray, list[float]]:
    """A grammar curve's x (``_measured``'s FA/h, of ``rate``) and its commands' miss rates
    (nan: none)."""
    pts, fa = _measured(points, rate)
    return fa, [np.nan if p["command_recall"] is None else 1 - p["command_recall"] for p in pts]


def plot_det_by_voice(report: dict[str, Any], path: Path) -> Path | None:
    """Miss rate of each voice source's keywords against the false alarms per hour of all
    streams (log), one curve per source; None (no file) for a curve without the split."""
    sources = voice_sources(report["det"]["points"])
    if not sources:
        return None
    from training.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    pts, fa = _measured(report["det"]["points"])
    for source in sources:
        recall = [(p.get("recall_by_voice") or {}).get(source) for p in pts]
        miss = [np.nan if r is None else 1 - r for r in recall]
        ax.plot(fa, miss, marker=".", label=source)
    ax.plot(fa, [p["miss_rate"] for p in pts], color="black", linestyle="--", label="all")
    title = f"{_label(report)}: DET by voice source, {report['split']} streams"
    return _save_det(plt, fig, ax, path, "miss rate (keyword events of the source)", title)


def _measured(
    points: Sequence[dict[str, Any]], rate: str = "false_alarms_per_hour"
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The DET points with a measured FA/h (``rate``: which), and their x values (0 drawn at
    0.1 on log axes)."""
    pts = [p for p in points if p.get(rate) is not None]
    return pts, np.maximum([p[rate] for p in pts], 0.1)


def _save_det(plt: Any, fig: Any, ax: Any, path: Path, ylabel: str, title: str) -> Path:
    """A DET plot's axes (log FA/h against a miss rate), written to ``path``."""
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (all streams; 0 drawn at 0.1)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _voice_det_lines(r: dict[str, Any]) -> list[str]:
    """Recall of each voice source at 20/50/100 FA/h of all streams, with its plot."""
    by_voice = recall_at_rates_by_voice(r["det"]["points"])
    if not by_voice:
        return []
    lines = [
        "",
        "Recall by voice source at equal false-alarm rates of all streams (the DET curve read "
        "per source; — where the curve does not reach the rate):",
        "",
        "![DET by voice source](det_by_voice.png)",
        "",
        "| voice source | " + " | ".join(f"at {t:g} FA/h" for t in RECALL_AT_FA_PER_HOUR) + " |",
        "|---|" + "---|" * len(RECALL_AT_FA_PER_HOUR),
    ]
    for source, at in by_voice.items():
        lines.append(f"| {source} | " + " | ".join(_fmt(v) for v in at.values()) + " |")
    return lines


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _wake_word_lines(w: dict[str, Any]) -> list[str]:
    """The wake-word grammar's paragraph: false alarms on the streams, command recall on the
    commands streams, and its sweep (reports written before the commands streams: the first
    line only)."""
    false_commands = false_commands_phrase(w)
    lines = [
        "",
        f"With the wake-word grammar (`wake_word: {w['word']}`, default command window"
        + (
            f", commands at sensitivity {w['command_sensitivity']:g}"
            if w.get("command_sensitivity") is not None
            else ""
        )
        + "): "
        f"{_fmt(w['false_alarms_per_hour'], 1)} FA/h ({_per_set(w)}"
        + (f"; {false_commands}" if false_commands else "")
        + "); recall over every keyword event of these streams, most of which no wake word "
        f"precedes, {_fmt(w['recall'])}.",
    ]
    if "commands" not in w:
        return lines
    c = w["commands"]
    by = c["recall_by"]
    loose = bool(w["det"].get("loose_commands"))
    lines += [
        "",
        f"Commands after the wake word ({c['streams']} commands streams, {c['hours']:.2f} h: "
        f"each voice says {w['word']!r}, then after 0.2-0.8 s one of its other keywords, every "
        f"keyword in turn, over the mixed streams' backgrounds): command recall "
        f"**{_fmt(by.get('context:command'))}** of {c['commands']} commands, wake word "
        f"{_fmt(by.get('context:wake'))}; "
        f"{c['false_alarms']} false alarms there. The grammar's DET curve ([det_wake.png]"
        "(det_wake.png)): command recall against the false alarms per hour of the streams "
        "above"
        + (
            f"; beside it, the same wake-word points with the commands at sensitivity "
            f"{LOOSE_COMMANDS:g} (`command_sensitivity`), replayed."
            if loose
            else "."
        ),
        "",
        f"| {w['det']['parameter']} | command recall | wake-word recall | FA/h | of them "
        "commands | "
        + " | ".join(w["det"]["points"][0]["sets"])
        + " |"
        + (f" commands at {LOOSE_COMMANDS:g}: recall | FA/h | of them commands |" if loose else ""),
        "|---|---|---|---|---|"
        + "---|" * len(w["det"]["points"][0]["sets"])
        + "---|---|---|" * loose,
    ]
    for i, p in enumerate(w["det"]["points"]):
        sets = " | ".join(_fmt(v, 1) for v in p["sets"].values())
        row = (
            f"| {p['parameter']:g} | {_fmt(p['command_recall'])} | {_fmt(p['wake_recall'])} | "
            f"{_fmt(p['false_alarms_per_hour'], 1)} | "
            f"{_fmt(p.get('command_false_alarms_per_hour'), 1)} | {sets} |"
        )
        if loose:
            q = w["det"]["loose_commands"][i]
            row += (
                f" {_fmt(q['command_recall'])} | {_fmt(q['false_alarms_per_hour'], 1)} | "
                f"{_fmt(q.get('command_false_alarms_per_hour'), 1)} |"
            )
        lines.append(row)
    return lines


def false_commands_phrase(grammar: dict[str, Any]) -> str:
    """How many of a wake-word grammar's false alarms per hour are commands ("" for a report
    from before that was counted)."""
    rate = grammar.get("command_false_alarms_per_hour")
    if rate is None:
        return ""
    return f"{rate:.1f} of them commands, the rest the wake word's own"


def _per_set(result: dict[str, Any]) -> str:
    sets = result["sets"].items()
    return ", ".join(f"{k}: {_fmt(v['false_alarms_per_hour'], 1)} FA/h" for k, v in sets)


def _detector_settings(config: Any) -> dict[str, Any]:
    """The detector settings a run used besides its thresholds."""
    names = ("smoothing_frames", "patience_frames", "refractory_frames", "rearm_fraction",
             "background_frames", "background_floor", "background_ceiling")  # fmt: skip
    return {name: getattr(config, name) for name in names}


def _detector_line(r: dict[str, Any]) -> list[str]:
    """The run's smoothing, patience and background normalisation, in words (runs measured
    before reports kept them: the calibration's record, else nothing)."""
    point = r.get("operating_point") or {}
    d = point.get("detector") or (point.get("calibration") or {}).get("detector")
    if not d:
        return []
    frames = d.get("background_frames") or 0
    background = "no background normalisation"
    if frames:
        limits = f"floor {d.get('background_floor', 1e-3):g}"
        if "background_ceiling" in d:
            limits += f", posteriors up to {d['background_ceiling']:g} counted"
        background = f"background normalisation with a {frames / 100:g} s time constant ({limits})"
    return [
        "",
        f"Detector: smoothing {d['smoothing_frames']} frames, patience "
        f"{d['patience_frames']} frames, {background}.",
    ]


def _calibration_lines(r: dict[str, Any]) -> list[str]:
    """What the calibration expected at this operating point: on its own validation streams
    and, held out, on voices whose thresholds came from the others (to set beside this run)."""
    c = (r.get("operating_point") or {}).get("calibration")
    if not c:
        return []
    text = (
        f"Calibrated to {_fmt(c.get('target_fa_per_hour'), 1)} FA/h on "
        f"{_fmt(c.get('data', {}).get('hours'), 2)} h of validation streams: there recall "
        f"{_fmt(c.get('recall'))} at {_fmt(c.get('fa_per_hour'), 1)} FA/h"
    )
    held = c.get("heldout")
    if held:
        text += (
            f"; held out by voice ({held['folds']} folds) recall {_fmt(held.get('recall'))} at "
            f"{_fmt(held.get('fa_per_hour'), 1)} FA/h"
        )
    return ["", text + "."]


def markdown(report: dict[str, Any], others: Sequence[dict[str, Any]] = ()) -> str:
    """The report as a page: operating point, sets, keywords, triggers, DET points."""
    r = report
    lines = [
        f"# Streams: {_label(r)}",
        "",
        f"`{r['command']}`",
        "",
        f"Runtime {r['runtime']}; {'calibrated' if r['calibrated'] else 'uncalibrated'} "
        f"thresholds; {len(r['streams'])} streams, {r['hours']:.2f} scored hours, "
        f"{r['events']} keyword events; {r['seconds']:.0f} s.",
        *_calibration_lines(r),
        *_detector_line(r),
        "",
        "| | recall | false alarms | hours | FA/h | delay median / p90 (ms) |",
        "|---|---|---|---|---|---|",
        f"| all | {_fmt(r['recall'])} | {r['false_alarms']} | {r['hours']:.2f} | "
        f"{_fmt(r['false_alarms_per_hour'], 1)} | {_fmt(r['delay_ms']['median'], 0)} / "
        f"{_fmt(r['delay_ms']['p90'], 0)} |",
    ]
    for name, s in r["sets"].items():
        lines.append(
            f"| {name} | | {s['false_alarms']} | {s['hours']:.2f} | "
            f"{_fmt(s['false_alarms_per_hour'], 1)} | |"
        )
    if "wake_word" in r:
        lines += _wake_word_lines(r["wake_word"])
    lines += _recall_by_lines(r)
    lines += _voice_table(r)
    lines += [
        "",
        "False alarms by kind: " + ", ".join(f"{k} {v}" for k, v in r["false_alarm_kinds"].items()),
    ]
    lines += [
        "",
        "What was playing: " + ", ".join(f"{k} {v}" for k, v in r["false_alarm_triggers"].items()),
    ]
    lines += [
        "",
        "## Per keyword",
        "",
        "| keyword | events | recall | false alarms | FA/h |",
        "|---|---|---|---|---|",
    ]
    for k, v in sorted(r["per_keyword"].items(), key=lambda kv: -(kv[1]["false_alarms"])):
        lines.append(
            f"| {k} | {v['events']} | {_fmt(v['recall'])} | {v['false_alarms']} | "
            f"{_fmt(v['false_alarms_per_hour'], 1)} |"
        )
    lines += [
        "",
        f"## DET curve ({r['det']['parameter']})",
        "",
        "![DET](det.png)",
        "",
        f"| {r['det']['parameter']} | recall | FA/h | " + " | ".join(r["sets"]) + " |",
        "|---|---|---|" + "---|" * len(r["sets"]),
    ]
    for p in r["det"]["points"]:
        lines.append(
            f"| {p['parameter']} | {_fmt(p['recall'])} | {_fmt(p['false_alarms_per_hour'], 1)} | "
            + " | ".join(_fmt(p["sets"].get(k), 1) for k in r["sets"])
            + " |"
        )
    lines += ["", "Recall at equal false-alarm rates, read off the DET curve (interpolated in "
              "log FA/h; — where the curve does not reach the rate):", "",
              "| model | " + " | ".join(f"at {t:g} FA/h" for t in RECALL_AT_FA_PER_HOUR) + " |",
              "|---|" + "---|" * len(RECALL_AT_FA_PER_HOUR)]  # fmt: skip
    for o in [r, *others]:
        at = recall_at_rates(o["det"]["points"])
        lines.append(f"| {_label(o)} | " + " | ".join(_fmt(v) for v in at.values()) + " |")
    lines += _voice_det_lines(r)
    for o in others:
        lines += ["", f"Compared with {_label(o)}: recall {_fmt(o['recall'])} at "
                  f"{_fmt(o['false_alarms_per_hour'], 1)} FA/h (its operating point)."]  # fmt: skip
    examples = r.get("false_alarm_examples") or []
    if examples:
        lines += [
            "",
            "## First false alarms",
            "",
            "| stream | time (s) | keyword | score | kind | during |",
            "|---|---|---|---|---|---|",
        ]
        for e in examples[:40]:
            text = (e["text"] or "")[:60]
            lines.append(
                f"| {e['stream']} | {e['time_s']} | {e['keyword']} | {e['score']} | {e['kind']} | "
                f"{e['segment']}: {text} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- CLI


def register_evaluate_streams_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate-streams`` to the ``lmukws`` subcommands."""
    p = subparsers.add_parser(
        "evaluate-streams",
        help="recall and false alarms per hour on long streams of held-out voices",
        description="Build long test streams from a corpus's held-out voices (keywords alone, "
        "in phrases and in sequences, unknown words, sentences, backgrounds) and, with "
        "--recordings, real speech without keywords; run them through the engine as the "
        "server does; write streams.json, det.png, det_by_voice.png and README.md to --out.",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", required=True, type=Path, help="synthetic corpus (with continuous)")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--split", default="test", choices=("validation", "test"))
    p.add_argument("--recordings", type=Path, help="lmukws data recordings folder (eval speech)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-voices", type=int, help="first N voices only (a quick run)")
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument(
        "--wake-word",
        help="also score the wake-word grammar with this wake word: its false alarms on the "
        "streams, and the recall of commands said right after it (commands streams)",
    )
    p.add_argument(
        "--command-sensitivity",
        type=float,
        default=None,
        metavar="S",
        help="with --wake-word: the commands' point on the calibrated DET curve, 0..1 "
        "(default: the checkpoint's, else the wake word's sensitivity)",
    )
    p.add_argument(
        "--compare", action="append", default=[], type=Path, help="another report to overlay"
    )
    p.add_argument(
        "--kinds",
        type=parse_kinds,
        default=DEFAULT_KINDS,
        help="comma-separated kinds of stream: mixed, negatives, repeats (a user repeating "
        "a command); default mixed,negatives",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    return p


def parse_kinds(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated kinds of stream (``training.streams.KINDS``)."""
    from training.streams import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        raise argparse.ArgumentTypeError(f"expected kinds among {list(KINDS)}, got {text!r}")
    return kinds


@exits_2_on_bad_input
def _run(args: argparse.Namespace) -> int:
    report = evaluate_streams(
        args.checkpoint,
        args.data,
        args.out,
        split=args.split,
        recordings=args.recordings,
        seed=args.seed,
        max_voices=args.max_voices,
        runtime=args.runtime,
        threads=args.threads,
        wake_word=args.wake_word,
        compare=args.compare,
        kinds=args.kinds,
        command_sensitivity=args.command_sensitivity,
        progress=not args.no_progress,
    )
    summary = {k: report[k] for k in ("recall", "false_alarms_per_hour", "hours", "events")}
    summary["sets"] = {k: v["false_alarms_per_hour"] for k, v in report["sets"].items()}
    summary["delay_ms"] = report["delay_ms"]
    print(json.dumps(summary, indent=1))
    print(f"report: {args.out}", file=sys.stderr)
    return 0
