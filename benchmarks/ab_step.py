"""The streaming step of an earlier commit against this checkout's, interleaved in one process.

A change to ``models/`` that claims a faster step is measured side by side: the ``models``
package of ``--baseline`` (a git revision) is extracted into a temporary folder under another
name (``models_baseline``, its absolute imports rewritten), both models get the same weights,
and the harness's interleaved rounds time the naive window recompute, the baseline's step and
this checkout's step, so a burst of load on the shared machine hits all three alike.

    python -m benchmarks.ab_step --baseline HEAD~1 --model lmuformer --batches 64,256 --threads 2

Prints, per batch: the window's and both steps' median ms per hop, both window ratios and the
baseline/new step ratio (> 1: the new step is faster), and the counted FLOPs of both steps.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from types import ModuleType

from benchmarks.config import ONE_SECOND_FRAMES, comma_list

BASELINE_PACKAGE = "models_baseline"


def extract_baseline(revision: str, into: Path) -> ModuleType:
    """``models/`` of git ``revision``, importable as ``models_baseline`` from ``into``."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "models"],
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode(errors="replace").strip()
        raise SystemExit(f"git archive {revision} models failed: {message}") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASELINE_PACKAGE
    (into / "models").rename(package)
    pattern = re.compile(r'(\bfrom |\bimport |")models([.\s"])')
    for source in package.rglob("*.py"):
        text = source.read_text()
        source.write_text(pattern.sub(rf"\g<1>{BASELINE_PACKAGE}\g<2>", text))
    sys.path.insert(0, str(into))
    return importlib.import_module(BASELINE_PACKAGE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision of the earlier step")
    parser.add_argument("--model", default="lmuformer", help="lmuformer or spiking-lmuformer")
    parser.add_argument(
        "--batches", type=comma_list(int), default=(64, 256), help="comma-separated session counts"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--window-frames", type=int, default=ONE_SECOND_FRAMES)
    args = parser.parse_args(argv)

    import torch

    from benchmarks.config import BenchConfig
    from benchmarks.model_bench import build, count_flops, stream_case, window_case
    from benchmarks.timing import interleaved, median_ratio

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="lmukws-ab-") as folder:
        baseline_models = extract_baseline(args.baseline, Path(folder))
        new = build(args.model, BenchConfig(), device)
        old = baseline_models.build_model(args.model).eval()
        old.load_state_dict(new.state_dict())
        old_flops = count_flops(stream_case(old, 1, device)) / 1e6
        new_flops = count_flops(stream_case(new, 1, device)) / 1e6
        window_flops = count_flops(window_case(new, 1, args.window_frames, device)) / 1e6
        print(
            f"{args.model}, {torch.get_num_threads()} threads: step {old_flops:.3f} MFLOP "
            f"({args.baseline}) -> {new_flops:.3f} MFLOP (this checkout); "
            f"window of {args.window_frames} frames {window_flops:.1f} MFLOP"
        )
        for batch in args.batches:
            timings = interleaved(
                {
                    "window": window_case(new, batch, args.window_frames, device),
                    "old": stream_case(old, batch, device),
                    "new": stream_case(new, batch, device),
                },
                rounds=args.rounds,
                round_seconds=1.0,
                warmup=2,
            )
            window, old_step, new_step = timings["window"], timings["old"], timings["new"]
            print(
                f"B={batch}: window {window.median * 1e3:.1f} ms; step {old_step.median * 1e3:.3f}"
                f" -> {new_step.median * 1e3:.3f} ms; window ratio "
                f"{median_ratio(window, old_step):.1f}x -> {median_ratio(window, new_step):.1f}x;"
                f" baseline/new step {median_ratio(old_step, new_step):.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
