"""The hard-negatives folder: what ``lmukws mine-negatives`` writes and stream training reads.

A folder holds ``audio/*.wav`` (windows of the stream-window length, each ending with the frame
that triggered a false alarm) and ``hard_negatives.csv`` with the columns ``HARD_COLUMNS``
(path relative to the folder, stream, time_s, keyword, score). The writer
(``training.mining``) and the reader (``training.stream_windows``) share this module so
neither imports the other.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["HARD_COLUMNS", "HARD_FILE", "read_hard_negatives", "write_hard_negatives"]

HARD_FILE = "hard_negatives.csv"
HARD_COLUMNS = ("path", "stream", "time_s", "keyword", "score")


def write_hard_negatives(folder: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (dicts with the ``HARD_COLUMNS`` keys) as the folder's table; returns it."""
    path = Path(folder) / HARD_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HARD_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_hard_negatives(folder: str | Path) -> list[Path]:
    """The mined windows' WAV paths."""
    path = Path(folder) / HARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {HARD_FILE} in {folder}; make it with lmukws mine-negatives")
    with path.open(newline="", encoding="utf-8") as handle:
        return [Path(folder) / row["path"] for row in csv.DictReader(handle)]
