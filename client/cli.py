"""``lmukws stream``, ``lmukws classify`` and ``lmukws mic``.

Nothing heavy is imported here: each command imports its implementation when it runs. Exit
codes and the default URL: ``client.exits``.
"""

from __future__ import annotations

import argparse
from typing import Any

from client.exits import (
    DEFAULT_URL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)


def _keywords(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise argparse.ArgumentTypeError("expected comma-separated keywords, e.g. yes,no,stop")
    return words


def _threshold(text: str) -> tuple[str, float]:
    keyword, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not keyword or not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected KEYWORD=P with P in [0, 1], got {text!r}")
    return keyword, number


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keywords",
        type=_keywords,
        default=None,
        metavar="K1,K2,...",
        help="detect only these labels (default: every keyword of the model)",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        action="append",
        default=[],
        metavar="KEYWORD=P",
        help="override a keyword's detection threshold (repeatable)",
    )
    parser.add_argument(
        "--sensitivity",
        type=_unit_interval,
        default=None,
        metavar="S",
        help="0..1 along the model's calibrated DET curve: 0 fewest false alarms, 1 fewest "
        "misses (default: the server's, 0.5)",
    )
    parser.add_argument(
        "--wake-word",
        default=None,
        metavar="KEYWORD",
        help="other keywords fire only within --command-window-ms after this one",
    )
    parser.add_argument(
        "--command-window-ms",
        type=int,
        default=None,
        metavar="MS",
        help="with --wake-word: how long commands are accepted (default: the server's)",
    )
    parser.add_argument(
        "--command-sensitivity",
        type=_unit_interval,
        default=None,
        metavar="S",
        help="with --wake-word: the commands' point on the DET curve, the wake word keeping "
        "--sensitivity (default: the server's)",
    )
    parser.add_argument(
        "--speech-gate-ms",
        type=int,
        default=None,
        metavar="MS",
        help="hold keywords back for a second after this much other speech; 0: off, so a "
        "command said at the end of a long sentence fires too (default: the server's)",
    )


def _run_stream(args: argparse.Namespace) -> int:
    from client.commands import run_stream

    return run_stream(args)


def _run_classify(args: argparse.Namespace) -> int:
    if getattr(args, "ray", None) is not None:
        from client.ray_batch import run_ray_classify

        return run_ray_classify(args)
    from client.commands import run_classify

    return run_classify(args)


def _run_mic(args: argparse.Namespace) -> int:
    from client.live import run_mic

    return run_mic(args)


def register(subparsers: Any) -> None:
    """Add ``stream``, ``classify`` and ``mic`` to the ``lmukws`` command."""
    p = subparsers.add_parser(
        "stream",
        help="stream audio files to a server and print detections",
        description=(
            "Stream audio files (any rate and channel count) over the websocket protocol, one "
            "session per file, and print each detection with its audio time and latency split."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, ...)")
    p.add_argument(
        "--url",
        default=None,
        help=f"server URL, ws:// or http:// (default: $LMUKWS_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="send audio at its own speed (default: as fast as the server takes it)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per server message")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per message (default 100)")
    p.add_argument(
        "--scores-every-ms", type=int, default=0, help="also print top scores every N ms of audio"
    )
    p.add_argument(
        "--encoding", choices=("pcm_s16le", "pcm_f32le"), default="pcm_s16le", help="wire format"
    )
    _add_session_options(p)
    p.set_defaults(func=_run_stream)

    p = subparsers.add_parser(
        "classify",
        help="label whole audio files (over REST, or in-process without --url)",
        description=(
            "Label whole clips: with --url over POST /v1/classify, otherwise in this process "
            "with the shipped default checkpoint (or --checkpoint). With --ray, a folder or "
            "glob of files on Ray Data into --out, resumable."
        ),
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (WAV, FLAC, ...)")
    p.add_argument("--url", default=None, help="server URL (default: classify in this process)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--top", type=int, default=3, help="scores shown per file (default 3)")
    _add_local_model_options(p)
    _add_ray_options(p)
    p.set_defaults(func=_run_classify)

    p = subparsers.add_parser(
        "mic",
        help="live keyword spotting from the microphone, in the terminal",
        description=(
            "Live demo: capture the microphone (any device rate), stream it to a server (--url) "
            "or to an engine in this process (--local), and show the input level, the top "
            "posteriors and a log of detections with their latency split. Ctrl-C prints a "
            "session summary."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--url", default=None, help=f"server URL (default: $LMUKWS_URL or {DEFAULT_URL})"
    )
    where.add_argument(
        "--local", action="store_true", help="run the model in this process (no server)"
    )
    p.add_argument("--device", default=None, help="input device index or name (see --list-devices)")
    p.add_argument("--list-devices", action="store_true", help="list audio input devices and exit")
    p.add_argument(
        "--rate", type=int, default=None, help="capture rate in Hz (default: the device's own)"
    )
    p.add_argument("--block-ms", type=float, default=50.0, help="audio per block (default 50)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: Ctrl-C)",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="print detections as lines instead of the live view (default when not a terminal)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per event, then a summary")
    _add_session_options(p)
    _add_local_model_options(p)
    p.set_defaults(func=_run_mic)


def _add_local_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("in-process model (classify without --url, mic --local)")
    group.add_argument("--checkpoint", default=None, help="checkpoint file (.safetensors)")
    group.add_argument(
        "--model",
        default=None,
        help="shipped model to use without --checkpoint (default: $LMUKWS_MODEL or the service's)",
    )
    group.add_argument("--torch-device", default="cpu", help="torch device (default cpu)")


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "batch classification on Ray Data (pip install 'lmukws[ray]'; docs/ray.md)"
    )
    group.add_argument(
        "--ray",
        default=None,
        metavar="DIR_OR_GLOB",
        help="classify a folder's audio files (recursively) or a glob's on Ray; needs --out",
    )
    group.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="with --ray: JSON lines, appended; files already in it are skipped (resume)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="a running Ray cluster (auto, HEAD:6379; default: start a local Ray)",
    )
    group.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        metavar="N",
        help="classifying actors, one torch thread each (default: the cluster's CPUs less one)",
    )
    group.add_argument(
        "--batch-size", type=int, default=64, metavar="B", help="files per model call (default 64)"
    )


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TEMPFAIL", "EXIT_UNAVAILABLE", "EXIT_USAGE", "register"]
