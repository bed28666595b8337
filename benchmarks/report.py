"""The run's outputs: one summary table (markdown), ``results.json`` and PNG plots.

The table has one row per metric and one column per model, so the README can show it as is.
Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, dict[str, str]]
#: The cell of a streaming-step row for a model without a streaming form (a window model).
NO_STREAM = "— (no streaming form)"


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _pss_span(run: dict) -> str:
    """ " (PSS a→b MB)" of a load run, where it was measured (runs before it was: "")."""
    pss = run.get("server_pss_mb")
    return f" (PSS {_fmt(pss[0])}→{_fmt(pss[1])} MB)" if pss else ""


def _soak_pss(server: dict) -> str:
    """ " (PSS a / b / c MiB)" of a soak's server summary, where it was measured."""
    if server.get("pss_mb_start") is None:
        return ""
    return (
        f" (PSS {_fmt(server['pss_mb_start'])} / {_fmt(server['pss_mb_peak'])} / "
        f"{_fmt(server['pss_mb_end'])} MiB)"
    )


def _model_rows(section: dict, models: list[str]) -> list[Row]:
    rows: list[Row] = [
        ("parameters", {m: _fmt(section[m]["parameters"]) for m in models}),
        ("look-ahead frames", {m: _fmt(section[m]["lookahead_frames"]) for m in models}),
    ]
    streams = {m: section[m].get("stream") for m in models}
    batches = [r["batch"] for r in next((s for s in streams.values() if s), [])]
    for i, batch in enumerate(batches):
        rows.append(
            (
                f"streaming step, B={batch}: ms/step (µs/frame)",
                {
                    m: f"{_fmt(s[i]['step']['median_ms'])} ({_fmt(s[i]['us_per_frame'])})"
                    if s
                    else NO_STREAM
                    for m, s in streams.items()
                },
            )
        )
    if batches:
        rows.append(
            (
                f"model-only real-time streams at B={batches[-1]}",
                {
                    m: _fmt(s[-1]["realtime_sessions"]) if s else NO_STREAM
                    for m, s in streams.items()
                },
            )
        )
    par = section[models[0]].get("parallel")
    if par:
        rows.append(
            (
                f"parallel form, B={par['batch']} × {par['frames']} frames: clips/s",
                {m: _fmt(section[m]["parallel"]["clips_per_s"]) for m in models},
            )
        )
    return rows


def _window_rows(section: dict, models: list[str]) -> list[Row]:
    first = {m: section[m][0] for m in models}
    rows: list[Row] = []
    if all("flop_ratio" in row for row in first.values()):
        rows.append(
            (
                f"counted FLOPs per session and hop: window ({first[models[0]]['window_frames']} "
                "frames) / streaming step → ratio",
                {
                    m: f"{_fmt(row['window_mflop'])} / {_fmt(row['stream_mflop'])} MFLOP → "
                    f"{_fmt(row['flop_ratio'])}×"
                    if row["stream_mflop"] is not None
                    else f"{_fmt(row['window_mflop'])} MFLOP / {NO_STREAM}"
                    for m, row in first.items()
                },
            )
        )
    for i, row in enumerate(section[models[0]]):
        rows.append(
            (
                f"window recompute ({row['window_frames']} frames) / streaming step, "
                f"B={row['batch']}: ms/hop → ratio",
                {m: _window_cell(section[m][i]) for m in models},
            )
        )
    if all("us_per_session_hop" in section[m][0] for m in models):
        rows += _per_hop_rows(section, models)
    return rows


def _window_cell(row: dict) -> str:
    window = _fmt(row["window_hop"]["median_ms"])
    if row["stream_hop"] is None:
        return f"{window} / {NO_STREAM}"
    return f"{window} / {_fmt(row['stream_hop']['median_ms'])} → {_fmt(row['ratio'])}×"


def _per_hop_rows(section: dict, models: list[str]) -> list[Row]:
    """Each model's own cost per session per hop (streaming step, else window forward) and its
    ratio to lmuformer's streaming step: the "why LMUFormer" rows."""
    rows: list[Row] = []
    for i, row in enumerate(section[models[0]]):
        rows.append(
            (
                f"cost per session per hop (step, or window forward), B={row['batch']}: "
                "µs (real-time sessions) → × lmuformer's step",
                {
                    m: f"{_fmt(r['us_per_session_hop'])} ({_fmt(r['realtime_sessions'])}) → "
                    f"{_fmt(r.get('vs_lmuformer_step'))}×"
                    for m in models
                    for r in (section[m][i],)
                },
            )
        )
    return rows


def _runtime_rows(section: dict, models: list[str]) -> list[Row]:
    rows: list[Row] = []
    first = next((section[m] for m in models if section[m]), [])
    for i, row in enumerate(first):
        rows.append(
            (
                f"streaming step B={row['batch']} × {row['frames']} frames, torch / ONNX Runtime: "
                "µs per session-frame → speed-up",
                {
                    m: f"{_fmt(section[m][i]['torch_us_per_frame'])} / "
                    f"{_fmt(section[m][i]['onnx_us_per_frame'])} → "
                    f"{_fmt(section[m][i]['speedup'])}×"
                    if section[m]
                    else NO_STREAM
                    for m in models
                },
            )
        )
    return rows


def _train_rows(section: dict, models: list[str]) -> list[Row]:
    first = section[models[0]]
    rows: list[Row] = [
        (
            f"training step, B={first['batch']} × {first['frames']} frames: ms",
            {m: _fmt(section[m]["step"]["median_ms"]) for m in models},
        )
    ]
    runs = {m: section[m].get("data_path") for m in models}
    if any(runs.values()):
        corpus = next(r["corpus"] for r in runs.values() if r)
        rows.append(
            (
                f"training step with the trainer's data path ({corpus}): ms, model share",
                {
                    m: f"{_fmt(r['step_ms'])} ms, model {100 * r['model_share']:.0f} %"
                    + (
                        f" ({_fmt(r['vs_compute_alone'])}× compute alone)"
                        if r.get("vs_compute_alone") is not None
                        else ""
                    )
                    if r
                    else "—"
                    for m, r in runs.items()
                },
            )
        )
    if "vs_lmuformer" in section:
        ratios = section["vs_lmuformer"]
        rows.append(("training step / lmuformer's", {m: _fmt(ratios.get(m)) for m in models}))
    elif "spiking_ratio" in section:
        rows.append(
            (
                "training step / lmuformer's",
                {m: "1" if m == "lmuformer" else _fmt(section["spiking_ratio"]) for m in models},
            )
        )
    return rows


def _engine_rows(section: dict, models: list[str]) -> list[Row]:
    tested = sorted({r["sessions"] for m in models for r in section[m]["runs"]})
    rows: list[Row] = [
        (
            f"engine: most real-time sessions that keep up (tested {', '.join(map(str, tested))})",
            {m: _fmt(section[m]["max_realtime_sessions"]) for m in models},
        )
    ]

    def at_best(m: str) -> dict | None:
        runs = [r for r in section[m]["runs"] if r["keeps_up"]]
        return max(runs, key=lambda r: r["sessions"]) if runs else None

    cells = {}
    for m in models:
        r = at_best(m)
        cells[m] = (
            "–"
            if r is None
            else f"N={r['sessions']}: {_fmt(r['step_compute_ms']['p50'])} / "
            f"{_fmt(r['step_compute_ms']['p99'])} ms, {_fmt(r['frame_compute_us']['p50'])} / "
            f"{_fmt(r['frame_compute_us']['p99'])} µs, duty {_fmt(r['duty'])}"
        )
    rows.append(("engine at that N: step compute p50/p99, per frame p50/p99, duty", cells))
    return rows


def _rest_rows(section: dict, models: list[str]) -> list[Row]:
    rows: list[Row] = []
    for i, run in enumerate(section[models[0]]["runs"]):
        rows.append(
            (
                f"one-second clips/s, B={run['batch']}: POST /v1/classify / parallel form",
                {
                    m: f"{_fmt(section[m]['runs'][i]['rest_clips_per_s'])} / "
                    f"{_fmt(section[m]['runs'][i]['direct_clips_per_s'])}"
                    for m in models
                    if i < len(section[m]["runs"])
                },
            )
        )
    return rows


def _load_rows(section: dict, models: list[str]) -> list[Row]:
    rows: list[Row] = []
    counts = sorted({r["clients"] for m in models for r in section[m]["runs"]})
    for k in counts:
        cells = {}
        for m in models:
            run = next((r for r in section[m]["runs"] if r["clients"] == k), None)
            if run is None:
                continue
            cells[m] = (
                f"{_fmt(run['server_ms']['p50'])} / {_fmt(run['server_ms']['p99'])} ms "
                f"(+{_fmt(run['algorithmic_ms'])} algorithmic); dropped "
                f"{_fmt(run['dropped_ms']['total'])} ms, {run.get('frames_missing', '–')} "
                f"frames ({run['completed']}/{k} clients got `end`); "
                f"errors {run['errors']}; "
                f"CPU {_fmt(run['server_cpu'])}; RSS {_fmt(run['server_rss_mb'][0])}→"
                f"{_fmt(run['server_rss_mb'][1])} MB{_pss_span(run)}; host: other processes "
                f"{_fmt(run.get('other_cpu'))}, steal {_fmt(run.get('steal_cpu'))} cores"
            )
        rows.append(
            (
                f"{k} websocket clients × {_fmt(section[models[0]]['runs'][0]['seconds'])} s "
                f"({_fmt(section[models[0]]['runs'][0].get('chunk_ms'))} ms messages): "
                "detection server_ms p50/p99",
                cells,
            )
        )
    return rows


def _soak_rows(section: dict, models: list[str]) -> list[Row]:
    runs = {m: section[m] for m in models if m in section}
    if not runs:
        return []
    first = next(iter(runs.values()))
    rest = first["rest"]

    def cells(fmt: Callable[[dict], str]) -> dict[str, str]:
        return {m: fmt(r) for m, r in runs.items()}

    def yes(flag: bool) -> str:
        return "yes" if flag else "**no**"

    return [
        (
            f"soak {_fmt(first['seconds'])} s: {first['normal']['clients']} real-time clients, "
            f"{first['slow']['readers']} slow readers, REST {rest['files']} × "
            f"{_fmt(rest['file_s'])} s files, churn {_fmt(first['churn']['per_s'])}/s, one "
            "engine killed: sessions served normal / slow / churn",
            cells(
                lambda r: (
                    f"{r['normal']['sessions']} / {r['slow']['sessions']} / "
                    f"{r['churn']['sessions']} ({r['churn']['connections']} connections); "
                    f"{r['normal']['failed_by_kill']} failed by the kill, "
                    f"{r['normal']['failed']} otherwise"
                )
            ),
        ),
        (
            "soak: audio lost by normal clients (all but the kill's sessions; checked: the "
            "audio after each session's last reset)",
            cells(
                lambda r: (
                    f"{_fmt(r['normal']['audio_lost_ms'])} ms of "
                    f"{_fmt(r['normal']['audio_checked_s'])} s checked, "
                    f"{r['normal']['frames_missing']} frames missing"
                )
            ),
        ),
        (
            "soak: normal clients' detection server_ms p50/p99 (client-side p50/p99)",
            cells(
                lambda r: (
                    f"{_fmt(r['normal']['server_ms']['p50'])} / "
                    f"{_fmt(r['normal']['server_ms']['p99'])} ms "
                    f"({_fmt(r['normal']['client_ms']['p50'])} / "
                    f"{_fmt(r['normal']['client_ms']['p99'])} ms), "
                    f"{r['normal']['detections']} detections"
                )
            ),
        ),
        (
            "soak: slow readers closed `slow_consumer` (server); links dropped / stalled "
            "(client); scores dropped",
            cells(
                lambda r: (
                    f"{_fmt(r['server']['slow_consumer_errors'])}; "
                    f"{r['slow']['dropped_by_server']} / {r['slow']['stalled']}; "
                    f"{_fmt(r['server']['scores_dropped'])}"
                )
            ),
        ),
        (
            "soak: heavy REST requests done / failed, mean duration",
            cells(
                lambda r: (
                    f"{r['rest']['done']} / {r['rest']['failed']}, {_fmt(r['rest']['mean_s'])} s"
                )
            ),
        ),
        (
            "soak: engine kill → ready again; engine restarts; /healthz always 200",
            cells(
                lambda r: (
                    f"{_fmt(r['kill'].get('recovery_s'))} s; "
                    f"{_fmt(r['server']['engine_restarts'])}; "
                    f"{yes(r['server']['healthz_always_200'])} "
                    f"({r['server']['healthz_samples']} samples)"
                )
            ),
        ),
        (
            "soak: server tree RSS (PSS) start / peak / end; sessions left at the end; host "
            "busy cores (the clients' share)",
            cells(
                lambda r: (
                    f"{_fmt(r['server']['rss_mb_start'])} / "
                    f"{_fmt(r['server']['rss_mb_peak'])} / {_fmt(r['server']['rss_mb_end'])} MiB"
                    f"{_soak_pss(r['server'])}; "
                    f"{_fmt(r['server']['sessions_left'])}; {_fmt(r.get('host_busy_cpu'))} "
                    f"({_fmt(r.get('clients_cpu'))})"
                )
            ),
        ),
    ]


#: Table rows of each section.
ROW_BUILDERS: dict[str, Callable[[dict, list[str]], list[Row]]] = {
    "model": _model_rows,
    "window": _window_rows,
    "runtime": _runtime_rows,
    "train": _train_rows,
    "engine": _engine_rows,
    "rest": _rest_rows,
    "load": _load_rows,
    "soak": _soak_rows,
}


def summary_table(results: dict[str, Any]) -> str:
    """The markdown summary table of a run, with its command and machine below."""
    models = list(results["config"]["models"])
    rows: list[Row] = []
    for name, section in results["sections"].items():
        builder = ROW_BUILDERS.get(name)
        if builder is None or not isinstance(section, dict) or "error" in section:
            continue
        rows.extend(builder(section, models))
    header = ["metric", *models]
    body = [[label, *(cells.get(m, "–") for m in models)] for label, cells in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body
    ]
    env = results["environment"]
    errors = [
        f"{name}: {section['error']}"
        for name, section in results["sections"].items()
        if isinstance(section, dict) and "error" in section
    ]
    lines.append("")
    lines.append(f"command: `{results['command']}` ({results['config']['preset']} preset)")
    machine = f"{env['cpu']}, {env['cpu_count']} cores, torch {env['torch']}"
    if "gpu" in env:
        machine += f", GPU {env['gpu']}"
    lines.append(
        f"machine: {machine}; device {env['device']}; torch threads {env['torch_threads']}; "
        f"load average {env['load_average_start']} at start, "
        f"{results.get('load_average_end', '–')} at end; {results.get('elapsed_s', '–')} s"
    )
    if {"rest", "load", "soak"} & set(results["sections"]):
        processes = results["config"].get("engine_processes", -1)
        served = "serve's default" if processes < 0 else str(processes)
        if processes < 0:
            from server.settings import Settings

            served += f" ({Settings().engine_processes})"
        lines.append(f"server: engine processes {served} (0: the engine in the server process)")
    if {"engine", "rest", "load", "soak"} & set(results["sections"]):
        runtime = results["config"].get("runtime") or "serve's default"
        if runtime == "serve's default":
            from server.settings import Settings

            runtime += f" ({Settings().runtime})"
        lines.append(f"model steps: runtime {runtime} (auto: onnx on the CPU, torch on a GPU)")
    lines += [f"skipped: {e}" for e in errors]
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write a figure as a PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _log_y(ax: object) -> None:
    """Log y axis when the plotted data has positive values (on a loaded machine a tiny model's
    timings can round to 0, and matplotlib refuses to log-scale all-zero data)."""
    if ax.dataLim.y1 > 0:  # type: ignore[attr-defined]
        ax.set_yscale("log")  # type: ignore[attr-defined]


def _plot_stream(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        rows = section[m].get("stream") or []
        if not rows:
            continue  # no streaming form
        ax.plot([r["batch"] for r in rows], [r["us_per_frame"] for r in rows], marker="o", label=m)
    ax.set_xscale("log", base=2)
    _log_y(ax)
    ax.set_xlabel("sessions per step (batch)")
    ax.set_ylabel("µs per frame (one 10 ms hop of one session)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(plt, fig, out / "stream_cost.png")


def _plot_window(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    bars = sum(len(section[m]) for m in models)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * bars), 4))
    labels, window, stream, ratios = [], [], [], []
    for m in models:
        for row in section[m]:
            labels.append(f"{m}\nB={row['batch']}")
            window.append(row["window_hop"]["median_ms"])
            stream.append(row["stream_hop"]["median_ms"] if row["stream_hop"] else 0.0)
            ratios.append(row["ratio"])
    x = list(range(len(labels)))
    ax.bar([i - 0.2 for i in x], window, width=0.4, label="window recompute")
    ax.bar([i + 0.2 for i in x], stream, width=0.4, label="streaming step")
    for i, r in zip(x, ratios, strict=True):
        text = "no step" if r is None else f"{r:.0f}×"
        ax.annotate(text, (i, max(window[i], stream[i])), ha="center", va="bottom")
    ax.set_xticks(x, labels, fontsize=7)
    _log_y(ax)
    ax.set_ylabel("ms per 10 ms hop")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(plt, fig, out / "window_vs_stream.png")


def _plot_runtime(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        for frames in sorted({r["frames"] for r in section[m]}):
            rows = [r for r in section[m] if r["frames"] == frames]
            ax.plot(
                [r["batch"] for r in rows],
                [r["speedup"] for r in rows],
                marker="o",
                label=f"{m}, {frames} frame{'s' if frames > 1 else ''} per step",
            )
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sessions per step (batch)")
    ax.set_ylabel("speed-up of ONNX Runtime over torch")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(plt, fig, out / "runtime_speedup.png")


def _plot_train(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    values = [section[m]["step"]["median_ms"] for m in models]
    ax.bar(models, values, color=[f"C{i}" for i in range(len(models))])
    for i, v in enumerate(values):
        ax.annotate(f"{v:,.0f} ms", (i, v), ha="center", va="bottom")
    ax.set_ylabel(f"ms per step (batch {section[models[0]]['batch']})")
    if "spiking_ratio" in section:
        title += f" — ratio {section['spiking_ratio']}×"
    ax.set_title(title)
    return _save(plt, fig, out / "train_step.png")


def _plot_engine(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    top = 1
    for i, m in enumerate(models):
        runs = section[m]["runs"]
        n = [r["sessions"] for r in runs]
        top = max(top, *n)
        c = f"C{i}"
        ax.plot(n, [r["frames_per_s"] for r in runs], marker="o", color=c, label=m)
        for r in runs:
            if not r["keeps_up"]:
                ax.plot(r["sessions"], r["frames_per_s"], "x", color="red", markersize=9)
        p99 = [r["step_compute_ms"]["p99"] for r in runs]
        p50 = [r["step_compute_ms"]["p50"] for r in runs]
        ax2.plot(n, p99, marker="o", color=c, label=f"{m} p99")
        ax2.plot(n, p50, marker=".", ls="--", color=c, label=f"{m} p50")
    ax.plot([1, top], [100, 100 * top], color="gray", ls=":", label="real time (100 frames/s)")
    for a in (ax, ax2):
        a.set_xscale("log", base=2)
        _log_y(a)
        a.set_xlabel("concurrent real-time sessions")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    ax.set_ylabel("frames scored per second (x: fell behind)")
    ax2.set_ylabel("model step compute, ms")
    fig.suptitle(title)
    return _save(plt, fig, out / "engine_sessions.png")


def _plot_rest(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        runs = section[m]["runs"]
        b = [r["batch"] for r in runs]
        ax.plot(b, [r["rest_clips_per_s"] for r in runs], marker="o", label=f"{m} /v1/classify")
        ax.plot(
            b, [r["direct_clips_per_s"] for r in runs], marker=".", ls="--", label=f"{m} direct"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("one-second clips per request (batch)")
    ax.set_ylabel("clips/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(plt, fig, out / "rest_clips.png")


def _plot_load(section: dict, models: list[str], out: Path, title: str) -> Path:
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, m in enumerate(models):
        runs = section[m]["runs"]
        k = [r["clients"] for r in runs]
        c = f"C{i}"
        p99 = [r["server_ms"]["p99"] or 0 for r in runs]
        p50 = [r["server_ms"]["p50"] or 0 for r in runs]
        ax.plot(k, p99, marker="o", color=c, label=f"{m} p99")
        ax.plot(k, p50, marker=".", ls="--", color=c, label=f"{m} p50")
        for r in runs:
            trace = r.get("rss_trace") or []
            if trace:
                ax2.plot(*zip(*trace, strict=True), label=f"{m}, {r['clients']} clients")
    ax.axhline(30, color="gray", ls=":", label="target p99 (30 ms)")
    _log_y(ax)
    ax.set_xlabel("websocket clients (real time)")
    ax.set_ylabel("detection server latency, ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax2.set_xlabel("seconds into the run")
    ax2.set_ylabel("server RSS, MiB")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=6)
    fig.suptitle(title)
    return _save(plt, fig, out / "load_latency.png")


def _plot_soak(section: dict, models: list[str], out: Path, title: str) -> Path:
    """Per model: the server tree's RSS and its live sessions, and the normal clients'
    detection latency, over the run; the engine kill and the recovery marked."""
    plt = _pyplot()
    runs = [m for m in models if m in section]
    fig, axes = plt.subplots(
        2, max(1, len(runs)), figsize=(7 * max(1, len(runs)), 6), sharex="col", squeeze=False
    )
    for column, m in enumerate(runs):
        run = section[m]
        top, bottom = axes[0][column], axes[1][column]
        timeline = run["timeline"]
        t = [s["t"] for s in timeline]
        top.plot(t, [s["rss_mb"] for s in timeline], color="C0", label="server tree RSS")
        if all("pss_mb" in s for s in timeline):
            pss = [s["pss_mb"] for s in timeline]
            top.plot(t, pss, color="C0", ls="--", label="server tree PSS")
        top.set_ylabel("RSS (PSS dashed), MiB", color="C0")
        live = top.twinx()
        sessions = [s["sessions"] if s["sessions"] is not None else math.nan for s in timeline]
        live.step(t, sessions, where="post", color="C1", label="live sessions (/readyz)")
        live.set_ylabel("live sessions (gap: not ready)", color="C1")
        detections = run["detections"]
        if detections:
            bottom.plot(*zip(*detections, strict=True), ".", color="C2", markersize=3)
        _log_y(bottom)
        for i, (begin, end) in enumerate(run["rest"].get("spans", [])):
            bottom.axvspan(begin, end, color="grey", alpha=0.12 if i % 2 else 0.22, lw=0)
        bottom.set_ylabel("normal clients' detection server_ms\n(grey: REST requests)")
        bottom.set_xlabel("seconds into the run")
        kill = run["kill"]
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            if kill.get("at_s") is not None:
                ax.axvline(kill["at_s"], color="red", ls="--", label="engine killed")
                if kill.get("recovery_s") is not None:
                    ready = kill["at_s"] + kill["recovery_s"]
                    ax.axvline(ready, color="green", ls=":", label="ready again")
        handles = top.get_legend_handles_labels()[0] + live.get_legend_handles_labels()[0]
        top.legend(handles=handles, fontsize=7, loc="lower right")
        top.set_title(m)
    fig.suptitle(title)
    return _save(plt, fig, out / "soak_timeline.png")


#: Plots of each section.
PLOTTERS: dict[str, Callable[[dict, list[str], Path, str], Path]] = {
    "model": _plot_stream,
    "window": _plot_window,
    "runtime": _plot_runtime,
    "train": _plot_train,
    "engine": _plot_engine,
    "rest": _plot_rest,
    "load": _plot_load,
    "soak": _plot_soak,
}


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per section that has a plotter."""
    models = list(results["config"]["models"])
    env = results["environment"]
    title_suffix = f"{env['device']}, load {env['load_average_start']}"
    paths = []
    for name, section in results["sections"].items():
        plotter = PLOTTERS.get(name)
        if plotter is None or not isinstance(section, dict) or "error" in section:
            continue
        paths.append(plotter(section, models, out, f"{name} ({title_suffix})"))
    return paths
