"""``own_process`` tests (tests/own_process.py) run in a child pytest and report as their own:
passes and failures come back per test, and a child that exits badly after its tests fails
the module's last one, with the child's output."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

REPO = Path(__file__).resolve().parents[1]

MODULE = """
import atexit, os, pytest

@pytest.mark.own_process
def test_passes():
    assert os.getpid() != int(os.environ["OUTER_PID"])  # not the outer pytest

@pytest.mark.own_process
def test_fails():
    assert 1 + 1 == 3, "planted failure"

def test_in_the_outer_process():
    assert os.getpid() == int(os.environ["OUTER_PID"])

@pytest.mark.own_process
def test_last():
    if os.environ.get("CRASH_AT_EXIT"):
        atexit.register(os._exit, 7)  # the child passes its tests, then exits badly
"""


def run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, crash: bool
) -> pytest.RunResult:
    pytester.makepyfile(test_planted=MODULE)
    pytester.makeini("[pytest]\nmarkers =\n    own_process: child\n")
    pytester.makeconftest("import os\nos.environ.setdefault('OUTER_PID', str(os.getpid()))\n")
    monkeypatch.delenv("OUTER_PID", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    if crash:
        monkeypatch.setenv("CRASH_AT_EXIT", "1")
    return pytester.runpytest_subprocess("-p", "tests.own_process", "-v")


def test_child_reports_per_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, crash=False)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_fails FAILED*", "*planted failure*"])


def test_a_bad_child_exit_fails_the_last_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, crash=True)
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_last ERROR*", "*exited with status 7 after its tests*"])
