"""Section ``soak``: a real ``lmukws serve`` under mixed, partly hostile traffic for a bounded time.

Beside each other, for ``soak_seconds``:

- **normal clients** (``soak_clients``): real-time speech in ``load_chunk_ms`` messages, sessions
  of ``soak_session_s`` back to back, forced detections as in the ``load`` section (thresholds 0
  and a ``reset`` every ``load_reset_s``). Every session must end with all its audio scored;
- **slow readers** (``soak_slow_readers``): real-time audio with ``scores_every_ms: 10``, a
  small receive buffer and an Ethernet MSS, never reading; the server should drop their scores
  and close them (``slow_consumer``, after ``soak_slow_consumer_timeout_s``). Each reconnects
  once its link is dropped, or stalls (the server stopped reading its audio);
- **heavy REST**: one task posting ``soak_rest_files`` WAV files of ``soak_rest_file_s`` seconds
  to ``POST /v1/classify``, back to back;
- **churn**: connections opened and dropped (TCP abort) ``soak_churn_per_s`` times a second, in
  turn without ``start``, right after ``ready``, and after some audio;
- **one engine kill** at ``soak_kill_at`` of the run: SIGKILL to one engine process of the
  server. Normal sessions on it get ``internal_error`` (1011), are counted as failed by the
  kill, and their clients reconnect; the time until ``/readyz`` is 200 with every engine live
  again is the recovery time.

A monitor samples the server tree's RSS and PSS, ``/healthz`` and ``/readyz`` every
``SAMPLE_S``. Audio lost (sent minus the ``end`` message's ``audio_ms``) counts every normal
session but those the kill failed (they get no ``end``), and must be 0. Everything is bounded:
deadlines on every wait, the server gets SIGTERM then SIGKILL (``served``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.audio import RATE, speech_track
from benchmarks.checkpoints import (
    checkpoint_for,
    children,
    cpu_seconds,
    host_cpu_seconds,
    tree_pss_bytes,
    tree_rss_bytes,
)
from benchmarks.config import BenchConfig, SectionUnavailableError
from benchmarks.engine_bench import percentiles
from benchmarks.serve_bench import (
    HOST,
    READY_TIMEOUT_S,
    ServerError,
    forced_thresholds,
    frames_for,
    pcm16,
    served,
    stream_client,
    stream_url,
    wav_bytes,
)

SAMPLE_S = 0.5  # monitor period: RSS, /healthz, /readyz
SLOW_RCVBUF = 4096  # the slow readers' socket receive buffer (bytes): fills in seconds
SLOW_MSS = 1460  # the slow readers' TCP segment size: an Ethernet path's
SLOW_SCORES_EVERY_MS = 10
SLOW_STALL_S = 5.0  # a slow reader's send blocked this long: the server stopped reading
CHURN_MODES = ("no-start", "after-ready", "after-audio")
REST_GRACE_S = 120.0  # a REST request still running at the end may finish within this
END_GRACE_S = 90.0  # everything else: the last sessions' `end`, the recovery
MIN_SESSION_S = 1.0  # no new session with less of the run left


def engine_pids(server_pid: int) -> list[int]:
    """The engine processes of the server ``server_pid``: its fork server's children holding a
    socket.

    The server's children are multiprocessing's fork server (``streaming/children.py``) and
    resource tracker; the fork server's children are the engine processes and the
    classification worker, all with the fork server's command line. An engine process talks to
    the server over a socketpair (``streaming/process.py``) whereas the classification worker's
    ``ProcessPoolExecutor`` uses pipes: an engine process is the child holding a socket.
    """
    found = []
    for fork_server in children(server_pid):
        with contextlib.suppress(OSError):
            if b"forkserver" in Path(f"/proc/{fork_server}/cmdline").read_bytes():
                found += [pid for pid in children(fork_server) if _holds_a_socket(pid)]
    return sorted(found)


def _holds_a_socket(pid: int) -> bool:
    """Whether process ``pid`` has a socket open (False once it is gone)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    links = []
    for fd in fds:
        with contextlib.suppress(OSError):
            links.append(os.readlink(fd))
    return any(link.startswith("socket:") for link in links)


async def busiest(pids: list[int], window_s: float = 0.5) -> int:
    """The process of ``pids`` that used the most CPU over ``window_s``: the engine stepping
    the most sessions, so the kill fails sessions (the lowest pid on a tie)."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    await asyncio.sleep(window_s)
    return max(pids, key=lambda pid: (cpu_seconds(pid) - before[pid], -pid))


def metric_total(text: str, name: str, label: str = "") -> float:
    """Sum of the series of ``name`` in Prometheus text whose labels contain ``label``
    (e.g. ``code="slow_consumer"``; "" sums every series)."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return float(sum(float(v) for labels, v in pattern.findall(text) if label in labels))


class Soak:
    """One soak run against the server at ``base`` (process ``process``): the clients, the
    monitor and the kill, and what they saw. Times are seconds since ``t0``."""

    def __init__(
        self,
        base: str,
        process: subprocess.Popen,
        track: np.ndarray,
        config: BenchConfig,
        log: Callable[[str], None],
    ) -> None:
        self.base = base
        self.url = stream_url(base)
        self.port = int(base.rsplit(":", 1)[1])
        self.process = process
        self.config = config
        self.log = log
        self.pcm = pcm16(track)
        self.chunk = int(RATE * config.load_chunk_ms / 1000)
        wav = wav_bytes(track[: int(config.soak_rest_file_s * RATE)])
        self.rest_files = [("files", (f"soak{i}.wav", wav)) for i in range(config.soak_rest_files)]
        self.rng = np.random.default_rng(config.seed)
        self.t0 = time.perf_counter()
        self.end = self.t0 + config.soak_seconds
        self.timeline: list[dict[str, Any]] = []
        self.kill: dict[str, Any] = {}

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.end - time.perf_counter()

    async def run(self) -> dict[str, Any]:
        """Run every task of the soak at once; what the clients, the monitor and the server's
        ``/metrics`` saw."""
        import httpx

        thresholds = await forced_thresholds(self.base, self.config)
        async with httpx.AsyncClient(timeout=10.0) as http:
            self.t0 = time.perf_counter()
            self.end = self.t0 + self.config.soak_seconds
            host_start, steal_start = host_cpu_seconds()
            own_start = time.process_time()
            monitor = asyncio.create_task(self._monitor(http))
            tasks = [
                asyncio.gather(
                    *(self._normal(i, thresholds) for i in range(self.config.soak_clients))
                ),
                asyncio.gather(
                    *(self._slow_reader() for _ in range(self.config.soak_slow_readers))
                ),
                self._rest(),
                self._churn(),
                self._kill_engine(http),
            ]
            deadline = self.config.soak_seconds + REST_GRACE_S + END_GRACE_S
            try:
                normal, slow, rest, churn, _ = await asyncio.wait_for(
                    asyncio.gather(*tasks), deadline
                )
            except asyncio.TimeoutError:
                raise ServerError(f"the soak did not finish within {deadline:g} s") from None
            finally:
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            wall = self.now()
            host_end, steal_end = host_cpu_seconds()
            own = time.process_time() - own_start
            left = await self._sessions_left(http)
            metrics = (await http.get(self.base + "/metrics")).text
        sessions = [session for client in normal for session in client]
        return {
            "seconds": self.config.soak_seconds,
            "wall_s": round(wall, 1),
            # the machine's busy cores over the run (the server, these clients and whatever
            # else it ran), the clients' own share, and the hypervisor's steal
            "host_busy_cpu": round((host_end - host_start) / wall, 2),
            "clients_cpu": round(own / wall, 2),
            "steal_cpu": round((steal_end - steal_start) / wall, 2),
            "normal": self._normal_summary(sessions),
            "slow": self._slow_summary([s for reader in slow for s in reader]),
            "rest": rest,
            "churn": churn,
            "kill": self.kill,
            "server": self._server_summary(metrics, left),
            "timeline": self.timeline,
            # (seconds into the run, server_ms) of every normal client's detection
            "detections": sorted(
                (round(at - self.t0, 2), latency["server_ms"])
                for session in sessions
                for at, latency in zip(session["detected_at"], session["detections"], strict=True)
            ),
        }

    # -- normal clients -------------------------------------------------------------------

    async def _normal(self, index: int, thresholds: dict[str, float] | None) -> list[dict]:
        """Sessions of ``soak_session_s`` back to back until the end (staggered starts)."""
        await asyncio.sleep(min(2.0, 0.1 * index))
        sessions = []
        while self.left() > MIN_SESSION_S:
            started = self.now()
            session = await stream_client(
                self.url,
                self.pcm,
                int(self.rng.integers(0, self.pcm.size // 2)),
                min(self.config.soak_session_s, self.left()),
                self.config.load_chunk_ms,
                time.perf_counter(),
                thresholds,
                self.config.load_reset_s if thresholds else 0.0,
            )
            session.update(started_s=round(started, 2), ended_s=round(self.now(), 2))
            sessions.append(session)
            if session["error"] and not self._failed_by_kill(session):
                await asyncio.sleep(0.5)  # a refused session: do not spin
        return sessions

    def _failed_by_kill(self, session: dict[str, Any]) -> bool:
        """A session closed by ``internal_error`` (1011) once the engine was killed."""
        error = session["error"] or ""
        killed_at = self.kill.get("at_s")
        return (
            killed_at is not None
            and session["ended_s"] >= killed_at
            and ("internal_error" in error or "closed 1011" in error)
        )

    def _normal_summary(self, sessions: list[dict[str, Any]]) -> dict[str, Any]:
        killed, ended, failed = [], [], []
        for session in sessions:
            if self._failed_by_kill(session):
                killed.append(session)
            elif session["end"] is not None and not session["error"]:
                ended.append(session)
            else:
                failed.append(session)
        lost = [s["sent_ms"] - s["end"]["audio_ms"] for s in ended]
        missing = [frames_for(s["sent_ms"]) - s["end"]["frames"] for s in ended]
        detections = [d for s in sessions for d in s["detections"]]
        return {
            "clients": self.config.soak_clients,
            "sessions": len(sessions),
            "completed": len(ended),
            "failed_by_kill": len(killed),
            "failed": len(failed),
            "error_examples": sorted({s["error"] for s in failed})[:5],
            # every session but the kill's: those get no `end` to count against
            "audio_lost_ms": round(float(sum(lost)), 1),
            "audio_lost_ms_max": round(float(max(lost)), 1) if lost else None,
            "frames_missing": int(sum(missing)),
            # what the `end` messages account for: each session's audio since its last reset
            "audio_checked_s": round(float(sum(s["sent_ms"] for s in ended)) / 1000, 1),
            "detections": len(detections),
            "server_ms": percentiles([d["server_ms"] for d in detections]),
            "queue_ms": percentiles([d["queue_ms"] for d in detections]),
            "compute_ms": percentiles([d["compute_ms"] for d in detections]),
            "client_ms": percentiles([c for s in sessions for c in s["client_ms"]]),
            "client_late_ms_max": round(max((s["late_ms"] for s in sessions), default=0.0), 1),
        }

    # -- slow readers ---------------------------------------------------------------------

    async def _slow_reader(self) -> list[dict[str, Any]]:
        """Sessions that never read, one after another until the end."""
        sessions = []
        while self.left() > MIN_SESSION_S:
            sessions.append(await self._slow_session())
            if sessions[-1]["error"]:
                await asyncio.sleep(0.5)
        return sessions

    async def _slow_session(self) -> dict[str, Any]:
        """Connect with a small receive buffer and an Ethernet MSS, ask for scores every 10 ms,
        stream real-time audio and read nothing (websockets stops reading after ``max_queue``
        messages) until the server drops the connection, stops reading the audio (a send
        blocked for ``SLOW_STALL_S``), or the run ends."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        result: dict[str, Any] = {"started": False, "ended": None, "after_s": None, "error": None}
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        # loopback's 64 KiB segments let the server's kernel buffer megabytes of scores (over
        # 40 s of them: uvicorn's keepalive ping would close the link first); a network path's
        # MSS gives the buffers of a real remote client
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SLOW_MSS)
        sock.setblocking(False)
        ws = None
        t0 = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.sock_connect(sock, (HOST, self.port)), 10)
            ws = await connect(
                self.url, sock=sock, max_queue=1, ping_interval=None, open_timeout=10
            )
            start = {"type": "start", "sample_rate": RATE, "scores_every_ms": SLOW_SCORES_EVERY_MS}
            await ws.send(json.dumps(start))
            result["started"] = True
            t0 = time.perf_counter()
            k = 0
            while time.perf_counter() < self.end:
                begin = int(self.rng.integers(0, self.pcm.size - self.chunk))
                chunk = self.pcm[begin : begin + self.chunk].tobytes()
                try:
                    await asyncio.wait_for(ws.send(chunk), SLOW_STALL_S)
                except asyncio.TimeoutError:
                    result["ended"] = "stalled"
                    break
                k += 1
                await asyncio.sleep(max(0.0, t0 + k * self.chunk / RATE - time.perf_counter()))
            else:
                result["ended"] = "run ended"
        except (ConnectionClosed, OSError) as error:
            if result["started"]:  # a reset: the server dropped the link
                result["ended"] = "dropped"
            else:
                result["error"] = f"{type(error).__name__}: {error}"
        except (InvalidHandshake, asyncio.TimeoutError) as error:
            result["error"] = f"{type(error).__name__}: {error}"
        finally:
            if ws is not None:
                ws.transport.abort()  # closes the socket too
            else:
                sock.close()
        if result["ended"] in ("dropped", "stalled"):
            result["after_s"] = round(time.perf_counter() - t0, 2)
        return result

    def _slow_summary(self, sessions: list[dict[str, Any]]) -> dict[str, Any]:
        ended = [s for s in sessions if s["ended"] in ("dropped", "stalled")]
        errors = [s["error"] for s in sessions if s["error"]]
        return {
            "readers": self.config.soak_slow_readers,
            "sessions": sum(s["started"] for s in sessions),
            # the server closed the connection (a reset, or a close frame)
            "dropped_by_server": sum(s["ended"] == "dropped" for s in ended),
            # the server stopped reading the audio but kept the connection open
            "stalled": sum(s["ended"] == "stalled" for s in ended),
            "ended_after_s": percentiles([s["after_s"] for s in ended]),
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:5],
        }

    # -- heavy REST -----------------------------------------------------------------------

    async def _rest(self) -> dict[str, Any]:
        """``POST /v1/classify`` with the heavy request, back to back until the end (none with
        ``soak_rest_files`` 0); a request still running then may finish within
        ``REST_GRACE_S``."""
        import httpx

        durations: list[float] = []
        spans: list[tuple[float, float]] = []  # (start, end) of each request, s into the run
        failed, unfinished, errors = 0, 0, []
        async with httpx.AsyncClient(timeout=None) as http:
            while self.rest_files and self.left() > 0:
                t = time.perf_counter()
                try:
                    response = await asyncio.wait_for(
                        http.post(self.base + "/v1/classify", files=self.rest_files),
                        self.left() + REST_GRACE_S,
                    )
                except asyncio.TimeoutError:
                    unfinished += 1
                    break
                except httpx.HTTPError as error:
                    failed += 1
                    errors.append(f"{type(error).__name__}: {error}")
                    await asyncio.sleep(0.5)
                    continue
                spans.append((round(t - self.t0, 2), round(self.now(), 2)))
                if response.status_code == 200:
                    durations.append(time.perf_counter() - t)
                else:
                    failed += 1
                    errors.append(f"{response.status_code} {response.text[:200]}")
        return {
            "files": self.config.soak_rest_files,
            "file_s": self.config.soak_rest_file_s,
            "done": len(durations),
            "failed": failed,
            "unfinished": unfinished,
            "mean_s": round(float(np.mean(durations)), 2) if durations else None,
            "max_s": round(max(durations), 2) if durations else None,
            "error_examples": sorted(set(errors))[:5],
            "spans": spans,
        }

    # -- churn ----------------------------------------------------------------------------

    async def _churn(self) -> dict[str, Any]:
        """Open and drop connections ``soak_churn_per_s`` times a second until the end."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        done = dict.fromkeys(CHURN_MODES, 0)
        ready, errors = 0, []
        start = json.dumps({"type": "start", "sample_rate": RATE})
        audio = self.pcm[: RATE // 5].tobytes()  # 200 ms
        due = time.perf_counter()
        k = 0
        while self.left() > 0:
            mode = CHURN_MODES[k % len(CHURN_MODES)]
            k += 1
            try:
                ws = await connect(self.url, ping_interval=None, open_timeout=10)
                try:
                    if mode != "no-start":
                        await ws.send(start)
                        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if message.get("type") != "ready":
                            raise RuntimeError(f"no ready: {message.get('code')}")
                        ready += 1
                        if mode == "after-audio":
                            await ws.send(audio)
                finally:
                    ws.transport.abort()  # no close frame: the client vanishes
                done[mode] += 1
            except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError) as error:
                errors.append(f"{mode}: {type(error).__name__}: {error}")
            except RuntimeError as error:
                errors.append(f"{mode}: {error}")
            due += 1.0 / self.config.soak_churn_per_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        return {
            "per_s": self.config.soak_churn_per_s,
            "connections": sum(done.values()),
            "by_mode": done,
            "sessions": ready,
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:5],
        }

    # -- the engine kill and the monitor --------------------------------------------------

    async def _kill_engine(self, http: Any) -> None:
        """At ``soak_kill_at`` of the run SIGKILL the busiest engine process, then time how long
        until ``/readyz`` is 200 with every engine live again (the recovery)."""
        await asyncio.sleep(max(0.0, self.config.soak_seconds * self.config.soak_kill_at - 0.5))
        pids = engine_pids(self.process.pid)
        self.kill["engines_found"] = len(pids)
        if not pids:
            self.kill["error"] = "no engine process found"
            return
        pid = await busiest(pids)
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()
        self.kill.update(pid=pid, at_s=round(killed - self.t0, 2))
        self.log(f"  soak: SIGKILL to engine process {pid} at {self.kill['at_s']} s")
        unready_seen = False
        deadline = killed + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx_errors()):
                response = await http.get(self.base + "/readyz")
                body = response.json()
                ready = response.status_code == 200 and body["engines"] == body["engines_total"]
                if not ready and not unready_seen:
                    unready_seen = True
                    self.kill["unready_after_s"] = round(time.perf_counter() - killed, 2)
                    self.kill["unready_status"] = body.get("status")
                elif ready and unready_seen:
                    self.kill["recovery_s"] = round(time.perf_counter() - killed, 2)
                    self.log(f"  soak: ready again {self.kill['recovery_s']} s after the kill")
                    return
            await asyncio.sleep(0.1)
        self.kill["recovery_s"] = None
        self.kill["error"] = f"not ready again within {READY_TIMEOUT_S:g} s"

    async def _monitor(self, http: Any) -> None:
        """Every ``SAMPLE_S``: RSS and PSS of the server's tree, ``/healthz``, ``/readyz``'s
        sessions."""
        while True:
            sample: dict[str, Any] = {
                "t": round(self.now(), 2),
                "rss_mb": round(tree_rss_bytes(self.process.pid) / 2**20, 1),
                "pss_mb": round(tree_pss_bytes(self.process.pid) / 2**20, 1),
                "healthz": None,
                "sessions": None,
            }
            with contextlib.suppress(httpx_errors()):
                health, ready = await asyncio.gather(
                    http.get(self.base + "/healthz"), http.get(self.base + "/readyz")
                )
                sample["healthz"] = health.status_code
                if ready.status_code == 200:
                    sample["sessions"] = ready.json()["sessions"]
            self.timeline.append(sample)
            await asyncio.sleep(SAMPLE_S)

    async def _sessions_left(self, http: Any, timeout: float = 15.0) -> int | None:
        """Sessions and pending connections the server still holds once every client is gone
        (waits up to ``timeout`` for them to drain; must reach 0)."""
        deadline = time.perf_counter() + timeout
        left = None
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx_errors()):
                response = await http.get(self.base + "/readyz")
                if response.status_code == 200:
                    body = response.json()
                    left = body["sessions"] + body["pending"]
                    if left == 0:
                        return 0
            await asyncio.sleep(0.2)
        return left

    def _start_peak_end(self, key: str) -> dict[str, float | None]:
        """``{key}_start``, ``_peak`` and ``_end`` of a sampled memory series (its readings
        above 0: none once the server is gone)."""
        values = [s[key] for s in self.timeline if s[key] > 0]
        return {
            f"{key}_start": values[0] if values else None,
            f"{key}_peak": max(values) if values else None,
            f"{key}_end": values[-1] if values else None,
        }

    def _server_summary(self, metrics: str, left: int | None) -> dict[str, Any]:
        health = [s["healthz"] for s in self.timeline]
        return {
            **self._start_peak_end("rss_mb"),
            **self._start_peak_end("pss_mb"),
            "healthz_samples": len(health),
            "healthz_not_200": sum(code != 200 for code in health),
            "healthz_always_200": bool(health) and all(code == 200 for code in health),
            "sessions_left": left,
            "scores_dropped": metric_total(metrics, "lmukws_scores_dropped_total"),
            "slow_consumer_errors": metric_total(
                metrics, "lmukws_errors_total", 'code="slow_consumer"'
            ),
            "internal_errors": metric_total(
                metrics, "lmukws_errors_total", 'code="internal_error"'
            ),
            "engine_restarts": metric_total(metrics, "lmukws_engine_restarts_total"),
        }


def httpx_errors() -> tuple[type[BaseException], ...]:
    """What a monitoring request may raise without ending the soak."""
    import httpx

    return (httpx.HTTPError, ValueError, KeyError)


def bench_soak(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict[str, Any]:
    """Section ``soak``: normal clients beside slow readers, heavy REST, churn and one engine
    kill, against a server of its own (short ``slow_consumer_timeout_s``)."""
    if config.engine_processes == 0:
        raise SectionUnavailableError("the soak kills an engine process: needs engine processes")
    track, source = speech_track(max(60.0, config.soak_rest_file_s), seed=config.seed + 3)
    results: dict[str, Any] = {"audio": source, "forced_detections": config.load_force_detections}
    clients = config.soak_clients + config.soak_slow_readers
    env = {"LMUKWS_SLOW_CONSUMER_TIMEOUT_S": str(config.soak_slow_consumer_timeout_s)}
    for name in config.models:
        path, origin = checkpoint_for(name, config, out)
        log(
            f"{name}: soak {config.soak_seconds:g} s: {config.soak_clients} clients, "
            f"{config.soak_slow_readers} slow readers, REST {config.soak_rest_files} × "
            f"{config.soak_rest_file_s:g} s, churn {config.soak_churn_per_s:g}/s, one engine kill"
        )
        with served(path, config, clients + 16, log, out, env) as (base, process):
            row = asyncio.run(Soak(base, process, track, config, log).run())
            if process.poll() is not None:
                raise ServerError(f"lmukws serve died during the soak (exit {process.returncode})")
        normal, server = row["normal"], row["server"]
        log(
            f"  soak: {normal['sessions']} normal sessions ({normal['failed_by_kill']} failed by "
            f"the kill), audio lost {normal['audio_lost_ms']} ms, server_ms p50/p99 "
            f"{normal['server_ms']['p50']}/{normal['server_ms']['p99']}, peak RSS "
            f"{server['rss_mb_peak']} MB, recovery {row['kill'].get('recovery_s')} s"
        )
        results[name] = {
            "checkpoint": str(path),
            "weights": origin,
            "slow_consumer_timeout_s": config.soak_slow_consumer_timeout_s,
            **row,
        }
    return results
