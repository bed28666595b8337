"""The engine in child processes (``streaming.process``): the same events as in process, sessions
spread over the pool, backlog estimates, metrics summed, nothing lost on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streaming.engine import EngineConfig, EngineFullError, StreamingEngine
from streaming.process import (
    HEARTBEAT_S,
    RESPONSIVE_S,
    EnginePool,
    RemoteSession,
    merge_metric_states,
)
from streaming.session import Detection, End, Event
from tests.streaming.tone_model import sequence
from tests.tolerance import assert_same_events

CONFIG = EngineConfig(max_sessions=5, torch_threads=1)


def local_engine(checkpoint: Path) -> StreamingEngine:
    return StreamingEngine.from_checkpoint(checkpoint, CONFIG)


async def until_end(session: RemoteSession, timeout: float = 30.0) -> list[Event]:
    """Every event of the session up to and including its ``End``."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not events or not isinstance(events[-1], End):
        assert time.monotonic() < deadline, f"no End within {timeout} s: {events}"
        events += session.poll()
        await asyncio.sleep(0.01)
    return events


def in_process_events(
    checkpoint: Path, x: np.ndarray, chunk: int, config: EngineConfig = CONFIG
) -> list[Event]:
    engine = StreamingEngine.from_checkpoint(checkpoint, config)
    session = engine.create_session(16000)
    events: list[Event] = []
    for start in range(0, x.size, chunk):
        events += session.accept(x[start : start + chunk])
    return events + session.finish()


def summary(events: list[Event]) -> list[Event]:
    """What must match across processes: detections (without their wall-clock fields) and the
    end, compared with ``tests.tolerance.assert_same_events`` (another process, another batch
    composition: scores agree within the tolerance, not bit for bit)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Detection):
            out.append(replace(e, received_at=0.0, queue_ms=0.0, compute_ms=0.0))
        elif isinstance(e, End):
            out.append(e)
    return out


def test_a_pool_of_two_gives_the_in_process_events_and_sums_its_metrics(
    tone_checkpoint: Path,
) -> None:
    signals = [
        sequence([("low", 0.3), ("high", 1.6)], 3.0),
        sequence([("high", 0.5)], 2.0),
        sequence([("low", 0.2), ("low", 1.6)], 3.2),
        sequence([], 1.0),
    ]
    expected = [summary(in_process_events(tone_checkpoint, x, 640)) for x in signals]
    assert any(isinstance(e, Detection) for events in expected for e in events)

    async def main() -> tuple[list[list[Event]], list[int], float, int]:
        pool = EnginePool(local_engine(tone_checkpoint), tone_checkpoint, count=2)
        await pool.start()
        try:
            assert pool.running and len(set(pool.pids)) == 2
            sessions = [pool.create_session(16000) for _ in signals]
            spread = [p.active_sessions for p in pool.processes]
            for start in range(0, max(x.size for x in signals), 640):
                for session, x in zip(sessions, signals, strict=True):
                    if start < x.size:
                        session.push(x[start : start + 640])
                await asyncio.sleep(0)
            for session in sessions:
                session.push_stop()
            events = [await until_end(s) for s in sessions]
            await pool.refresh_metrics()
            frames = pool.metrics.frames_total.value()
            steps = pool.metrics.batch_size.count()
            for session in sessions:
                session.close()
            return events, spread, frames, steps
        finally:
            await pool.aclose()

    events, spread, frames, steps = asyncio.run(main())
    assert spread == [2, 2]
    for got, want in zip(events, expected, strict=True):
        assert_same_events(summary(got), want)
    assert frames == sum(e[-1].frames for e in events)
    assert steps > 0


def test_backlog_cap_and_end_on_shutdown(tone_checkpoint: Path) -> None:
    async def main() -> None:
        pool = EnginePool(local_engine(tone_checkpoint), tone_checkpoint, count=1)
        await pool.start()
        try:
            with pytest.raises(ValueError, match="nope"):
                pool.create_session(16000, keywords=["nope"])
            sessions = [pool.create_session(16000) for _ in range(CONFIG.max_sessions)]
            with pytest.raises(EngineFullError, match="server full"):
                pool.create_session(16000)
            for session in sessions[1:]:
                session.close()
            session = sessions[0]
            x = sequence([("low", 0.5)], 3.0)
            session.push(x)  # 3 s at once: queued until the child reports it taken
            assert session.queued_samples == x.size
            deadline = time.monotonic() + 30
            while session.queued_samples > 160 * 5:  # under a few frames: all taken
                assert time.monotonic() < deadline, session.queued_samples
                await asyncio.sleep(0.02)
            session.push(x[:8000])
            session.push_stop()
        finally:
            await pool.aclose(10.0)  # the stop was queued: its End comes before the close
        events = session.poll()
        assert isinstance(events[-1], End) and events[-1].audio_ms == 3500.0
        assert [e.keyword for e in events if isinstance(e, Detection)] == ["low"]
        assert not pool.running

    asyncio.run(main())


def test_merge_metric_states_sums_counters_and_histograms() -> None:
    counters = [{(): 2.0, ("a",): 1.0}, {(): 3.0}]
    assert merge_metric_states(counters) == {(): 5.0, ("a",): 1.0}
    histograms = [{(): ([1, 0, 2], 0.5)}, {(): ([0, 1, 1], 0.25)}]
    assert merge_metric_states(histograms) == {(): ([1, 1, 3], 0.75)}


def zombie_or_running(pid: int) -> bool:
    """Whether ``pid`` still has a process-table entry (a zombie has one until reaped)."""
    return Path(f"/proc/{pid}").exists()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def test_an_idle_child_sends_heartbeats(tone_checkpoint: Path) -> None:
    async def main() -> None:
        pool = EnginePool(local_engine(tone_checkpoint), tone_checkpoint, count=1)
        await pool.start()
        try:
            process = pool.processes[0]
            before = process.last_heard
            await asyncio.sleep(4 * HEARTBEAT_S)
            assert process.last_heard > before and process.silent_s() < RESPONSIVE_S
        finally:
            await pool.aclose()

    asyncio.run(main())


def test_a_hung_child_is_killed_reaped_and_replaced(tone_checkpoint: Path) -> None:
    """SIGSTOP one of two children: it soon gets no new sessions, its session gets a Failure
    after ``heartbeat_timeout_s``, it is reaped and a new child serves; the metrics count the
    restart and the frame counter does not fall."""

    async def main() -> None:
        pool = EnginePool(
            local_engine(tone_checkpoint), tone_checkpoint, count=2, heartbeat_timeout_s=1.5
        )
        await pool.start()
        try:
            warm = pool.create_session(16000)
            warm.push(sequence([("low", 0.3)], 1.5))
            warm.push_stop()
            await until_end(warm)
            warm.close()
            await pool.refresh_metrics()
            frames = pool.metrics.frames_total.value()
            assert frames > 0
            hung = pool.processes[0]
            victim = pool.create_session(16000)
            assert victim.owner is hung
            os.kill(hung.pid, signal.SIGSTOP)
            await until(lambda: hung.silent_s() > RESPONSIVE_S, 10, "silent")
            other = pool.create_session(16000)  # not to the silent child
            assert other.owner is pool.processes[1]
            other.close()
            await until(lambda: victim.poll() != [] or victim.closed, 15, "failure")
            await until(lambda: pool.processes[0] is not hung, 60, "replaced")
            assert not zombie_or_running(hung.pid)
            assert pool.running and pool.live_count == 2 and pool.restarting == 0
            assert pool.metrics.engine_restarts_total.value(reason="hung") == 1
            await pool.refresh_metrics()
            assert pool.metrics.frames_total.value() >= frames  # the dead child's frames kept
            session = pool.create_session(16000)
            session.push(sequence([("high", 0.3)], 1.5))
            session.push_stop()
            events = await until_end(session)
            assert [e.keyword for e in events if isinstance(e, Detection)] == ["high"]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung.pid, signal.SIGCONT)
            await pool.aclose()

    asyncio.run(main())


def test_a_dead_child_is_reaped_and_replaced_until_it_can_be(tone_checkpoint: Path) -> None:
    """SIGKILL: the session fails with "exited", the child is reaped; while a replacement
    cannot start (its checkpoint is gone) the pool retries, with no process running, and
    recovers once it can."""

    async def main() -> None:
        pool = EnginePool(local_engine(tone_checkpoint), tone_checkpoint, count=1)
        await pool.start()
        try:
            dead = pool.processes[0]
            session = pool.create_session(16000)
            pool.checkpoint = tone_checkpoint.with_name("missing.safetensors")
            os.kill(dead.pid, signal.SIGKILL)
            await until(lambda: session.poll() != [], 10, "failure")
            await until(lambda: pool.restarting == 1, 10, "a replacement under way")
            await until(lambda: not zombie_or_running(dead.pid), 10, "reaped")
            assert pool.live_count == 0 and not pool.running
            with pytest.raises(EngineFullError, match="no engine process"):
                pool.create_session(16000)
            assert pool.metrics.engine_restarts_total.value(reason="exited") == 1
            pool.checkpoint = tone_checkpoint
            await until(lambda: pool.running, 90, "replaced after a failed start")
            assert pool.processes[0] is not dead and pool.restarting == 0
        finally:
            await pool.aclose()

    asyncio.run(main())


def test_heartbeat_timeout_must_exceed_the_responsive_window(tone_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        EnginePool(local_engine(tone_checkpoint), tone_checkpoint, heartbeat_timeout_s=0.5)


def test_children_move_to_onnx_once_their_background_export_is_in(
    tone_checkpoint: Path, tmp_path: Path
) -> None:
    """With no cached export ("auto"), the children are ready at once on torch, export in the
    background and tell the pool when their steps run on ONNX Runtime; the detections are
    the in-process ones either way."""
    import uuid

    import torch

    from models import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(tone_checkpoint)
    with torch.no_grad():  # weights no run has exported yet (the cache key hashes them)
        model.network.head.linear.bias.add_((1 + uuid.uuid4().int % 1000) * 1e-6)
    fresh = save_checkpoint(tmp_path / "fresh.safetensors", model, meta)
    x = sequence([("low", 0.3), ("high", 1.6)], 3.0)

    async def main() -> tuple[list[str | None], list[Event]]:
        config = replace(CONFIG, export_in_background=True)  # as the server's
        local = StreamingEngine.from_checkpoint(fresh, config)  # torch: it never steps
        pool = EnginePool(local, fresh, count=1, runtime="auto")
        await pool.start()
        try:
            seen = [pool.runtime]
            await until(lambda: pool.runtime == "onnx", 300, "the export moved to onnx")
            seen.append(pool.runtime)
            session = pool.create_session(16000)
            for start in range(0, x.size, 640):
                session.push(x[start : start + 640])
            session.push_stop()
            events = await until_end(session)
            session.close()
            return seen, events
        finally:
            await pool.aclose()

    seen, events = asyncio.run(main())
    assert seen == ["torch", "onnx"]
    # the same graphs in process (the export is cached now)
    expected = in_process_events(fresh, x, 640, replace(CONFIG, runtime="onnx"))
    assert any(isinstance(e, Detection) for e in expected)
    assert_same_events(summary(events), summary(expected))
