"""Run the benchmark sections of a ``BenchConfig`` and write the report.

``run(config, out)`` runs each section in order, records a section that cannot run (its part of
the service is missing, or no CUDA) as ``{"error": ...}`` instead of failing the whole run, then
writes ``results.json``, ``summary.md`` and the PNG plots into ``out`` and returns the results.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.config import BenchConfig, SectionUnavailableError
from benchmarks.report import summary_table, write_json, write_plots
from benchmarks.timing import environment, load_average

#: section -> (module, function); imported when the section runs.
SECTION_RUNNERS: dict[str, tuple[str, str]] = {
    "model": ("benchmarks.model_bench", "bench_models"),
    "window": ("benchmarks.model_bench", "bench_window"),
    "runtime": ("benchmarks.model_bench", "bench_runtime"),
    "train": ("benchmarks.model_bench", "bench_train"),
    "engine": ("benchmarks.engine_bench", "bench_engine"),
    "rest": ("benchmarks.serve_bench", "bench_rest"),
    "load": ("benchmarks.serve_bench", "bench_load"),
    "soak": ("benchmarks.soak_bench", "bench_soak"),
}


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {name!r}")
    return device


Runner = Callable[[BenchConfig, torch.device, Callable[[str], None], Path], dict]


def _runner(section: str) -> Runner:
    module_name, function = SECTION_RUNNERS[section]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise SectionUnavailableError(f"{error.name} is not available") from error
    return getattr(module, function)


def run(
    config: BenchConfig,
    out: Path,
    command: str = "lmukws bench",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every section of ``config``; write results.json, summary.md and plots to ``out``."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    try:
        return _run_sections(config, device, out, command, log)
    finally:
        torch.set_num_threads(threads)
        serving = sys.modules.get("benchmarks.serve_bench")
        if serving is not None:
            serving.close_servers()


def _run_sections(
    config: BenchConfig,
    device: torch.device,
    out: Path,
    command: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "config": config.to_dict(),
        "environment": environment(device),
        "sections": {},
    }
    for section in config.sections:
        log(f"section {section} (load average {load_average()})")
        t0 = time.perf_counter()
        try:
            outcome = _runner(section)(config, device, log, out)
        except SectionUnavailableError as error:
            log(f"section {section} skipped: {error}")
            outcome = {"error": str(error)}
        outcome["elapsed_s"] = round(time.perf_counter() - t0, 1)
        results["sections"][section] = outcome
    results["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    results["plots"] = [str(p) for p in write_plots(results, out)]
    table = summary_table(results)
    (out / "summary.md").write_text(table + "\n", encoding="utf-8")
    write_json(out / "results.json", results)
    print(table)
    return results
