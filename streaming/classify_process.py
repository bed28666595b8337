"""Whole-clip classification (``StreamingEngine.classify``) in a low-priority worker process.

``POST /v1/classify`` scores whole files through the parallel form. In the server process that
work takes the interpreter lock from the event loop that carries every live stream, and its
threads take cores from the engine processes (64 files of 59 s in one request doubled the
streams' server latency). ``ClassifyWorker`` runs it in one child process instead: niced
(``nice``, default 10, so the engine processes and the event loop win the cores), on
``threads`` torch threads, with its own engine loaded once from the checkpoint. The server
keeps one batch at a time in flight (``server.service.Service.classify_lock``).

The child starts in the background (``start``); the first ``classify`` waits for it. If the
child dies (killed, out of memory), the call that notices raises ``ClassifyWorkerExitedError``
and a fresh child is started for the next one. The child exits with the server (it watches its
parent) and ignores SIGINT and SIGTERM, like the engine processes: the server stops it
(``close``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streaming.children import child_context

if TYPE_CHECKING:  # the server process imports torch anyway; the child imports it when loading
    import numpy as np

    from streaming.engine import EngineConfig, StreamingEngine

__all__ = ["ClassifyWorker", "ClassifyWorkerExitedError"]

log = logging.getLogger("lmukws.engine.classify")

EXITED = "the classification worker exited; retry"


class ClassifyWorkerExitedError(RuntimeError):
    """The classification worker process died before answering; the next call gets a new one."""


class ClassifyWorker:
    """``StreamingEngine.classify`` of ``checkpoint`` (with ``config``, on ``device``) in one
    child process at niceness +``nice`` (0: unchanged) on ``threads`` torch threads (0: torch's
    default). The config's runtime becomes "torch": classification never runs a streaming step.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        config: EngineConfig,
        device: str = "cpu",
        *,
        nice: int = 10,
        threads: int = 1,
    ) -> None:
        if nice < 0 or threads < 0:
            raise ValueError(f"nice and threads must be >= 0, got {nice} and {threads}")
        self.checkpoint = Path(checkpoint)
        self.config = dataclasses.replace(config, runtime="torch", torch_threads=threads)
        self.device = device
        self.nice = nice
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._ready: concurrent.futures.Future[int] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The worker's process id once it has loaded the model (None before)."""
        ready = self._ready
        if ready is None or not ready.done() or ready.exception() is not None:
            return None
        return ready.result()

    async def start(self) -> None:
        """Start the worker (off the event loop) and return; it loads the model meanwhile."""
        if self._executor is None and not self._closed:
            await self._launch()

    async def ready(self) -> int:
        """Wait until the worker has loaded the model; its pid. ``ClassifyWorkerExitedError`` if it
        died first (a new one is started)."""
        return await self._run(os.getpid)

    async def classify(
        self, clips: Sequence[np.ndarray], sample_rates: Sequence[int]
    ) -> list[np.ndarray]:
        """``StreamingEngine.classify(clips, sample_rates)`` run by the worker: clip posteriors
        [K] per mono clip [n]. Waits for a worker still loading; ``ClassifyWorkerExitedError`` when
        the worker dies before answering."""
        return await self._run(_classify, list(clips), [int(r) for r in sample_rates])

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker: let it finish the batch it runs (within ``timeout``), then kill it.
        Blocking; idempotent."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        stopper = threading.Thread(
            target=executor.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
        )
        stopper.start()
        stopper.join(timeout)
        pid = self.pid
        if stopper.is_alive() and pid is not None:
            log.warning("classification worker %d did not stop: killing it", pid)
            os.kill(pid, signal.SIGKILL)  # the pool turns broken and shuts down
            stopper.join(5.0)

    async def _run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in the worker; a dead worker is replaced and reported."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the classification worker is not running (closed or not started)")
        try:
            return await asyncio.wrap_future(executor.submit(fn, *args))
        except BrokenProcessPool:
            if executor is self._executor:  # the first to notice starts a new worker
                log.error("the classification worker exited: starting a new one")
                executor.shutdown(wait=False, cancel_futures=True)
                await self._launch()
            raise ClassifyWorkerExitedError(EXITED) from None

    async def _launch(self) -> None:
        """A new executor in place of the last, and its worker started now (by a first, empty
        task that gives its pid) in a thread: starting takes a few milliseconds."""
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=1,
            mp_context=child_context(),
            initializer=_init_worker,
            initargs=(str(self.checkpoint), self.config, self.device, self.nice),
        )
        self._executor, self._ready = executor, None
        try:
            self._ready = await asyncio.to_thread(executor.submit, os.getpid)
        except RuntimeError:  # closed meanwhile ("cannot schedule new futures after shutdown")
            if not self._closed:
                raise
            return
        self._ready.add_done_callback(self._log_ready)

    def _log_ready(self, ready: concurrent.futures.Future[int]) -> None:
        if not ready.cancelled() and ready.exception() is None:
            threads = self.config.torch_threads or "default"
            log.info(
                "classification worker %d ready (niceness +%d, torch threads: %s)",
                ready.result(),
                self.nice,
                threads,
            )


# ---------------------------------------------------------------------------------------------
# worker side

_ENGINE: StreamingEngine | None = None


def _init_worker(checkpoint: str, config: EngineConfig, device: str, nice: int) -> None:
    """Entry of the worker: lower its priority (first, so every thread it starts inherits it),
    load the engine once, freeze the startup heap."""
    global _ENGINE
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops us (close)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    from streaming.engine import StreamingEngine
    from streaming.process import freeze_startup_heap

    _ENGINE = StreamingEngine.from_checkpoint(checkpoint, config, device)
    freeze_startup_heap()


def _exit_with_parent() -> None:
    """Exit as soon as the server process is gone (even killed), so the worker never lingers."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="lmukws-parent-watch", daemon=True).start()


def _classify(clips: list[Any], sample_rates: list[int]) -> list[Any]:
    """The worker's task: the loaded engine's ``classify``."""
    assert _ENGINE is not None, "the worker was not initialised"
    return _ENGINE.classify(clips, sample_rates)
