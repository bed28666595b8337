"""``lmukws classify --ray``: a few hundred generated files on a local Ray cluster (2 CPUs on
127.0.0.1, started here) give the in-process labels and scores, bad files become error lines
that name them, and a resumed run classifies only the files missing from ``--out``. The
argument checks and the helpers run without Ray."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from client import cli
from client.local import classify_files
from client.ray_batch import audio_files, classify_with_ray, finished_files
from tests.streaming.tone_model import sequence

FILES = 300
RATES = (16000, 22050, 44100)
EVENTS = ([("low", 0.3)], [("high", 0.5)], [("_unknown_", 0.2)], [])
BAD = ("notaudio.wav", "empty.wav", "nosamples.wav")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def records(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_file = {r["file"]: r for r in lines}
    assert len(by_file) == len(lines), "a file has two lines"
    return by_file


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FILES tone clips (0.8 or 1 s; 16, 22.05 or 44.1 kHz; mono or stereo; WAV or FLAC) in
    three subfolders; a text file named .wav, an empty file and a WAV without samples."""
    root = tmp_path_factory.mktemp("archive")
    for i in range(FILES):
        rate, seconds = RATES[i % 3], (0.8, 1.0)[i % 2]
        x = sequence(EVENTS[i % 4], seconds, rate=rate, seed=i)
        folder = root / f"part{i % 3}"
        folder.mkdir(exist_ok=True)
        channels = 2 if i % 5 == 0 else 1
        suffix = ".flac" if i % 7 == 0 else ".wav"
        sf.write(folder / f"clip{i:03d}{suffix}", np.stack([x] * channels, axis=1), rate)
    (root / BAD[0]).write_text("this is not audio\n")
    (root / BAD[1]).write_bytes(b"")
    sf.write(root / BAD[2], np.zeros(0, np.float32), 16000)  # a header and no samples
    return root


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A Ray of its own on 127.0.0.1: 2 CPUs, 200 MB of object store, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.own_process  # Ray starts in a child pytest: tests/own_process.py
def test_ray_equals_in_process_and_resumes(
    archive: Path, tone_checkpoint: Path, local_ray: None, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    run = {"workers": 2, "batch_size": 32, "checkpoint": tone_checkpoint, "progress": False}
    first = classify_with_ray(archive, out, **run)
    files = audio_files(archive)
    assert len(files) == FILES + len(BAD)
    assert (first.files, first.skipped, first.written) == (len(files), 0, len(files))
    assert first.errors == len(BAD)

    got = records(out)
    assert sorted(got) == files
    for name in BAD:
        path = str(archive / name)
        assert got[path]["filename"] == name and path in got[path]["error"]
    assert "no samples" in got[str(archive / "nosamples.wav")]["error"]
    good = [f for f in files if Path(f).name not in BAD]
    expected = classify_files(good, checkpoint=tone_checkpoint)
    labels = {r.label for r in expected}
    assert labels == {"low", "high", "_unknown_", "_silence_"}  # the clips are not all alike
    for path, want in zip(good, expected, strict=True):
        have = got[path]
        assert "error" not in have and have["filename"] == want.filename
        assert have["label"] == want.label
        assert have["score"] == pytest.approx(want.score, abs=1e-5)
        scores = dict(want.top)
        assert len(have["top"]) == 3
        for label, score in have["top"]:
            assert score == pytest.approx(scores[label], abs=1e-5)
        assert (have["duration_s"], have["sample_rate"], have["channels"]) == (
            want.duration_s,
            want.sample_rate,
            want.channels,
        )

    # an interrupted run: half the lines gone and the last one cut short
    lines = out.read_text().splitlines(keepends=True)
    kept, dropped = lines[::2], lines[1::2]
    out.write_text("".join(kept) + dropped[0][:20])
    dropped_files = {json.loads(line)["file"] for line in dropped}
    second = classify_with_ray(archive, out, **run)
    assert (second.skipped, second.written) == (len(kept), len(dropped))
    appended = out.read_text().splitlines()[len(kept) :]
    assert {json.loads(line)["file"] for line in appended} == dropped_files
    assert sorted(records(out)) == files
    third = classify_with_ray(archive, out, **run)
    assert (third.skipped, third.written) == (len(files), 0)


def test_folders_globs_and_files(archive: Path) -> None:
    in_folder = audio_files(archive)
    assert len(in_folder) == FILES + len(BAD) and all(Path(f).is_absolute() for f in in_folder)
    flac = audio_files(f"{archive}/**/*.flac")
    assert len(flac) == len(range(0, FILES, 7)) and set(flac) < set(in_folder)
    assert audio_files(archive / "empty.wav") == [str(archive / "empty.wav")]
    with pytest.raises(FileNotFoundError, match="no audio files"):
        audio_files(archive / "*.mp3")


def test_finished_files_drops_a_cut_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert finished_files(out) == set()
    out.write_text('{"file": "/a.wav", "label": "yes"}\n{"file": "/b.wav", "error": "bad"}\n{"fi')
    assert finished_files(out) == {"/a.wav", "/b.wav"}
    assert out.read_text().endswith('"bad"}\n')


def test_ray_needs_out(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("classify", "--ray", str(archive))
    assert args.func(args) == 2
    assert "--ray needs --out" in capsys.readouterr().err
    args = parse("classify", "--ray", str(archive), "--out", "x.jsonl", "a.wav")
    assert args.func(args) == 2
    args = parse("classify", "a.wav", "--out", "x.jsonl")
    assert args.func(args) == 2


def test_ray_missing_names_the_extra(
    archive: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    args = parse("classify", "--ray", str(archive), "--out", "x.jsonl")
    assert args.func(args) == 2
    assert "pip install 'lmukws[ray]'" in capsys.readouterr().err


def test_a_failing_batch_blames_only_its_bad_clip(archive: Path, tone_checkpoint: Path) -> None:
    """The actor without Ray: decoded columns in, JSON lines out; when the model call of a
    batch fails, the clips are retried one by one and only the culprit gets an error line."""
    from client.local import local_settings
    from client.ray_batch import ClipClassifier, decode_batch

    files = [*audio_files(archive / "part0")[:4], str(archive / "notaudio.wav")]
    batch = decode_batch({"file": np.array(files)}, rate=16000)
    assert list(batch["error"][:4]) == [""] * 4 and "notaudio.wav" in batch["error"][4]
    classifier = ClipClassifier(local_settings(tone_checkpoint), top=2)
    real, culprit = classifier.engine.classify, batch["samples"][1]

    def classify(clips: list[np.ndarray], rates: list[int]) -> list[np.ndarray]:
        if any(c.tobytes() == culprit for c in clips):
            raise RuntimeError("boom")
        return real(clips, rates)

    classifier.engine.classify = classify  # type: ignore[method-assign]
    out = classifier(batch)
    lines = [json.loads(line) for line in out["line"]]
    assert list(out["failed"]) == [False, True, False, False, True]
    assert lines[1]["error"] == f"cannot classify {files[1]!r}: boom"
    assert [len(r["top"]) for r in lines if "error" not in r] == [2, 2, 2]
    assert [r["file"] for r in lines] == files
