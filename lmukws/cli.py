"""The ``lmukws`` command: one dispatcher, subcommands registered by each package.

Every package that adds subcommands has a ``cli`` module with ``register(subparsers)``; those
modules import nothing heavy at import time, so ``lmukws --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "server.cli",
    "client.cli",
    "training.cli",
    "models.cli",
    "benchmarks.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="lmukws",
        description="Real-time keyword spotting with LMUFormer and Spiking LMUFormer.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmukws`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
