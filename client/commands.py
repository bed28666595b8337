"""Implementations of ``lmukws stream`` and ``lmukws classify`` (see ``client.cli``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from client.errors import ClientError, ConnectError, SessionRefusedError
from client.exits import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    default_url,
)
from server.protocol import (
    ClassifyResult,
    DetectionMessage,
    EndMessage,
    ReadyMessage,
    ScoresMessage,
)


def exit_code(error: BaseException) -> int:
    """The exit status for an error (``client.exits``)."""
    if isinstance(error, SessionRefusedError):
        return EXIT_TEMPFAIL
    if isinstance(error, ConnectError):
        return EXIT_UNAVAILABLE
    if isinstance(error, ClientError):
        return EXIT_FAILED
    if isinstance(error, ValueError | OSError):
        return EXIT_USAGE
    return EXIT_FAILED


def report_error(command: str, error: BaseException, stream: TextIO | None = None) -> int:
    """Print ``lmukws COMMAND: error: ...`` and return the exit status."""
    print(f"lmukws {command}: error: {error}", file=stream or sys.stderr)
    return exit_code(error)


def thresholds_of(args: argparse.Namespace) -> dict[str, float] | None:
    return dict(args.threshold) if getattr(args, "threshold", None) else None


def session_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``start`` options of the session flags (``--keywords``, ``--threshold``,
    ``--sensitivity``, ``--wake-word``, ``--command-window-ms``, ``--command-sensitivity``,
    ``--speech-gate-ms``)."""
    for flag, value in (("--command-window-ms", args.command_window_ms),
                        ("--command-sensitivity", args.command_sensitivity)):  # fmt: skip
        if value is not None and args.wake_word is None:
            raise ValueError(f"{flag} needs --wake-word")
    return {
        "keywords": args.keywords,
        "thresholds": thresholds_of(args),
        "sensitivity": args.sensitivity,
        "wake_word": args.wake_word,
        "command_window_ms": args.command_window_ms,
        "command_sensitivity": args.command_sensitivity,
        "speech_gate_ms": args.speech_gate_ms,
    }


def format_latency(message: DetectionMessage) -> str:
    """``65 ms algorithmic + 3.5 ms server (queue 1.0, compute 2.0)``."""
    lat = message.latency
    return (
        f"{lat.algorithmic_ms:.0f} ms algorithmic + {lat.server_ms:.1f} ms server "
        f"(queue {lat.queue_ms:.1f}, compute {lat.compute_ms:.1f})"
    )


def format_message(message: Any, wake_word: str | None = None) -> str:
    """One human-readable line for a server message; a detection of ``wake_word`` (the
    session's, from its ``ready``) is marked as such."""
    if isinstance(message, ReadyMessage):
        return (
            f"  model {message.model}, {len(message.labels)} labels, input {message.sample_rate} "
            f"Hz, algorithmic latency {message.algorithmic_latency_ms:.0f} ms"
        )
    if isinstance(message, DetectionMessage):
        return (
            f"  {message.audio_ms / 1000:8.3f} s  {message.keyword:<10} {message.score:.2f}  "
            f"{'wake word  ' if message.keyword == wake_word else ''}"
            f"latency {format_latency(message)}"
        )
    if isinstance(message, ScoresMessage):
        top = "  ".join(f"{label} {p:.2f}" for label, p in message.top)
        return f"  {message.audio_ms / 1000:8.3f} s  scores: {top}"
    if isinstance(message, EndMessage):
        n = message.detections
        return (
            f"  end: {message.audio_ms / 1000:.2f} s of audio, {message.frames} frames, "
            f"{n} detection{'s' if n != 1 else ''}"
        )
    return f"  {message!r}"  # pragma: no cover


async def _stream_files(args: argparse.Namespace, out: TextIO) -> int:
    from client.stream import stream_file

    url = args.url or default_url()
    try:
        options = session_options(args)
    except ValueError as error:
        return report_error("stream", error)
    status = EXIT_OK
    operating_point = None
    if not args.json and not options.get("thresholds"):
        from client.operating_point import served_operating_point

        operating_point = await served_operating_point(url, args.sensitivity)
    for path in args.files:
        wake_word = None
        if not args.json:
            print(path, file=out, flush=True)
        messages = stream_file(
            url,
            path,
            realtime=args.realtime,
            chunk_ms=args.chunk_ms,
            encoding=args.encoding,
            scores_every_ms=args.scores_every_ms,
            **options,
        )
        try:
            async with contextlib.aclosing(messages):
                async for message in messages:
                    if args.json:
                        record = {"file": str(path), **message.model_dump(mode="json")}
                        print(json.dumps(record), file=out, flush=True)
                    else:
                        if isinstance(message, ReadyMessage):
                            wake_word = message.wake_word
                        print(format_message(message, wake_word), file=out, flush=True)
                        if isinstance(message, ReadyMessage) and operating_point:
                            print(f"  {operating_point}", file=out, flush=True)
        except BrokenPipeError:
            raise
        except (ClientError, ValueError, OSError) as error:
            code = report_error("stream", error)
            if isinstance(error, SessionRefusedError | ConnectError):
                return code  # the other files would fail the same way
            status = status or code
    return status


def run_stream(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lmukws stream``: one session per file, in order."""
    try:
        return asyncio.run(_stream_files(args, out or sys.stdout))
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def _classify_remote(url: str, paths: list[str]) -> list[ClassifyResult]:
    from client.rest import RestClient

    async with RestClient(url) as rest:
        return await rest.classify(paths)


def classification_record(result: ClassifyResult, top: int) -> dict[str, Any]:
    """The JSON object of one file in ``lmukws classify --json``: the result, ``top`` scores."""
    record = result.model_dump(mode="json")
    record["top"] = record["top"][:top]
    return record


def print_classifications(
    results: list[ClassifyResult], top: int, as_json: bool, out: TextIO
) -> None:
    """A table (rich) or JSON lines."""
    if as_json:
        for result in results:
            print(json.dumps(classification_record(result, top)), file=out, flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("file")
    table.add_column("label", style="bold")
    table.add_column("score", justify="right")
    table.add_column(f"top {top}")
    table.add_column("duration", justify="right")
    for r in results:
        table.add_row(
            r.filename,
            r.label,
            f"{r.score:.3f}",
            "  ".join(f"{label} {p:.2f}" for label, p in r.top[:top]),
            f"{r.duration_s:.2f} s",
        )
    Console(file=out, soft_wrap=True).print(table)


def run_classify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lmukws classify``: over REST with ``--url``, in this process otherwise."""
    out = out or sys.stdout
    if not args.files:
        return report_error("classify", ValueError("give audio files, or --ray DIR_OR_GLOB"))
    if getattr(args, "out", None):
        return report_error("classify", ValueError("--out goes with --ray"))
    paths = [str(p) for p in args.files]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        return report_error("classify", FileNotFoundError(f"no such file: {', '.join(missing)}"))
    try:
        if args.url:
            results = asyncio.run(_classify_remote(args.url, paths))
        else:
            from client.local import classify_files

            results = classify_files(
                paths, checkpoint=args.checkpoint, model=args.model, device=args.torch_device
            )
    except (ClientError, ValueError, OSError) as error:
        return report_error("classify", error)
    print_classifications(results, args.top, args.json, out)
    return EXIT_OK


__all__ = [
    "classification_record",
    "exit_code",
    "format_message",
    "report_error",
    "run_classify",
    "run_stream",
]
