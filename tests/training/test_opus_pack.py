"""Packing a corpus into one Opus stream and back: same clips, same lengths, aligned audio."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.opus_pack import main, pack, unpack
from training.voices import SAMPLE_RATE, read_wav, write_wav

sf = pytest.importorskip("soundfile")
if "OPUS" not in sf.available_subtypes("OGG"):
    pytest.skip("this libsndfile cannot write Opus", allow_module_level=True)


def _voiced(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A vowel-like clip: harmonics of f0 under a rise-and-fall envelope, plus a little noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    x = x * np.sin(np.pi * t / seconds) ** 2
    x += 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    rows = []
    for i, (split, seconds, f0) in enumerate(
        [
            ("train", 0.41, 120.0),
            ("train", 0.63, 210.0),
            ("validation", 0.5, 160.0),
            ("test", 0.45, 180.0),
        ]
    ):
        path = f"audio/yes/clip{i}.wav"
        write_wav(root / path, _voiced(seconds, f0, i))
        rows.append(
            {
                "path": path,
                "label": "yes",
                "split": split,
                "voice": f"v{i}",
                "engine": "espeak-ng",
                "text": "yes",
            }
        )
    rows.append(
        {"path": "", "label": "_silence_", "split": "train", "voice": "", "engine": "", "text": ""}
    )
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps({"source": "synthetic"}))
    return root


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def streams_corpus(corpus: Path) -> Path:
    """The corpus with continuous speech of every split (``lmukws data continuous``)."""
    rows = []
    for i, split in enumerate(("train", "validation", "test")):
        path = f"continuous/sentence/s{i}.wav"
        write_wav(corpus / path, _voiced(1.2, 140.0 + 20 * i, 10 + i))
        rows.append(
            {"path": path, "split": split, "voice": f"v{i}", "kind": "sentence", "text": "a b"}
        )
    _write_csv(corpus / "continuous.csv", rows)
    (corpus / "continuous.json").write_text(json.dumps({"seed": 0}))
    return corpus


@pytest.fixture()
def recordings(tmp_path: Path) -> Path:
    """A recordings folder: training speech, a dev clip and evaluation-only speech."""
    root = tmp_path / "recordings"
    rows = []
    for i, use in enumerate(("train", "dev", "eval")):
        path = f"audio/src/r{i}.wav"
        write_wav(root / path, _voiced(0.8, 100.0 + 30 * i, 20 + i))
        rows.append({"path": path, "use": use, "kind": "speech", "seconds": "0.8"})
    _write_csv(root / "manifest.csv", rows)
    (root / "recordings.json").write_text(json.dumps({"sources": ["src"]}))
    return root


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_round_trip_keeps_train_and_validation_clips_aligned(corpus: Path, tmp_path: Path) -> None:
    stats = pack(corpus, tmp_path / "packed", progress=False)
    assert stats["clips"] == 3  # the test clip stays behind
    assert unpack(tmp_path / "packed", tmp_path / "copy", threads=2) == 3
    with (tmp_path / "copy" / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["split"] for r in rows} == {"train", "validation"} and len(rows) == 4
    assert not (tmp_path / "copy" / "audio/yes/clip3.wav").exists()
    for i in range(3):
        original, _ = read_wav(corpus / f"audio/yes/clip{i}.wav")
        copy, rate = read_wav(tmp_path / "copy" / f"audio/yes/clip{i}.wav")
        assert rate == SAMPLE_RATE and len(copy) == len(original)
        # lossy but in place: a shift of a few milliseconds would lower this far below 0.9
        assert _correlation(original, copy) > 0.9
    assert json.loads((tmp_path / "copy" / "corpus.json").read_text()) == {"source": "synthetic"}


def test_cli_packs_and_unpacks(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pack", str(corpus), str(tmp_path / "p"), "--level", "0.9"]) == 0
    assert "3 clips" in capsys.readouterr().out
    assert main(["unpack", str(tmp_path / "p"), str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "audio/yes/clip2.wav").is_file()


def test_continuous_speech_and_training_recordings_travel_with_the_clips(
    streams_corpus: Path, recordings: Path, tmp_path: Path
) -> None:
    """What stream windows read comes along: the packed splits' sentences and the recordings'
    use=train speech, never their dev or evaluation-only rows, each in place."""
    stats = pack(streams_corpus, tmp_path / "p", progress=False, recordings=recordings)
    assert (stats["clips"], stats["continuous"], stats["recordings"]) == (3, 2, 1)
    with pytest.raises(ValueError, match="--recordings"):
        unpack(tmp_path / "p", tmp_path / "c", threads=2)
    n = unpack(tmp_path / "p", tmp_path / "c", recordings=tmp_path / "r", threads=2)
    assert n == 6
    rows = _read_csv(tmp_path / "c" / "continuous.csv")
    assert [r["split"] for r in rows] == ["train", "validation"]
    assert not (tmp_path / "c" / "continuous/sentence/s2.wav").exists()
    assert json.loads((tmp_path / "c" / "continuous.json").read_text()) == {"seed": 0}
    assert [r["use"] for r in _read_csv(tmp_path / "r" / "manifest.csv")] == ["train"]
    assert not (tmp_path / "r" / "audio/src/r1.wav").exists()
    assert not (tmp_path / "r" / "audio/src/r2.wav").exists()
    assert json.loads((tmp_path / "r" / "recordings.json").read_text()) == {"sources": ["src"]}
    for original_path, copy_path in [
        (streams_corpus / "continuous/sentence/s1.wav", tmp_path / "c/continuous/sentence/s1.wav"),
        (recordings / "audio/src/r0.wav", tmp_path / "r/audio/src/r0.wav"),
    ]:
        original, _ = read_wav(original_path)
        copy, _ = read_wav(copy_path)
        assert len(copy) == len(original) and _correlation(original, copy) > 0.9


def test_smaller_packs_leave_out_validation_streams_and_cap_the_recordings(
    streams_corpus: Path, recordings: Path, tmp_path: Path
) -> None:
    small = pack(
        streams_corpus,
        tmp_path / "p",
        progress=False,
        recordings=recordings,
        recordings_hours=1 / 3600,  # the one 0.8 s training recording fits
        continuous_splits=["train"],
    )
    assert (small["clips"], small["continuous"], small["recordings"]) == (3, 1, 1)
    unpack(tmp_path / "p", tmp_path / "c", recordings=tmp_path / "r", threads=2)
    assert [r["split"] for r in _read_csv(tmp_path / "c" / "continuous.csv")] == ["train"]
    with pytest.raises(ValueError, match="within"):  # a cap that nothing fits under
        pack(streams_corpus, tmp_path / "q", progress=False, recordings=recordings,
             recordings_hours=0.5 / 3600)  # fmt: skip


def test_cli_names_a_missing_recordings_folder(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["pack", str(corpus), str(tmp_path / "p"), "--recordings", str(tmp_path)]) == 2
    assert "lmukws data recordings" in capsys.readouterr().err


def test_a_stream_recipe_trains_from_an_unpacked_copy(stream_corpus: Path, tmp_path: Path) -> None:
    """The lent machine's path: pack here, unpack there, train with stream windows."""
    from models import load_checkpoint
    from training.recipe import Recipe
    from training.train import train

    pack(stream_corpus, tmp_path / "p", progress=False)
    unpack(tmp_path / "p", tmp_path / "copy", threads=2)
    recipe = Recipe.from_dict(
        {
            "model": "lmuformer",
            "model_config": {"dim": 16},
            "data": str(tmp_path / "copy"),
            "out": str(tmp_path / "run"),
            "batch_size": 8,
            "epochs": 1,
            "steps_per_epoch": 2,
            "threads": 1,
            "test_split": None,
            "stream_fraction": 0.5,
            "val_stream_items": 8,
        }
    )
    summary = train(recipe, progress=False)
    assert summary["history"][-1]["val_stream_items"] == 8
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["data"]["stream_windows"]["keyword_clips"] > 0


@pytest.mark.slow
def test_the_device_script_trains_side_by_side_and_leaves_what_may_come_back(
    stream_corpus: Path, tmp_path: Path
) -> None:
    """scripts/device-train.sh on the CPU: unpack, two runs at once, the last epochs and the
    logs in OUT; a run that fails (its init checkpoint did not travel) fails the script
    without losing the other's results."""
    import os
    import subprocess
    import sys
    import tarfile

    root = Path(__file__).resolve().parents[2]
    pack(stream_corpus, tmp_path / "p", progress=False)
    configs = []
    for name in ("a", "b"):
        config = tmp_path / f"{name}.json"
        config.write_text(
            json.dumps(
                {
                    "model": "lmuformer",
                    "model_config": {"dim": 16},
                    "data": "elsewhere",
                    "out": str(tmp_path / "runs" / name),
                    "batch_size": 8,
                    "epochs": 3,
                    "steps_per_epoch": 2,
                    "threads": 1,
                    "test_split": None,
                    "stream_fraction": 0.5,
                    "keep_epoch_checkpoints": True,
                }
            )
        )
        configs.append(str(config))
    configs[1] += f"={tmp_path / 'not-carried.safetensors'}"
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "OUT": str(out),
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "RECORDINGS": str(tmp_path / "recordings"),
        "WHEELS": "",
        "SETS": "max_val_items=20 lr=0.002",
    }
    done = subprocess.run(
        ["bash", "scripts/device-train.sh", str(tmp_path / "p"), str(tmp_path / "copy"), "600",
         *configs],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout + done.stderr
    assert (tmp_path / "copy" / "continuous.csv").is_file()
    # 7 checkpoint slots between two runs: the last 3 epochs of the run that trained
    assert sorted(p.name for p in (out / "a").iterdir()) == [
        "epoch-001.safetensors",
        "epoch-002.safetensors",
        "epoch-003.safetensors",
    ]
    assert not any((out / "b").iterdir())
    from models import load_checkpoint

    _, meta = load_checkpoint(out / "a" / "epoch-003.safetensors")
    recipe = meta["training"]["recipe"]
    assert (recipe["max_val_items"], recipe["lr"], recipe["data"]) == (
        20,
        0.002,
        str(tmp_path / "copy"),
    )
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
        log_b = tar.extractfile("logs/b.log").read().decode()  # type: ignore[union-attr]
    assert {"logs/a.log", "logs/a.history.json", "logs/b.log"} <= names
    assert "not-carried.safetensors" in log_b


def test_setting_the_tree_aside_removes_only_committed_files_and_restores_them(
    tmp_path: Path,
) -> None:
    """scripts/device-prepare.sh --set-aside / --restore in a scratch repository: the committed
    checkpoints and reports go and come back; local files stay; changed ones are refused."""
    import os
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(root / "scripts" / "device-prepare.sh", repo / "scripts")
    (repo / "models" / "checkpoints" / "reports" / "m").mkdir(parents=True)
    (repo / "reports" / "streams-x").mkdir(parents=True)
    (repo / "models" / "checkpoints" / "m.safetensors").write_bytes(b"w" * 3_000_000)
    (repo / "models" / "checkpoints" / "m.md").write_text("card\n")
    (repo / "models" / "checkpoints" / "reports" / "m" / "metrics.json").write_text("{}\n")
    (repo / "reports" / "streams-x" / "streams.json").write_text("{}\n")
    (repo / "code.py").write_text("x = 1\n")
    who = {f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER")
           for key, value in (("NAME", "t"), ("EMAIL", "t@t"))}  # fmt: skip
    env = {**os.environ, "PYTHON": sys.executable, **who}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=60)

    run("git", "init", "-q")
    run("git", "add", ".")
    assert run("git", "commit", "-q", "-m", "c").returncode == 0
    (repo / "reports" / "local-only.txt").write_text("not committed\n")
    before = run("bash", "scripts/device-prepare.sh", "--check")
    assert before.returncode == 0 and "working tree 2.9 MiB" in before.stdout, before.stdout
    aside = run("bash", "scripts/device-prepare.sh", "--set-aside")
    assert aside.returncode == 0 and "working tree 0.0 MiB" in aside.stdout, aside.stdout
    assert not (repo / "models" / "checkpoints" / "m.safetensors").exists()
    assert not (repo / "reports" / "streams-x" / "streams.json").exists()
    assert (repo / "models" / "checkpoints" / "m.md").is_file()  # the card is code's kin: kept
    assert (repo / "reports" / "local-only.txt").is_file()  # never committed: not touched
    assert run("bash", "scripts/device-prepare.sh", "--restore").returncode == 0
    assert (repo / "models" / "checkpoints" / "m.safetensors").stat().st_size == 3_000_000
    assert run("git", "status", "--short", "--untracked-files=no").stdout == ""
    # a changed report would be lost by --restore: refused, nothing removed
    (repo / "reports" / "streams-x" / "streams.json").write_text('{"new": 1}\n')
    refused = run("bash", "scripts/device-prepare.sh", "--set-aside")
    assert refused.returncode == 1 and "commit or drop" in refused.stderr
    assert (repo / "models" / "checkpoints" / "m.safetensors").is_file()
