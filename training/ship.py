"""``lmukws ship-checkpoint``: turn a trained checkpoint and its evaluation report into a shipped
default model in ``models/checkpoints/``: the weights with trimmed metadata (the held-out test
metrics merged in), the evaluation report beside it, and a model card.

    lmukws ship-checkpoint data/runs/lmuformer-synth/best.safetensors \\
        --report reports/lmuformer-synth --name lmuformer

writes ``models/checkpoints/lmuformer.safetensors``, ``models/checkpoints/lmuformer.md`` and
``models/checkpoints/reports/lmuformer/`` (README, metrics, per-class table, plots).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.backgrounds import DEFAULT_BACKGROUNDS
from training.voices import DEFAULT_ENGINES

REPORT_FILES = (
    "README.md",
    "metrics.json",
    "per_class.md",
    "confusion.png",
    "accuracy_vs_frames.json",
    "accuracy_vs_frames.png",
    "per_voice.md",
    "per_voice.png",
    "real_speech_dev.md",
    "real_speech_dev.csv",
)
# Large per-voice / per-word listings of corpus.json that the shipped metadata leaves out (they
# stay in the corpus folder); the counts and engines stay.
CORPUS_KEYS_DROPPED = ("speakers", "voices", "unknown_words", "skipped_voices", "failed_clips")
BARS = {"lmuformer": 0.97, "spiking-lmuformer": 0.95}
#: the training configs the model card's commands name (training/configs/<run folder name>.json)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CORPUS = "data/synth"  # the corpus of a stage whose record names none (``data synth``)
SHIPPED_FROM = "; shipped from "  # ends a shipped checkpoint's provenance, before the file name


def trim_provenance(data: dict[str, Any]) -> dict[str, Any]:
    """Training-data provenance without the per-voice listings (kept: counts, engines, seed)."""
    trimmed: dict[str, Any] = {}
    for split, info in data.items():
        info = dict(info)
        if not isinstance(info.get("corpus") or {}, dict):  # stream windows name a folder
            trimmed[split] = info
            continue
        corpus = dict(info.get("corpus") or {})
        for key in CORPUS_KEYS_DROPPED:
            if key in corpus:
                value = corpus.pop(key)
                corpus[f"num_{key}"] = len(value) if hasattr(value, "__len__") else value
        info["corpus"] = corpus
        trimmed[split] = info
    return trimmed


def ship(
    checkpoint: Path,
    report: Path,
    name: str,
    out_dir: Path,
    histories: Sequence[Path] = (),
    reproduce: str | None = None,
    streams: Path | None = None,
    continue_card: bool = False,
    recalibrated: bool = False,
) -> Path:
    """Write the shipped checkpoint, its report copy and model card; returns the checkpoint.
    ``streams``: its ``lmukws evaluate-streams`` report (recall and FA/h on streams, DET
    curve), copied beside the evaluation report and summarised in the metadata and card.
    ``continue_card``: the checkpoint is a further stage of the one shipped as ``name`` now:
    its card's Reproduce up to the command that writes this run's starting checkpoint, and its
    per-epoch history, come first (earlier run folders need not exist any more).
    ``recalibrated``: the checkpoint holds the shipped ``name``'s weights, calibrated again
    (``streams`` then required): the card keeps its Reproduce and history, with this
    calibration's ``calibrate`` and ``evaluate-streams`` commands in place of the old ones."""
    from models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    if model.config.name != name:
        raise ValueError(f"{checkpoint} holds {model.config.name}, not {name}")
    from models.config import EnsembleConfig

    ensemble = isinstance(model.config, EnsembleConfig)
    if ensemble and (histories or continue_card or recalibrated):
        raise ValueError(
            f"{checkpoint} is an ensemble: it has no training history of its own (its "
            "members' cards have theirs, its card comes from its metadata); ship it without "
            "--history, --continue-card and --recalibrated"
        )
    if recalibrated and (histories or continue_card or streams is None):
        raise ValueError(
            "--recalibrated ships the shipped weights with a new calibration: it takes their "
            "training record as it is (no --history, no --continue-card) and needs the "
            "--streams report that measured the new calibration"
        )
    metrics_path = report / "metrics.json"
    curve_path = report / "accuracy_vs_frames.json"
    if not metrics_path.is_file() or not curve_path.is_file():
        raise FileNotFoundError(f"{report} is not an lmukws evaluate report (no metrics.json)")
    evaluation = json.loads(metrics_path.read_text())
    curve = json.loads(curve_path.read_text())

    shipped_card: str | None = None
    if recalibrated:
        meta, shipped_card = _shipped_weights_recalibrated(out_dir, name, model, meta)
    training = dict(meta.get("training") or {})
    _name_stage_runs(training)
    if "data" in training:
        training["data"] = trim_provenance(training["data"])
    rows: list[dict[str, Any]] = []
    continued: list[str] | None = None
    first_stage = 1
    if continue_card:
        continued, rows = _shipped_so_far(out_dir, name, training)
        first_stage = max((int(row.get("stage", 1)) for row in rows), default=0) + 1
    staged = len(histories) > 1 or continue_card  # rows carry their stage number
    for stage, path in enumerate(histories, start=first_stage):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such history file")
        for row in json.loads(path.read_text()):
            rows.append({**row, "stage": stage} if staged else row)
    if rows:
        training["history"] = rows
    recipe = training.get("recipe") or {}
    detector = dict(meta.get("detector") or {})
    detector.setdefault("posterior", "softmax" if recipe.get("loss") == "ce" else "sigmoid")
    metrics = dict(meta.get("metrics") or {})
    metrics.pop("val_per_class_acc", None)
    metrics["test"] = {
        "split": evaluation.get("split"),
        "clips": evaluation.get("num_clips"),
        "accuracy": evaluation.get("accuracy"),
        "macro_accuracy": evaluation.get("macro_accuracy"),
        "per_class": evaluation.get("per_class"),
        "streaming_frames_to_99": curve.get("frames_to_99"),
        "streaming_prediction_agreement": curve.get("prediction_agreement_stream_vs_parallel"),
    }
    dev = evaluation.get("real_speech_dev")
    if dev:
        metrics["real_speech_dev"] = dev_summary(dev)
    if evaluation.get("backgrounds"):
        metrics["backgrounds"] = evaluation["backgrounds"]
    stream_report: dict[str, Any] | None = None
    if streams is not None:
        if not (streams / "streams.json").is_file():
            raise FileNotFoundError(f"{streams} is not an lmukws evaluate-streams report")
        stream_report = json.loads((streams / "streams.json").read_text())
        metrics["streams"] = {
            key: stream_report.get(key)
            for key in ("split", "recall", "false_alarms_per_hour", "hours", "events", "delay_ms")
        }
        metrics["streams"]["sets"] = {
            k: v["false_alarms_per_hour"] for k, v in stream_report["sets"].items()
        }
        metrics["streams"]["calibrated"] = stream_report.get("calibrated")
        grammar = wake_word_summary(stream_report)
        if grammar:
            metrics["streams"]["wake_word"] = grammar
        if stream_report.get("command"):
            metrics["streams"]["command"] = stream_report["command"]
    shipped = dict(meta)
    shipped.update(training=training, detector=detector, metrics=metrics)
    # a shipped ensemble shipped again: its provenance says once where it was shipped from
    made = (
        str(meta.get("provenance")).split(SHIPPED_FROM)[0]
        if ensemble
        else "trained by lmukws train"
    )
    shipped["provenance"] = f"{made}{SHIPPED_FROM}{checkpoint.name}"

    out_dir.mkdir(parents=True, exist_ok=True)
    target = save_checkpoint(out_dir / f"{name}.safetensors", model, shipped)
    report_copy = out_dir / "reports" / name
    report_copy.mkdir(parents=True, exist_ok=True)
    for file in REPORT_FILES:
        if (report / file).is_file():
            shutil.copy2(report / file, report_copy / file)
    if streams is not None:
        for source, copy in (("streams.json", "streams.json"), ("det.png", "det.png"),
                             ("det_by_voice.png", "det_by_voice.png"),
                             ("det_wake.png", "det_wake.png"),
                             ("README.md", "streams.md")):  # fmt: skip
            if (streams / source).is_file():
                shutil.copy2(streams / source, report_copy / copy)
    if shipped_card is not None:
        this_ship = (
            f"lmukws ship-checkpoint {checkpoint} --report {report} --name {name} "
            f"--streams {streams} --recalibrated"
        )
        reproduce = recalibrated_commands(shipped_card, name, shipped, str(checkpoint), this_ship)
    sweep = sensitivity_sweep(stream_report) if stream_report else []
    if ensemble:
        card = ensemble_card(
            name, model, shipped, evaluation, curve, reproduce, checkpoint, report, sweep
        )
    else:
        card = model_card(
            name, model, shipped, evaluation, curve, reproduce, checkpoint, continued, sweep
        )
    card_path = out_dir / f"{name}.md"
    history = history_section(card_path.read_text("utf-8")) if card_path.is_file() else ""
    card_path.write_text(card + history, encoding="utf-8")
    return target


HISTORY_HEADING = "## History"


def history_section(card: str) -> str:
    """A card's hand-written ``## History`` section (to the end of the card), or ""; shipping
    a new checkpoint keeps it, since no metadata holds it."""
    lines = card.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip() == HISTORY_HEADING:
            return "\n" + "".join(lines[i:])
    return ""


REPRODUCE_HEADING = "## Reproduce"


def reproduce_commands(card: str) -> list[str]:
    """The lines of a card's Reproduce block (the first ``sh`` block under its heading)."""
    lines = card.splitlines()
    try:
        start = lines.index(REPRODUCE_HEADING)
        opening = lines.index("```sh", start)
        closing = lines.index("```", opening + 1)
    except ValueError:
        return []
    return lines[opening + 1 : closing]


def writes(command: str, path: str) -> bool:
    """Whether a card command writes ``path`` (its ``--out`` is that file or folder)."""
    return output_of(command) == path


def output_of(command: str) -> str | None:
    """A card command's ``--out`` value (a trailing ``# comment`` left out), or None."""
    words = command.split("#", 1)[0].split()
    return next((nxt for w, nxt in itertools.pairwise(words) if w == "--out"), None)


def continued_commands(card: str, start: str) -> list[str]:
    """A card's Reproduce commands up to the last one that writes ``start``: how the
    checkpoint a further stage starts from was made."""
    commands = reproduce_commands(card)
    for i in range(len(commands) - 1, -1, -1):
        if writes(commands[i], start):
            return commands[: i + 1]
    raise ValueError(
        f"--continue-card: no command of the shipped card's Reproduce writes {start!r}, the "
        "checkpoint this run started from (init_from)"
    )


def _shipped_so_far(
    out_dir: Path, name: str, training: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]]]:
    """For ``--continue-card``: the shipped card's commands that make this run's start, and
    the shipped checkpoint's per-epoch history rows (each with its ``stage``)."""
    from models.checkpoint import read_metadata

    card, weights = out_dir / f"{name}.md", out_dir / f"{name}.safetensors"
    if not card.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"--continue-card: no shipped {name} (card and weights) in {out_dir}"
        )
    start = str((training.get("init_from") or {}).get("path") or "")
    if not start:
        raise ValueError(
            "--continue-card: the checkpoint did not start from another (no init_from)"
        )
    commands = continued_commands(card.read_text(encoding="utf-8"), start)
    earlier = (read_metadata(weights).get("training") or {}).get("history") or []
    return commands, [{**row, "stage": row.get("stage", 1)} for row in earlier]


def _shipped_weights_recalibrated(
    out_dir: Path, name: str, model: Any, meta: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """For ``--recalibrated``: ``meta`` with the shipped checkpoint's training record (its
    stages and per-epoch history) and the shipped card's text. ``ValueError`` where ``model``
    does not hold the shipped weights: new weights are a new stage (``--continue-card``)."""
    import torch

    from models import load_checkpoint

    card, weights = out_dir / f"{name}.md", out_dir / f"{name}.safetensors"
    if not card.is_file() or not weights.is_file():
        raise FileNotFoundError(
            f"--recalibrated: no shipped {name} (card and weights) in {out_dir}"
        )
    shipped, shipped_meta = load_checkpoint(weights)
    ours, theirs = model.state_dict(), shipped.state_dict()
    same = ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k]) for k in ours
    )
    if not same:
        raise ValueError(
            f"--recalibrated: the weights differ from the shipped {name}'s; ship new weights "
            "as a further stage (--continue-card)"
        )
    return {**meta, "training": shipped_meta.get("training") or {}}, card.read_text("utf-8")


def recalibrated_commands(
    card: str, name: str, meta: dict[str, Any], checkpoint: str, this_ship: str = ""
) -> str:
    """The shipped ``card``'s Reproduce commands with those that calibrate ``checkpoint`` and
    measure its streams into the same report replaced by ``meta``'s (``_stream_commands``); a
    command the card lacks goes before its ``ship-checkpoint`` line. A ``checkpoint`` other
    than the one the card ships (a copy of the shipped weights calibrated elsewhere) follows
    the card's commands instead: the copy, its commands and ``this_ship``."""
    commands = reproduce_commands(card)
    if not commands:
        raise ValueError(f"--recalibrated: the shipped {name} card has no Reproduce commands")
    calibrating, _ = _stream_commands(name, meta, checkpoint)
    ships = [line.split() for line in commands if line.startswith("lmukws ship-checkpoint")]
    if ships and len(ships[-1]) > 2 and ships[-1][2] != checkpoint:
        copy = f"cp models/checkpoints/{name}.safetensors {checkpoint}"
        return "\n".join([*commands, copy, *calibrating.splitlines(), this_ship])
    for new in calibrating.splitlines():
        at = next((i for i, line in enumerate(commands) if _same_step(line, new)), None)
        if at is not None:
            commands[at] = new
            continue
        ship_at = next(
            (i for i, line in enumerate(commands) if line.startswith("lmukws ship-checkpoint")),
            len(commands),
        )
        commands.insert(ship_at, new)
    return "\n".join(commands)


def _same_step(old: str, new: str) -> bool:
    """Whether card command ``old`` is the step ``new`` redoes: the same command on the same
    checkpoint, and for ``evaluate-streams`` the same report folder."""
    before, after = old.split(), new.split()
    if before[:3] != after[:3]:
        return False
    return after[1] != "evaluate-streams" or output_of(old) == output_of(new)


def averaging_commands(members: Sequence[dict[str, Any]], out: str, made: Sequence[str]) -> str:
    """The ``average-checkpoints`` lines that make ``out`` from ``members``: first each member
    that is itself a mean (a soup) and no command in ``made`` writes, then ``out``."""
    written: set[str] = set()
    commands = ""
    for m in members:
        path, parts = str(m.get("path")), m.get("averaged_from")
        if parts and path not in written and not any(writes(line, path) for line in made):
            commands += average_command([str(p) for p in parts], path)
            written.add(path)
    return commands + average_command([str(m.get("path")) for m in members], out)


def wake_word_summary(report: dict[str, Any]) -> dict[str, Any] | None:
    """An ``evaluate-streams`` report's wake-word grammar in a few numbers: the word, its
    false alarms per hour on the streams, the recall of commands said right after it and of
    the wake word itself (None without commands streams: no ``--wake-word``, or an older
    report)."""
    wake = report.get("wake_word") or {}
    if "commands" not in wake:
        return None
    by = wake["commands"].get("recall_by") or {}
    return {
        "word": wake["word"],
        "command_sensitivity": wake.get("command_sensitivity"),
        "false_alarms_per_hour": wake.get("false_alarms_per_hour"),
        "command_false_alarms_per_hour": wake.get("command_false_alarms_per_hour"),
        "command_recall": by.get("context:command"),
        "wake_recall": by.get("context:wake"),
        "commands": wake["commands"].get("commands"),
    }


def sensitivity_sweep(stream_report: dict[str, Any], step: float = 0.1) -> list[dict[str, Any]]:
    """What ``start.sensitivity`` gave on a calibrated checkpoint's ``evaluate-streams``
    report: the DET sweep's points at every ``step`` of sensitivity (recall, false alarms
    per hour in all and per set); none for a sweep over thresholds (uncalibrated)."""
    det = stream_report.get("det") or {}
    if det.get("parameter") != "sensitivity":
        return []
    rows = []
    for point in det.get("points") or []:
        s = float(point["parameter"])
        if abs(s / step - round(s / step)) < 1e-6:
            rows.append(
                {
                    "sensitivity": round(s, 6),
                    "recall": point.get("recall"),
                    "false_alarms_per_hour": point.get("false_alarms_per_hour"),
                    "sets": dict(point.get("sets") or {}),
                }
            )
    return rows


def sensitivity_table(sweep: Sequence[dict[str, Any]], default: float = 0.5) -> list[str]:
    """The card's table of a ``sensitivity_sweep``, set apart by blank lines: a row per
    sensitivity, the default bold; nothing for an empty sweep."""
    if not sweep:
        return []

    def rate(x: Any) -> str:
        return "–" if x is None else f"{float(x):.1f}"

    lines = [
        "",
        "What `start.sensitivity` gives on the same test streams (the report's DET sweep; "
        "each keyword's threshold moves along the calibrated curve):",
        "",
        "| sensitivity | recall | false alarms per hour, all streams | per hour of real speech |",
        "|---|---|---|---|",
    ]
    for row in sweep:
        s = float(row["sensitivity"])
        cells = [
            f"{s:g}",
            _pct(row.get("recall")),
            rate(row.get("false_alarms_per_hour")),
            rate((row.get("sets") or {}).get("negatives/recorded")),
        ]
        if abs(s - default) < 1e-9:
            cells = [f"**{c}**" for c in cells]
            cells[0] += " (default)"
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _streams_section(
    name: str, meta: dict[str, Any], sweep: Sequence[dict[str, Any]] = ()
) -> list[str]:
    """The card's section on detection in streams (none without an evaluate-streams report;
    ``sweep``: its ``sensitivity_sweep``, shown as a table)."""
    streams = (meta.get("metrics") or {}).get("streams")
    if not streams:
        return []
    calibration = (meta.get("detector") or {}).get("calibration") or {}
    sets = ", ".join(
        f"{k} {v:.1f}" for k, v in (streams.get("sets") or {}).items() if v is not None
    )
    delay = streams.get("delay_ms") or {}
    lines = [
        "",
        "## Detection on streams",
        "",
        f"On {streams.get('hours', 0):.2f} hours of {streams.get('split')} streams (held-out "
        f"voices; keywords alone, in phrases and sequences, sentences, backgrounds; real "
        f"recorded speech without keywords), at the shipped operating point "
        f"({'calibrated' if streams.get('calibrated') else 'uncalibrated'} thresholds): "
        f"recall **{_pct(streams.get('recall'))}** of {streams.get('events')} keywords, "
        f"**{streams.get('false_alarms_per_hour', 0):.1f} false alarms per hour** "
        f"(per set, FA/h: {sets}); median detection {delay.get('median') or 0:.0f} ms after "
        f"the keyword's end (p90 {delay.get('p90') or 0:.0f} ms).",
    ]
    if calibration:
        held = calibration.get("heldout") or {}
        heldout = (
            f" (held out by voice, {held['folds']} folds: recall {_pct(held.get('recall'))} "
            f"at {held.get('fa_per_hour') or 0:.1f} FA/h)"
            if held.get("folds")
            else ""
        )
        detector = meta.get("detector") or {}
        frames = detector.get("background_frames") or 0
        ceiling = detector.get("background_ceiling")
        background = (
            f"; each keyword's posterior is weighed against its own background in the session "
            f"(`background_frames` {frames}: a {frames / 100:g} s time constant"
            + (f", counting posteriors up to {ceiling:g}" if ceiling is not None else "")
            + ")"
            if frames
            else ""
        )
        gate = detector.get("speech_gate_frames") or 0
        if gate:
            background += (
                f"; keywords are held back for a second after {gate / 100:g} s of other speech "
                f"(the speech gate, `speech_gate_frames` {gate})"
            )
        data = calibration.get("data") or {}
        repeats = ", with repeated commands" if "repeats" in (data.get("kinds") or ()) else ""
        lines.append(
            f"Thresholds calibrated with `lmukws calibrate` to "
            f"{calibration.get('target_fa_per_hour')} FA/h on validation streams "
            f"({data.get('hours')} h{repeats}){heldout}{background}; "
            f"`start.sensitivity` moves along {len(calibration.get('operating_points') or [])} "
            "operating points."
        )
        lines += _grammar_calibration_line(calibration)
        lines += sensitivity_table(sweep)
    grammar = streams.get("wake_word")
    if grammar:
        from training.stream_report import false_commands_phrase

        false_commands = false_commands_phrase(grammar)
        lines.append(
            f"With the wake-word grammar (`wake_word: {grammar['word']}`"
            + (
                f", `command_sensitivity: {grammar['command_sensitivity']:g}`"
                if grammar.get("command_sensitivity") is not None
                else ""
            )
            + "): "
            f"{grammar.get('false_alarms_per_hour') or 0:.1f} false alarms per hour on the same "
            "streams"
            + (f" ({false_commands})" if false_commands else "")
            + f"; of {grammar.get('commands')} commands said right after the wake word, "
            f"recall **{_pct(grammar.get('command_recall'))}** (the wake word "
            f"{_pct(grammar.get('wake_recall'))}; curve: [reports/{name}/det_wake.png]"
            f"(reports/{name}/det_wake.png))."
        )
    lines.append(
        f"DET curve: [reports/{name}/det.png](reports/{name}/det.png); details: "
        f"[reports/{name}/streams.md](reports/{name}/streams.md)."
    )
    return lines


def dev_summary(dev: dict[str, Any]) -> dict[str, Any]:
    """What the shipped metadata keeps of a report's ``real_speech_dev``: clips and accuracy,
    overall, per kind and per speaker (the errors stay in the report)."""
    return {
        "recordings": dev.get("recordings"),
        "clips": dev.get("clips"),
        "speakers": dev.get("speakers"),
        "accuracy": dev.get("accuracy"),
        "by_kind": {k: v.get("accuracy") for k, v in (dev.get("by_kind") or {}).items()},
        "per_speaker": {
            k: {"clips": v.get("count"), "accuracy": v.get("accuracy")}
            for k, v in (dev.get("per_speaker") or {}).items()
        },
    }


def _dev_section(name: str, evaluation: dict[str, Any]) -> list[str]:
    """The card's section on the real-speech dev set (none for reports without it)."""
    dev = evaluation.get("real_speech_dev")
    if not dev:
        return []
    kinds = dev.get("by_kind") or {}

    def share(s: dict[str, Any]) -> str:
        return f"{_pct(s.get('accuracy'))} of {s.get('count', 0)}" if s.get("count") else "-"

    lines = [
        "",
        "## Real-speech dev set",
        "",
        'Recorded people saying keywords (English digits, "no") and other single words, from '
        "the Debian packages kajongg and tuxpaint-stamps-default (`lmukws evaluate "
        "--recordings`), scored like the held-out clips: "
        f"**{_pct(dev.get('accuracy'))}** of {dev.get('clips')} clips "
        f"({dev.get('speakers')} speakers); keyword clips {share(kinds.get('keyword') or {})}, "
        f"non-keyword words (`_unknown_`) {share(kinds.get('word') or {})}.",
        "",
        "| speaker | clips | accuracy | keyword clips | non-keyword words |",
        "|---|---|---|---|---|",
    ]
    for speaker, s in (dev.get("per_speaker") or {}).items():
        lines.append(
            f"| {speaker} | {s.get('count')} | {_pct(s.get('accuracy'))} | "
            f"{share(s.get('keyword') or {})} | {share(s.get('word') or {})} |"
        )
    lines += [
        "",
        f"Errors: [reports/{name}/real_speech_dev.md](reports/{name}/real_speech_dev.md).",
    ]
    return lines


def _weakest_voices(evaluation: dict[str, Any], shown: int = 5) -> list[str]:
    """The card's line on the held-out voices it does worst on (none for reports without)."""
    voices = evaluation.get("per_voice") or {}
    if not voices:
        return []
    weakest = ", ".join(
        f"{voice} {_pct(s['accuracy'])} ({s['count']} clips)"
        for voice, s in list(voices.items())[:shown]
    )
    return ["", f"Weakest of the {len(voices)} held-out voices: {weakest}."]


def checkpoint_record(path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What a later stage, an average or a model card says of a checkpoint: its file, the run
    folder and corpus that trained it (``path`` may be a shipped copy in models/checkpoints),
    its steps, epochs and accuracy metrics."""
    training = meta.get("training") or {}
    recipe = training.get("recipe") or {}
    record = {
        "path": str(path),
        "run": recipe.get("out"),
        "data": recipe.get("data"),
        "epochs_trained": training.get("epochs_trained"),
        "global_step": training.get("global_step"),
        "metrics": {k: v for k, v in (meta.get("metrics") or {}).items() if k.endswith("acc")},
    }
    members = training.get("averaged_from")
    if members:  # an average: the files it is the mean of
        record["averaged_from"] = [str(m.get("path")) for m in members]
    return record


def _identity(record: dict[str, Any]) -> tuple:
    """What tells one checkpoint of a chain from another: its steps, epochs, validation acc."""
    metrics = record.get("metrics") or {}
    return (record.get("global_step"), record.get("epochs_trained"), metrics.get("val_acc"))


def _name_stage_runs(training: dict[str, Any]) -> None:
    """Give each earlier stage without a ``run`` (or ``data``) the run folder that trained its
    checkpoint (and the corpus folder it trained on, and the members when it is an average).

    A stage may have started from a shipped copy in models/checkpoints that has since been
    replaced (this very ship may replace it), so a stage's file is trusted only when its
    metadata is that stage's (same steps, epochs and validation accuracy); the chains recorded
    in the stages' files (a ship writes the runs it found) are searched the same way.
    """
    from models.checkpoint import read_metadata

    chain = stages(training)
    known: list[tuple[tuple, dict[str, Any]]] = []  # (identity, stage record with its run)
    for stage in chain:
        path = Path(stage.get("path") or "")
        if not path.is_file():
            continue
        meta = read_metadata(path)
        records = [checkpoint_record(path, meta), *stages(meta.get("training") or {})]
        known += [(_identity(r), r) for r in records if r.get("run")]
    for stage in chain:
        match = next((r for key, r in known if key == _identity(stage)), {})
        for field in ("run", "data"):
            if not stage.get(field):
                stage[field] = match.get(field)
        if not stage.get("averaged_from") and match.get("averaged_from"):
            stage["averaged_from"] = match["averaged_from"]


def stage_run(stage: dict[str, Any]) -> str:
    """The run folder of an earlier stage (its config is training/configs/<folder name>.json)."""
    return str(stage.get("run") or Path(stage.get("path", "")).parent)


def stages(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier stages of a run continued with ``init_from``, oldest first (each record has
    the checkpoint path it started from, its steps and metrics)."""
    chain: list[dict[str, Any]] = []
    record = training.get("init_from")
    while record:
        chain.append(record)
        record = record.get("init_from")
    return chain[::-1]


def synth_command(folder: str, corpus: dict[str, Any]) -> str:
    """The ``lmukws data synth`` command that builds ``folder`` as ``corpus`` (its corpus.json,
    or the provenance a checkpoint keeps of it) says it was built; the defaults when unknown."""
    config = corpus.get("config") or {}
    command = f"lmukws data synth --out {folder} --jobs 2"
    if corpus.get("seed"):
        command += f" --seed {corpus['seed']}"
    renditions = config.get("renditions_per_word", 200)
    if renditions != 200:
        command += f" --renditions {renditions}"
    held = config.get("heldout_renditions")
    if held is not None and held != max(1, renditions // 4):
        command += f" --heldout-renditions {held}"
    unknown = config.get("unknown_fraction", 0.25)
    if unknown != 0.25:
        command += f" --unknown-fraction {unknown}"
    engines = config.get("engines")
    if engines and list(engines) != list(DEFAULT_ENGINES):
        command += f" --engines {','.join(engines)}"
    wide = config.get("kokoro_max_scale")
    if wide is not None:
        command += f" --kokoro-max-scale {wide}"
    return command


def average_command(members: Sequence[str], out: str) -> str:
    """The ``lmukws average-checkpoints`` line that writes the mean of ``members`` to ``out``."""
    return f"lmukws average-checkpoints {' '.join(members)} --out {out}\n"


def config_notes(run: str, recipe: dict[str, Any]) -> str:
    """The notes of the run's config file as they are now (written up after the run, with its
    results), when that file describes this run (same ``out``); else the notes the checkpoint
    recorded when training started."""
    path = CONFIGS_DIR / f"{Path(run).name}.json"
    if path.is_file():
        config = json.loads(path.read_text())
        if config.get("out") == recipe.get("out") and config.get("notes"):
            return str(config["notes"])
    return str(recipe.get("notes", ""))


def _corpus_on_disk(folder: str) -> dict[str, Any]:
    path = Path(folder) / "corpus.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def _card_intro(name: str, dev: dict[str, Any]) -> list[str]:
    """A card's title and its warning that the model heard synthetic speech only."""
    return [
        f"# Model card: {name}",
        "",
        "**Trained on synthetic speech.** This checkpoint was trained and tested only on speech "
        "made by offline text-to-speech engines (the `lmukws data synth` corpus), never on "
        "recordings of people. "
        + (
            f"Its accuracy on real speakers is measured only on a small real-speech dev set "
            f"({dev.get('clips')} clips of {dev.get('speakers')} speakers, below); the other "
            "numbers are for held-out synthetic voices."
            if dev
            else "Its accuracy on real microphones and real speakers is unknown; the numbers "
            "below are for held-out synthetic voices."
        ),
        "",
    ]


def _results_section(
    evaluation: dict[str, Any], curve: dict[str, Any], validation: str
) -> list[str]:
    """A card's table of held-out-voice test results (and the real-speech dev set's)."""
    dev = evaluation.get("real_speech_dev") or {}
    backgrounds = evaluation.get("backgrounds") or {}
    mixed = [
        f"| keyword clips under {name} (clean {_pct(backgrounds['clean']['accuracy'])}) | "
        f"{_pct(b['accuracy'])} |"
        for name, b in (backgrounds.get("backgrounds") or {}).items()
    ]
    return [
        "",
        "## Held-out-voice test results",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy ({evaluation.get('num_clips')} clips, unseen speakers) | "
        f"**{_pct(evaluation.get('accuracy'))}** |",
        f"| macro accuracy (mean per class) | {_pct(evaluation.get('macro_accuracy'))} |",
        f"| best validation accuracy | {validation} |",
        f"| frames to 99 % of final accuracy, streaming (paper: 87 of 128) | "
        f"{curve.get('frames_to_99')} of {curve.get('num_frames')} |",
        f"| streaming vs parallel prediction agreement | "
        f"{_pct(curve.get('prediction_agreement_stream_vs_parallel'))} |",
        *(
            [
                f"| real-speech dev set accuracy ({dev.get('clips')} clips, "
                f"{dev.get('speakers')} real speakers) | **{_pct(dev.get('accuracy'))}** |"
            ]
            if dev
            else []
        ),
        *mixed,
    ]


def backgrounds_option(evaluation: dict[str, Any]) -> str:
    """The ``lmukws evaluate`` option that measured a report's backgrounds ("" if none)."""
    mixed = (evaluation.get("backgrounds") or {}).get("backgrounds") or {}
    if not mixed:
        return ""
    spec = [(b["kind"], float(b["snr_db"])) for b in mixed.values()]
    if spec == list(DEFAULT_BACKGROUNDS):
        return "--backgrounds "
    return "--backgrounds " + ",".join(f"{kind}:{snr:g}" for kind, snr in spec) + " "


def _report_sections(
    name: str,
    meta: dict[str, Any],
    evaluation: dict[str, Any],
    sweep: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The link to the full report, the weakest voices, the dev set and the streams."""
    return [
        f"Full report: [reports/{name}/README.md](reports/{name}/README.md) (per-class table, "
        "confusion matrix, accuracy vs frames seen through the streaming form, accuracy per "
        "voice).",
        *_weakest_voices(evaluation),
        *_dev_section(name, evaluation),
        *_streams_section(name, meta, sweep),
    ]


def model_card(
    name: str,
    model: Any,
    meta: dict[str, Any],
    evaluation: dict[str, Any],
    curve: dict[str, Any],
    reproduce: str | None,
    source: Path | None = None,
    continued: Sequence[str] | None = None,
    sweep: Sequence[dict[str, Any]] = (),
) -> str:
    """The Markdown model card of a shipped checkpoint (``source``: the file it was shipped
    from, named by the commands when it is an average of checkpoints; ``continued``: the
    earlier card's commands that make this run's start, for ``--continue-card``; ``sweep``:
    the streams report's ``sensitivity_sweep``)."""
    training = meta.get("training") or {}
    recipe = training.get("recipe") or {}
    corpus = ((training.get("data") or {}).get("train") or {}).get("corpus") or {}
    counts = corpus.get("counts") or {}
    engines = corpus.get("engines") or {}
    params = sum(p.numel() for p in model.parameters())
    accuracy = evaluation.get("accuracy")
    dev = evaluation.get("real_speech_dev") or {}
    bar = BARS.get(name)
    history = training.get("history") or []
    bar_line = ""
    if bar is not None and accuracy is not None:
        status = "meets" if accuracy >= bar else "does NOT yet meet"
        bar_line = (
            f"\nThe project's bar for this model is {_pct(bar)}: this checkpoint {status} it.\n"
        )
    run = str(recipe.get("out") or f"data/runs/{name}-synth")
    members = training.get("averaged_from") or []
    greedy = training.get("greedy_soup") or {}
    if greedy:
        validation = (
            f"{_pct(greedy.get('accuracy'))} (the mean, on all {greedy.get('clips')} "
            f"{greedy.get('split')} clips)"
        )
    elif members:
        validation = "n/a: a mean of checkpoints (their own below, under Training)"
    else:
        validation = _pct((meta.get("metrics") or {}).get("val_acc"))
    engine_list = ", ".join(sorted(engines)) if isinstance(engines, dict) else str(engines)
    lines = [
        *_card_intro(name, dev),
        "## Model",
        "",
        *(
            [
                f"- `{name}` (LMUFormer, Liu et al., ICLR 2024): dim {model.config.dim}, "
                f"{model.config.depth} block, LMU memory {model.config.resolved_memory_size}, "
                f"theta {model.config.theta:g}, {params:,} parameters, {model.num_classes} labels "
                "(the 35 Speech Commands words, `_unknown_`, `_silence_`).",
                f"- Look-ahead {model.lookahead_frames} frames: algorithmic latency "
                f"{25 + 10 * model.lookahead_frames} ms "
                "(25 ms window + look-ahead x 10 ms).",
            ]
            if model.streaming
            else [
                f"- `{name}` (the authors' spiking-attention baseline): dim {model.config.dim}, "
                f"{model.config.depth} block of spiking self-attention over the whole "
                f"{model.config.window}-frame window, {params:,} parameters, "
                f"{model.num_classes} labels (the 35 Speech Commands words, `_unknown_`, "
                "`_silence_`).",
                "- No streaming form: the service recomputes the last window every hop "
                "(`--window-hop-ms`, default 100 ms), so a keyword's score waits for the next "
                "hop: algorithmic latency 115 ms at the default hop (25 ms window + 9 frames; "
                "`/v1/model` gives it for the served hop); the accuracy-vs-frames curve below "
                "is what that recompute serves.",
            ]
        ),
        *_results_section(evaluation, curve, validation),
        bar_line,
        *_report_sections(name, meta, evaluation, sweep),
        "",
        "## Data",
        "",
        f"- Source: `{corpus.get('source', 'synthetic')}` corpus, generator "
        f"`{corpus.get('generator', '?')}` {corpus.get('generator_version', '')}, seed "
        f"{corpus.get('seed', '?')}; engines: {engine_list}.",
        "- Split by speaker: no voice (and no recorded person behind several engines) is in two "
        "of train / validation / test.",
        f"- Counts: `{json.dumps(counts)[:400]}`",
        "",
        "## Training",
        "",
        f"- Epochs trained: {training.get('epochs_trained')} ({training.get('global_step')} "
        f"steps of batch {recipe.get('batch_size')}), device {training.get('device')}, "
        f"torch {training.get('torch')}.",
        f"- Loss {recipe.get('loss')}, Adam lr {recipe.get('lr')} betas {recipe.get('betas')}, "
        f"mixup {recipe.get('mixup_prob')} (Beta({recipe.get('mixup_alpha')}, "
        f"{recipe.get('mixup_alpha')})), SpecAugment {recipe.get('freq_mask')}/"
        f"{recipe.get('time_mask')}, LR x{recipe.get('lr_decay')} every "
        f"{recipe.get('lr_decay_every')} epoch(s) from {recipe.get('lr_decay_start')}, "
        f"precision {recipe.get('precision', 'fp32')}, clean steps "
        f"{recipe.get('clean_steps', 0)}.",
        f"- Notes from the config: {config_notes(run, recipe)}",
    ]
    if members:
        listed = "; ".join(
            f"`{m.get('path')}` (epoch {m.get('epochs_trained')}, validation "
            f"{_pct((m.get('metrics') or {}).get('val_acc'))})"
            for m in members
        )
        lines.insert(
            lines.index("## Training") + 2,
            f"- Weights: the mean of {len(members)} checkpoints of this chain (`lmukws "
            f"average-checkpoints`, a model soup), chosen on validation: {listed}. The lines "
            "below are those of the run of the member trained last.",
        )
    if greedy:
        candidates = greedy.get("candidates") or []  # a greedy soup has at least two
        own = [c["accuracy"] for c in candidates]
        span = f"{_pct(min(own))} to {_pct(max(own))}" if own else "? to ?"
        lines.insert(
            lines.index("## Training") + 3,
            f"- The members were picked by `lmukws average-checkpoints --greedy` (a greedy soup) "
            f"from {len(candidates)} candidates on the {greedy.get('split')} split of "
            f"`{greedy.get('data')}`: ranked by their own accuracy there ({span}), each kept if "
            f"the mean with it was no worse; the mean scored {_pct(greedy.get('accuracy'))}.",
        )
    chain = stages(training)  # earlier stages, oldest first
    if chain:
        before = sum(stage.get("global_step") or 0 for stage in chain)
        described = "; ".join(
            f"stage {k}: `{stage.get('path')}` ({stage.get('global_step')} steps, "
            f"training/configs/{Path(stage_run(stage)).name}.json)"
            for k, stage in enumerate(chain, start=1)
        )
        lines.insert(
            lines.index("## Training") + 2,
            f"- {len(chain) + 1} stages, each continuing the previous one's best checkpoint "
            f"({described}); the weights saw {before + (training.get('global_step') or 0)} "
            "steps in all; the lines below are the last stage's.",
        )
    if history:
        staged = any("stage" in row for row in history)
        lines += [
            "",
            ("| stage " if staged else "") + "| epoch | lr | train loss | train acc | val acc |",
            ("|---" if staged else "") + "|---|---|---|---|---|",
        ]
        lines += [
            (f"| {row['stage']} " if staged else "")
            + f"| {row['epoch']} | {row['lr']:.2e} | {row['train_loss']:.3f} | "
            f"{row['train_acc']:.3f} | {row['val_acc']:.3f} |"
            for row in history
        ]
    runs = [run] if continued is not None else [stage_run(stage) for stage in chain] + [run]
    trains = ""
    planned, trained = recipe.get("epochs"), training.get("epochs_trained")
    for k, r in enumerate(runs):
        trains += f"lmukws train --config training/configs/{Path(r).name}.json"
        if k == len(runs) - 1 and planned and trained and trained < planned:  # stopped early
            trains += f" --set epochs={trained}"
        trains += "\n"
        if continued is None and k < len(chain) and chain[k].get("averaged_from"):
            trains += average_command(chain[k]["averaged_from"], chain[k]["path"])  # a mean
    histories_args = " ".join(f"--history {r}/history.json" for r in runs)
    made = list(continued or [])
    if continued is not None:
        histories_args = f"--continue-card {histories_args}"
    data = str(recipe.get("data") or DEFAULT_CORPUS)
    # the corpus the evaluation report tested on (a stage may train on another)
    tested = str((evaluation.get("data") or {}).get("root") or data)
    folders = dict.fromkeys(
        [str(stage.get("data") or DEFAULT_CORPUS) for stage in chain] + [data, tested]
    )
    shipped_from = f"{run}/best.safetensors"
    averaging = ""
    if members:
        shipped_from = str(source or "average.safetensors")
        averaging = averaging_commands(members, shipped_from, made)
    built = [f for f in folders if not any(writes(line, f) for line in made)]
    synths = "".join(
        synth_command(f, corpus if f == data and corpus else _corpus_on_disk(f)) + "\n"
        for f in built
    )
    recordings = ""
    if dev:  # the dev set's folder, built from the Debian packages
        folder = dev.get("recordings") or "data/recordings"
        if not any(writes(line, folder) for line in made):
            synths += f"lmukws data recordings --out {folder}  # scripts/install-speech-data.sh\n"
        recordings = f"--recordings {folder} "
    recordings += backgrounds_option(evaluation)
    if continued is not None:  # the earlier stages as the shipped card made them
        synths = "".join(f"{line}\n" for line in continued) + synths
    calibrating, streams_args = _stream_commands(name, meta, shipped_from)
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        reproduce
        or (
            synths + trains + averaging + calibrating + f"lmukws evaluate {shipped_from} "
            f"--data {tested} --split test {recordings}--out reports/{name}-synth\n"
            f"lmukws ship-checkpoint {shipped_from} "
            f"--report reports/{name}-synth --name {name} {streams_args}{histories_args}"
        ),
        "```",
        "",
        "The paper's own numbers are on Google Speech Commands V2, which these machines cannot "
        "download. Where you have it:",
        "",
        "```sh",
        "lmukws data speech-commands --root /path/to/speech_commands_v0.02 --out data/sc",
        f"lmukws train --config training/configs/paper-{name}-sc.json",
        f"lmukws evaluate runs/paper-{name}-sc/best.safetensors --data data/sc --out "
        f"reports/paper-{name}-sc",
        "```",
        "",
    ]
    return "\n".join(lines)


def _member_digest(member: dict[str, Any]) -> str:
    """How a card names an ensemble member's weights: the SHA-256 of its tensors where the
    ensemble recorded it (``models.weights_digest``: the same after a recalibration of the
    member's file), else that of the file when the ensemble was made."""
    if member.get("weights_sha256"):
        return f"weights SHA-256 `{str(member['weights_sha256'])[:12]}`"
    return f"file SHA-256 `{str(member.get('sha256'))[:12]}` when the ensemble was made"


def ensemble_card(
    name: str,
    model: Any,
    meta: dict[str, Any],
    evaluation: dict[str, Any],
    curve: dict[str, Any],
    reproduce: str | None,
    source: Path,
    report: Path,
    sweep: Sequence[dict[str, Any]] = (),
) -> str:
    """The model card of a shipped ensemble (``lmukws ensemble``): its members with their
    weights, files and cards, the test results and streams as for one model, and the commands
    that make it from the members' shipped checkpoints (``source``: the file shipped;
    ``report``: its ``lmukws evaluate`` report folder)."""
    members = (meta.get("ensemble") or {}).get("members") or []
    dev = evaluation.get("real_speech_dev") or {}
    params = sum(p.numel() for p in model.parameters())
    listed = [
        f"- `{m.get('model')}`, weight {m.get('weight'):g}: `{m.get('checkpoint')}` "
        f"({_member_digest(m)}, held-out test accuracy {_pct(m.get('test_accuracy'))}"
        f"; trained as its card says: [{m.get('model')}.md]({m.get('model')}.md))."
        for m in members
    ]
    shipped_from = str(source)
    weights = ",".join(f"{m.get('weight'):g}" for m in members)
    checkpoints = " ".join(str(m.get("checkpoint")) for m in members)
    tested = str((evaluation.get("data") or {}).get("root") or DEFAULT_CORPUS)
    recordings = f"--recordings {dev.get('recordings') or 'data/recordings'} " if dev else ""
    recordings += backgrounds_option(evaluation)
    calibrating, streams_args = _stream_commands(name, meta, shipped_from)
    commands = (
        reproduce
        or (
            f"lmukws ensemble {checkpoints} --weights {weights} --out {shipped_from}\n"
            + calibrating
            + f"lmukws evaluate {shipped_from} --data {tested} --split test {recordings}"
            f"--out {report}\n"
            f"lmukws ship-checkpoint {shipped_from} --report {report} --name {name} " + streams_args
        ).rstrip()
    )
    lines = [
        *_card_intro(name, dev),
        "## Model",
        "",
        f"- `{name}`: an ensemble of {len(members)} streaming models (`models/ensemble.py`). "
        "Every frame goes through each member and their per-frame logits are averaged with "
        "fixed weights, so it fires where the members agree. "
        f"{params:,} parameters in all, {model.num_classes} labels (the 35 Speech Commands "
        "words, `_unknown_`, `_silence_`); a session holds one state per member.",
        f"- Look-ahead {model.lookahead_frames} frames: algorithmic latency "
        f"{25 + 10 * model.lookahead_frames} ms (25 ms window + look-ahead x 10 ms).",
        "- Each frame costs the members' steps added up "
        "([docs/benchmarks.md](../../docs/benchmarks.md)).",
        "",
        "## Members",
        "",
        *listed,
        *_weight_search_lines(meta),
        *_results_section(
            evaluation, curve, "n/a: an ensemble is not trained (its members' cards)"
        ),
        "",
        *_report_sections(name, meta, evaluation, sweep),
        "",
        "## Training",
        "",
        "Not trained as one model: each member was trained as its card says, on the same "
        "corpus and speaker split. The ensemble adds only its weights, chosen on the validation "
        "streams ([docs/streams.md](../../docs/streams.md#ensembles)), and a detector "
        "calibrated on its own scores (the thresholds above; `lmukws calibrate`).",
        "",
        "## Reproduce",
        "",
        "Make the members first (their cards' Reproduce), then:",
        "",
        "```sh",
        commands,
        "```",
        "",
    ]
    return "\n".join(lines)


def _weight_search_lines(meta: dict[str, Any]) -> list[str]:
    """The calibration's member-weight search (``calibrate --ensemble-weights``) as a table,
    or nothing when the weights were not searched."""
    calibration = (meta.get("detector") or {}).get("calibration") or {}
    rows = (calibration.get("ensemble_weight_search") or {}).get("candidates") or []
    if not rows:
        return []
    target = calibration.get("target_fa_per_hour")
    lines = [
        "",
        f"The weights were searched by `lmukws calibrate --ensemble-weights` on the validation "
        f"streams: held-out recall at {target:g} FA/h (thresholds picked on the other voice "
        "folds) per candidate, the best kept.",
        "",
        "| weights | held-out recall | held-out FA/h | |",
        "|---|---|---|---|",
    ]
    for row in rows:
        recall, fa = row.get("heldout_recall_at_target"), row.get("heldout_fa_per_hour")
        lines.append(
            f"| {' / '.join(f'{w:g}' for w in row['weights'])} "
            f"| {'–' if recall is None else f'{recall:.3f}'} "
            f"| {'–' if fa is None else f'{fa:.1f}'} | {'**kept**' if row.get('chosen') else ''} |"
        )
    return lines


def _search_options(search: dict[str, Any]) -> str:
    """The ``calibrate`` options of a stored detector search: each setting that took more than
    one value (a background or a speech gate searched even at one value), frames as ms or
    seconds, ceilings as they are."""
    rows = search.get("candidates") or []
    options = ""
    for key, flag, scale in (
        ("smoothing_frames", "--smoothing-ms", 10),
        ("patience_frames", "--patience-ms", 10),
        ("background_frames", "--background-s", 0.01),
        ("background_ceiling", "--background-ceiling", 1),
        ("speech_gate_frames", "--speech-gate-ms", 10),
    ):
        values = list(dict.fromkeys(r[key] for r in rows if key in r))
        on_at_one = key in ("background_frames", "speech_gate_frames") and any(values)
        if len(values) > 1 or on_at_one:
            options += f" {flag} " + ",".join(f"{v * scale:g}" for v in values)
    return options


def _ceiling_option(calibration: dict[str, Any]) -> str:
    """``--background-ceiling`` where the calibration ran with one ceiling other than the
    detector's default (a searched one is among ``_search_options``)."""
    from streaming.detector import DetectorSettings

    rows = (calibration.get("detector_search") or {}).get("candidates") or []
    if len({r["background_ceiling"] for r in rows if "background_ceiling" in r}) > 1:
        return ""
    ceiling = (calibration.get("detector") or {}).get("background_ceiling")
    if ceiling is None or ceiling == DetectorSettings.background_ceiling:
        return ""
    return f" --background-ceiling {ceiling:g}"


def _grammar_calibration_line(calibration: dict[str, Any]) -> list[str]:
    """What ``calibrate --wake-word`` chose for the commands after a wake word, and why."""
    grammar = calibration.get("grammar")
    if not grammar:
        return []
    data = grammar.get("data") or {}
    target = grammar.get("target_fa_per_hour")
    where = (
        f"on the validation commands streams ({data.get('commands')} commands after "
        f"`{grammar.get('wake_word')}`) and the validation streams"
    )
    if grammar.get("command_sensitivity") is None:
        points = grammar.get("points") or []
        there = points[0].get("false_alarms_per_hour") if points else None
        made = f" (there {there:.1f} FA/h)" if there is not None else ""
        return [
            f"Wake-word grammar: even with the commands at the wake word's point the grammar "
            f"misses {target:g} FA/h {where}{made}, so no `command_sensitivity` is stored (the "
            "commands keep the session's sensitivity)."
        ]
    return [
        f"Wake-word grammar: `command_sensitivity` **{grammar['command_sensitivity']:g}** "
        f"(the default of every session with a wake word), the loosest commands' point whose "
        f"grammar meets {target:g} FA/h {where}: there "
        f"{grammar.get('fa_per_hour') or 0:.1f} FA/h, commands found "
        f"{_pct(grammar.get('command_recall'))}."
    ]


def _grammar_option(calibration: dict[str, Any]) -> str:
    """``--wake-word`` (and a grammar target other than the default) of a stored grammar."""
    from training.grammar_calibration import GRAMMAR_TARGET_FA_PER_HOUR

    grammar = calibration.get("grammar")
    if not grammar:
        return ""
    option = f" --wake-word {grammar['wake_word']}"
    if grammar.get("target_fa_per_hour") != GRAMMAR_TARGET_FA_PER_HOUR:
        option += f" --grammar-target-fa-per-hour {grammar['target_fa_per_hour']:g}"
    return option


def _ensemble_weights_option(calibration: dict[str, Any]) -> str:
    """``--ensemble-weights`` with the candidates a stored weight search tried besides the
    ensemble's own (the first row)."""
    rows = (calibration.get("ensemble_weight_search") or {}).get("candidates") or []
    if len(rows) < 2:
        return ""
    others = ";".join(",".join(f"{w:g}" for w in row["weights"]) for row in rows[1:])
    return f' --ensemble-weights "{others}"'


def _kinds_option(data: dict[str, Any]) -> str:
    """``--kinds`` where the calibration's validation streams were not the default kinds."""
    from training.stream_report import DEFAULT_KINDS

    kinds = data.get("kinds")
    if not kinds or tuple(kinds) == DEFAULT_KINDS:
        return ""
    return " --kinds " + ",".join(kinds)


def _stream_commands(name: str, meta: dict[str, Any], checkpoint: str) -> tuple[str, str]:
    """The card's ``lmukws calibrate`` and ``evaluate-streams`` commands (from the metadata's
    calibration and stream metrics), and the ``--streams`` option of its ship command. The
    stream report's own command is used where it ran on ``checkpoint``; a calibration stored
    without ``keyword_weight`` was made by per-keyword allocation alone (weight 1)."""
    from training.calibrate import KEYWORD_WEIGHT

    commands = ""
    calibration = (meta.get("detector") or {}).get("calibration") or {}
    if calibration:
        data = calibration.get("data") or {}
        options = f"--data {data.get('corpus') or DEFAULT_CORPUS} "
        options += f"--target-fa-per-hour {calibration.get('target_fa_per_hour'):g}"
        if data.get("recordings"):
            options += f" --recordings {data['recordings']}"
        options += _search_options(calibration.get("detector_search") or {})
        options += _ceiling_option(calibration)
        options += _kinds_option(data)
        options += _ensemble_weights_option(calibration)
        options += _grammar_option(calibration)
        weight = calibration.get("keyword_weight", 1.0)
        if calibration.get("keyword_weight_search"):
            options += " --keyword-weight auto"
        elif weight != KEYWORD_WEIGHT:
            options += f" --keyword-weight {weight:g}"
        commands += f"lmukws calibrate {checkpoint} {options}\n"
    streams = (meta.get("metrics") or {}).get("streams") or {}
    if not streams:
        return commands, ""
    words = str(streams.get("command") or "").split()
    if words[:3] == ["lmukws", "evaluate-streams", checkpoint] and "--out" in words[:-1]:
        report = words[words.index("--out") + 1]
        return commands + " ".join(words) + "\n", f"--streams {report} "
    report = f"reports/streams-{name}"
    recordings = (calibration.get("data") or {}).get("recordings")
    commands += (
        f"lmukws evaluate-streams {checkpoint} --data {DEFAULT_CORPUS} --split "
        f"{streams.get('split') or 'test'} "
        + (f"--recordings {recordings} " if recordings else "")
        + f"--out {report}\n"
    )
    return commands, f"--streams {report} "


def _run(args: argparse.Namespace) -> int:
    try:
        target = ship(
            Path(args.checkpoint),
            Path(args.report),
            args.name,
            Path(args.out_dir),
            [Path(h) for h in args.history],
            streams=Path(args.streams) if args.streams else None,
            continue_card=args.continue_card,
            recalibrated=args.recalibrated,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"lmukws ship-checkpoint: {error}")
        return 2
    print(f"shipped {target} (+ {target.with_suffix('.md').name}, reports/{args.name}/)")
    return 0


def _model_name(text: str) -> str:
    """argparse type of ``--name``: a model's name or an ensemble's."""
    from models.config import check_model_name

    try:
        return check_model_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register_ship_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ship-checkpoint`` to the ``lmukws`` command."""
    parser = subparsers.add_parser(
        "ship-checkpoint",
        help="make a trained checkpoint a shipped default (weights, report, model card)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("checkpoint", help="trained checkpoint (.safetensors)")
    parser.add_argument("--report", required=True, help="its lmukws evaluate report folder")
    parser.add_argument(
        "--name",
        required=True,
        type=_model_name,
        help="model name: one of the models, or an ensemble's (lmuformer+spiking-lmuformer)",
    )
    parser.add_argument(
        "--history",
        action="append",
        default=[],
        help="the run's history.json (per-epoch table in the card); repeat for each stage of a "
        "run continued with init_from, first stage first",
    )
    parser.add_argument(
        "--streams", help="its lmukws evaluate-streams report folder (recall, FA/h, DET curve)"
    )
    parser.add_argument(
        "--continue-card",
        action="store_true",
        help="the checkpoint is a further stage of the shipped NAME: keep that card's Reproduce "
        "up to the command writing this run's init_from, and its history rows; --history "
        "then names only the new stages' files",
    )
    parser.add_argument(
        "--recalibrated",
        action="store_true",
        help="the checkpoint holds the shipped NAME's weights, calibrated again: keep its "
        "card's Reproduce and history, with this calibration's calibrate and evaluate-streams "
        "commands in their place (needs --streams)",
    )
    parser.add_argument(
        "--out-dir", default=str(Path(__file__).resolve().parent.parent / "models" / "checkpoints")
    )
    parser.set_defaults(func=_run)
    return parser
