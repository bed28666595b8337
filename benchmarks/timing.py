"""Timing on a noisy machine: interleaved rounds, wall and CPU time, load average, device sync.

The benchmark machine is small (2 cores) and shared, so absolute times drift with the load.
Everything that is compared is measured *interleaved*: round r runs every case in turn, each
for a calibrated number of calls, so a burst of load hits all cases alike and the per-round
ratios stay meaningful. Each measurement keeps

- ``wall``: seconds per call (perf_counter), per round;
- ``cpu``: process CPU seconds per call (all threads), per round: less sensitive to other
  processes than wall time, more to thread spinning;
- ``load``: the 1-minute load average at the start of each round.

A case is a zero-argument callable; a stateful step (streaming) keeps its state in a closure.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@dataclass
class Timing:
    """Per-call times of one case over several rounds."""

    calls_per_round: int = 1
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds per call (wall)."""
        return statistics.median(self.wall) if self.wall else math.nan

    @property
    def best(self) -> float:
        return min(self.wall) if self.wall else math.nan

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Milliseconds per call: median, min, max over rounds; CPU ms; mean load average."""
        ms = [w * 1e3 for w in self.wall]
        return {
            "median_ms": _round(statistics.median(ms)) if ms else None,
            "min_ms": _round(min(ms)) if ms else None,
            "max_ms": _round(max(ms)) if ms else None,
            "cpu_median_ms": _round(self.cpu_median * 1e3) if self.cpu else None,
            "rounds": len(ms),
            "calls_per_round": self.calls_per_round,
            "load_average": _round(statistics.fmean(self.load)) if self.load else None,
        }


def _round(x: float, digits: int = 4) -> float:
    if not math.isfinite(x) or x == 0:
        return x
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def median_ratio(numerator: Timing, denominator: Timing) -> float:
    """Median over rounds of numerator/denominator (round-by-round: both saw the same load)."""
    ratios = [n / d for n, d in zip(numerator.wall, denominator.wall, strict=False) if d > 0]
    return statistics.median(ratios) if ratios else math.nan


def interleaved(
    cases: Mapping[str, Callable[[], Any]],
    *,
    rounds: int,
    round_seconds: float,
    warmup: int = 1,
    max_calls: int = 1000,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Timing]:
    """Time every case in ``rounds`` interleaved rounds.

    Each case first runs ``warmup`` calls; one more timed call calibrates how many calls fill
    ``round_seconds`` (at least 1, at most ``max_calls``). Returns one ``Timing`` per case.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    calls: dict[str, int] = {}
    for name, fn in cases.items():
        for _ in range(warmup):
            fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, min(max_calls, int(round_seconds / once)))
    timings = {name: Timing(calls_per_round=calls[name]) for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            n = calls[name]
            timing = timings[name]
            timing.load.append(load_average())
            sync()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                fn()
            sync()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            timing.wall.append(wall / n)
            timing.cpu.append(cpu / n)
    return timings


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
