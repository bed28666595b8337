"""What the detector's background normalisation and speech gate cost beside the model's
streaming step.

Per batch of B sessions and one engine step of ``--frames`` frames each, interleaved in one
process (so a burst of load on the shared machine hits every case alike): the model's streaming
step (``model.stream_frames`` on ``--frames`` frames of B sessions), the detector without a
background (``detect_batch``), with one (``background_frames`` > 0), and with one and the
speech gate as shipped (``speech_gate_frames`` > 0). Posteriors are random Dirichlet rows over
the model's 37 labels, thresholds 0.9 (the cost of a quiet step, the common case, does not
depend on them).

    python -m benchmarks.detector_cost --sessions 1,64,256 --frames 10 --threads 1

Prints, per batch: µs per session-frame of each case, the background's and the gate's extra
detector time as shares of the model step's, and the with/without detector ratio (medians of
per-round ratios).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks.config import comma_list
from benchmarks.model_bench import build, stream_case
from benchmarks.timing import interleaved, median_ratio

#: the shipped lmuformer's background time constant (frames)
BACKGROUND_FRAMES = 10_000
#: the shipped lmuformer's speech gate (frames of other speech)
SPEECH_GATE_FRAMES = 200


def detector_case(
    labels: tuple[str, ...],
    batch: int,
    frames: int,
    background_frames: int,
    speech_gate_frames: int = 0,
) -> Callable[[], None]:
    """One engine step of the detector for ``batch`` sessions of ``frames`` new frames."""
    from streaming.detector import DetectorConfig, DetectorState, detect_batch

    config = DetectorConfig.build(
        labels,
        default_threshold=0.9,
        background_frames=background_frames,
        speech_gate_frames=speech_gate_frames,
    )
    configs = [config] * batch
    rng = np.random.default_rng(batch)
    posteriors = rng.dirichlet(np.full(len(labels), 0.1), size=(batch, frames))
    holder = {"states": [DetectorState.initial(config) for _ in range(batch)]}

    def step() -> None:
        holder["states"] = detect_batch(configs, holder["states"], posteriors)[0]

    return step


def measure(
    model_name: str,
    sessions: Sequence[int],
    frames: int,
    rounds: int,
    round_seconds: float,
) -> list[dict[str, Any]]:
    """One row per batch size: µs per session-frame of the model step and of the detector
    without and with a background, and the ratios (see the module docstring)."""
    from benchmarks.config import BenchConfig

    model = build(model_name, BenchConfig(), torch.device("cpu"))
    labels = (*(f"k{i}" for i in range(35)), "_unknown_", "_silence_")
    rows = []
    for batch in sessions:
        cases = {
            "model": stream_case(model, batch, torch.device("cpu"), frames),
            "detector": detector_case(labels, batch, frames, 0),
            "detector_background": detector_case(labels, batch, frames, BACKGROUND_FRAMES),
            "detector_gate": detector_case(
                labels, batch, frames, BACKGROUND_FRAMES, SPEECH_GATE_FRAMES
            ),
        }
        timings = interleaved(cases, rounds=rounds, round_seconds=round_seconds)
        per = {k: t.median / (batch * frames) * 1e6 for k, t in timings.items()}
        extra = per["detector_background"] - per["detector"]
        gate = per["detector_gate"] - per["detector_background"]
        rows.append(
            {
                "sessions": batch,
                "frames": frames,
                "us_per_session_frame": {k: round(v, 3) for k, v in per.items()},
                "background_extra_share_of_model": round(extra / per["model"], 4),
                "gate_extra_share_of_model": round(gate / per["model"], 4),
                "detector_ratio_with_background": round(
                    median_ratio(timings["detector_background"], timings["detector"]), 3
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lmuformer", help="model whose step is the reference")
    parser.add_argument("--sessions", type=comma_list(int), default=(1, 64, 256))
    parser.add_argument("--frames", type=int, default=10, help="frames per session per step")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = measure(args.model, args.sessions, args.frames, args.rounds, args.round_seconds)
    print(
        "| sessions | model step µs/session-frame | detector | detector with background "
        "| with background and speech gate | background extra / model step | gate extra / "
        "model step | with / without background (detector) |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        us = r["us_per_session_frame"]
        print(
            f"| {r['sessions']} | {us['model']:.2f} | {us['detector']:.2f} | "
            f"{us['detector_background']:.2f} | {us['detector_gate']:.2f} | "
            f"{r['background_extra_share_of_model']:.1%} | {r['gate_extra_share_of_model']:.1%} | "
            f"{r['detector_ratio_with_background']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
