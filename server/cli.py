"""``lmukws serve``: run the service with uvicorn, draining sessions on SIGTERM/SIGINT.

The flags are made from ``server.settings.Settings`` (name, type, choices, help and default),
so the settings class is the one list of options. Nothing heavy is imported at import time (the
``lmukws`` dispatcher imports every ``cli`` module): no torch, no web stack.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from server.settings import Settings

from models.config import MODEL_NAMES, SHIPPED_ENSEMBLES

#: the ``Settings`` fields that ``lmukws serve`` takes as flags
SERVE_FLAGS = (
    "checkpoint",
    "model",
    "host",
    "port",
    "device",
    "torch_threads",
    "runtime",
    "window_hop_ms",
    "max_sessions",
    "engine_processes",
    "engine_heartbeat_timeout_s",
    "log_level",
    # limits (docs/hardening.md)
    "max_message_bytes",
    "idle_timeout_s",
    "handshake_timeout_s",
    "http_header_timeout_s",
    "http_body_timeout_s",
    "max_pending_connections",
    "max_outbound_messages",
    "slow_consumer_timeout_s",
    "max_sample_magnitude",
    "max_json_depth",
    "max_upload_bytes",
    "max_upload_files",
    "max_upload_seconds",
    "max_request_audio_s",
    "classify_batch_s",
    "classify_process",
    "classify_nice",
    "classify_threads",
    "allowed_origins",
    # Ray Serve (docs/ray.md)
    "ray_replicas",
    "ray_address",
    "ray_min_replicas",
    "ray_max_replicas",
    "ray_replica_cpus",
)
#: choices of fields whose type does not list them
CHOICES: Mapping[str, Sequence[str]] = {"model": MODEL_NAMES + SHIPPED_ENSEMBLES}


def add_settings_arguments(
    parser: argparse.ArgumentParser,
    names: Sequence[str],
    choices: Mapping[str, Sequence[str]] = CHOICES,
) -> None:
    """A ``--flag`` for each ``Settings`` field of ``names``, with the field's type, choices,
    description and default; an absent flag leaves the setting to the environment."""
    from server.settings import Settings

    for name in names:
        field = Settings.model_fields[name]
        kind, listed = _argument_type(field.annotation)
        options = choices.get(name, listed)
        default = field.default
        shown = "none" if default is None or default == [] else default
        help_text = f"{field.description} (default {shown}; env LMUKWS_{name.upper()})"
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            choices=options or None,
            default=None,
            help=help_text.replace("%", "%%"),
        )


def _argument_type(annotation: Any) -> tuple[Any, tuple[str, ...]]:
    """(argparse type, choices) of a field's annotation (``X | None`` and ``Literal``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, tuple(args)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _argument_type(args[0])
    if annotation in (int, float):
        return annotation, ()
    if annotation is bool:  # pydantic reads the text
        return str, ("true", "false")
    return str, ()  # str, Path


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
    add_settings_arguments(parser, SERVE_FLAGS)
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import sys

    from pydantic import ValidationError

    from models.checkpoint import CheckpointError
    from server.loading import resolve_checkpoint
    from server.serve import serve
    from server.settings import Settings

    overrides = {n: getattr(args, n) for n in SERVE_FLAGS if getattr(args, n) is not None}
    try:
        settings = Settings(**overrides)
        resolve_checkpoint(settings)
    except ValidationError as error:
        print(f"lmukws serve: bad setting (flags or LMUKWS_* variables):\n{error}", file=sys.stderr)
        return 2
    except (CheckpointError, ValueError) as error:
        print(f"lmukws serve: {error}", file=sys.stderr)
        return 2
    if settings.ray_replicas or settings.ray_min_replicas or settings.ray_max_replicas:
        return _serve_on_ray(settings)
    return serve(settings)


def _serve_on_ray(settings: Settings) -> int:
    """``--ray-replicas``: serve on Ray Serve (``server.ray_serve``); 2 when Ray is missing or
    the replica counts do not fit together."""
    import sys

    from server.ray_serve import deployment_options, ray_missing, serve_on_ray

    missing = ray_missing()
    if missing:
        print(f"lmukws serve: {missing}", file=sys.stderr)
        return 2
    try:
        deployment_options(settings)
    except ValueError as error:
        print(f"lmukws serve: {error}", file=sys.stderr)
        return 2
    return serve_on_ray(settings)


__all__ = ["CHOICES", "SERVE_FLAGS", "add_settings_arguments", "register"]
