"""Carry a corpus to a machine that takes few bytes: its training and validation audio packed
into one Ogg Opus stream, and unpacked there into the same WAV layout.

The lent GPU machines take at most 64 MiB of files; a corpus's training and validation audio
fits there as one low-bitrate Opus stream (``--level``), where per-clip files would not. Packed:
the clips of ``manifest.csv``, the continuous speech of ``continuous.csv`` (``lmukws data
continuous``: what stream windows are cut from) of the same splits, and with ``--recordings``
the ``use=train`` rows of a ``lmukws data recordings`` folder (the real speech of stream
windows; evaluation-only rows never travel). Opus is lossy: a model scores lower on such a copy
of validation than on the WAVs, so evaluate on the WAVs.

    python -m training.opus_pack pack data/synth .gpu/pack --recordings data/recordings \
        --recordings-hours 1 --continuous-splits train
    python -m training.opus_pack unpack .gpu/pack data/synth --recordings data/recordings

``--recordings-hours`` and ``--continuous-splits`` make a pack smaller: a fixed sample of the
recordings, and no validation sentences (then train with ``val_stream_items`` 0).

``pack`` writes ``audio.opus`` (every file once, 50 ms of silence between files), and gzipped
``index.json`` ([source, path, first sample, length]; source "corpus" or "recordings"), the
packed rows of ``manifest.csv`` and ``continuous.csv``, ``corpus.json`` and
``continuous.json``, and ``recordings-manifest.csv`` and ``recordings.json``. ``unpack``
writes 16 kHz PCM16 WAVs at the manifests' paths.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from training.command_errors import exits_2_on_bad_input
from training.voices import SAMPLE_RATE, read_wav, write_wav

GAP_SAMPLES = 800  # 50 ms of silence between files, so no codec frame spans two files
PACKED_SPLITS = ("train", "validation")
#: recordings rows that may travel: what training reads (never ``eval``, never ``dev``)
PACKED_USE = "train"
CORPUS, RECORDINGS = "corpus", "recordings"
#: packed file name -> (source, file in that source's folder)
TABLES = {
    "manifest.csv.gz": (CORPUS, "manifest.csv"),
    "continuous.csv.gz": (CORPUS, "continuous.csv"),
    "recordings-manifest.csv.gz": (RECORDINGS, "manifest.csv"),
}
METADATA = {
    "corpus.json.gz": (CORPUS, "corpus.json"),
    "continuous.json.gz": (CORPUS, "continuous.json"),
    "recordings.json.gz": (RECORDINGS, "recordings.json"),
}


def _rows(path: Path, keep: str, values: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r[keep] in values]


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _first_hours(rows: list[dict[str, str]], hours: float) -> list[dict[str, str]]:
    """A fixed sample of ``rows`` (ordered by a hash of the path, so every source and speaker
    is drawn from) of at most ``hours`` by their ``seconds``, in manifest order."""
    order = sorted(range(len(rows)), key=lambda i: zlib.crc32(rows[i]["path"].encode()))
    kept, total = set(), 0.0
    for i in order:
        seconds = float(rows[i]["seconds"])
        if total + seconds > hours * 3600:
            continue
        kept.add(i)
        total += seconds
    return [r for i, r in enumerate(rows) if i in kept]


def pack(
    corpus: Path,
    out: Path,
    level: float = 0.95,
    progress: bool = True,
    recordings: Path | None = None,
    recordings_hours: float | None = None,
    continuous_splits: Sequence[str] = PACKED_SPLITS,
) -> dict[str, float]:
    """Pack ``corpus``'s train and validation clips, its continuous speech of
    ``continuous_splits`` and ``recordings``' training speech (at most ``recordings_hours``)
    into ``out``; returns files per source, hours, MiB and kbps."""
    from tqdm import tqdm

    roots = {CORPUS: corpus}
    tables = {"manifest.csv.gz": _rows(corpus / "manifest.csv", "split", PACKED_SPLITS)}
    if not tables["manifest.csv.gz"]:
        raise ValueError(f"{corpus}/manifest.csv has no train or validation rows")
    if (corpus / "continuous.csv").is_file() and continuous_splits:
        tables["continuous.csv.gz"] = _rows(corpus / "continuous.csv", "split", continuous_splits)
    if recordings is not None:
        if not (recordings / "manifest.csv").is_file():
            raise FileNotFoundError(
                f"{recordings}/manifest.csv not found: run `lmukws data recordings --out "
                f"{recordings}`"
            )
        roots[RECORDINGS] = recordings
        rows = _rows(recordings / "manifest.csv", "use", (PACKED_USE,))
        if recordings_hours is not None:
            rows = _first_hours(rows, recordings_hours)
        if not rows:
            raise ValueError(
                f"{recordings}/manifest.csv has no use={PACKED_USE} rows"
                + ("" if recordings_hours is None else f" within {recordings_hours:g} h")
            )
        tables["recordings-manifest.csv.gz"] = rows
    files = sorted(
        {(TABLES[name][0], r["path"]) for name, rows in tables.items() for r in rows if r["path"]}
    )
    index, chunks, position = [], [], 0
    gap = np.zeros(GAP_SAMPLES, np.float32)
    for source, path in tqdm(files, desc="read", unit="file", disable=not progress):
        x, rate = read_wav(roots[source] / path)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{roots[source] / path}: {rate} Hz, expected {SAMPLE_RATE}")
        index.append([source, path, position, len(x)])
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
    for name, rows in tables.items():
        if rows:
            _write_rows(out / name, rows)
    for name, (source, file) in METADATA.items():
        if source in roots and (roots[source] / file).is_file():
            (out / name).write_bytes(gzip.compress((roots[source] / file).read_bytes()))
    return {
        **{
            what: len({r["path"] for r in tables.get(name, ()) if r["path"]})
            for what, name in (
                ("clips", "manifest.csv.gz"),
                ("continuous", "continuous.csv.gz"),
                ("recordings", "recordings-manifest.csv.gz"),
            )
        },
        "hours": position / SAMPLE_RATE / 3600,
        "mib": audio.stat().st_size / 2**20,
        "kbps": audio.stat().st_size * 8 / (position / SAMPLE_RATE) / 1000,
    }


def unpack(packed: Path, corpus: Path, recordings: Path | None = None, threads: int = 16) -> int:
    """Write the packed audio as WAVs under ``corpus`` (and ``recordings``) with their
    manifests; returns the files written. A pack with recordings needs ``recordings``."""
    import soundfile as sf

    index = json.loads(gzip.decompress((packed / "index.json.gz").read_bytes()))
    has_recordings = (packed / "recordings-manifest.csv.gz").is_file()
    if has_recordings and recordings is None:
        raise ValueError(f"{packed} holds recordings: name the folder for them (--recordings)")
    audio, rate = sf.read(str(packed / "audio.opus"), dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{packed}/audio.opus: {rate} Hz, expected {SAMPLE_RATE}")
    if index and index[-1][2] + index[-1][3] > len(audio):
        raise ValueError(f"{packed}/audio.opus is shorter than its index")
    roots = {CORPUS: corpus, RECORDINGS: recordings}

    def write(item: list) -> None:
        source, path, start, n = item
        write_wav(roots[source] / path, np.clip(audio[start : start + n], -1.0, 1.0))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, index, chunksize=256))
    for name, (source, file) in {**TABLES, **METADATA}.items():
        if (packed / name).is_file():
            target = roots[source]
            assert target is not None  # checked above for the recordings
            target.mkdir(parents=True, exist_ok=True)
            (target / file).write_bytes(gzip.decompress((packed / name).read_bytes()))
    return len(index)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.opus_pack pack CORPUS OUT [--recordings DIR] [--level L]`` /
    ``unpack PACKED CORPUS [--recordings DIR]``."""
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
        "--recordings",
        type=Path,
        help="also pack this `lmukws data recordings` folder's use=train rows",
    )
    p.add_argument(
        "--recordings-hours",
        type=float,
        help="pack at most this much of the recordings (a fixed sample of every source)",
    )
    p.add_argument(
        "--continuous-splits",
        default=",".join(PACKED_SPLITS),
        help="splits whose continuous speech is packed (comma-separated; '' for none): "
        "without validation, train with val_stream_items 0",
    )
    p.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="libsndfile Opus compression level, 0 (best) to 1 (smallest); 0.95 ~17 kbps",
    )
    u = sub.add_parser("unpack", help="packed folder -> corpus folder of WAVs")
    u.add_argument("packed", type=Path)
    u.add_argument("corpus", type=Path)
    u.add_argument("--recordings", type=Path, help="where a pack's recordings go")
    p.set_defaults(func=_run_pack)
    u.set_defaults(func=_run_unpack)
    args = parser.parse_args(argv)
    return args.func(args)


@exits_2_on_bad_input
def _run_pack(args: argparse.Namespace) -> int:
    s = pack(
        args.corpus,
        args.out,
        args.level,
        recordings=args.recordings,
        recordings_hours=args.recordings_hours,
        continuous_splits=[x for x in args.continuous_splits.split(",") if x],
    )
    print(
        f"{s['clips']} clips, {s['continuous']} continuous, {s['recordings']} recordings: "
        f"{s['hours']:.2f} h, {s['mib']:.1f} MiB, {s['kbps']:.1f} kbps -> {args.out}"
    )
    return 0


@exits_2_on_bad_input
def _run_unpack(args: argparse.Namespace) -> int:
    n = unpack(args.packed, args.corpus, args.recordings)
    print(f"unpacked {n} files into {args.corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
