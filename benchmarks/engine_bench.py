"""Section ``engine``: N concurrent simulated real-time sessions through ``StreamingEngine``.

For each model and each N: one engine (worker thread started, ``max_sessions`` = N, the
service's batching defaults), N sessions, and one feeder thread that pushes ``engine_chunk_ms``
of speech to every session at real-time pace (sessions staggered across the chunk period, as
independent clients are). After ``engine_seconds`` of audio the run measures

- frames/s scored, against the N × frames per second of audio that real time needs;
- the worker's duty cycle (model-step compute / wall time) and the real-time factor per stream
  (compute seconds per second of audio of one stream);
- per-step compute, per-frame compute and queue wait, p50 and p99 (raw values recorded from the
  engine's own metrics);
- the backlog: audio queued but not yet scored, worst session, at the end; and how late the
  feeder itself ran (it shares the GIL with the worker);
- keeps up: at the end of the run, the worst session's backlog and the feeder's lateness are
  both under ``KEEP_UP_MS`` (a run that falls behind only grows its backlog).

The largest N that keeps up is refined by bisection between the last N that kept up and the
first that did not (``engine_refine`` steps).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.audio import RATE, speech_track
from benchmarks.checkpoints import checkpoint_for, rss_bytes
from benchmarks.config import BenchConfig, SectionUnavailableError

#: A run keeps up when the worst session's backlog and the feeder's lateness end under this.
KEEP_UP_MS = 200.0


class _Recorder:
    """Stands in for one of the engine's histograms: keeps raw values, forwards to it."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.values: list[float] = []

    def observe(self, value: float, **labels: str) -> None:
        self.values.append(float(value))
        self.histogram.observe(value, **labels)

    def observe_many(self, values: list[float], **labels: str) -> None:
        self.values.extend(float(v) for v in values)
        self.histogram.observe_many(values, **labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.histogram, name)


def recording_metrics() -> Any:
    """Engine metrics whose step, frame, queue and batch-size histograms keep raw values."""
    from streaming.metrics import EngineMetrics

    metrics = EngineMetrics()
    for name in ("step_seconds", "frame_seconds", "queue_seconds", "batch_size"):
        setattr(metrics, name, _Recorder(getattr(metrics, name)))
    return metrics


def percentiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    a = np.asarray(values) * scale
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
    }


def service_defaults() -> dict[str, Any]:
    """The batching settings ``lmukws serve`` uses by default."""
    try:
        from server.settings import Settings

        c: Any = Settings()
    except ImportError:  # the engine alone
        from streaming.engine import EngineConfig

        c = EngineConfig()
    return {
        "max_batch": c.max_batch,
        "max_wait_ms": c.max_wait_ms,
        "runtime": c.runtime,
        "window_hop_ms": c.window_hop_ms,
    }


def run_sessions(
    engine: Any,
    sessions: int,
    seconds: float,
    chunk_ms: float,
    track: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """Feed ``sessions`` real-time streams for ``seconds`` through a started engine."""
    metrics = engine.metrics
    chunk = int(RATE * chunk_ms / 1000)
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, track.size, size=sessions)
    phases = np.sort(rng.uniform(0, chunk_ms / 1000, size=sessions))
    looped = np.concatenate((track, track))
    session_list = [engine.create_session(RATE) for _ in range(sessions)]
    ticks = round(seconds * 1000 / chunk_ms)
    lateness: list[float] = []
    backlog_trace: list[tuple[float, float]] = []
    events = 0
    for recorder in ("step_seconds", "frame_seconds", "queue_seconds", "batch_size"):
        getattr(metrics, recorder).values.clear()
    rss_start = rss_bytes()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = wall0 + 0.05
    for k in range(ticks):
        base = t0 + k * chunk_ms / 1000
        for i, s in enumerate(session_list):
            due = base + phases[i]
            delay = due - time.perf_counter()
            if delay > 0.0005:
                time.sleep(delay)
            start = (offsets[i] + k * chunk) % track.size
            s.push(looped[start : start + chunk])
        lateness.append(max(0.0, time.perf_counter() - (base + phases[-1])))
        if k % max(1, int(500 / chunk_ms)) == 0:  # every 0.5 s: backlog, drain outboxes
            worst = max(s.queued_samples for s in session_list) / RATE * 1000
            backlog_trace.append((round(time.perf_counter() - t0, 2), round(worst, 1)))
            events += sum(len(s.poll()) for s in session_list)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    worst_backlog_ms = max(s.queued_samples for s in session_list) / RATE * 1000
    steps = list(metrics.step_seconds.values)
    batches = list(metrics.batch_size.values)
    frame_values = list(metrics.frame_seconds.values)
    frames_scored = int(metrics.frames_total.value())
    # drain: how long the backlog takes to clear once the audio stops
    drain0 = time.perf_counter()
    drain_s: float | None = None
    try:
        for s in session_list:
            engine.wait_idle(s, timeout=max(0.1, drain0 + min(10.0, seconds) - time.perf_counter()))
        drain_s = round(time.perf_counter() - drain0, 2)
    except TimeoutError:
        pass  # still behind after the deadline: closing the sessions drops their queues
    events += sum(len(s.poll()) for s in session_list)
    rss_end = rss_bytes()
    for s in session_list:
        s.close()
    compute = float(sum(steps))
    needed = sessions * 100.0
    # at the end of the run: no session more than KEEP_UP_MS behind, and the feeder on time
    late_ms = lateness[-1] * 1000 if lateness else 0.0
    keeps_up = worst_backlog_ms <= KEEP_UP_MS and late_ms <= KEEP_UP_MS
    return {
        "sessions": sessions,
        "audio_seconds": round(ticks * chunk_ms / 1000, 2),
        "wall_seconds": round(wall, 2),
        "frames_per_s": round(frames_scored / wall, 1),
        "frames_per_s_needed": needed,
        "duty": round(compute / wall, 3),
        "rtf_per_stream": round(compute / wall / sessions, 5),
        "process_cpu": round(cpu / wall, 2),
        "steps": len(steps),
        "batch": percentiles(batches),
        "step_compute_ms": percentiles(steps, 1e3),
        "frame_compute_us": percentiles(frame_values, 1e6),
        "queue_wait_ms": percentiles(list(metrics.queue_seconds.values), 1e3),
        "worst_backlog_ms": round(worst_backlog_ms, 1),
        "feeder_late_ms": {
            "p50": round(statistics.median(lateness) * 1000, 1) if lateness else None,
            "max": round(max(lateness) * 1000, 1) if lateness else None,
            "end": round(late_ms, 1),
        },
        "backlog_trace": backlog_trace,
        "drain_seconds": drain_s,
        "events": events,
        "rss_mb": [round(rss_start / 2**20, 1), round(rss_end / 2**20, 1)],
        "keeps_up": bool(keeps_up),
    }


def _engine(path: Path, sessions: int, config: BenchConfig, device: torch.device, metrics: Any):
    from models import read_metadata
    from streaming.engine import EngineConfig, StreamingEngine

    defaults = service_defaults()
    batch = config.engine_max_batch or defaults["max_batch"]
    engine_config = EngineConfig.from_metadata(
        read_metadata(path),
        max_sessions=max(1, sessions),
        max_batch=batch,
        max_wait_ms=defaults["max_wait_ms"],
        torch_threads=config.threads,
        runtime=config.runtime or defaults["runtime"],
        window_hop_ms=config.window_hop_ms or defaults["window_hop_ms"],
    )
    engine = StreamingEngine.from_checkpoint(path, engine_config, device, metrics)
    engine.start()
    settings = {"max_batch": batch, "max_wait_ms": defaults["max_wait_ms"]}
    if not engine.served.streaming:  # a window model: its window recomputed every hop
        settings["window_hop_ms"] = engine_config.window_hop_ms
    return engine, {**settings, "runtime": engine.runtime}


def bench_engine(
    config: BenchConfig,
    device: torch.device,
    log: Callable[[str], None],
    out: Path,
) -> dict[str, Any]:
    """Section ``engine``: the sweep over N for each model, and the largest N that keeps up."""
    try:
        import streaming.engine  # noqa: F401
    except ImportError as error:
        raise SectionUnavailableError(f"streaming engine: {error}") from error
    track, source = speech_track(30.0, seed=config.seed)
    results: dict[str, Any] = {"audio": source, "chunk_ms": config.engine_chunk_ms}
    for name in config.models:
        path, origin = checkpoint_for(name, config, out)
        rows: list[dict[str, Any]] = []

        def measure(n: int) -> bool:
            row = _measure(name, path, n, config, device, track, log)  # noqa: B023
            rows.append(row)  # noqa: B023
            return row["keeps_up"]

        passed = [n for n in config.engine_sessions if measure(n)]
        low = max(passed, default=0)
        above = [r["sessions"] for r in rows if not r["keeps_up"] and r["sessions"] > low]
        high = min(above) if above else None
        for _ in range(config.engine_refine):
            if high is None or high - low <= max(2, low // 10):
                break
            mid = (low + high) // 2
            if measure(mid):
                low = mid
            else:
                high = mid
        rows.sort(key=lambda r: r["sessions"])
        results[name] = {
            "checkpoint": str(path),
            "weights": origin,
            "runs": rows,
            "max_realtime_sessions": low,
            "first_failing": high,
        }
    return results


def _measure(
    name: str,
    path: Path,
    sessions: int,
    config: BenchConfig,
    device: torch.device,
    track: np.ndarray,
    log: Callable[[str], None],
) -> dict[str, Any]:
    metrics = recording_metrics()
    engine, batching = _engine(path, sessions, config, device, metrics)
    try:
        log(f"{name}: {sessions} real-time sessions for {config.engine_seconds:g} s")
        row = run_sessions(
            engine, sessions, config.engine_seconds, config.engine_chunk_ms, track, config.seed
        )
    finally:
        engine.close()
    row.update(batching)
    log(
        f"  {sessions} sessions: {row['frames_per_s']:.0f} of {row['frames_per_s_needed']:.0f} "
        f"frames/s, duty {row['duty']:.2f}, worst backlog {row['worst_backlog_ms']} ms, "
        f"keeps up: {row['keeps_up']}"
    )
    return row
