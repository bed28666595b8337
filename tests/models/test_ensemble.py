"""Ensembles: the members' per-frame logits averaged, in the parallel form and frame by frame,
saved and loaded as one checkpoint, exported to ONNX like one model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from lmukws.cli import main
from models import load_checkpoint, read_metadata, save_checkpoint, weights_digest
from models.checkpoint import CheckpointError
from models.config import EnsembleConfig, ModelConfig, check_model_name
from models.ensemble import build_named, ensemble_models
from models.ensemble_checkpoint import write_ensemble
from models.onnx_step import OnnxStreamStep, onnxruntime_available
from tests.models.conftest import make_model, randomise_batchnorm
from tests.models.test_onnx_step import stream_clip as onnx_stream_clip
from tests.models.test_streaming import TOLERANCE, stream_clip

LABELS = ["yes", "no", "go", "_unknown_", "_silence_"]


def members() -> list:
    a = make_model("lmuformer", "tiny", seed=1)
    b = randomise_batchnorm(make_model("spiking-lmuformer", "tiny", seed=2), seed=2)
    return [a, b]


@torch.inference_mode()
def test_the_ensemble_averages_its_members_in_parallel_and_streaming() -> None:
    a, b = members()
    ensemble = ensemble_models([a, b], (0.7, 0.3))
    feats = torch.randn(2, 61, 128, generator=torch.Generator().manual_seed(5))
    expected = 0.7 * a.frame_logits(feats) + 0.3 * b.frame_logits(feats)
    assert torch.allclose(ensemble.frame_logits(feats), expected, atol=1e-6)
    assert torch.allclose(ensemble(feats), expected.mean(dim=1), atol=1e-6)
    for chunk in (1, 4, 13):
        assert (stream_clip(ensemble, feats, chunk) - expected).abs().max().item() <= TOLERANCE
    assert ensemble.lookahead_frames == a.lookahead_frames
    assert ensemble.config.name == "lmuformer+spiking-lmuformer"
    # the members' weights were copied: changing a member leaves the ensemble as it is
    a.network[-1][-1].weight.data.zero_()
    assert torch.allclose(ensemble.frame_logits(feats), expected, atol=1e-6)


def test_the_config_refuses_what_cannot_be_averaged() -> None:
    lmu, spiking = ModelConfig("lmuformer", dim=16), ModelConfig("spiking-lmuformer", dim=16)
    with pytest.raises(ValueError, match="at least two members"):
        EnsembleConfig((lmu,), (1.0,))
    with pytest.raises(ValueError, match="sum to 1"):
        EnsembleConfig((lmu, spiking), (0.7, 0.7))
    with pytest.raises(ValueError, match="one per member"):
        EnsembleConfig((lmu, spiking), (1.0,))
    with pytest.raises(ValueError, match="no streaming form"):
        EnsembleConfig((lmu, ModelConfig("spiking-attention", dim=16, num_heads=4)), (0.5, 0.5))
    with pytest.raises(ValueError, match="differ in num_classes"):
        EnsembleConfig((lmu, ModelConfig("spiking-lmuformer", dim=16, num_classes=5)), (0.5, 0.5))
    config = EnsembleConfig((lmu, spiking), (0.25, 0.75))
    assert EnsembleConfig.from_dict(config.to_dict()) == config


def test_an_ensemble_is_named_by_its_members() -> None:
    """``lmuformer+spiking-lmuformer`` builds both members, equally weighted, at the given
    sizes (the benchmarks' ensembles); names that cannot be averaged are refused, saying why."""
    ensemble = build_named("lmuformer+spiking-lmuformer", dim=16, num_classes=5)
    assert ensemble.config.name == "lmuformer+spiking-lmuformer"
    assert ensemble.config.weights == (0.5, 0.5)
    assert [m.dim for m in ensemble.config.members] == [16, 16]
    single = {
        name: build_named(name, dim=16, num_classes=5)
        for name in ("lmuformer", "spiking-lmuformer")
    }
    count = sum(p.numel() for p in ensemble.parameters())
    assert count == sum(p.numel() for m in single.values() for p in m.parameters())
    assert check_model_name("spiking-lmu+lmuformer") == "spiking-lmu+lmuformer"
    with pytest.raises(ValueError, match="not streaming models"):
        check_model_name("lmuformer+spiking-attention")
    with pytest.raises(ValueError, match="not streaming models"):
        check_model_name("lmuformer+")
    with pytest.raises(ValueError, match="unknown model name 'lmu'"):
        build_named("lmu")


@torch.inference_mode()
def test_an_ensemble_checkpoint_round_trips(tmp_path: Path) -> None:
    a, b = members()
    paths = []
    for name, model in (("a", a), ("b", b)):
        detector = {"smoothing_frames": 5, "posterior": "softmax", "thresholds": {"yes": 0.9}}
        if name == "b":
            detector["smoothing_frames"] = 7
        path = tmp_path / f"{name}.safetensors"
        save_checkpoint(
            path,
            model,
            {"labels": LABELS, "features": {"sample_rate": 16000}, "detector": detector,
             "metrics": {"test": {"accuracy": 0.5}}},
        )  # fmt: skip
        paths.append(path)
    out = tmp_path / "ensemble.safetensors"
    ensemble, _ = write_ensemble(paths, (3.0, 1.0), out)  # weights normalised
    assert ensemble.config.weights == (0.75, 0.25)
    loaded, stored = load_checkpoint(out)
    feats = torch.randn(1, 40, 128, generator=torch.Generator().manual_seed(6))
    expected = 0.75 * a.frame_logits(feats) + 0.25 * b.frame_logits(feats)
    assert torch.allclose(loaded.frame_logits(feats), expected, atol=1e-6)
    assert stored["labels"] == LABELS and stored["model"]["weights"] == [0.75, 0.25]
    # the settings both members share, never their thresholds: the ensemble's scores are new
    assert stored["detector"] == {"posterior": "softmax"}
    member = stored["ensemble"]["members"][0]
    assert member["model"] == "lmuformer" and member["weight"] == 0.75
    assert member["test_accuracy"] == 0.5 and len(member["sha256"]) == 64
    # the member's weights are named by their own digest, which a recalibration (new metadata,
    # the same tensors) keeps while the file's hash changes; another tensor changes it
    assert member["weights_sha256"] == weights_digest(load_checkpoint(paths[0])[0])
    recalibrated = tmp_path / "recalibrated.safetensors"
    save_checkpoint(recalibrated, a, {"labels": LABELS, "detector": {"thresholds": {"yes": 0.3}}})
    assert weights_digest(load_checkpoint(recalibrated)[0]) == member["weights_sha256"]
    assert hashlib.sha256(recalibrated.read_bytes()).hexdigest() != member["sha256"]
    with torch.no_grad():
        next(a.parameters()).add_(1e-3)
    assert weights_digest(a) != member["weights_sha256"]
    # members that read other features or score other labels are refused
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, b, {"labels": LABELS[::-1], "features": {"sample_rate": 16000}})
    with pytest.raises(CheckpointError, match="labels differ"):
        write_ensemble([paths[0], other], None, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="2 weights for 3 checkpoints"):
        write_ensemble([*paths, paths[0]], (1.0, 1.0), tmp_path / "x.safetensors")
    # the command
    cli_out = tmp_path / "cli.safetensors"
    assert main(["ensemble", *map(str, paths), "--weights", "1,1", "--out", str(cli_out)]) == 0
    assert read_metadata(cli_out)["model"]["weights"] == [0.5, 0.5]
    assert main(["ensemble", str(paths[0]), str(other), "--out", str(cli_out)]) == 2


@pytest.mark.skipif(not onnxruntime_available(), reason="ONNX Runtime is not installed")
@torch.inference_mode()
def test_the_ensemble_exports_to_onnx_like_one_model(tmp_path: Path) -> None:
    """Two LMUFormers (a spiking member's export, a graph per frame count, is the single
    model's: tests/models/test_onnx_step.py): one graph for any frame count."""
    a, b = make_model("lmuformer", "tiny", seed=1), make_model("lmuformer", "tiny", seed=2)
    ensemble = ensemble_models([a, b], (0.6, 0.4))
    step = OnnxStreamStep(ensemble, threads=1, cache_dir=tmp_path)
    assert list(step.graphs) == [None]
    feats = torch.randn(2, 30, 128, generator=torch.Generator().manual_seed(7))
    streamed = onnx_stream_clip(step, feats, 2)
    assert (streamed - ensemble.frame_logits(feats)).abs().max().item() <= TOLERANCE
