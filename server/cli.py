"""``lmukws serve``: run the service with uvicorn, draining sessions on SIGTERM/SIGINT.

Imports nothing heavy at import time (the ``lmukws`` dispatcher imports every ``cli`` module).
"""

from __future__ import annotations

import argparse
from typing import Any

from models.config import DEFAULT_MODEL, RUNTIMES


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``lmukws`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the keyword spotter (HTTP + websocket)",
        description=(
            "Serve WS /v1/stream, POST /v1/classify, GET /v1/model, /healthz, /readyz and "
            "/metrics. Every option is also an environment variable LMUKWS_<NAME> (e.g. "
            "LMUKWS_MAX_SESSIONS=128); flags win over the environment."
        ),
    )
    parser.add_argument("--checkpoint", help="checkpoint (.safetensors); default: shipped model")
    parser.add_argument(
        "--model",
        choices=("spiking-lmuformer", "lmuformer"),
        help=f"shipped model to serve when no checkpoint is named (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--device", help="torch device (default cpu)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (0: default)")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="what runs the model's streaming steps (default auto: ONNX Runtime on the CPU)",
    )
    parser.add_argument("--max-sessions", type=int, help="concurrent streaming sessions")
    parser.add_argument(
        "--engine-processes",
        type=int,
        help="child processes running the model steps (default 2; 0: a thread in the server)",
    )
    parser.add_argument("--log-level", help="uvicorn log level (default info)")
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import sys

    from pydantic import ValidationError

    from models.checkpoint import CheckpointError
    from server.app import resolve_checkpoint
    from server.serve import serve
    from server.settings import Settings

    names = (
        "checkpoint",
        "model",
        "host",
        "port",
        "device",
        "torch_threads",
        "runtime",
        "max_sessions",
        "engine_processes",
    )
    overrides = {n: getattr(args, n) for n in (*names, "log_level") if getattr(args, n) is not None}
    try:
        settings = Settings(**overrides)
        resolve_checkpoint(settings)
    except ValidationError as error:
        print(f"lmukws serve: bad setting (flags or LMUKWS_* variables):\n{error}", file=sys.stderr)
        return 2
    except (CheckpointError, ValueError) as error:
        print(f"lmukws serve: {error}", file=sys.stderr)
        return 2
    return serve(settings)
