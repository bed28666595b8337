"""The server's children (engine processes, classification worker) fork from a fork server that
has the engine's modules loaded (``streaming.children``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from multiprocessing import forkserver
from pathlib import Path

from streaming.children import CHILD_PRELOAD
from streaming.engine import EngineConfig, StreamingEngine
from streaming.process import EnginePool


def test_the_preloaded_modules_start_no_thread() -> None:
    """A fork copies only the forking thread: a preloaded module must not leave another thread
    behind (one holding a lock would deadlock the child). numpy's OpenBLAS pool, sized by
    ``OPENBLAS_NUM_THREADS``, is the one native pool and is fork-safe (its own atfork
    handlers); it is held to one thread here so that any other thread shows."""
    code = (
        "import importlib, json, os, sys, threading\n"
        f"for name in {list(CHILD_PRELOAD)!r}: importlib.import_module(name)\n"
        "print(json.dumps([threading.active_count(), len(os.listdir('/proc/self/task')),"
        " 'onnxruntime' in sys.modules]))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == [1, 1, False]


def test_engine_processes_fork_from_the_preloaded_fork_server(tone_checkpoint: Path) -> None:
    """Two engine processes are children of the fork server, which has torch and the engine
    imported; each serves its sessions."""

    async def main() -> None:
        config = EngineConfig(max_sessions=4, torch_threads=1)
        local = StreamingEngine.from_checkpoint(tone_checkpoint, config)
        pool = EnginePool(local, tone_checkpoint, count=2)
        await pool.start()
        try:
            server_pid = forkserver._forkserver._forkserver_pid
            assert server_pid is not None and server_pid != os.getpid()
            for process in pool.processes:
                assert process.pid is not None and process.alive
                stat = Path(f"/proc/{process.pid}/stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                assert parent == server_pid
            maps = Path(f"/proc/{server_pid}/maps").read_text()
            assert "libtorch" in maps  # the fork server has torch loaded
        finally:
            await pool.aclose()

    asyncio.run(main())
