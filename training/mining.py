"""``lmukws mine-negatives CHECKPOINT --data CORPUS --out DIR``: hard negatives for training.

Runs a checkpoint over the *training* voices' keyword-free speech (their sentences and
paragraphs from ``lmukws data continuous``) and, with ``--recordings``, over real recorded speech
of use ``train``, exactly as the server would, and keeps every window where a keyword fires at
a low threshold: the audio that ends with the triggering frame's look-ahead, the length of a
stream window (``training.stream_windows``), so the triggering frame is the window's last pooled
frame. Stream training then draws them as ``hard`` scenes (label ``_unknown_``): the
false alarms the model makes become what it learns from.

Writes ``DIR/audio/*.wav`` and ``DIR/hard_negatives.csv`` (path, stream, time_s, keyword,
score; the folder's format is ``training.hard_negatives``). Never touches validation or test
voices, nor evaluation-only recordings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from training.command_errors import exits_2_on_bad_input
from training.hard_negatives import write_hard_negatives

__all__ = ["mine_negatives", "register_mine_parser"]


def mine_negatives(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    recordings: str | Path | None = None,
    threshold: float = 0.3,
    max_per_stream: int = 200,
    seed: int = 0,
    runtime: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Mine the training voices' (and recordings') false alarms into ``out``."""
    from training.stream_eval import firings_as_found, run_engine
    from training.stream_report import load_engine
    from training.stream_windows import StreamWindowConfig
    from training.streams import RATE, build_streams, streams_from_recordings
    from training.voices import write_wav

    engine = load_engine(checkpoint, runtime)
    streams = build_streams(data, "train", seed=seed, kinds=("negatives",))
    if recordings is not None:
        streams += streams_from_recordings(recordings, use="train", seed=seed)
    runs = run_engine(engine, streams, progress=progress)
    base = engine.detector_config()
    config = dataclasses.replace(
        base, thresholds=np.where(np.isfinite(base.thresholds), threshold, math.inf)
    )
    window = StreamWindowConfig(lookahead_frames=engine.lookahead_frames)
    hop, length = engine.fbank.frame_shift, engine.fbank.frame_length
    samples = length + (window.frames - 1) * hop
    last_pooled = window.history_frames + window.pool_frames - 1
    folder = Path(out)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for run in runs:
        found = firings_as_found(run, config)
        rng = np.random.default_rng([seed, zlib.crc32(run.stream.name.encode())])
        if len(found) > max_per_stream:
            keep = np.sort(rng.choice(len(found), max_per_stream, replace=False))
            found = [found[i] for i in keep]
        for d in found:
            frame = round((d.time_s - length / RATE) * RATE / hop)
            start = (frame - last_pooled) * hop
            piece = np.zeros(samples, np.float32)
            a, b = max(0, start), min(run.stream.audio.size, start + samples)
            if b <= a:
                continue
            piece[a - start : b - start] = run.stream.audio[a:b]
            name = f"{len(rows):06d}.wav"
            write_wav(folder / "audio" / name, piece)
            rows.append(
                {
                    "path": f"audio/{name}",
                    "stream": run.stream.name,
                    "time_s": round(d.time_s, 3),
                    "keyword": d.keyword,
                    "score": round(d.score, 4),
                }
            )
    write_hard_negatives(folder, rows)
    hours = sum(r.stream.scored_seconds for r in runs) / 3600
    summary = {
        "checkpoint": str(checkpoint),
        "threshold": threshold,
        "hours": round(hours, 3),
        "windows": len(rows),
        "per_hour": round(len(rows) / hours, 1) if hours else None,
        "streams": len(runs),
        "recordings": None if recordings is None else str(recordings),
    }
    (folder / "mining.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def register_mine_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mine-negatives`` to the ``lmukws`` subcommands."""
    p = subparsers.add_parser(
        "mine-negatives",
        help="collect a checkpoint's false alarms on training speech for stream training",
        description="Run a checkpoint over the training voices' keyword-free speech (and real "
        "recordings of use=train) and save every window where a keyword fires at --threshold, "
        "for the stream_hard_negatives recipe key.",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--recordings", type=Path)
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--max-per-stream", type=int, default=200)
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    return p


@exits_2_on_bad_input
def _run(args: argparse.Namespace) -> int:
    summary = mine_negatives(
        args.checkpoint,
        args.data,
        args.out,
        recordings=args.recordings,
        threshold=args.threshold,
        max_per_stream=args.max_per_stream,
        runtime=args.runtime,
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=1))
    return 0
