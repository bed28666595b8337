"""Checkpoints: one safetensors file with JSON metadata; clear errors; nothing unpickled."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from tests.models.conftest import make_model


def test_round_trip_keeps_weights_config_and_metadata(model_name: str, tmp_path: Path) -> None:
    model = make_model(model_name, "tiny", causal=True)
    labels = ["yes", "no", "up", "down", "_unknown_"]
    path = save_checkpoint(
        tmp_path / "m.safetensors", model, {"labels": labels, "metrics": {"acc": 0.5}}
    )
    loaded, meta = load_checkpoint(path)
    assert meta["labels"] == labels
    assert meta["metrics"] == {"acc": 0.5}
    assert meta["model"]["name"] == model_name
    assert loaded.config == model.config
    assert not loaded.training
    feats = torch.randn(1, 20, 128)
    with torch.inference_mode():
        assert torch.equal(loaded.frame_logits(feats), model.frame_logits(feats))


def test_file_is_plain_safetensors_with_json_header(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "m.safetensors", make_model("lmuformer", "tiny"), {"labels": None}
    )
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + header_len])
    assert json.loads(header["__metadata__"]["lmukws"])["model"]["dim"] == 16
    assert read_metadata(path)["format_version"] == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", make_model("lmuformer", "tiny"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.safetensors"):
        load_checkpoint(path)


def test_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    torch.save(make_model("lmuformer", "tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_foreign_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not an lmukws checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", make_model("lmuformer", "tiny"))
    meta = read_metadata(path)
    meta["model"]["dim"] = 32
    tensors = {k: v.contiguous() for k, v in make_model("lmuformer", "tiny").state_dict().items()}
    save_file(tensors, str(path), metadata={"lmukws": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=r"weights do not match lmuformer: .*wrong shape"):
        load_checkpoint(path)


def test_labels_must_match_the_head(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="2 labels but the model has 5 classes"):
        save_checkpoint(
            tmp_path / "m.safetensors", make_model("lmuformer", "tiny"), {"labels": ["a", "b"]}
        )
