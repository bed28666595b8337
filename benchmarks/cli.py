"""``lmukws bench``: the performance harness.

Imports nothing heavy at import time; the harness (torch, matplotlib) loads when the command
runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from benchmarks.config import comma_list
from models.config import RUNTIMES

DEFAULT_OUT = Path("reports/bench")


def _run(args: argparse.Namespace) -> int:
    from benchmarks.config import BenchConfig
    from benchmarks.run import run

    changes: dict[str, Any] = {"device": args.device, "threads": args.threads}
    for name in (
        "models",
        "sections",
        "stream_batches",
        "window_batches",
        "train_batch",
        "train_data",
        "train_recipe",
        "train_data_steps",
        "engine_sessions",
        "load_clients",
        "load_seconds",
        "load_chunk_ms",
        "soak_seconds",
        "soak_clients",
        "soak_slow_readers",
        "soak_rest_files",
        "engine_chunk_ms",
        "engine_max_batch",
        "engine_processes",
        "runtime",
        "window_hop_ms",
    ):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.checkpoint:
        changes["checkpoints"] = tuple(args.checkpoint)
    preset = "quick" if args.quick else args.preset
    try:
        config = BenchConfig.preset_config(preset, **changes)
    except ValueError as error:
        print(f"lmukws bench: {error}", file=sys.stderr)
        return 2
    if args.argv is None:  # through the lmukws dispatcher
        command = "lmukws " + shlex.join(sys.argv[1:])
    else:
        command = "python -m benchmarks " + shlex.join(args.argv)
    try:
        run(config, args.out, command=command.strip())
    except ValueError as error:
        print(f"lmukws bench: {error}", file=sys.stderr)
        return 2
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="fewer sizes, shorter rounds (same as --preset quick)"
    )
    parser.add_argument(
        "--preset",
        choices=("full", "quick", "smoke"),
        default="full",
        help="full: the complete table; quick: a short run; smoke: a tiny model (tests)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--models", type=comma_list(str), default=None, help="comma-separated model names"
    )
    parser.add_argument(
        "--sections",
        type=comma_list(str),
        default=None,
        help="comma-separated: model,window,runtime,train,engine,rest,load,soak (default: all)",
    )
    parser.add_argument(
        "--stream-batches",
        type=comma_list(int),
        default=None,
        help="batch sizes of the stream step",
    )
    parser.add_argument(
        "--window-batches",
        type=comma_list(int),
        default=None,
        help="batch sizes of the window test",
    )
    parser.add_argument(
        "--train-batch", type=int, default=None, help="batch of the training-step section"
    )
    parser.add_argument(
        "--train-data",
        default=None,
        help="train section: also run the trainer on this corpus (its real data path: loaders, "
        "augmentation, fbank) and report its step time and model share beside compute alone",
    )
    parser.add_argument(
        "--train-recipe",
        default=None,
        help="recipe file of the --train-data run (default: the recipe defaults); its model, "
        "batch, device and length are the bench's",
    )
    parser.add_argument(
        "--train-data-steps",
        type=int,
        default=None,
        help="steps per epoch of the --train-data run (two epochs; the second counts; default 30)",
    )
    parser.add_argument(
        "--engine-sessions", type=comma_list(int), default=None, help="concurrent engine sessions"
    )
    parser.add_argument(
        "--load-clients",
        type=comma_list(int),
        default=None,
        help="websocket clients of the load test",
    )
    parser.add_argument(
        "--load-seconds", type=float, default=None, help="seconds each load-test client streams"
    )
    parser.add_argument(
        "--load-chunk-ms",
        type=float,
        default=None,
        help="audio per websocket message in the load test (default 40, the browser demo's)",
    )
    soak_options: tuple[tuple[str, type, str], ...] = (
        ("--soak-seconds", float, "length of the soak run (default 60)"),
        ("--soak-clients", int, "normal real-time clients of the soak (default 8)"),
        ("--soak-slow-readers", int, "soak clients that never read their scores (default 4)"),
        ("--soak-rest-files", int, "60 s files per POST /v1/classify of the soak (default 10)"),
    )
    for flag, cast, text in soak_options:
        parser.add_argument(flag, type=cast, default=None, help=text)
    parser.add_argument(
        "--engine-chunk-ms",
        type=float,
        default=None,
        help="audio per push in the engine section (default 20)",
    )
    parser.add_argument(
        "--engine-max-batch", type=int, default=None, help="engine max_batch (default: serve's)"
    )
    parser.add_argument(
        "--engine-processes",
        type=int,
        default=None,
        help="serve's engine processes in the rest/load sections (default: serve's; 0: in-process)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="what runs the model's streaming steps in the engine/load sections "
        "(default: serve's, auto)",
    )
    parser.add_argument(
        "--window-hop-ms",
        type=float,
        default=None,
        help="engine/server sections: how often a window model (spiking-attention) recomputes "
        "its window (default: serve's, 100)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="checkpoint to serve in the engine/server sections (repeat for both models; "
        "default: the shipped ones, else random weights)",
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the models, the engine and the server; write JSON + PNG plots",
        description=(
            "Measure both models side by side: parameters, streaming step cost per frame, "
            "parallel clips/s, naive windowed recompute vs streaming, training-step time, "
            "engine throughput, REST and websocket load. Prints one summary table and writes "
            "results.json, summary.md and PNG plots into --out."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=_run, argv=None)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks [options]`` (the same as ``lmukws bench``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return _run(args)
