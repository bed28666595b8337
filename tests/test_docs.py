"""The user's guide and the docs: every relative link (and its #anchor) resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "benchmarks" / "README.md",
        ROOT / "training" / "configs" / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "models" / "checkpoints").glob("*.md"),
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found = set()
    for line in _prose(path).splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
        if anchor and path.suffix == ".md":
            where = f"{page.relative_to(ROOT)}: no #{anchor} in {file or page.name}"
            assert anchor in anchors(path), where


def test_the_readme_is_a_short_guide() -> None:
    words = len((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert words <= 3000, f"README.md has {words} words; details belong in docs/"
