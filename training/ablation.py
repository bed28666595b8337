"""``lmukws ablate``: train recipes that differ from a control in one thing each, evaluate them
on the same held-out clips, and tabulate what each change moved.

The first config is the control; every other config should change one thing against it (its
recipe is diffed against the control's, and the table says what changed). Each run trains
through ``lmukws train`` in a child process (resumable: a finished run is not trained again),
then one checkpoint of it (``--checkpoint``, default the last epoch, so that no run is picked on
its own validation set) is evaluated on the test split of every ``--eval`` corpus, with the
real-speech dev set of ``--recordings`` on the first. ``--baseline`` adds checkpoints that are
only evaluated (the shipped weights the runs start from, soups of the runs).

Writes ``ablation.json`` and ``README.md`` (the table, with each accuracy's binomial standard
error, so that a reader can tell a change from noise) into ``--out``; each evaluation's full
report goes into ``--out/RUN/CORPUS``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

IGNORED_KEYS = ("out", "notes")  # recipe keys that differ between runs without changing them
SHOWN_ENGINE = "kokoro"  # engines whose held-out voices get a column of their own


def recipe_diff(control: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The keys (``augment.room_prob`` for nested tables) whose values differ, with ``other``'s."""
    changed: dict[str, Any] = {}
    for key in sorted(set(control) | set(other)):
        if key in IGNORED_KEYS:
            continue
        a, b = control.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.update({f"{key}.{k}": v for k, v in recipe_diff(a, b).items()})
        elif a != b:
            changed[key] = b
    return changed


def standard_error(accuracy: float, count: int) -> float:
    """Binomial standard error of an accuracy measured on ``count`` clips."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / count) if count else float("nan")


def engine_accuracy(per_voice: dict[str, dict[str, Any]], engine: str) -> dict[str, Any] | None:
    """Accuracy over the voices of one engine (voice ids start with ``engine:``), or None."""
    from training.report import per_source_stats  # imports torch: not at `lmukws --help`

    return per_source_stats(per_voice).get(engine)


def summarise(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one evaluation report that the table shows."""
    row: dict[str, Any] = {
        "count": metrics["num_clips"],
        "correct": metrics["correct"],
        "accuracy": metrics["accuracy"],
    }
    shown = engine_accuracy(metrics.get("per_voice", {}), SHOWN_ENGINE)
    if shown:
        row[SHOWN_ENGINE] = shown
    dev = metrics.get("real_speech_dev")
    if dev:
        row["real_speech_dev"] = {k: dev[k] for k in ("clips", "correct", "accuracy")}
    return row


def _finished(recipe: Any) -> bool:
    history = Path(recipe.out) / "history.json"
    if not history.is_file():
        return False
    return len(json.loads(history.read_text())) >= recipe.epochs


def _checkpoint(recipe: Any, which: str) -> Path:
    return Path(recipe.out) / f"{which}.safetensors"


def _evaluate(
    checkpoint: Path, corpus: str, out: Path, recordings: str | None, threads: int
) -> dict[str, Any]:
    """Evaluate (or reuse a report newer than the checkpoint) and return its metrics."""
    metrics_path = out / "metrics.json"
    if metrics_path.is_file() and metrics_path.stat().st_mtime >= checkpoint.stat().st_mtime:
        return json.loads(metrics_path.read_text())
    command = [sys.executable, "-m", "lmukws.cli", "evaluate", str(checkpoint), "--data", corpus]
    command += ["--split", "test", "--threads", str(threads), "--out", str(out)]
    if recordings:
        command += ["--recordings", recordings]
    subprocess.run(command, check=True)
    return json.loads(metrics_path.read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def table(result: dict[str, Any]) -> list[str]:
    """Markdown lines: one row per run, one column per corpus (and shown engine), the dev set."""
    corpora = result["corpora"]
    head = ["run", "what changed against the control"]
    for corpus in corpora:
        head.append(f"`{corpus}` test")
        if any(SHOWN_ENGINE in r["eval"].get(corpus, {}) for r in result["runs"]):
            head.append(f"{SHOWN_ENGINE} voices of `{corpus}`")
    head.append("real-speech dev")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    control = next((r for r in result["runs"] if r["role"] == "control"), None)

    def cell(now: dict[str, Any] | None, ref: dict[str, Any] | None) -> str:
        if not now:
            return "—"
        text = f"{_pct(now['accuracy'])} ± {_pct(standard_error(now['accuracy'], now['count']))}"
        if ref and ref is not now:
            text += f" ({100 * (now['accuracy'] - ref['accuracy']):+.2f})"
        return text

    for run in result["runs"]:
        changed = run.get("changed")
        what = {"baseline": "(evaluated only)", "control": "the control"}.get(run["role"], "")
        if changed:
            what = ", ".join(f"`{k}`={json.dumps(v)}" for k, v in changed.items())
        cells = [f"`{run['name']}`", what]
        for corpus in corpora:
            now = run["eval"].get(corpus)
            ref = control["eval"].get(corpus) if control and run["role"] == "change" else None
            cells.append(cell(now, ref))
            if any(SHOWN_ENGINE in r["eval"].get(corpus, {}) for r in result["runs"]):
                cells.append(cell(now and now.get(SHOWN_ENGINE), ref and ref.get(SHOWN_ENGINE)))
        first = run["eval"].get(corpora[0], {})
        ref_dev = control["eval"].get(corpora[0], {}) if control and run["role"] == "change" else {}
        dev, dev0 = first.get("real_speech_dev"), ref_dev.get("real_speech_dev")
        cells.append(
            cell(dev and {**dev, "count": dev["clips"]}, dev0 and {**dev0, "count": dev0["clips"]})
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ablate(args: argparse.Namespace) -> dict[str, Any]:
    """Train (resuming), evaluate and tabulate; returns what ``ablation.json`` holds."""
    from training.recipe import load_recipe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpora = list(args.eval)
    recipes = [(Path(c), load_recipe(c)) for c in args.configs]
    control = asdict(recipes[0][1])
    runs: list[dict[str, Any]] = []
    for checkpoint in args.baseline or []:
        runs.append({"name": Path(checkpoint).stem, "role": "baseline", "checkpoint": checkpoint})
    for i, (config, recipe) in enumerate(recipes):
        if not args.no_train and not _finished(recipe):
            subprocess.run(
                [sys.executable, "-m", "lmukws.cli", "train", "--config", str(config)], check=True
            )
        runs.append(
            {
                "name": config.stem,
                "role": "control" if i == 0 else "change",
                "config": str(config),
                "checkpoint": str(_checkpoint(recipe, args.checkpoint)),
                "changed": recipe_diff(control, asdict(recipe)) if i else {},
                "notes": recipe.notes,
            }
        )
    for run in runs:
        run["eval"] = {}
        for j, corpus in enumerate(corpora):
            metrics = _evaluate(
                Path(run["checkpoint"]),
                corpus,
                out / run["name"] / Path(corpus).name,
                args.recordings if j == 0 else None,
                args.threads,
            )
            run["eval"][corpus] = summarise(metrics)
    result = {"corpora": corpora, "checkpoint": args.checkpoint, "runs": runs}
    (out / "ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    command = " ".join(["lmukws ablate", *args.configs, "--out", str(out)])
    command += "".join(f" --eval {c}" for c in corpora)
    if args.recordings:
        command += f" --recordings {args.recordings}"
    command += "".join(f" --baseline {c}" for c in args.baseline or [])
    if args.checkpoint != "last":
        command += f" --checkpoint {args.checkpoint}"
    readme = [
        "# Ablation: " + ", ".join(f"`{r['name']}`" for r in runs),
        "",
        f"`{command}`",
        "",
        f"Test accuracy (%) of each run's `{args.checkpoint}` checkpoint, ± one binomial standard "
        "error; in brackets the change against the control in points.",
        "",
        *table(result),
        "",
        *[f"- `{r['name']}`: {r['notes']}" for r in runs if r.get("notes")],
        "",
    ]
    (out / "README.md").write_text("\n".join(readme))
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        result = ablate(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"lmukws ablate: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        failed = " ".join(error.cmd[2:])
        print(f"lmukws ablate: {failed} failed ({error.returncode})", file=sys.stderr)
        return 1
    print("\n".join(table(result)))
    print(f"report: {Path(args.out) / 'README.md'}")
    return 0


def register_ablate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ablate`` to the ``lmukws`` CLI."""
    parser = subparsers.add_parser(
        "ablate",
        help="train recipes that change one thing each against a control, and tabulate",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("configs", nargs="+", help="recipe files; the first is the control")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument(
        "--eval", action="append", required=True, help="corpus whose test split scores each run"
    )
    parser.add_argument("--recordings", help="`lmukws data recordings` folder: real-speech dev set")
    parser.add_argument(
        "--baseline",
        action="append",
        help="a checkpoint that is only evaluated, e.g. the shipped one or a soup of the runs "
        "(repeatable; its row is named after the file)",
    )
    parser.add_argument(
        "--checkpoint", default="last", help="which checkpoint of a run: last (default) or NAME"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads for evaluation")
    parser.add_argument("--no-train", action="store_true", help="evaluate finished runs only")
    parser.set_defaults(func=_run)
    return parser
