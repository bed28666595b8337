"""``lmukws convert-checkpoint``: import the authors' released ``.pth`` state dicts;
``lmukws ensemble``: average streaming checkpoints into one served model.

Imports nothing heavy at import time (torch is imported when the command runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from models.config import MODEL_NAMES

MODEL_CHOICES = MODEL_NAMES


def _run_convert(args: argparse.Namespace) -> int:
    from models.convert import ConversionError, convert_checkpoint

    try:
        model, metadata = convert_checkpoint(
            args.src,
            args.dst,
            args.model,
            labels=args.labels,
            theta=args.theta,
            num_heads=args.num_heads,
        )
    except (ConversionError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in model.parameters())
    form = (
        f"look-ahead {model.lookahead_frames} frames"
        if model.streaming
        else f"parallel only (window {model.config.window} frames)"
    )
    print(
        f"wrote {args.dst}: {args.model} ({metadata['training']['authors_model']}), "
        f"{params:,} parameters, {len(metadata['labels'])} labels, {form}"
    )
    return 0


def _run_ensemble(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointError
    from models.ensemble_checkpoint import write_ensemble

    try:
        model, _ = write_ensemble(args.checkpoints, args.weights, args.out)
    except (CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in model.parameters())
    weights = ", ".join(f"{w:g}" for w in model.config.weights)
    print(
        f"wrote {args.out}: {model.config.name} (weights {weights}), {params:,} parameters; "
        "uncalibrated: run lmukws calibrate on it"
    )
    return 0


def _weights(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive weights, got {text!r}")
    return values


def register(subparsers: Any) -> None:
    """Add ``convert-checkpoint`` and ``ensemble``."""
    parser = subparsers.add_parser(
        "ensemble",
        help="average streaming checkpoints' per-frame logits into one served checkpoint",
        description=(
            "Write one checkpoint whose network runs every given streaming model on the same "
            "frames and averages their per-frame logits with --weights (models.ensemble). The "
            "members must share labels, features and look-ahead. The result is uncalibrated: "
            "run lmukws calibrate on it, then serve it with --checkpoint."
        ),
    )
    parser.add_argument("checkpoints", type=Path, nargs="+", help="two or more .safetensors")
    parser.add_argument(
        "--weights",
        type=_weights,
        help="comma-separated, one per checkpoint, normalised to sum to 1 (default: equal)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors")
    parser.set_defaults(func=_run_ensemble)

    parser = subparsers.add_parser(
        "convert-checkpoint",
        help="convert the authors' released LMUFormer .pth into an lmukws .safetensors",
        description=(
            "Import a state dict released by the LMUFormer authors (saved from nn.DataParallel; "
            "read with torch.load(weights_only=True)), map its names to ours, check the shapes "
            "and write a .safetensors checkpoint with the paper's labels and feature settings."
        ),
    )
    parser.add_argument("src", type=Path, help="the authors' .pth file")
    parser.add_argument("dst", type=Path, help="output .safetensors checkpoint")
    parser.add_argument(
        "--model",
        required=True,
        choices=MODEL_CHOICES,
        help="lmuformer (their lmu_rnn_conv1d), spiking-lmuformer (slmu_rnn_ms_conv1d), "
        "spiking-lmu (slmu_rnn_conv1d) or spiking-attention (attn_ms_conv1d)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="comma-separated labels or a file with one per line (default: the paper's 35)",
    )
    parser.add_argument(
        "--theta", type=float, default=128.0, help="LMU theta the model used (default 128)"
    )
    parser.add_argument(
        "--num-heads",
        type=int,
        default=16,
        help="self-attention heads of spiking-attention (not in the tensors; default 16, "
        "the authors' gsc.yml)",
    )
    parser.set_defaults(func=_run_convert)
