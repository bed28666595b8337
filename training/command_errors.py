"""Bad input to a long-running ``lmukws`` command: one line on stderr and exit status 2.

A missing checkpoint or corpus, or an option the data cannot take, raises ``CheckpointError``,
``FileNotFoundError`` or ``ValueError`` before (or instead of) any work; the user gets the
message, not a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

__all__ = ["exits_2_on_bad_input"]


def exits_2_on_bad_input(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """``run`` (a subcommand's ``func``), printing ``error: ...`` and returning 2 on bad input."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from models.checkpoint import CheckpointError

        try:
            return run(args)
        except (CheckpointError, FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return wrapped
