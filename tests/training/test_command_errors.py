"""The long-running stream commands answer bad input with one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmukws.cli import main


@pytest.mark.parametrize(
    "command",
    [
        ["calibrate", "--target-fa-per-hour", "5"],
        ["evaluate-streams", "--out", "OUT"],
        ["mine-negatives", "--out", "OUT"],
    ],
)
def test_a_missing_checkpoint_is_one_line_and_exit_2(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.safetensors"
    argv = [command[0], str(missing), "--data", str(tmp_path), *command[1:]]
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: checkpoint not found: {missing}"
