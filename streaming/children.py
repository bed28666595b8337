"""How the server starts its child processes (engine processes, the classification worker).

Children come from a fork server that has imported torch, numpy and the engine once: each child
forks from it with everything loaded instead of importing torch again, so a server with several
engine processes, and the replacement of a crashed one, are ready sooner. The fork server is a
single-threaded process started clean (nothing of the server's threads, sockets or state) on the
first child, as ``spawn`` children are; it exits with the server. Children see the environment
the server had when its first child started.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

__all__ = ["CHILD_PRELOAD", "child_context"]

#: Modules the fork server imports before forking any child (what every child needs).
CHILD_PRELOAD = (
    "numpy",
    "torch",
    "onnx",  # the ONNX runtime's availability check imports these two (not onnxruntime: its
    "onnxscript",  # import starts a native thread, which a fork must not copy half-way)
    "models",
    "streaming.engine",
    "streaming.process",
)


def child_context() -> BaseContext:
    """The multiprocessing context for the server's children: ``forkserver`` with
    ``CHILD_PRELOAD`` (the preload list applies when the fork server starts)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(CHILD_PRELOAD))
    return context
