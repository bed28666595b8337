"""Files per second of ``lmukws classify --ray`` beside in-process ``lmukws classify``, on the
same one-second clips (issue 20). Not part of ``lmukws bench``: a Ray run starts a cluster.

    python -m benchmarks.ray_classify [--files 1000] [--workers 1,2] [--rounds 2]
                                      [--checkpoint PATH] [--out reports/ray-classify]

Cases, run in turn in every round so that a burst of load from other jobs hits them alike:

- ``in-process``: ``client.local.classify_files`` as ``lmukws classify FILE...`` runs it
  (read every file, load the engine, one parallel-form call), with torch's default threads
  and with one thread;
- ``ray-N``: ``client.ray_batch.classify_with_ray`` with N workers (one torch thread each),
  starting and stopping its own local Ray exactly as ``lmukws classify --ray`` does.

For each: the wall time of the whole call (Ray's start and stop included) and, for Ray, the
time from the first file sent to the last line written (the pipeline: actors' start, model
loads, decoding, classification, writing); files/s are medians over the rounds. Also
recorded: the load average around each call and the busiest other processes after it.
Writes ``results.json`` into ``--out`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.audio import RATE, speech_track
from benchmarks.checkpoints import cpu_seconds, host_cpu_seconds, process_tree
from benchmarks.timing import cpu_model, load_average


def write_clips(folder: Path, count: int, seconds: float = 1.0) -> str:
    """``count`` WAVs (16 kHz PCM16) cut from one speech track; returns the audio's source."""
    import soundfile as sf

    size = int(seconds * RATE)
    track, source = speech_track(count * seconds, seed=0)
    for i in range(count):
        sf.write(folder / f"clip{i:04d}.wav", track[i * size : (i + 1) * size], RATE, "PCM_16")
    return source


def busiest_processes(limit: int = 4) -> list[str]:
    """The busiest processes outside this one and its descendants (``ps``: CPU % over each
    one's life, elapsed time, command), to say what else ran on the machine."""
    ours = {str(pid) for pid in process_tree(os.getpid())}
    try:
        text = subprocess.run(
            ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(None, 1) for line in text.splitlines()[1:]]
    others = [" ".join(rest.split())[:120] for pid, rest in rows if pid not in ours]
    return others[:limit]


class ProcessCpu:
    """CPU seconds of this process and of its descendants (Ray's processes when it starts a
    local Ray), sampled from a thread every ``period`` seconds: a process that exits loses at
    most its last period. Descendants are told apart by their title: the classifying actors
    (``ClipClassifier``) and the rest of Ray (decoding tasks, raylet, GCS, agents)."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._own = time.process_time()

    def _sample(self) -> None:
        for pid in process_tree(os.getpid())[1:]:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            kind, _ = self.seen.get(pid, ("ray", 0.0))
            if b"ClipClassifier" in title:
                kind = "actors"
            self.seen[pid] = (kind, cpu_seconds(pid))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> ProcessCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self) -> dict[str, float]:
        """{"driver": this process, "actors": ..., "ray": the other descendants}."""
        out = {"driver": time.process_time() - self._own, "actors": 0.0, "ray": 0.0}
        for kind, cpu in self.seen.values():
            out[kind] += cpu
        return {k: round(v, 2) for k, v in out.items()}


def measure(case: Callable[[], float | None]) -> dict[str, Any]:
    """One call: wall seconds, the pipeline's seconds (when the case reports them), the CPU
    seconds of this process and of Ray's (``ProcessCpu``), the load average before and after,
    and the cores the whole machine kept busy meanwhile (ours and other jobs')."""
    load_before, (busy_before, _) = load_average(), host_cpu_seconds()
    started = time.perf_counter()
    with ProcessCpu() as cpu:
        pipeline = case()
    wall = time.perf_counter() - started
    busy = (host_cpu_seconds()[0] - busy_before) / wall
    row: dict[str, Any] = {"wall_s": round(wall, 3), "cpu_s": cpu.seconds()}
    if pipeline is not None:
        row["pipeline_s"] = round(pipeline, 3)
    row |= {"load_before": load_before, "load_after": load_average()}
    row["host_busy_cores"] = round(busy, 2)
    row["others"] = busiest_processes()
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_classify", description=__doc__)
    parser.add_argument("--files", type=int, default=1000, help="one-second clips (1000)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts (1,2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case (2)")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped default model")
    parser.add_argument("--out", type=Path, default=Path("reports/ray-classify"))
    args = parser.parse_args(argv)
    import ray
    import torch

    from client.local import classify_files
    from client.ray_batch import audio_files, classify_with_ray

    default_threads = torch.get_num_threads()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory(prefix="lmukws-ray-bench-") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        source = write_clips(folder, args.files)
        paths = audio_files(folder)

        def in_process(threads: int) -> Callable[[], None]:
            def run() -> None:
                torch.set_num_threads(threads)
                try:
                    assert len(classify_files(paths, checkpoint=args.checkpoint)) == len(paths)
                finally:
                    torch.set_num_threads(default_threads)

            return run

        def on_ray(workers: int) -> Callable[[], float]:
            def run() -> float:
                out = Path(tmp) / f"ray-{workers}.jsonl"
                out.unlink(missing_ok=True)
                summary = classify_with_ray(
                    folder, out, workers=workers, checkpoint=args.checkpoint, progress=False
                )
                assert summary.written == len(paths) and summary.errors == 0
                return summary.seconds

            return run

        cases: dict[str, Callable[[], Any]] = {
            f"in-process, {default_threads} threads": in_process(default_threads),
            "in-process, 1 thread": in_process(1),
        }
        for n in (int(w) for w in args.workers.split(",")):
            cases[f"ray, {n} worker{'s' if n > 1 else ''}"] = on_ray(n)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for r in range(args.rounds):
            for name, case in cases.items():
                runs[name].append(measure(case))
                row = {k: v for k, v in runs[name][-1].items() if k != "others"}
                print(f"round {r + 1}: {name}: {row}", flush=True)

    results = {
        "command": "python -m benchmarks.ray_classify "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "files": args.files,
        "clip_seconds": 1.0,
        "audio": source,
        "checkpoint": args.checkpoint or "shipped default (models/checkpoints/lmuformer)",
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "started": started,
        },
        "cases": {name: summarize(rows, args.files) for name, rows in runs.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


def summarize(rows: list[dict[str, float]], files: int) -> dict[str, Any]:
    """Median files/s over the rounds (whole call, and pipeline where there is one)."""
    out: dict[str, Any] = {"runs": rows}
    wall = statistics.median(r["wall_s"] for r in rows)
    out["files_per_s"] = round(files / wall, 1)
    if all("pipeline_s" in r for r in rows):
        out["pipeline_files_per_s"] = round(
            files / statistics.median(r["pipeline_s"] for r in rows), 1
        )
    for kind in ("driver", "actors", "ray"):
        cpu = statistics.median(r["cpu_s"][kind] for r in rows)
        out[f"{kind}_cpu_ms_per_file"] = round(1e3 * cpu / files, 2)
    out["load_average"] = round(float(np.mean([r["load_before"] for r in rows])), 2)
    return out


def table(results: dict[str, Any]) -> str:
    """The Markdown table of ``results.json``: files/s per case and relative to in-process."""
    cases = results["cases"]
    base = next(iter(cases.values()))["files_per_s"]
    lines = [
        "| case | files/s (whole call) | files/s (pipeline) | vs first row "
        "| CPU ms/file: this process, actors, rest of Ray | load avg |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, c in cases.items():
        pipeline = c.get("pipeline_files_per_s", "")
        ratio = c["files_per_s"] / base
        cpu = ", ".join(str(c[f"{k}_cpu_ms_per_file"]) for k in ("driver", "actors", "ray"))
        lines.append(
            f"| {name} | {c['files_per_s']} | {pipeline} | {ratio:.2f} | {cpu} "
            f"| {c['load_average']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
