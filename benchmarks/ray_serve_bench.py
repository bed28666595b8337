"""``lmukws serve --ray-replicas`` measured from outside (docs/ray.md): how long autoscaling
takes to add a replica that accepts sessions, and how many real-time sessions one replica holds
behind Ray's HTTP proxy beside a plain ``lmukws serve`` on the same cores.

    python -m benchmarks.ray_serve_bench --out reports/ray-serve
    python -m benchmarks.ray_serve_bench --sections load --clients 10,25 --seconds 20

- ``scale``: ``--ray-replicas 1 --ray-min-replicas 1 --ray-max-replicas 2`` with
  ``--max-sessions 8`` (autoscaling target 0.7 x 8 = 5.6 active sessions per replica), each
  replica on one CPU. Eight clients stream speech at real time; from the moment all eight are
  open, ``/readyz`` (answered by the proxy from the replicas' reports) is polled for a second
  replica, and once it reports ready a short probe session is opened every 0.25 s until one
  lands on it. Reported:
  seconds to the new replica's first report (its actor started, its app built), to its
  readiness, and to the first session it accepted.
- ``load``: K websocket clients (as ``lmukws bench``'s load section: speech at real time in
  40 ms messages, thresholds 0 and a reset every 2 s so each gets a detection every 2 s) against
  one Ray replica on 2 CPUs (2 engine processes) behind the proxy, then against a plain
  ``lmukws serve`` (2 engine processes): completed sessions, errors, detection latency
  (server_ms from the messages, client_ms as seen by the client), audio dropped, and the CPU of
  each server's whole process tree (Ray's: GCS, raylet, controller, proxy, replica).

Everything runs on 127.0.0.1 with deadlines; servers get SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.audio import RATE, speech_track
from benchmarks.checkpoints import tree_cpu_seconds, work_dir
from benchmarks.engine_bench import percentiles
from benchmarks.serve_bench import _client, free_port, stop_server, wait_until_ready

HOST = "127.0.0.1"


@contextlib.contextmanager
def server(args: list[str], name: str, timeout_s: float = 300.0) -> Iterator[tuple[str, int]]:
    """``lmukws serve ARGS`` on a free port until the block ends: (base URL, pid)."""
    port = free_port()
    log_path = work_dir() / f"{name}-{port}.log"
    command = [sys.executable, "-m", "lmukws", "serve", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "LMUKWS_LOG_LEVEL": "warning"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command + args, stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://{HOST}:{port}"
    try:
        wait_until_ready(base, process, log_path, timeout_s)
        yield base, process.pid
    finally:
        stop_server(process, 60.0)  # Ray drains every replica, then stops


def _pcm(seconds: float) -> np.ndarray:
    track, _ = speech_track(seconds, seed=3)
    return (np.clip(np.concatenate((track, track)), -1, 1) * 32767).astype("<i2")


async def _thresholds(base: str) -> dict[str, float]:
    import httpx

    async with httpx.AsyncClient() as http:
        info = (await http.get(base + "/v1/model", timeout=30)).json()
    return dict.fromkeys(info["keywords"], 0.0)


async def _probe(url: str) -> str | None:
    """One short session: the replica that accepted it, or None (refused or failed)."""
    import websockets

    try:
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return message.get("replica") if message.get("type") == "ready" else None
    except Exception:
        return None


async def _scale(base: str, sessions: int, deadline_s: float) -> dict[str, Any]:
    import httpx

    url = base.replace("http://", "ws://") + "/v1/stream"
    pcm = _pcm(60.0)
    thresholds = await _thresholds(base)
    start_at = time.perf_counter() + 0.2
    load = [
        asyncio.create_task(
            _client(url, pcm, i * 8000, deadline_s, 40.0, start_at, thresholds, 2.0)
        )
        for i in range(sessions)
    ]
    events: dict[str, float] = {}
    first: set[str] = set()
    async with httpx.AsyncClient() as http:
        while "opened" not in events:  # every client holds its session
            body = (await http.get(base + "/readyz", timeout=10)).json()
            first = set(body.get("replicas", {}))
            if body.get("sessions", 0) >= sessions:
                events["opened"] = time.perf_counter()
            await asyncio.sleep(0.2)
        t0 = events["opened"]
        landed = None
        while time.perf_counter() - t0 < deadline_s and landed is None:
            body = (await http.get(base + "/readyz", timeout=10)).json()
            for name, status in body.get("replicas", {}).items():
                if name in first:
                    continue
                events.setdefault("reported", time.perf_counter())
                if status.get("status") == "ready":
                    events.setdefault("ready", time.perf_counter())
            if "ready" in events:  # before that a probe would only wait for a full replica
                replica = await _probe(url)
                if replica is not None and replica not in first:
                    landed = replica
                    events["accepted"] = time.perf_counter()
            await asyncio.sleep(0.25)
    for task in load:
        task.cancel()
    await asyncio.gather(*load, return_exceptions=True)
    return {
        "sessions_held": sessions,
        "first_replicas": sorted(first),
        "new_replica": landed,
        **{f"{k}_s": round(v - t0, 1) for k, v in events.items() if k != "opened"},
    }


def measure_scale(checkpoint: str, deadline_s: float) -> dict[str, Any]:
    args = ["--checkpoint", checkpoint, "--max-sessions", "8", "--ray-replicas", "1"]
    args += ["--ray-min-replicas", "1", "--ray-max-replicas", "2", "--ray-replica-cpus", "1"]
    with server(args, "ray-scale") as (base, _):
        result = asyncio.run(_scale(base, 8, deadline_s))
    return {"command": "lmukws serve " + " ".join(args), **result}


async def _load(base: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    url = base.replace("http://", "ws://") + "/v1/stream"
    pcm = _pcm(60.0)
    thresholds = await _thresholds(base)
    ramp = min(2.0, 0.02 * clients)
    t0 = time.perf_counter() + 0.2
    cpu0, wall0 = tree_cpu_seconds(pid), time.perf_counter()
    results = await asyncio.gather(
        *(
            _client(url, pcm, 7919 * i, seconds, 40.0, t0 + ramp * i / clients, thresholds, 2.0)
            for i in range(clients)
        )
    )
    cpu = (tree_cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)
    detections = [d for r in results for d in r["detections"]]
    ended = [r for r in results if r["end"] is not None]
    errors = sorted({r["error"] for r in results if r["error"]})
    return {
        "clients": clients,
        "seconds": seconds,
        "completed": len(ended),
        "errors": sum(1 for r in results if r["error"]),
        "error_examples": errors[:3],
        "detections": len(detections),
        "server_ms": percentiles([d["server_ms"] for d in detections]),
        "client_ms": percentiles([c for r in results for c in r["client_ms"]]),
        "dropped_ms": round(sum(r["sent_ms"] - r["end"]["audio_ms"] for r in ended), 1),
        "client_late_ms_max": round(max((r["late_ms"] for r in results), default=0.0), 1),
        "server_cpu": round(cpu, 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def measure_load(checkpoint: str, clients: list[int], seconds: float) -> dict[str, Any]:
    cap = str(max(clients) + 8)
    modes = {
        "ray": ["--ray-replicas", "1", "--ray-replica-cpus", "2"],
        "plain": ["--engine-processes", "2", "--torch-threads", "1"],
    }
    out: dict[str, Any] = {}
    for mode, extra in modes.items():
        args = ["--checkpoint", checkpoint, "--max-sessions", cap, *extra]
        rows = []
        with server(args, f"load-{mode}") as (base, pid):
            for k in clients:
                rows.append(asyncio.run(_load(base, pid, k, seconds)))
                print(f"{mode} {k}: {json.dumps(rows[-1])}", flush=True)
        out[mode] = {"command": "lmukws serve " + " ".join(args), "runs": rows}
    return out


def _summary(results: dict[str, Any]) -> str:
    lines = [
        "# Ray Serve: scale-up time and sessions per replica",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}; shared with other jobs (load average "
        f"{results['loadavg_start']} at start, {results['loadavg_end']} at end).",
        "",
    ]
    scale = results.get("scale")
    if scale:
        lines += [
            "## Autoscaling from 1 to 2 replicas",
            "",
            f"`{scale['command']}`, {scale['sessions_held']} clients streaming at real time "
            "(target 5.6 sessions per replica; upscale delay 5 s). Seconds from all of them "
            "open to:",
            "",
            "| new replica reports (actor up, app built) | new replica ready | first session "
            "accepted on it |",
            "|---|---|---|",
            f"| {scale.get('reported_s', '—')} | {scale.get('ready_s', '—')} | "
            f"{scale.get('accepted_s', '—')} |",
            "",
        ]
    load = results.get("load")
    if load:
        lines += [
            "## Real-time sessions: one replica behind the proxy vs a plain server",
            "",
            "| server | clients | completed | errors | server_ms p50/p99 | client_ms p50/p99 | "
            "dropped ms | server CPU (cores) | load avg |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for mode, data in load.items():
            for r in data["runs"]:
                lines.append(
                    f"| {mode} | {r['clients']} | {r['completed']} | {r['errors']} | "
                    f"{r['server_ms']['p50']}/{r['server_ms']['p99']} | "
                    f"{r['client_ms']['p50']}/{r['client_ms']['p99']} | {r['dropped_ms']} | "
                    f"{r['server_cpu']} | {r['loadavg'][0]} |"
                )
        lines += ["", *(f"- {m}: `{d['command']}`" for m, d in load.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/ray-serve"))
    parser.add_argument("--sections", default="scale,load")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped lmuformer")
    parser.add_argument("--clients", default="10,25,50")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scale-deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    from models.checkpoint import default_checkpoint

    checkpoint = args.checkpoint or str(default_checkpoint("lmuformer"))
    with contextlib.suppress(ValueError):  # as the report shows it: relative to here
        checkpoint = str(Path(checkpoint).resolve().relative_to(Path.cwd()))
    sections = set(args.sections.split(","))
    results: dict[str, Any] = {
        "command": "python -m benchmarks.ray_serve_bench " + " ".join(argv or sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "checkpoint": checkpoint,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    if "scale" in sections:
        results["scale"] = measure_scale(checkpoint, args.scale_deadline)
        print("scale:", json.dumps(results["scale"]), flush=True)
    if "load" in sections:
        clients = [int(k) for k in re.split(r"[, ]+", args.clients) if k]
        results["load"] = measure_load(checkpoint, clients, args.seconds)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "summary.md").write_text(_summary(results))
    print(_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
