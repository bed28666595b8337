"""Exit codes and the default server URL of the ``lmukws`` client commands (imports nothing,
so ``client.cli`` stays light; ``client.commands.exit_code`` maps errors to these codes).

Exit codes: 0 success, 1 the server failed or closed the session, 2 bad arguments or input
files, 69 (EX_UNAVAILABLE) server unreachable / no audio input / PortAudio missing, 75
(EX_TEMPFAIL) server full, try again later.
"""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_URL",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "default_url",
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
