"""Tests marked ``own_process`` run in a child pytest, one child per module, never in the
suite's interpreter.

Ray's core worker (started by ``ray.init``) leaves gRPC and event-loop threads in the process
after ``ray.shutdown()``; two Ray sessions in one interpreter, and those threads alive while it
exits, are known ways to crash it after every test has passed. In a child of its own, each Ray
test module starts Ray once, and the child's end is checked: a test the child reported nothing
for fails with the child's output, and so does the module's last test when the child exits
badly after its tests.

The child's reports (pytest's own serialised form) come back through a JSON-lines file and are
logged here as if the tests had run in this process, so ``-v``, ``-ra`` and ``-x`` read as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

MARKER = "own_process"
CHILD_ENV = "LMUKWS_TEST_CHILD_REPORTS"  # set in a child: where its reports go
OUTPUT_TAIL = 6000  # characters of a failed child's output shown in the report
_RESULTS = pytest.StashKey[dict[Path, "_ChildRun"]]()


class _ChildRun:
    """One child pytest over a module's ``own_process`` tests: its reports by node id, its exit
    status and the tail of its output."""

    def __init__(self, config: pytest.Config, nodeids: list[str]) -> None:
        with tempfile.TemporaryDirectory(prefix="lmukws-own-process-") as folder:
            reports = Path(folder) / "reports.jsonl"
            env = {**os.environ, CHILD_ENV: str(reports)}
            command = [sys.executable, "-m", "pytest", "-q", "-p", __name__, *nodeids]
            done = subprocess.run(
                command,
                cwd=config.rootpath,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                check=False,
            )
            lines = reports.read_text().splitlines() if reports.is_file() else []
        self.returncode = done.returncode
        self.output = done.stdout[-OUTPUT_TAIL:]
        self.reports: dict[str, list[TestReport]] = {}
        for line in lines:
            report = config.hook.pytest_report_from_serializable(
                config=config, data=json.loads(line)
            )
            self.reports.setdefault(report.nodeid, []).append(report)
        self.last = nodeids[-1]

    def crashed(self) -> bool:
        """Whether the child ended other than passing (0) or failing tests it reported (1)."""
        failed = any(r.failed for rs in self.reports.values() for r in rs)
        return not (self.returncode == 0 or (self.returncode == 1 and failed))


def _failure(item: pytest.Item, when: str, text: str) -> TestReport:
    return TestReport(item.nodeid, item.location, {}, "failed", text, when, [])


class _ReportWriter:
    """In a child: every report, in pytest's serialised form, appended to the parent's file."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config, self.path = config, path

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        data: Any = self.config.hook.pytest_report_to_serializable(
            config=self.config, report=report
        )
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(data) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(CHILD_ENV):
        config.pluginmanager.register(_ReportWriter(config, Path(os.environ[CHILD_ENV])))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Runs ``item``'s module's ``own_process`` tests in one child at the first of them and logs
    the child's reports for ``item``; other tests (and every test in a child) run as usual."""
    if os.environ.get(CHILD_ENV) or item.get_closest_marker(MARKER) is None:
        return None
    runs = item.config.stash.setdefault(_RESULTS, {})
    if item.path not in runs:
        nodeids = [
            i.nodeid
            for i in item.session.items
            if i.path == item.path and i.get_closest_marker(MARKER) is not None
        ]
        runs[item.path] = _ChildRun(item.config, nodeids)
    run = runs[item.path]
    hook = item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = run.reports.get(item.nodeid, [])
    for report in reports:
        hook.pytest_runtest_logreport(report=report)
    if not reports:
        why = f"the child pytest (exit status {run.returncode}) reported nothing for this test"
        hook.pytest_runtest_logreport(report=_failure(item, "call", f"{why}:\n{run.output}"))
    elif item.nodeid == run.last and run.crashed():
        why = f"the child pytest exited with status {run.returncode} after its tests"
        hook.pytest_runtest_logreport(report=_failure(item, "teardown", f"{why}:\n{run.output}"))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
