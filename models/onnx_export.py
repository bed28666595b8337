"""``python -m models.onnx_export CHECKPOINT``: export a checkpoint's streaming step to the ONNX
cache (``models.onnx_step``) in a process of its own, at low priority.

``models.runtime.WarmingStep`` runs it so that the export, minutes of Python and C++ that hold
the interpreter lock for seconds at a time, never stalls the engine that keeps serving on
torch meanwhile; the engine then only loads the cached graphs. Exit status 0 once the graphs
are in the cache and passed their check against torch, 1 otherwise (the reason on stderr).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from collections.abc import Sequence

#: how much the export yields to the serving processes (``os.nice`` increment)
NICENESS = 10
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> bool:
    """Ask Linux to kill this process when the one that started it ends (an engine process
    killed or stopped mid-export leaves no exporter behind; the next export of the model
    removes the half-written file); False if it has already ended."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the export just runs to its end
        pass
    return os.getppid() == parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.onnx_export", description=__doc__)
    parser.add_argument("checkpoint", help="the checkpoint whose streaming step to export")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and ONNX Runtime threads (0: one)"
    )
    parser.add_argument("--parent", type=int, default=0, help="end when this process ends")
    parser.add_argument("--cache-dir", default=None, help="the ONNX cache (default: the usual)")
    args = parser.parse_args(argv)
    if args.parent and not die_with_parent(args.parent):
        return 1
    os.nice(NICENESS)
    import torch

    from models.checkpoint import load_checkpoint
    from models.onnx_step import OnnxStreamStep

    torch.set_num_threads(max(1, args.threads))
    try:
        model, _ = load_checkpoint(args.checkpoint)
        OnnxStreamStep(model, threads=args.threads, cache_dir=args.cache_dir)
    except Exception as error:
        print(f"the ONNX export failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
