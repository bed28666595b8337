"""Exit codes and the default server URL of the ``lmukws`` client commands.

Exit codes: 0 success, 1 the server failed or closed the session, 2 bad arguments or input
files, 69 (EX_UNAVAILABLE) server unreachable / no audio input / PortAudio missing, 75
(EX_TEMPFAIL) server full, try again later.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from client.errors import ClientError, ConnectError, SessionRefusedError

__all__ = [
    "DEFAULT_URL",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "default_url",
    "exit_code",
    "report_error",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_TEMPFAIL = 75

DEFAULT_URL = "http://127.0.0.1:8000"


def default_url() -> str:
    """``LMUKWS_URL`` or ``http://127.0.0.1:8000`` (ws:// and http:// are interchangeable)."""
    return os.environ.get("LMUKWS_URL", DEFAULT_URL)


def exit_code(error: BaseException) -> int:
    """The exit status for an error (see the module docstring)."""
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
