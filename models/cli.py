"""``lmukws convert-checkpoint``: import the authors' released ``.pth`` state dicts.

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


def register(subparsers: Any) -> None:
    """Add ``convert-checkpoint``."""
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
