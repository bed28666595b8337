"""``lmukws classify --ray``: label a folder or glob of audio files on Ray Data.

The files not yet in ``--out`` become a Dataset of paths. Ray tasks read and resample them
(``client.local.decode_file``), an actor pool labels them in batches with the parallel form
(``client.local.classify_clips``, one engine per actor, loaded once), and the driver appends
one JSON line per file to ``--out`` as results arrive: the fields of ``lmukws classify --json``
plus ``file``, the absolute path. A file that cannot be read or scored becomes a line with an
``error`` that names it, never a failed job. Every finished file is on disk at once, so a run
that stops (Ctrl-C, a lost node) resumes where it left off: files already in ``--out`` are
skipped.

Ray and torch are imported inside functions, so importing this module stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from client.commands import classification_record, report_error
from client.exits import EXIT_OK, EXIT_UNAVAILABLE
from client.local import Clip, classify_clips, decode_file, local_settings

if TYPE_CHECKING:  # pragma: no cover
    from server.protocol import ClassifyResult
    from server.settings import Settings

#: what a folder is searched for (what libsndfile reads); a glob takes every file it matches
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
#: files per decoding task (reading and resampling one-second clips takes ~1 ms each)
DECODE_BATCH = 32
#: logical CPUs a decoding task asks for; the actors leave at least this much of the cluster
DECODE_CPUS = 0.5
#: object store of a local Ray started here: batches in flight are a few MB
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


class BatchSummary(NamedTuple):
    """What a run did: files found, skipped (already in ``--out``), written now, of which
    errors, and the seconds from the first file sent to the last line written."""

    files: int
    skipped: int
    written: int
    errors: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def audio_files(source: str | Path) -> list[str]:
    """The files of ``source``, absolute and sorted: a folder's audio files (by suffix, at any
    depth), the files a glob matches (``**`` included), or one file. Absolute paths name a
    file the same way on every node and in every resumed run. ``FileNotFoundError`` when
    nothing is found."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    if not found:
        raise FileNotFoundError(f"no audio files in {text!r}")
    return sorted({os.path.abspath(p) for p in found})


def finished_files(out: str | Path) -> set[str]:
    """The ``file`` of every line already in ``out`` (none when it does not exist). A last line
    cut short by an interrupted run is removed from the file, so that appending stays valid."""
    out = Path(out)
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with out.open("r+b") as f:
            f.truncate(end)
    done = set()
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("file"), str):
            done.add(record["file"])
    return done


def decode_batch(batch: dict[str, np.ndarray], rate: int) -> dict[str, np.ndarray]:
    """Ray Data task: read and resample to ``rate`` the files of column ``file`` -> the columns
    of their ``Clip`` (``samples`` as float32 bytes) and ``error`` ("" when the file is fine)."""
    clips, errors = [], []
    for path in map(str, batch["file"]):
        try:
            clip, error = decode_file(path, rate), ""
        except Exception as exc:  # any bad file becomes an error line, never a failed job
            clip = Clip(Path(path).name, np.zeros(0, np.float32), rate, 0.0, 0, 0)
            error = str(exc) if path in str(exc) else f"cannot read {path!r}: {exc}"
        clips.append(clip)
        errors.append(error)
    scalars = [f for f in Clip._fields if f != "samples"]
    columns = {f: np.array([getattr(c, f) for c in clips]) for f in scalars}
    columns["samples"] = np.array([c.samples.astype(np.float32).tobytes() for c in clips], object)
    columns["file"] = np.asarray(batch["file"])
    columns["error"] = np.array(errors, dtype=object)
    return columns


class ClipClassifier:
    """Ray Data actor: the engine loaded once (``torch_threads`` of ``settings``), batches of
    decoded files -> columns ``file``, ``line`` (the JSON line) and ``failed``."""

    def __init__(self, settings: Settings, top: int) -> None:
        from server.loading import load_engine

        self.engine = load_engine(settings)
        self.top = top

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [str(f) for f in batch["file"]]
        clips = {
            i: Clip(
                str(batch["name"][i]),
                np.frombuffer(batch["samples"][i], dtype=np.float32),
                int(batch["rate"][i]),
                float(batch["duration_s"][i]),
                int(batch["sample_rate"][i]),
                int(batch["channels"][i]),
            )
            for i in range(len(files))
            if not batch["error"][i]
        }
        outcomes = self._classify(clips, files)
        lines, failed = [], []
        for i, path in enumerate(files):
            outcome = outcomes.get(i, str(batch["error"][i]))
            if isinstance(outcome, str):
                record = {"file": path, "filename": Path(path).name, "error": outcome}
            else:
                record = {"file": path, **classification_record(outcome, self.top)}
            lines.append(json.dumps(record))
            failed.append(isinstance(outcome, str))
        return {
            "file": np.array(files, dtype=object),
            "line": np.array(lines, dtype=object),
            "failed": np.array(failed, dtype=bool),
        }

    def _classify(
        self, clips: dict[int, Clip], files: list[str]
    ) -> dict[int, ClassifyResult | str]:
        """All clips in one call; should that fail, one at a time, so that only the file at
        fault gets an error (its message)."""
        if not clips:
            return {}
        try:
            results = classify_clips(self.engine, list(clips.values()))
            return dict(zip(clips, results, strict=True))
        except Exception:
            pass
        out: dict[int, ClassifyResult | str] = {}
        for i, clip in clips.items():
            try:
                (out[i],) = classify_clips(self.engine, [clip])
            except Exception as error:
                out[i] = f"cannot classify {files[i]!r}: {error}"
        return out


def classify_with_ray(
    source: str | Path,
    out: str | Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 64,
    top: int = 3,
    threads: int = 1,
    checkpoint: str | Path | None = None,
    model: str | None = None,
    device: str = "cpu",
    progress: bool | None = None,
) -> BatchSummary:
    """Label the audio files of ``source`` (a folder, a glob or a file) on Ray and append one
    JSON line per file to ``out``, skipping the files already there.

    Uses the Ray this process is connected to, else connects to ``address`` ("auto",
    "HOST:6379"), else starts a local Ray and stops it at the end. ``workers`` classifying
    actors (default: the cluster's CPUs less one) with ``threads`` torch threads each take
    ``batch_size`` files at a time. ``progress`` None: a progress bar when stderr is a
    terminal. ``ValueError``/``FileNotFoundError`` for bad arguments, before Ray starts.
    """
    if importlib.util.find_spec("ray") is None:  # say so before any work
        raise ModuleNotFoundError("No module named 'ray'", name="ray")
    if device != "cpu":
        raise ValueError(f"--ray classifies on CPUs; got --torch-device {device}")
    if min(batch_size, threads, workers or 1) < 1:
        raise ValueError("--batch-size, --ray-workers and threads must be at least 1")
    settings = local_settings(checkpoint, model, device)
    settings = settings.model_copy(update={"torch_threads": threads})
    rate = _model_rate(settings)
    files = audio_files(source)
    out = Path(out)
    done = finished_files(out)
    todo = [f for f in files if f not in done]
    if not todo:
        return BatchSummary(len(files), len(files), 0, 0, 0.0)
    with _ray_connection(address, workers) as ray:
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
        dataset = _pipeline(ray, todo, rate, settings, top, workers, batch_size)
        written = errors = 0
        started = time.perf_counter()
        from tqdm import tqdm

        with (
            out.open("a", encoding="utf-8") as sink,
            tqdm(total=len(todo), unit="file", disable=_no_bar(progress)) as bar,
        ):
            for row in dataset.iter_rows():
                sink.write(f"{row['line']}\n")
                sink.flush()
                written += 1
                errors += bool(row["failed"])
                bar.update(1)
        seconds = time.perf_counter() - started
    return BatchSummary(len(files), len(files) - len(todo), written, errors, seconds)


def run_ray_classify(args: argparse.Namespace) -> int:
    """``lmukws classify --ray PATH --out FILE``: exit 2 for bad arguments or without Ray,
    69 when the cluster at ``--ray-address`` cannot be reached."""
    if args.files or args.url:
        return report_error("classify", ValueError("--ray takes no FILE arguments and no --url"))
    if not args.out:
        return report_error("classify", ValueError("--ray needs --out FILE (JSON lines)"))
    try:
        summary = classify_with_ray(
            args.ray,
            args.out,
            address=args.ray_address,
            workers=args.ray_workers,
            batch_size=args.batch_size,
            top=args.top,
            checkpoint=args.checkpoint,
            model=args.model,
            device=args.torch_device,
        )
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "ray":
            raise
        message = f"--ray needs Ray ({error}): pip install 'lmukws[ray]'"
        return report_error("classify", ValueError(message))
    except ConnectionError as error:  # no Ray cluster at --ray-address
        report_error("classify", error)
        return EXIT_UNAVAILABLE
    except (ValueError, OSError) as error:
        return report_error("classify", error)
    if summary.written:
        done = f"{summary.written} files in {summary.seconds:.1f} s ({summary.files_per_s:.1f} "
        done += f"files/s), {summary.errors} errors"
    else:
        done = "nothing to do"
    print(f"{done}; {summary.skipped} skipped (already in {args.out})", file=sys.stderr)
    return EXIT_OK


def _no_bar(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None lets tqdm hide the bar when stderr is not a terminal."""
    return None if progress is None else not progress


def _model_rate(settings: Settings) -> int:
    """The checkpoint's input rate (what the decoding tasks resample to)."""
    from models import read_metadata
    from models.config import FeatureConfig
    from server.loading import resolve_checkpoint

    metadata = read_metadata(resolve_checkpoint(settings))
    return FeatureConfig.from_dict(metadata.get("features") or {}).sample_rate


@contextlib.contextmanager
def _ray_connection(address: str | None, workers: int | None) -> Iterator[Any]:
    """The ``ray`` module, connected: as it is, to ``address``, or to a local Ray with a CPU
    per worker and one for decoding (at least the machine's), shut down afterwards."""
    import logging

    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # ours counts files; Ray's count blocks
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(
            address="local",  # a new Ray of our own, even where a cluster runs
            num_cpus=max(os.cpu_count() or 1, (workers or 0) + 1),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def _pipeline(
    ray: Any,
    files: list[str],
    rate: int,
    settings: Settings,
    top: int,
    workers: int,
    batch_size: int,
) -> Any:
    """paths -> decoding tasks -> ``workers`` classifying actors: a Dataset of JSON lines.
    A small run is cut into smaller blocks and batches, so that every actor gets some.

    Each actor asks for ``threads`` CPUs, or for its share of the cluster less ``DECODE_CPUS``
    when that is smaller, so that the actors never take every CPU and starve the decoding."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    actor_cpus = min(float(settings.torch_threads), max(0.1, (cpus - DECODE_CPUS) / workers))
    blocks = max(math.ceil(len(files) / DECODE_BATCH), min(len(files), 4 * workers))
    dataset = ray.data.from_items([{"file": f} for f in files], override_num_blocks=blocks)
    dataset = dataset.map_batches(
        decode_batch,
        fn_kwargs={"rate": rate},
        batch_size=DECODE_BATCH,
        batch_format="numpy",
        num_cpus=DECODE_CPUS,
    )
    return dataset.map_batches(
        ClipClassifier,
        fn_constructor_kwargs={"settings": settings, "top": top},
        batch_size=min(batch_size, math.ceil(len(files) / workers)),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=actor_cpus,
    )


__all__ = [
    "AUDIO_SUFFIXES",
    "BatchSummary",
    "ClipClassifier",
    "audio_files",
    "classify_with_ray",
    "decode_batch",
    "finished_files",
    "run_ray_classify",
]
