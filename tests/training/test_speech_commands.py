"""Speech Commands V2 preparation on a fake tree in the official layout (no network)."""

from __future__ import annotations

import csv
import json
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lmukws.cli import main
from training.labels import SPEECH_COMMANDS_LABELS
from training.speech_commands import (
    ARCHIVE_NAME,
    URL_ENV,
    SpeechCommandsError,
    prepare_speech_commands,
    speaker_of,
)

SPEAKERS = {"train": "0a1b2c3d", "validation": "1f2e3d4c", "test": "99aa88bb"}
EXTRA_TRAIN_SPEAKER = "deadbeef"


def make_tree(root: Path, words: tuple[str, ...] = SPEECH_COMMANDS_LABELS) -> Path:
    """A tiny Speech Commands V2 tree: 4 clips per word, one speaker per split (+1 in train)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    for word in words:
        (root / word).mkdir()
        speakers = [*SPEAKERS.items(), ("train", EXTRA_TRAIN_SPEAKER)]
        for split, speaker in speakers:
            name = f"{speaker}_nohash_0.wav"
            audio = (rng.standard_normal(1600) * 0.05).astype(np.float32)
            sf.write(root / word / name, audio, 16000, subtype="PCM_16")
            if split in lists:
                lists[split].append(f"{word}/{name}")
    noise = root / "_background_noise_"
    noise.mkdir()
    sf.write(noise / "white_noise.wav", np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    (noise / "README.md").write_text("noise\n")
    (root / "validation_list.txt").write_text("\n".join(lists["validation"]) + "\n")
    (root / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    (root / "LICENSE").write_text("CC-BY-4.0\n")
    return root


def make_tarball(tree: Path, archive: Path) -> Path:
    """Pack ``tree`` like the official archive: members at the top level (``./backward/...``)."""
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(tree.iterdir()):
            tar.add(item, arcname=f"./{item.name}")
    return archive


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["path", "label", "split", "voice", "engine", "text"]
        return list(reader)


def check_manifest(manifest: Path) -> list[dict[str, str]]:
    rows = read_manifest(manifest)
    assert len(rows) == 4 * len(SPEECH_COMMANDS_LABELS)
    assert {r["label"] for r in rows} == set(SPEECH_COMMANDS_LABELS)
    assert all(r["engine"] == "speech-commands" and r["text"] == r["label"] for r in rows)
    for row in rows:
        assert (manifest.parent / row["path"]).is_file()
        assert row["voice"] == Path(row["path"]).name.split("_nohash_")[0]
        expected = "train" if row["voice"] == EXTRA_TRAIN_SPEAKER else None
        expected = expected or next(s for s, v in SPEAKERS.items() if v == row["voice"])
        assert row["split"] == expected
    # no voice in two splits
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row["voice"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert not any("_background_noise_" in r["path"] for r in rows)
    corpus = json.loads((manifest.parent / "corpus.json").read_text())
    assert corpus["labels"] == list(SPEECH_COMMANDS_LABELS)
    assert corpus["sample_rate"] == 16000
    assert corpus["counts"] == {"train": 70, "validation": 35, "test": 35}
    assert corpus["ignored_folders"] == ["_background_noise_"]
    return rows


def closed_port_url() -> str:
    """A localhost URL on a port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{ARCHIVE_NAME}"


def test_labels_are_the_papers_order() -> None:
    assert len(SPEECH_COMMANDS_LABELS) == 35 == len(set(SPEECH_COMMANDS_LABELS))
    assert SPEECH_COMMANDS_LABELS[0] == "backward" and SPEECH_COMMANDS_LABELS[-1] == "one"


def test_speaker_of() -> None:
    assert speaker_of("0a7c2a8d_nohash_1.wav") == "0a7c2a8d"
    assert speaker_of("yes/0a7c2a8d_nohash_12.wav") == "0a7c2a8d"


def test_extracted_folder(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "sc")
    manifest = prepare_speech_commands(tree)
    assert manifest == tree / "manifest.csv"
    rows = check_manifest(manifest)
    assert rows[0]["path"].startswith("backward/")


def test_separate_out_dir_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_tree(tmp_path / "sc")
    out = tmp_path / "prepared"
    assert main(["data", "speech-commands", "--root", str(tree), "--out", str(out)]) == 0
    check_manifest(out / "manifest.csv")
    assert "140 clips" in capsys.readouterr().out


def test_tarball(tmp_path: Path) -> None:
    archive = make_tarball(make_tree(tmp_path / "src"), tmp_path / ARCHIVE_NAME)
    out = tmp_path / "extracted"
    manifest = prepare_speech_commands(archive, out=out)
    assert manifest == out / "manifest.csv"
    check_manifest(manifest)
    # default target: next to the archive, named after it; a second run reuses the extraction
    manifest = prepare_speech_commands(archive)
    assert manifest == tmp_path / "speech_commands_v0.02" / "manifest.csv"
    check_manifest(manifest)


def test_folder_holding_the_archive(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    make_tarball(make_tree(tmp_path / "src"), root / ARCHIVE_NAME)
    check_manifest(prepare_speech_commands(root))


def test_download_from_a_local_url(tmp_path: Path) -> None:
    archive = make_tarball(make_tree(tmp_path / "src"), tmp_path / "mirror.tar.gz")
    root = tmp_path / "download"
    manifest = prepare_speech_commands(root, download=True, url=archive.as_uri())
    check_manifest(manifest)
    assert (root / ARCHIVE_NAME).is_file()
    assert json.loads((root / "corpus.json").read_text())["url"] == archive.as_uri()


def test_download_offline_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "download"
    args = ["data", "speech-commands", "--root", str(root), "--download"]
    assert main([*args, "--url", closed_port_url()]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and "offline" in err and "Traceback" not in err
    assert not list(root.glob("*.part"))
    monkeypatch.setenv(URL_ENV, closed_port_url())
    assert main(args) == 2
    assert "127.0.0.1" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "speech-commands", "--root", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "speech-commands", "--root", str(empty)]) == 2
    assert "--download" in capsys.readouterr().err
    partial = make_tree(tmp_path / "partial", words=SPEECH_COMMANDS_LABELS[:5])
    with pytest.raises(SpeechCommandsError, match="lacks the word folders"):
        prepare_speech_commands(partial)


def test_cli_survives_a_broken_optional_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    import training.cli

    real = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name == "training.synth":
            raise ImportError("boom")
        if name == "training.train":
            raise ModuleNotFoundError("no module", name="training.train")
        return real(name, *args)

    monkeypatch.setattr(training.cli.importlib, "import_module", fake)
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    captured = capsys.readouterr()
    assert "speech-commands" in captured.out and "synth" not in captured.out.split("speech")[1]
    assert "training.synth is unavailable (ImportError: boom)" in captured.err
    assert "training.train" not in captured.err


def test_prepared_tree_feeds_dataset_and_evaluate(tmp_path: Path) -> None:
    """The manifest is what ManifestDataset and ``lmukws evaluate`` read (paper's clip mode)."""
    import torch

    from models import build_model, save_checkpoint
    from training.dataset import ManifestDataset

    tree = make_tree(tmp_path / "sc")
    prepare_speech_commands(tree)
    dataset = ManifestDataset(tree, "test", labels=SPEECH_COMMANDS_LABELS)
    assert dataset.mode == "clip" and len(dataset) == 35
    feats, labels = dataset.batch([0, 34])
    assert feats.shape == (2, 128, 128) and labels.tolist() == [0, 34]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        checkpoint = tmp_path / "tiny.safetensors"
        save_checkpoint(
            checkpoint, build_model("lmuformer", dim=16), {"labels": list(SPEECH_COMMANDS_LABELS)}
        )
        out = tmp_path / "report"
        args = ["evaluate", str(checkpoint), "--data", str(tree), "--out", str(out)]
        assert main([*args, "--split", "validation"]) == 0
    finally:
        torch.set_num_threads(before)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_clips"] == 35 and metrics["split"] == "validation"
    assert metrics["data"]["corpus"]["source"] == "speech-commands-v0.02"
