"""The ``lmukws`` dispatcher: every command registered, and ``--help`` without importing torch."""

from __future__ import annotations

import subprocess
import sys

from lmukws.cli import build_parser

COMMANDS = {"serve", "stream", "classify", "mic", "data", "train", "evaluate", "ship-checkpoint",
            "convert-checkpoint", "ensemble", "calibrate", "evaluate-streams", "bench"}  # fmt: skip


def test_every_command_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(choices) >= COMMANDS


def test_help_does_not_import_torch() -> None:
    """Building every subcommand's parser stays light (torch takes ~2 s to import here)."""
    code = "import sys; from lmukws.cli import build_parser; build_parser(); print(sorted("
    code += "m for m in ('torch', 'numpy', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout, out.stdout
