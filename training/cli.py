"""The training commands: ``lmukws data ...``, ``train``, ``evaluate``, ``evaluate-streams``,
``calibrate``, ``mine-negatives``, ``ship-checkpoint``, ``average-checkpoints`` and ``ablate``.

The command layer: it imports the library modules of ``training``, and none of them imports it.
Nothing heavy is imported at import time: every command imports its module when it runs, and a
module that adds its own parser (``training.synth``, ``training.recordings``, ...) is skipped
with a warning when it cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from training.backgrounds import DEFAULT_BACKGROUNDS, parse_backgrounds
from training.train_args import add_train_arguments


def _optional(module_name: str) -> ModuleType | None:
    """Import ``module_name`` if it exists; a module that fails to import is reported on stderr
    and skipped, so one broken command does not take the others down."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        problem: Exception = error
    except Exception as error:  # any import-time failure of that module
        problem = error
    print(
        f"lmukws: warning: {module_name} is unavailable ({type(problem).__name__}: {problem})",
        file=sys.stderr,
    )
    return None


def _run_speech_commands(args: argparse.Namespace) -> int:
    from training.speech_commands import run

    return run(args)


def _run_train(args: argparse.Namespace) -> int:
    from training.train import run

    return run(args)


def register_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train`` to the ``lmukws`` CLI (torch is imported only when it runs)."""
    parser = subparsers.add_parser(
        "train",
        help="train a model on a corpus (the paper's recipe; resumable)",
        description="Trainer: the paper's clip-level recipe on any manifest corpus, CPU or "
        "CUDA, resumable.",
    )
    add_train_arguments(parser)
    parser.set_defaults(func=_run_train)
    return parser


def _run_evaluate(args: argparse.Namespace) -> int:
    """``lmukws evaluate``: evaluate, write the report folder, print the headline numbers."""
    import torch

    from models import CheckpointError
    from training.evaluate import evaluate_checkpoint
    from training.report import write_report

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / "eval" / f"{Path(args.checkpoint).stem}-{args.split}"
    try:
        evaluation, meta, provenance = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            split=args.split,
            batch_size=args.batch_size,
            chunk_frames=args.chunk_frames,
            device=args.device,
            limit=args.limit,
            recordings=getattr(args, "recordings", None),
            backgrounds=getattr(args, "backgrounds", None),
        )
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics = write_report(
        out,
        evaluation,
        checkpoint=Path(args.checkpoint),
        metadata=meta,
        data=provenance,
        split=args.split,
    )
    k99 = metrics["streaming"]["frames_to_99"]
    reached = f"{k99} of {evaluation.num_frames} frames" if k99 else "only after the clip ended"
    print(
        f"accuracy {100 * evaluation.accuracy:.2f} % on {evaluation.num_clips} clips "
        f"({args.split}); streaming reaches 99 % of it after {reached}; report: {out}"
    )
    dev = metrics.get("real_speech_dev")
    if dev:
        speakers = ", ".join(
            f"{speaker} {100 * s['accuracy']:.1f} %" for speaker, s in dev["per_speaker"].items()
        )
        kinds = ", ".join(
            f"{kind}s {s['correct']}/{s['count']}" for kind, s in dev["by_kind"].items()
        )
        print(
            f"real-speech dev set: {100 * dev['accuracy']:.2f} % on {dev['clips']} clips "
            f"({kinds}); {speakers}"
        )
    backgrounds = metrics.get("backgrounds")
    if backgrounds:
        print(
            f"keyword clips ({backgrounds['clips']}): clean "
            f"{100 * backgrounds['clean']['accuracy']:.2f} %, "
            + ", ".join(
                f"{name} {100 * b['accuracy']:.2f} %"
                for name, b in backgrounds["backgrounds"].items()
            )
        )
    return 0


def _add_speech_commands(data_subparsers: Any) -> None:
    """``data speech-commands`` (arguments kept in sync with training.speech_commands)."""
    parser = data_subparsers.add_parser(
        "speech-commands",
        help="prepare Google Speech Commands V2 (35 words) and write its manifest",
        description=(
            "Prepare Google Speech Commands V2 from an extracted folder or the official tarball "
            "speech_commands_v0.02.tar.gz (or download it with --download), with the official "
            "validation/testing split and the paper's label order; writes manifest.csv and "
            "corpus.json."
        ),
    )
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="extracted folder, the .tar.gz archive, or a folder to download into",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where manifest.csv/corpus.json go and archives are extracted (default: dataset dir)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download the official archive if not present"
    )
    parser.add_argument(
        "--url",
        default=None,
        help="archive URL for --download (default: $LMUKWS_SPEECH_COMMANDS_URL or the official)",
    )
    parser.set_defaults(func=_run_speech_commands)


def _backgrounds(text: str) -> list[tuple[str, float]]:
    try:
        return parse_backgrounds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a corpus split; writes a report folder",
        description=(
            "Evaluate a checkpoint on a manifest split (no augmentation) and write a report: "
            "metrics.json, per_class.md, confusion.png, and the accuracy-vs-frames-seen curve "
            "computed through the streaming form (accuracy_vs_frames.json/.png), with README.md."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a .safetensors checkpoint")
    parser.add_argument("--data", required=True, type=Path, help="corpus folder with manifest.csv")
    parser.add_argument(
        "--split", default="test", choices=("train", "validation", "test"), help="default: test"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default: runs/eval/<checkpoint name>-<split>)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="clips per batch")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=1,
        help="frames per streaming call (the curve is the same for any chunking; default 1)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N clips")
    parser.add_argument(
        "--recordings",
        type=Path,
        default=None,
        help="an `lmukws data recordings` folder: also score its real-speech dev set (use=dev "
        "keyword and word clips), reported separately",
    )
    parser.add_argument(
        "--backgrounds",
        nargs="?",
        type=_backgrounds,
        const=list(DEFAULT_BACKGROUNDS),
        default=None,
        metavar="KIND:SNR,...",
        help="also score the keyword clips with the test streams' backgrounds mixed in "
        "(babble of other voices, noise, tones) at these SNRs; alone: "
        + ",".join(f"{k}:{s:g}" for k, s in DEFAULT_BACKGROUNDS),
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)",
    )
    parser.set_defaults(func=_run_evaluate)


def register(subparsers: Any) -> None:
    """Add ``data`` (``speech-commands``, ``synth``), ``train``, ``evaluate``,
    ``ship-checkpoint`` and ``average-checkpoints``."""
    data = subparsers.add_parser(
        "data", help="prepare training data", description="Prepare a corpus and its manifest."
    )
    data_subparsers = data.add_subparsers(dest="data_command", metavar="SOURCE")
    data_subparsers.required = True
    _add_speech_commands(data_subparsers)
    synth = _optional("training.synth")
    if synth is not None:
        synth.register_synth_parser(data_subparsers)
    if (recordings := _optional("training.recordings")) is not None:
        recordings.register_recordings_parser(data_subparsers)
    if (continuous := _optional("training.continuous")) is not None:
        continuous.register_continuous_parser(data_subparsers)
    if (voice_probe := _optional("training.voice_probe")) is not None:
        voice_probe.register_probe_parser(data_subparsers)
    register_train_parser(subparsers)
    _add_evaluate(subparsers)
    if (stream_report := _optional("training.stream_report")) is not None:
        stream_report.register_evaluate_streams_parser(subparsers)
    if (calibrate := _optional("training.calibrate")) is not None:
        calibrate.register_calibrate_parser(subparsers)
    if (mining := _optional("training.mining")) is not None:
        mining.register_mine_parser(subparsers)
    from training.ablation import register_ablate_parser
    from training.average import register_average_parser
    from training.ship import register_ship_parser

    register_ship_parser(subparsers)
    register_average_parser(subparsers)
    register_ablate_parser(subparsers)
