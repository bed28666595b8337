"""``lmukws serve --ray-replicas``: the service on Ray Serve replicas behind Ray's HTTP proxy.

A local Ray cluster on 127.0.0.1 (4 logical CPUs, a small object store), started by this module
and shut down when it ends; two replicas on the tone model, each with the in-process engine
(no engine processes) on one torch thread. Through the proxy: sessions spread over both
replicas by their ``ready.replica``, each with the right detections; ``/readyz`` and
``/metrics`` speak for both; a replica killed mid-stream closes its sessions with
``internal_error`` and 1011 while the others' finish, new sessions succeed and Serve replaces
it; and the command itself (``lmukws serve --ray-replicas 2 --ray-address``) drains every
session with ``end`` and 1001 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from server.protocol import encode_pcm
from server.settings import Settings
from tests.server.conftest import detections
from tests.streaming.tone_model import sequence

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
from server import ray_serve  # noqa: E402  (after the skip: it is of no use without Ray)

# own_process: Ray starts in a child pytest of its own (tests/own_process.py)
pytestmark = [pytest.mark.slow, pytest.mark.own_process]

EVENTS = [("low", 0.5), ("high", 2.0)]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for this module; yields its GCS address."""
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        runtime_env=ray_serve.runtime_env(),
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        serve.shutdown()
        ray.shutdown()


def tone_settings(checkpoint: Path, **overrides: Any) -> Settings:
    params: dict[str, Any] = {
        "checkpoint": checkpoint,
        "ray_replicas": 2,
        "ray_replica_cpus": 1,
        "engine_processes": 0,
        "torch_threads": 1,
        "max_sessions": 16,
        "host": "127.0.0.1",
    }
    params.update(overrides)
    return Settings(**params)


@pytest.fixture(scope="module")
def deployed(cluster: str, tone_checkpoint: Path) -> Iterator[str]:
    """Two replicas behind Serve's proxy on a free port; yields ``host:port``."""
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = ray_serve.application(tone_settings(tone_checkpoint))
    serve.run(app, name=ray_serve.APP_NAME, route_prefix="/")
    yield f"127.0.0.1:{port}"
    serve.shutdown()


async def stream(
    url: str,
    x: np.ndarray,
    chunk: int = 1600,
    go: asyncio.Event | None = None,
    pace_s: float = 0.0,
    on_ready: Any = None,
) -> dict[str, Any]:
    """One session: start, (wait for ``go``), stream ``x`` in ``chunk`` samples (``pace_s``
    between them), stop, read to the close. Returns ready, messages and the close code."""
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if on_ready is not None:
            on_ready(ready)
        if go is not None:
            await asyncio.wait_for(go.wait(), 120)
        messages: list[dict] = []
        try:
            for i in range(0, x.size, chunk):
                await ws.send(encode_pcm(x[i : i + chunk], "pcm_s16le"))
                if pace_s:
                    await asyncio.sleep(pace_s)
            await ws.send(json.dumps({"type": "stop"}))
        except websockets.ConnectionClosed:
            pass
        try:
            async for text in ws:
                messages.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass
        return {"ready": ready, "messages": messages, "code": ws.close_code}


async def open_on_both(
    url: str, x: np.ndarray, each: int, chunk: int, pace_s: float
) -> tuple[list[asyncio.Future], list[dict], asyncio.Event]:
    """Sessions opened one after another until each of the two replicas holds ``each`` (Serve
    picks the less busy of two, from queue lengths it may not have yet: a run can land several
    in a row on one); they stream once the returned event is set."""
    go = asyncio.Event()
    sessions: list[asyncio.Future] = []
    readies: list[dict] = []
    where: collections.Counter[str] = collections.Counter()
    while len(where) < 2 or min(where.values()) < each:
        assert len(sessions) < 40, where
        ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        sessions.append(asyncio.ensure_future(stream(url, x, chunk, go, pace_s, ready.set_result)))
        readies.append(await asyncio.wait_for(ready, 60))
        where[readies[-1]["replica"]] += 1
    return sessions, readies, go


def assert_tones_found(result: dict[str, Any]) -> None:
    assert result["code"] == 1000, result
    assert result["messages"][-1]["type"] == "end", result["messages"][-1]
    found = detections(result["messages"])
    assert [k for k, _ in found] == ["low", "high"], result
    for (_, ms), (_, onset) in zip(found, EVENTS, strict=True):
        assert onset * 1000 < ms < onset * 1000 + 600, result


def test_sessions_spread_over_the_replicas(deployed: str) -> None:
    """20 sessions open at once land on both replicas, and each finds its two tones."""
    url = f"ws://{deployed}/v1/stream"
    signals = [sequence(EVENTS, 3.0, seed=i) for i in range(20)]

    async def main() -> list[dict[str, Any]]:
        go, readies = asyncio.Event(), []

        def on_ready(ready: dict) -> None:
            readies.append(ready)
            if len(readies) == len(signals):  # all open at once: then they stream
                go.set()

        return await asyncio.gather(*(stream(url, x, go=go, on_ready=on_ready) for x in signals))

    results = asyncio.run(main())
    for result in results:
        assert_tones_found(result)
    spread = collections.Counter(r["ready"]["replica"] for r in results)
    assert len(spread) == 2 and max(spread.values()) <= 16, spread


def both_ready(base: str) -> httpx.Response:
    """``/readyz`` once both replicas have reported ready, or after 90 s. Each reports every
    REPORT_S, and a loaded host can delay that loop for seconds; a replica that Serve has just
    started (``serve.run`` returns before its app's lifespan loads the model, and a replica
    whose health check timed out is replaced) reports ``loading`` until its model is in."""
    deadline = time.monotonic() + 90
    while True:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        replicas = ready.json().get("replicas", {})
        both = len(replicas) == 2 and all(r["status"] == "ready" for r in replicas.values())
        if both or time.monotonic() > deadline:
            return ready
        time.sleep(0.5)


def test_health_and_metrics_speak_for_every_replica(deployed: str) -> None:
    base = f"http://{deployed}"
    ready = both_ready(base)
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "ready", body
    assert len(body["replicas"]) == 2, body
    assert all(r["status"] == "ready" for r in body["replicas"].values()), body
    assert body["engines"] == body["engines_total"] == 2
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for name in body["replicas"]:
        assert f'lmukws_active_sessions{{replica="{name}"}}' in text
    assert text.count("# TYPE lmukws_sessions_total counter") == 1
    health = httpx.get(f"{base}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["replicas"] == 2
    assert httpx.get(f"{base}/v1/model", timeout=10).json()["labels"][:2] == ["low", "high"]
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_every_replica_full_refuses_with_1013(deployed: str) -> None:
    """16 sessions on each replica: the next gets server_full and 1013 (after the proxy's
    admission timeout), /readyz and /metrics still answer; once a session ends, a new one
    gets in."""
    url = f"ws://{deployed}/v1/stream"
    start = json.dumps({"type": "start", "sample_rate": 16000})

    async def main() -> tuple[collections.Counter, dict, float, int | None, dict]:
        held = []
        for _ in range(32):
            ws = await websockets.connect(url, open_timeout=30)
            await ws.send(start)
            ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert ready["type"] == "ready", ready
            held.append((ws, ready["replica"]))
        spread = collections.Counter(name for _, name in held)
        began = time.monotonic()
        async with websockets.connect(url, open_timeout=30) as extra:
            with contextlib.suppress(websockets.ConnectionClosed):  # refused before its start
                await extra.send(start)
            refused = json.loads(await asyncio.wait_for(extra.recv(), 30))
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(extra.recv(), 10)
        waited = time.monotonic() - began
        async with httpx.AsyncClient() as http:
            readyz = (await http.get(f"http://{deployed}/readyz", timeout=10)).json()
        await held[0][0].close()
        async with websockets.connect(url, open_timeout=30) as again:
            await again.send(start)
            admitted = json.loads(await asyncio.wait_for(again.recv(), 30))
        for ws, _ in held[1:]:
            await ws.close()
        return spread, refused, waited, extra.close_code, {"readyz": readyz, "again": admitted}

    spread, refused, waited, code, after = asyncio.run(main())
    assert sorted(spread.values()) == [16, 16], spread
    assert refused["type"] == "error" and refused["code"] == "server_full", refused
    assert code == 1013 and waited < ray_serve.ADMISSION_TIMEOUT_S + 5
    assert after["readyz"]["sessions"] >= 30, after["readyz"]  # reports are up to 1 s old
    assert after["again"]["type"] == "ready", after["again"]


def replica_actor(name: str) -> Any:
    """The Ray actor of the Serve replica named ``name`` (as in ``ready.replica``)."""
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::") and actor["name"].endswith(f"#{name}"):
            return ray.get_actor(actor["name"], namespace=actor["namespace"])
    raise LookupError(f"no replica actor named {name}")


def running_replicas() -> int:
    status = serve.status().applications[ray_serve.APP_NAME].deployments[ray_serve.APP_NAME]
    return status.replica_states.get("RUNNING", 0)


def test_a_killed_replica_closes_its_sessions_with_1011(deployed: str) -> None:
    """Kill one replica mid-stream: its sessions get internal_error and 1011, the other's
    finish, new sessions succeed at once, and Serve starts a replacement."""
    url = f"ws://{deployed}/v1/stream"
    x = sequence(EVENTS, 3.0)

    async def main() -> tuple[list[dict[str, Any]], str]:
        sessions, readies, go = await open_on_both(url, x, 2, 800, 0.05)
        go.set()
        await asyncio.sleep(0.5)  # mid-stream
        victim = readies[0]["replica"]
        ray.kill(replica_actor(victim))
        return await asyncio.wait_for(asyncio.gather(*sessions), 120), victim

    results, victim = asyncio.run(main())
    killed = [r for r in results if r["ready"]["replica"] == victim]
    spared = [r for r in results if r["ready"]["replica"] != victim]
    assert killed and spared, collections.Counter(r["ready"]["replica"] for r in results)
    for result in killed:
        assert result["code"] == 1011, result
        assert result["messages"][-1]["type"] == "error", result
        assert result["messages"][-1]["code"] == "internal_error", result
    for result in spared:
        assert_tones_found(result)

    async def fresh() -> list[dict[str, Any]]:
        return await asyncio.gather(*(stream(url, x) for _ in range(4)))

    for result in asyncio.run(fresh()):
        assert_tones_found(result)
        assert result["ready"]["replica"] != victim
    deadline = time.monotonic() + 120
    while running_replicas() < 2:
        assert time.monotonic() < deadline, "Serve did not replace the killed replica"
        time.sleep(1.0)


def test_the_command_drains_every_replica_on_sigterm(
    cluster: str, deployed: str, tone_checkpoint: Path, tmp_path: Path
) -> None:
    """``lmukws serve --ray-replicas 2 --ray-address`` on this cluster: sessions on both
    replicas, then SIGTERM: each gets ``end`` and 1001, and the command exits 0."""
    serve.shutdown()  # the module's deployment gives way to the command's own Serve
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "lmukws", "serve", "--checkpoint", str(tone_checkpoint)]
    command += ["--ray-replicas", "2", "--ray-address", cluster, "--port", str(port)]
    command += ["--ray-replica-cpus", "1", "--engine-processes", "0", "--torch-threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LMUKWS_SHUTDOWN_DEADLINE_S": "5"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while not re.search(r"Ray Serve running on http://", log.read_text(errors="replace")):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        url = f"ws://127.0.0.1:{port}/v1/stream"
        x = sequence(EVENTS, 30.0)  # far longer than the test: SIGTERM ends it

        async def main() -> list[dict[str, Any]]:
            sessions, _, go = await open_on_both(url, x, 1, 1600, 0.1)
            go.set()
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            return await asyncio.wait_for(asyncio.gather(*sessions), 60)

        results = asyncio.run(main())
        assert process.wait(60) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len({r["ready"]["replica"] for r in results}) == 2
    for result in results:
        assert result["code"] == 1001, result
        assert result["messages"][-1]["type"] == "end", result["messages"][-1:]
        assert 0 < result["messages"][-1]["audio_ms"] < 30000
