"""Checkpoints for the engine and server sections.

A checkpoint named in the config wins; else the shipped one (``models/checkpoints``); else a
random-weight checkpoint of the benchmark's size is written into ``work_dir()`` (the system's
temporary folder). Costs do not depend on the weights; detections do, so the load test asks for
them with thresholds of 0.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from benchmarks.config import BenchConfig

#: Speech Commands' 35 words then the synthetic corpus' two extra labels (docs/CONTRACTS.md).
EXTRA_LABELS = ("_unknown_", "_silence_")


def labels(num_classes: int) -> list[str]:
    try:
        from training.labels import SPEECH_COMMANDS_LABELS
    except ImportError:  # pragma: no cover - training is part of the project
        SPEECH_COMMANDS_LABELS = ()
    names = [*SPEECH_COMMANDS_LABELS, *EXTRA_LABELS]
    if len(names) < num_classes:
        names += [f"class{i}" for i in range(len(names), num_classes)]
    return names[:num_classes]


def checkpoint_for(name: str, config: BenchConfig, out: Path) -> tuple[Path, str]:
    """(path, origin) of the checkpoint to serve for model ``name``; origin is ``given``,
    ``shipped`` or ``random``."""
    from models import read_metadata, save_checkpoint
    from models.checkpoint import CheckpointError, default_checkpoint
    from models.config import model_config_from_dict
    from models.ensemble import build_named

    for path in config.checkpoints:
        section = read_metadata(path).get("model") or {}
        if section and model_config_from_dict(section).name == name:
            return Path(path), "given"
    if not config.model_overrides:
        try:
            return default_checkpoint(name), "shipped"
        except CheckpointError:
            pass
    import torch

    torch.manual_seed(config.seed)
    overrides = {"num_classes": 37, **config.model_overrides}
    model = build_named(name, **overrides)
    suffix = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    path = work_dir() / f"{name}-random-{suffix}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"labels": labels(model.num_classes), "training": {"note": "random weights"}}
    return save_checkpoint(path, model, metadata), "random"


def work_dir() -> Path:
    """Scratch folder for random checkpoints and server logs (outside the repository, so a
    run leaves only its report in ``--out``)."""
    import tempfile

    path = Path(tempfile.gettempdir()) / "lmukws-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (every thread's, from Linux /proc; [] elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (e.g. the server and its engine processes; Linux /proc)."""
    tree, index = [pid], 0
    while index < len(tree):
        tree += children(tree[index])
        index += 1
    return tree


def tree_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` and its descendants, summed (pages they share count once
    per process: an upper bound)."""
    return sum(rss_bytes(p) for p in process_tree(pid))


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` and its descendants, summed: each page they share
    counts once in all, split between its sharers, so this is the tree's real footprint (the
    engine processes share their fork server's pages copy-on-write)."""
    return sum(pss_bytes(p) for p in process_tree(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def host_cpu_seconds(stat_text: str | None = None) -> tuple[float, float]:
    """CPU seconds the whole machine has been busy since boot, all cores summed, and the part
    of them stolen by the hypervisor (``/proc/stat``'s first line; (0, 0) elsewhere).

    Busy = user + nice + system + irq + softirq + steal (idle and iowait are not busy; guest
    time is already inside user). The difference of two readings over a run, minus what the
    benchmark's own processes used, is the CPU that everything else on the host took.
    """
    if stat_text is None:
        try:
            stat_text = Path("/proc/stat").read_text()
        except OSError:
            return 0.0, 0.0
    fields = stat_text.splitlines()[0].split()
    if not fields or fields[0] != "cpu":
        return 0.0, 0.0
    ticks = [int(v) for v in fields[1:9]] + [0] * max(0, 9 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / hz, steal / hz


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (Linux /proc; 0 elsewhere)."""
    return _proc_kib(f"/proc/{pid or 'self'}/status", "VmRSS:") * 1024


def pss_bytes(pid: int | None = None) -> int:
    """Proportional set size of a process: its private pages plus its share of the pages it
    shares (Linux ``/proc/PID/smaps_rollup``; 0 elsewhere or once the process is gone)."""
    return _proc_kib(f"/proc/{pid or 'self'}/smaps_rollup", "Pss:") * 1024


def _proc_kib(path: str, key: str) -> int:
    """The kiB figure of the line starting with ``key`` in a /proc file (0 if none, or no file)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
