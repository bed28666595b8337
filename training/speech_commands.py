"""Google Speech Commands V2 (35 words): from an extracted folder, the official tarball, or the web.

``prepare_speech_commands`` writes the common corpus manifest (docs/CONTRACTS.md) for the
official split: files named in ``validation_list.txt`` are ``validation``, those in
``testing_list.txt`` are ``test``, every other WAV of the 35 word folders is ``train`` (the
authors' ``prep_sc.py`` does the same). ``_background_noise_`` is not a label and is skipped.
The voice of a clip is the speaker hash before ``_nohash_`` in its file name.

Layout of the extracted archive::

    ROOT/validation_list.txt, ROOT/testing_list.txt, ROOT/<word>/<speaker>_nohash_<n>.wav, ...

Outputs: ``OUT/manifest.csv`` (path,label,split,voice,engine,text; paths relative to OUT) and
``OUT/corpus.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.labels import SPEECH_COMMANDS_LABELS

ARCHIVE_NAME = "speech_commands_v0.02.tar.gz"
#: The official archive; ``LMUKWS_SPEECH_COMMANDS_URL`` or ``--url`` override it (mirrors, tests).
DEFAULT_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
URL_ENV = "LMUKWS_SPEECH_COMMANDS_URL"
ENGINE = "speech-commands"
SOURCE = "speech-commands-v0.02"
MANIFEST_FIELDS = ("path", "label", "split", "voice", "engine", "text")
LIST_FILES = {"validation": "validation_list.txt", "test": "testing_list.txt"}
NOT_LABELS = ("_background_noise_",)


class SpeechCommandsError(RuntimeError):
    """The data cannot be prepared (missing files, bad archive, no network); message for users."""


@dataclass(frozen=True)
class ManifestRow:
    """One clip of the manifest."""

    path: str
    label: str
    split: str
    voice: str
    engine: str = ENGINE
    text: str = ""


def speaker_of(filename: str) -> str:
    """The speaker hash of a file name: ``"0a7c2a8d_nohash_1.wav"`` -> ``"0a7c2a8d"``."""
    name = Path(filename).name
    if "_nohash_" in name:
        return name.split("_nohash_", 1)[0]
    return Path(name).stem


def is_dataset_dir(path: Path) -> bool:
    """Whether ``path`` holds an extracted archive (both list files and word folders)."""
    return (
        path.is_dir()
        and all((path / name).is_file() for name in LIST_FILES.values())
        and any((path / word).is_dir() for word in SPEECH_COMMANDS_LABELS)
    )


def _read_list(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as handle:
        return {line.strip().replace("\\", "/") for line in handle if line.strip()}


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a (gzipped) tarball into ``dest``, refusing links and paths outside it."""
    from tqdm import tqdm

    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in tqdm(members, desc=f"extract {archive.name}", unit="file", leave=False):
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise SpeechCommandsError(f"cannot extract {archive}: {error}") from error


def download_archive(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` (atomically, with a progress bar); SpeechCommandsError offline."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        tmp.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise SpeechCommandsError(
            f"cannot download {url}: {reason}.\n"
            "This machine looks offline. Download the archive elsewhere and run\n"
            f"  lmukws data speech-commands --root /path/to/{ARCHIVE_NAME}\n"
            "or point --root at the extracted folder."
        ) from error
    tmp.replace(dest)
    return dest


def locate_dataset(
    root: Path, out: Path | None, download: bool, url: str
) -> tuple[Path, dict[str, Any]]:
    """Find or make the extracted dataset folder; returns (folder, provenance)."""
    root = root.expanduser()
    if root.is_file():
        target = out or root.parent / root.name.removesuffix(".gz").removesuffix(".tar")
        if not is_dataset_dir(target):
            _safe_extract(root, target)
        return _checked(target, root), {"archive": str(root.resolve())}
    if is_dataset_dir(root):
        return root, {}
    inner = [p for p in root.iterdir() if is_dataset_dir(p)] if root.is_dir() else []
    if len(inner) == 1 and not (root / ARCHIVE_NAME).is_file():
        return inner[0], {}
    if not root.exists() and not download:
        raise SpeechCommandsError(f"{root} does not exist (pass --download to fetch the data)")
    archive = root / ARCHIVE_NAME
    provenance: dict[str, Any] = {}
    if not archive.is_file():
        if not download:
            raise SpeechCommandsError(
                f"{root} holds neither the extracted Speech Commands V2 (word folders, "
                f"validation_list.txt, testing_list.txt) nor {ARCHIVE_NAME}; "
                "pass --download to fetch it, or point --root at the archive or the folder"
            )
        download_archive(url, archive)
        provenance["url"] = url
    target = out or root
    _safe_extract(archive, target)
    provenance["archive"] = str(archive.resolve())
    return _checked(target, archive), provenance


def _checked(folder: Path, origin: Path) -> Path:
    """``folder``, or its only subfolder, if it holds the extracted dataset."""
    if is_dataset_dir(folder):
        return folder
    inner = [p for p in folder.iterdir() if is_dataset_dir(p)] if folder.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    if not inner:
        raise SpeechCommandsError(
            f"{origin} did not give a Speech Commands V2 folder (word folders and list files) "
            f"in {folder}"
        )
    raise SpeechCommandsError(f"{folder} holds several Speech Commands folders: {inner}")


def scan(dataset: Path, out: Path) -> tuple[list[ManifestRow], dict[str, Any]]:
    """Rows of the manifest (paths relative to ``out``) and statistics for corpus.json."""
    lists = {split: _read_list(dataset / name) for split, name in LIST_FILES.items()}
    overlap = lists["validation"] & lists["test"]
    if overlap:
        raise SpeechCommandsError(
            f"{len(overlap)} files are in both validation and testing lists, e.g. "
            f"{sorted(overlap)[:3]}"
        )
    missing_words = [w for w in SPEECH_COMMANDS_LABELS if not (dataset / w).is_dir()]
    if missing_words:
        raise SpeechCommandsError(
            f"{dataset} lacks the word folders {missing_words}; is the archive complete? "
            "(Speech Commands V2 has 35 words)"
        )
    ignored = sorted(
        p.name
        for p in dataset.iterdir()
        if p.is_dir() and p.name not in SPEECH_COMMANDS_LABELS and not p.name.startswith(".")
    )
    rows: list[ManifestRow] = []
    found: set[str] = set()
    for label in SPEECH_COMMANDS_LABELS:
        for wav in sorted((dataset / label).glob("*.wav")):
            rel = f"{label}/{wav.name}"
            found.add(rel)
            split = next((s for s, names in lists.items() if rel in names), "train")
            rows.append(
                ManifestRow(
                    path=Path(os.path.relpath(wav, out)).as_posix(),
                    label=label,
                    split=split,
                    voice=speaker_of(wav.name),
                    text=label,
                )
            )
    listed = lists["validation"] | lists["test"]
    missing = sorted(n for n in listed if n not in found and n.split("/")[0] not in NOT_LABELS)
    if missing:
        print(
            f"warning: {len(missing)} files named in the list files are missing, e.g. "
            f"{missing[:3]}",
            file=sys.stderr,
        )
    splits_of_voice: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits_of_voice[row.voice].add(row.split)
    shared = sorted(v for v, s in splits_of_voice.items() if len(s) > 1)
    if shared:
        print(
            f"warning: {len(shared)} speakers appear in more than one split (official lists)",
            file=sys.stderr,
        )
    counts = Counter(row.split for row in rows)
    voices = {
        split: len({r.voice for r in rows if r.split == split})
        for split in ("train", "validation", "test")
    }
    stats: dict[str, Any] = {
        "counts": {s: counts.get(s, 0) for s in ("train", "validation", "test")},
        "per_label": {
            label: {s: 0 for s in ("train", "validation", "test")}
            for label in SPEECH_COMMANDS_LABELS
        },
        "voices": voices,
        "voices_in_several_splits": len(shared),
        "listed_but_missing": len(missing),
        "ignored_folders": ignored,
    }
    for row in rows:
        stats["per_label"][row.label][row.split] += 1
    return rows, stats


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    """Write ``manifest.csv`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        for row in rows:
            writer.writerow([getattr(row, f) for f in MANIFEST_FIELDS])
    tmp.replace(path)


def prepare_speech_commands(
    root: str | Path,
    out: str | Path | None = None,
    download: bool = False,
    url: str | None = None,
) -> Path:
    """Prepare Speech Commands V2 under ``root`` (folder or tarball); returns the manifest path.

    ``out`` is where manifest.csv and corpus.json go (and where an archive is extracted);
    by default the dataset folder itself.
    """
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    out_path = Path(out).expanduser() if out is not None else None
    dataset, provenance = locate_dataset(Path(root), out_path, download, url)
    out_path = out_path or dataset
    out_path.mkdir(parents=True, exist_ok=True)
    rows, stats = scan(dataset, out_path)
    if not rows:
        raise SpeechCommandsError(f"no WAV files found under {dataset}")
    manifest = out_path / "manifest.csv"
    write_manifest(rows, manifest)
    corpus = {
        "source": SOURCE,
        "labels": list(SPEECH_COMMANDS_LABELS),
        "sample_rate": 16000,
        "engine": ENGINE,
        "dataset_dir": str(dataset.resolve()),
        "split": "official validation_list.txt / testing_list.txt; the rest is train",
        "reference_url": DEFAULT_URL,
        **provenance,
        **stats,
    }
    (out_path / "corpus.json").write_text(json.dumps(corpus, indent=2) + "\n", encoding="utf-8")
    return manifest


def run(args: argparse.Namespace) -> int:
    """CLI entry: prepare and print a summary; exit code 2 with a message on any data error."""
    try:
        manifest = prepare_speech_commands(args.root, args.out, args.download, args.url)
    except SpeechCommandsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    corpus = json.loads((manifest.parent / "corpus.json").read_text(encoding="utf-8"))
    counts = corpus["counts"]
    print(
        f"wrote {manifest} ({sum(counts.values())} clips: train {counts['train']}, "
        f"validation {counts['validation']}, test {counts['test']}; "
        f"{len(corpus['labels'])} labels)"
    )
    return 0
