"""Sections ``rest`` and ``load``: a real ``lmukws serve`` on 127.0.0.1, measured from outside.

- ``rest``: one-second clips/s through ``POST /v1/classify`` (B WAV files per request) and
  through the parallel form directly in this process (fbank + network on the same B clips),
  interleaved request by request, for each batch size B.
- ``load``: K websocket clients, each streaming speech (keywords with pauses) at real time in
  ``load_chunk_ms`` messages for ``load_seconds``, then ``stop``. Reported per K: detection
  latency from the detection messages (server_ms, queue_ms, compute_ms; p50/p99) and as seen by
  the client (from sending the audio that completed the triggering frame to receiving the
  detection), the algorithmic latency, audio dropped (sent minus the ``end`` message's
  ``audio_ms``; must be 0), the server's CPU and RSS at start and end, refused or failed
  sessions, and how late the clients themselves sent (they share the machine).
  With ``load_force_detections`` clients ask for thresholds of 0 and send a ``reset`` every
  ``load_reset_s`` seconds (a keyword fires once, then re-arms only when its score drops below
  its threshold, which a threshold of 0 never does; a reset re-arms it): every client then gets
  one detection per reset whatever the weights. The test measures the pipeline, not accuracy.

Everything is bounded: the server listens on 127.0.0.1 only, every wait has a deadline, and the
server gets SIGTERM (then SIGKILL) when the section ends, fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.audio import RATE, speech_track
from benchmarks.checkpoints import (
    checkpoint_for,
    host_cpu_seconds,
    tree_cpu_seconds,
    tree_pss_bytes,
    tree_rss_bytes,
    work_dir,
)
from benchmarks.config import BenchConfig
from benchmarks.engine_bench import percentiles
from models.config import FeatureConfig

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0


class ServerError(RuntimeError):
    """The server did not start, or died during the run."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(
    checkpoint: Path,
    config: BenchConfig,
    max_sessions: int,
    log: Callable[[str], None],
    out: Path,
    env_changes: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``lmukws serve`` on 127.0.0.1 for the duration of the block: (base URL, process).
    ``env_changes``: more ``LMUKWS_*`` settings for this server (e.g. the soak's deadlines)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        LMUKWS_MAX_UPLOAD_FILES=str(max(64, *config.rest_batches)),
        LMUKWS_LOG_LEVEL=os.environ.get("LMUKWS_LOG_LEVEL", "warning"),
    )
    if config.engine_max_batch:
        env["LMUKWS_MAX_BATCH"] = str(config.engine_max_batch)
    if config.engine_processes >= 0:
        env["LMUKWS_ENGINE_PROCESSES"] = str(config.engine_processes)
    if config.runtime:
        env["LMUKWS_RUNTIME"] = config.runtime
    if config.window_hop_ms:
        env["LMUKWS_WINDOW_HOP_MS"] = str(config.window_hop_ms)
    env.update(env_changes or {})
    command = [
        sys.executable,
        "-m",
        "lmukws",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--host",
        HOST,
        "--port",
        str(port),
        "--device",
        config.device,
        "--max-sessions",
        str(max_sessions),
    ]
    if config.threads:
        command += ["--torch-threads", str(config.threads)]
    log_path = work_dir() / f"serve-{checkpoint.stem}-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        base = f"http://{HOST}:{port}"
        try:
            wait_until_ready(base, process, log_path, READY_TIMEOUT_S)
            log(f"lmukws serve ready on {base} (pid {process.pid})")
            yield base, process
        finally:
            stop_server(process, 15.0)


def wait_until_ready(
    base: str, process: subprocess.Popen, log_path: Path, timeout_s: float
) -> None:
    """Poll ``base``'s ``/readyz`` until it answers 200; ``ServerError`` (with the end of the
    server's log) when the process exits first or ``timeout_s`` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServerError(f"lmukws serve exited with {process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise ServerError(f"lmukws serve not ready after {timeout_s:g} s")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen, wait_s: float) -> None:
    """SIGTERM (the server drains), then SIGKILL after ``wait_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


_SERVERS: dict[str, tuple[str, subprocess.Popen, contextlib.ExitStack]] = {}


def server_for(
    checkpoint: Path, config: BenchConfig, log: Callable[[str], None], out: Path
) -> tuple[str, subprocess.Popen]:
    """A running server for ``checkpoint``, shared by the REST and load sections of one run
    (started on first use, stopped by ``close_servers``)."""
    key = str(checkpoint)
    entry = _SERVERS.get(key)
    if entry is not None and entry[1].poll() is None:
        return entry[0], entry[1]
    stack = contextlib.ExitStack()
    max_sessions = max(config.load_clients) + 8
    base, process = stack.enter_context(served(checkpoint, config, max_sessions, log, out))
    _SERVERS[key] = (base, process, stack)
    return base, process


def close_servers() -> None:
    """Stop every server this run started (SIGTERM, then SIGKILL)."""
    while _SERVERS:
        _, (_, _, stack) = _SERVERS.popitem()
        stack.close()


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# REST


def bench_rest(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict[str, Any]:
    """Section ``rest``: clips/s through POST /v1/classify and the parallel form, by batch."""
    import httpx

    from models import Fbank, load_checkpoint

    track, source = speech_track(30.0, seed=config.seed + 1)
    rng = np.random.default_rng(config.seed)
    results: dict[str, Any] = {"audio": source}
    for name in config.models:
        path, origin = checkpoint_for(name, config, out)
        model, _ = load_checkpoint(path, device=device)
        model.eval()
        fbank = Fbank().to(device)
        rows = []
        base, _ = server_for(path, config, log, out)
        with httpx.Client() as client:
            for batch in config.rest_batches:
                starts = rng.integers(0, track.size - RATE, size=batch)
                clips = [track[s : s + RATE] for s in starts]
                log(f"{name}: /v1/classify vs parallel form, {batch} one-second clips")
                rows.append(
                    _rest_row(client, base, model, fbank, clips, device, config.rest_requests)
                )
        results[name] = {"checkpoint": str(path), "weights": origin, "runs": rows}
    return results


def _rest_row(
    client: Any,
    base: str,
    model: Any,
    fbank: Any,
    clips: list[np.ndarray],
    device: torch.device,
    requests: int,
) -> dict[str, Any]:
    """One batch size: POST /v1/classify with the clips vs the parallel form, interleaved."""
    files = [("files", (f"clip{i}.wav", wav_bytes(c), "audio/wav")) for i, c in enumerate(clips)]
    waves = torch.from_numpy(np.stack(clips)).to(device)

    def rest() -> None:
        response = client.post(base + "/v1/classify", files=files, timeout=300.0)
        if response.status_code != 200:
            raise ServerError(f"classify: {response.status_code} {response.text[:500]}")

    def direct() -> None:
        with torch.inference_mode():
            model(fbank(waves))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rest()  # warm-up
    direct()
    times: dict[str, list[float]] = {"rest": [], "direct": []}
    for _ in range(requests):
        for key, fn in (("rest", rest), ("direct", direct)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    rest_s = statistics.median(times["rest"])
    direct_s = statistics.median(times["direct"])
    batch = len(clips)
    return {
        "batch": batch,
        "rest_ms": round(rest_s * 1e3, 1),
        "direct_ms": round(direct_s * 1e3, 1),
        "rest_clips_per_s": round(batch / rest_s, 1),
        "direct_clips_per_s": round(batch / direct_s, 1),
        "requests": requests,
    }


# ---------------------------------------------------------------------------------------------
# websocket load


async def stream_client(
    url: str,
    pcm: np.ndarray,
    offset: int,
    seconds: float,
    chunk_ms: float,
    start_at: float,
    thresholds: dict[str, float] | None,
    reset_every_s: float = 0.0,
) -> dict[str, Any]:
    """One websocket client: start, stream at real time (a ``reset`` every ``reset_every_s``
    seconds if > 0), stop, read until ``end``. Returns its detections' ``latency`` (and when each
    arrived, ``time.perf_counter()``), client-side latencies, audio sent, ``end`` and error."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    chunk = int(RATE * chunk_ms / 1000)
    n_chunks = round(seconds * 1000 / chunk_ms)
    result: dict[str, Any] = {
        "detections": [],
        "detected_at": [],
        "client_ms": [],
        "late_ms": 0.0,
        "sent_ms": 0.0,
        "end": None,
        "error": None,
    }
    sent_at: list[tuple[int, float]] = []  # (samples sent so far, time sent)
    epochs = [0]  # samples sent before each reset: audio_ms counts from there
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    try:
        async with connect(url, max_size=2**20, open_timeout=30, close_timeout=5) as ws:
            start: dict[str, Any] = {"type": "start", "sample_rate": RATE}
            if thresholds:
                start["thresholds"] = thresholds
            await ws.send(json.dumps(start))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if ready.get("type") != "ready":
                result["error"] = f"no ready: {ready.get('type')} {ready.get('code', '')}"
                return result
            result["algorithmic_ms"] = ready.get("algorithmic_latency_ms")
            lookahead_ms = float(ready["lookahead_frames"]) * float(ready.get("frame_ms", 10.0))

            async def receive() -> None:
                try:
                    async for raw in ws:
                        now = time.perf_counter()
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind == "detection":
                            result["detections"].append(message["latency"])
                            result["detected_at"].append(now)
                            # the audio that made the triggering frame final, in the
                            # newest reset epoch where it has been sent already
                            since = (message["audio_ms"] + lookahead_ms) * RATE / 1000
                            sent = sent_at[-1][0] if sent_at else 0
                            base = next((b for b in reversed(epochs) if b + since <= sent), 0)
                            for samples, t in sent_at:
                                if samples >= base + since:
                                    result["client_ms"].append((now - t) * 1000)
                                    break
                        elif kind == "end":
                            result["end"] = message
                            return
                        elif kind == "error":
                            result["error"] = f"{message.get('code')}: {message.get('message')}"
                except ConnectionClosed as error:
                    if result["end"] is None and result["error"] is None:
                        rcvd = error.rcvd
                        result["error"] = (
                            f"closed {rcvd.code} {rcvd.reason}" if rcvd else "closed (no frame)"
                        )

            receiver = asyncio.create_task(receive())
            t0 = time.perf_counter()
            total = 0
            reset_chunks = round(reset_every_s * RATE / chunk) if reset_every_s > 0 else 0
            for k in range(n_chunks):
                if reset_chunks and k and k % reset_chunks == 0:
                    await ws.send(json.dumps({"type": "reset"}))
                    epochs.append(total)
                delay = t0 + k * chunk / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    result["late_ms"] = max(result["late_ms"], -delay * 1000)
                begin = (offset + k * chunk) % (pcm.size - chunk)
                try:
                    await ws.send(pcm[begin : begin + chunk].tobytes())
                except ConnectionClosed:
                    break
                total += chunk
                sent_at.append((total, time.perf_counter()))
            result["sent_ms"] = (total - epochs[-1]) * 1000 / RATE  # since the last reset
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "stop"}))
            try:
                await asyncio.wait_for(receiver, 60)
            except asyncio.TimeoutError:
                result["error"] = result["error"] or "no end within 60 s"
                receiver.cancel()
    except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError) as error:
        result["error"] = result["error"] or f"{type(error).__name__}: {error}"
    return result


def frames_for(audio_ms: float) -> int:
    """Frames of the front end (``FeatureConfig``'s window and hop) for ``audio_ms`` of audio."""
    features = FeatureConfig()
    samples = round(audio_ms * RATE / 1000)
    if samples < features.frame_length:
        return 0
    return 1 + (samples - features.frame_length) // features.frame_shift


def stream_url(base: str) -> str:
    """The websocket endpoint of the server at ``base`` (``http://host:port``)."""
    return base.replace("http://", "ws://") + "/v1/stream"


def pcm16(track: np.ndarray) -> np.ndarray:
    """The track twice over as 16-bit PCM: clients read chunks from any offset without
    wrapping mid-chunk."""
    return (np.clip(np.concatenate((track, track)), -1, 1) * 32767).astype("<i2")


async def forced_thresholds(base: str, config: BenchConfig) -> dict[str, float] | None:
    """Thresholds of 0 for every keyword of the served model when ``load_force_detections``
    (clients then get a detection after each reset whatever the weights), else None."""
    import httpx

    if not config.load_force_detections:
        return None
    async with httpx.AsyncClient() as http:
        info = (await http.get(base + "/v1/model", timeout=30)).json()
    return dict.fromkeys(info["keywords"], 0.0)


async def _load(
    base: str,
    clients: int,
    track: np.ndarray,
    config: BenchConfig,
    process: subprocess.Popen,
) -> dict[str, Any]:
    url = stream_url(base)
    thresholds = await forced_thresholds(base, config)
    pcm = pcm16(track)
    rng = np.random.default_rng(clients)
    offsets = rng.integers(0, track.size, size=clients)
    ramp = min(2.0, 0.02 * clients)  # connections spread over the first seconds
    t0 = time.perf_counter() + 0.2
    rss_start, cpu_start = tree_rss_bytes(process.pid), tree_cpu_seconds(process.pid)
    pss_start = tree_pss_bytes(process.pid)
    host_start, steal_start = host_cpu_seconds()
    rss_trace: list[tuple[float, float]] = []

    async def sample_rss() -> None:
        while True:
            rss_trace.append(
                (round(time.perf_counter() - t0, 1), round(tree_rss_bytes(process.pid) / 2**20, 1))
            )
            await asyncio.sleep(2.0)

    sampler = asyncio.create_task(sample_rss())
    own_cpu = time.process_time()
    tasks = [
        stream_client(
            url,
            pcm,
            int(offsets[i]),
            config.load_seconds,
            config.load_chunk_ms,
            t0 + ramp * i / max(1, clients),
            thresholds,
            config.load_reset_s if thresholds else 0.0,
        )
        for i in range(clients)
    ]
    deadline = config.load_seconds + ramp + 120
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks), deadline)
    finally:
        sampler.cancel()
    wall = time.perf_counter() - t0
    own_cpu = time.process_time() - own_cpu
    rss_end, cpu_end = tree_rss_bytes(process.pid), tree_cpu_seconds(process.pid)
    pss_end = tree_pss_bytes(process.pid)
    host_end, steal_end = host_cpu_seconds()
    server_cpu = (cpu_end - cpu_start) / wall
    host_busy, stolen = host_end - host_start, steal_end - steal_start
    detections = [d for r in results for d in r["detections"]]
    ended = [r for r in results if r["end"] is not None]
    dropped = [r["sent_ms"] - r["end"]["audio_ms"] for r in ended]
    # every frame of the audio sent since the last reset must have been scored
    missing = [frames_for(r["sent_ms"]) - r["end"]["frames"] for r in ended]
    errors = [r["error"] for r in results if r["error"]]
    algorithmic = next((r.get("algorithmic_ms") for r in results if r.get("algorithmic_ms")), None)
    return {
        "clients": clients,
        "seconds": config.load_seconds,
        "chunk_ms": config.load_chunk_ms,
        "completed": sum(r["end"] is not None for r in results),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "detections": len(detections),
        "algorithmic_ms": algorithmic,
        "server_ms": percentiles([d["server_ms"] for d in detections]),
        "queue_ms": percentiles([d["queue_ms"] for d in detections]),
        "compute_ms": percentiles([d["compute_ms"] for d in detections]),
        "client_ms": percentiles([c for r in results for c in r["client_ms"]]),
        "dropped_ms": {
            "total": round(float(sum(dropped)), 1),
            "max": round(float(max(dropped)), 1) if dropped else None,
        },
        "frames_missing": int(sum(missing)),
        "client_late_ms_max": round(max((r["late_ms"] for r in results), default=0.0), 1),
        "server_cpu": round(server_cpu, 2),
        "clients_cpu": round(own_cpu / wall, 2),  # the load generator shares the machine
        # what else the host ran meanwhile, in cores: other processes, and the hypervisor's
        # steal (a busy neighbour of this virtual machine)
        "other_cpu": round(max(0.0, (host_busy - stolen - own_cpu) / wall - server_cpu), 2),
        "steal_cpu": round(stolen / wall, 2),
        "server_rss_mb": [round(rss_start / 2**20, 1), round(rss_end / 2**20, 1)],
        "server_pss_mb": [round(pss_start / 2**20, 1), round(pss_end / 2**20, 1)],
        "rss_trace": rss_trace,
    }


def bench_load(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict[str, Any]:
    """Section ``load``: K real-time websocket clients against a real ``lmukws serve``."""
    track, source = speech_track(60.0, seed=config.seed + 2)
    results: dict[str, Any] = {"audio": source, "forced_detections": config.load_force_detections}
    for name in config.models:
        path, origin = checkpoint_for(name, config, out)
        rows = []
        base, process = server_for(path, config, log, out)
        for clients in config.load_clients:
            log(f"{name}: {clients} websocket clients for {config.load_seconds:g} s")
            row = asyncio.run(_load(base, clients, track, config, process))
            log(
                f"  {clients} clients: server_ms p50/p99 {row['server_ms']['p50']}/"
                f"{row['server_ms']['p99']}, dropped {row['dropped_ms']['total']} ms, "
                f"errors {row['errors']}, RSS {row['server_rss_mb']} MB"
            )
            rows.append(row)
            if process.poll() is not None:
                raise ServerError(f"lmukws serve died (exit {process.returncode})")
            if row["completed"] < clients // 2:
                log("  more than half the clients failed: stopping the sweep here")
                break
        results[name] = {"checkpoint": str(path), "weights": origin, "runs": rows}
    return results
