"""``lmukws data continuous --corpus DIR``: continuous speech by a corpus's own voices.

A streaming detector hears more than isolated words: sentences without keywords, keywords inside
phrases, two words in one window. This adds to a synthetic corpus (``lmukws data synth``) the
keyword-free sentences and paragraphs of :mod:`training.sentences` and the two halves of its
carrier phrases ("the word is" ... "again"), spoken by the corpus's voices, so everything stays
split by speaker exactly like the corpus. The texts are split too (``TEXT_SHARES``): a test
voice speaks sentences and carriers that no training voice speaks.

A carrier's prefix and suffix are rendered apart, so a stream places a keyword clip of the same
voice between them with exact ground truth (no coarticulation across the boundary: the keyword
is the corpus's isolated rendition).

Stored like the clips (trimmed, peak-normalised, 16 kHz mono PCM16) under
``DIR/continuous/<kind>/``, listed in ``DIR/continuous.csv`` (``CONTINUOUS_COLUMNS``; ``group``
ties a carrier's prefix and suffix together). Deterministic for a seed, resumable.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.labels import UNKNOWN
from training.sentences import CARRIERS, keyword_free_paragraphs, keyword_free_sentences
from training.synth import SPLITS, Clip, render_clips
from training.voices import Voice

log = logging.getLogger(__name__)

__all__ = [
    "CONTINUOUS_COLUMNS",
    "DEFAULT_COUNTS",
    "build_continuous",
    "plan_continuous",
    "read_continuous",
    "split_texts",
]

CONTINUOUS_FILE = "continuous.csv"
CONTINUOUS_COLUMNS: tuple[str, ...] = ("path", "split", "voice", "engine", "kind", "group", "text")
KINDS: tuple[str, ...] = ("sentence", "paragraph", "prefix", "suffix")
#: share of every text list per split (texts are split like speakers)
TEXT_SHARES: dict[str, float] = {"train": 0.7, "validation": 0.15, "test": 0.15}
#: per voice of each split: sentences, paragraphs and carriers (each a prefix and/or a suffix)
DEFAULT_COUNTS: dict[str, dict[str, int]] = {
    "train": {"sentence": 6, "paragraph": 0, "carrier": 3},
    "validation": {"sentence": 16, "paragraph": 2, "carrier": 6},
    "test": {"sentence": 16, "paragraph": 2, "carrier": 6},
}


def _rng(seed: int, *purpose: object) -> random.Random:
    return random.Random(":".join(map(str, ("continuous", seed, *purpose))))


def split_texts(seed: int = 0) -> dict[str, dict[str, list[tuple[int, Any]]]]:
    """Per split and text kind, the (index, text) pairs that split's voices speak: sentences,
    paragraphs and carriers, each list shuffled and cut by ``TEXT_SHARES``."""
    lists: dict[str, list[tuple[int, Any]]] = {
        "sentence": list(enumerate(keyword_free_sentences())),
        "paragraph": list(enumerate(keyword_free_paragraphs())),
        "carrier": list(enumerate(CARRIERS)),
    }
    out: dict[str, dict[str, list[tuple[int, Any]]]] = {s: {} for s in SPLITS}
    for kind, items in lists.items():
        items = list(items)
        _rng(seed, "texts", kind).shuffle(items)
        start = 0
        for i, split in enumerate(SPLITS):
            end = (
                len(items)
                if i == len(SPLITS) - 1
                else start + round(TEXT_SHARES[split] * len(items))
            )
            out[split][kind] = items[start:end]
            start = end
    return out


def corpus_voices(corpus: str | Path) -> list[tuple[Voice, str]]:
    """The corpus's voices and their splits, rebuilt from ``corpus.json``."""
    from training.dataset import read_corpus_info  # (imports torch: not at parser build time)

    info = read_corpus_info(corpus)
    if not info.get("voices"):
        raise ValueError(f"{corpus}: corpus.json lists no voices; build it with lmukws data synth")
    voices = []
    for entry in info["voices"]:
        voice = Voice(
            engine=entry["engine"],
            base=entry["base"],
            speaker=entry["speaker"],
            params=dict(entry.get("params") or {}),
        )
        if voice.id != entry["id"]:
            raise ValueError(f"voice {entry['id']!r} of corpus.json rebuilds as {voice.id!r}")
        voices.append((voice, entry["split"]))
    return voices


def plan_continuous(
    corpus: str | Path,
    *,
    seed: int = 0,
    counts: dict[str, dict[str, int]] | None = None,
) -> list[tuple[Clip, str, str]]:
    """Every utterance to render: (clip, kind, group). Each voice takes its next texts from its
    split's shuffled lists in turn, so the texts spread evenly over the voices."""
    counts = counts or DEFAULT_COUNTS
    pools = split_texts(seed)
    cursor: Counter[tuple[str, str]] = Counter()
    planned: list[tuple[Clip, str, str]] = []
    for voice, split in sorted(corpus_voices(corpus), key=lambda vs: vs[0].id):
        want = counts.get(split, {})
        for kind in ("sentence", "paragraph", "carrier"):
            pool = pools[split][kind]
            for _ in range(min(want.get(kind, 0), len(pool))):
                index, text = pool[cursor[split, kind] % len(pool)]
                cursor[split, kind] += 1
                if kind != "carrier":
                    tag = f"{kind[0]}{index:04d}"
                    path = f"continuous/{kind}/{voice.slug}__{tag}.wav"
                    planned.append((Clip(path, UNKNOWN, split, voice, text, text), kind, ""))
                    continue
                group = f"c{index:03d}"
                for part, words in zip(("prefix", "suffix"), text, strict=True):
                    if words:
                        path = f"continuous/{part}/{voice.slug}__{group}.wav"
                        clip = Clip(path, UNKNOWN, split, voice, words, words)
                        planned.append((clip, part, group))
    return planned


def build_continuous(
    corpus: str | Path,
    *,
    seed: int = 0,
    counts: dict[str, dict[str, int]] | None = None,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render (or finish) the corpus's continuous speech; returns ``continuous.csv``'s path."""
    started = time.monotonic()
    root = Path(corpus)
    planned = plan_continuous(root, seed=seed, counts=counts)
    log.info("planned %d utterances", len(planned))
    failed = render_clips(root, [c for c, _, _ in planned], jobs=jobs, progress=progress)
    for path, err in list(failed.items())[:20]:
        log.warning("failed %s: %s", path, err.splitlines()[0] if err else err)
    rows = [
        {
            "path": clip.path,
            "split": clip.split,
            "voice": clip.voice.id,
            "engine": clip.voice.engine,
            "kind": kind,
            "group": group,
            "text": clip.text,
        }
        for clip, kind, group in planned
        if clip.path not in failed
    ]
    out = root / CONTINUOUS_FILE
    tmp = out.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CONTINUOUS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out)
    summary = {
        split: dict(Counter(r["kind"] for r in rows if r["split"] == split)) for split in SPLITS
    }
    info_path = root / "continuous.json"
    info_path.write_text(
        json.dumps(
            {
                "seed": seed,
                "counts": counts or DEFAULT_COUNTS,
                "text_shares": TEXT_SHARES,
                "rows": summary,
                "failed": failed,
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    log.info("continuous speech of %s: %s (%d failed)", root, summary, len(failed))
    return out


def read_continuous(root: str | Path, split: str | None = None) -> list[dict[str, str]]:
    """The rows of ``root/continuous.csv`` (of one split); ``FileNotFoundError`` names the
    command that makes it."""
    path = Path(root) / CONTINUOUS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {CONTINUOUS_FILE} in {root}; make it with lmukws data continuous --corpus {root}"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if split is None or r["split"] == split]


# ----------------------------------------------------------------------------------- CLI


def register_continuous_parser(data_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``continuous`` to the ``lmukws data`` subcommands."""
    p = data_subparsers.add_parser(
        "continuous",
        help="add continuous speech (sentences, carrier phrases) to a synthetic corpus",
        description="Render keyword-free sentences and paragraphs and the halves of carrier "
        "phrases with the voices of a corpus made by `lmukws data synth`, split by speaker and "
        "by text; writes DIR/continuous.csv and DIR/continuous/.",
    )
    p.add_argument("--corpus", required=True, type=Path, help="corpus folder (DIR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="parallel render processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = build_continuous(
        args.corpus, seed=args.seed, jobs=args.jobs, progress=not args.no_progress
    )
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.continuous")
    sub = parser.add_subparsers(dest="command", required=True)
    register_continuous_parser(sub)
    args = parser.parse_args(["continuous", *(argv or [])])
    return int(args.func(args))
