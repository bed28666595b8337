"""Carry a corpus to a machine that takes few bytes: its training and validation clips packed
into one Ogg Opus stream, and unpacked there into the same WAV layout.

The lent GPU machines take at most 64 MiB of files; a large corpus's training and validation
clips fit there as one low-bitrate Opus stream (``--level``), where per-clip files would not.
Opus is lossy: a model scores lower on such a copy of validation than on the WAVs, so evaluate
on the WAVs.

    python -m training.opus_pack pack data/synth-xl .gpu/xl-pack --level 0.95
    python -m training.opus_pack unpack .gpu/xl-pack data/synth-xl     # on the other machine

``pack`` writes ``audio.opus`` (every clip once, 50 ms of silence between clips), and gzipped
``index.json`` (path, first sample, length), ``manifest.csv`` (train and validation rows) and
``corpus.json``. ``unpack`` writes 16 kHz PCM16 WAVs at the manifest's paths.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from training.voices import SAMPLE_RATE, read_wav, write_wav

GAP_SAMPLES = 800  # 50 ms of silence between clips, so no codec frame spans two clips
PACKED_SPLITS = ("train", "validation")


def pack(corpus: Path, out: Path, level: float = 0.95, progress: bool = True) -> dict[str, float]:
    """Pack ``corpus``'s train and validation clips into ``out``; returns clips, hours, MiB."""
    from tqdm import tqdm

    with (corpus / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in PACKED_SPLITS]
    if not rows:
        raise ValueError(f"{corpus}/manifest.csv has no train or validation rows")
    paths = sorted({r["path"] for r in rows if r["path"]})
    index, chunks, position = [], [], 0
    gap = np.zeros(GAP_SAMPLES, np.float32)
    for path in tqdm(paths, desc="read", unit="clip", disable=not progress):
        x, rate = read_wav(corpus / path)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
        index.append([path, position, len(x)])
        chunks += [x, gap]
        position += len(x) + GAP_SAMPLES
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    audio = out / "audio.opus"
    sf.write(
        str(audio),
        np.concatenate(chunks),
        SAMPLE_RATE,
        format="OGG",
        subtype="OPUS",
        compression_level=level,
    )
    (out / "index.json.gz").write_bytes(gzip.compress(json.dumps(index).encode()))
    with gzip.open(out / "manifest.csv.gz", "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "corpus.json.gz").write_bytes(gzip.compress((corpus / "corpus.json").read_bytes()))
    return {
        "clips": len(paths),
        "hours": position / SAMPLE_RATE / 3600,
        "mib": audio.stat().st_size / 2**20,
        "kbps": audio.stat().st_size * 8 / (position / SAMPLE_RATE) / 1000,
    }


def unpack(packed: Path, corpus: Path, threads: int = 16) -> int:
    """Write the packed clips as WAVs under ``corpus`` with its manifest; returns the clips."""
    import soundfile as sf

    audio, rate = sf.read(str(packed / "audio.opus"), dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{packed}/audio.opus: {rate} Hz, expected {SAMPLE_RATE}")
    index = json.loads(gzip.decompress((packed / "index.json.gz").read_bytes()))
    if index and index[-1][1] + index[-1][2] > len(audio):
        raise ValueError(f"{packed}/audio.opus is shorter than its index")

    def write(item: list) -> None:
        path, start, n = item
        write_wav(corpus / path, np.clip(audio[start : start + n], -1.0, 1.0))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, index, chunksize=256))
    for name in ("manifest.csv", "corpus.json"):
        (corpus / name).write_bytes(gzip.decompress((packed / f"{name}.gz").read_bytes()))
    return len(index)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.opus_pack pack CORPUS OUT [--level L]`` / ``unpack PACKED CORPUS``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.opus_pack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="corpus folder -> packed folder")
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="libsndfile Opus compression level, 0 (best) to 1 (smallest); 0.95 ~17 kbps",
    )
    u = sub.add_parser("unpack", help="packed folder -> corpus folder of WAVs")
    u.add_argument("packed", type=Path)
    u.add_argument("corpus", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        stats = pack(args.corpus, args.out, args.level)
        print(
            f"{stats['clips']} clips, {stats['hours']:.2f} h, {stats['mib']:.1f} MiB, "
            f"{stats['kbps']:.1f} kbps -> {args.out}"
        )
    else:
        print(f"unpacked {unpack(args.packed, args.corpus)} clips into {args.corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
