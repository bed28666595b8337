"""Converting the authors' released state dicts (their exact key names, built here by hand)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lmukws.cli import main
from models import load_checkpoint
from models.convert import PAPER_LABELS, ConversionError, convert_checkpoint, key_map
from models.lmu import impulse_response, legendre_discrete

PAPER_PARAMS = {"lmuformer": 1_621_796, "spiking-lmuformer": 1_689_894}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensor work is fastest on one thread on the shared CI cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bn(sd: dict[str, torch.Tensor], prefix: str, n: int, g: torch.Generator) -> None:
    sd[f"{prefix}.weight"] = torch.rand(n, generator=g) + 0.5
    sd[f"{prefix}.bias"] = torch.randn(n, generator=g)
    sd[f"{prefix}.running_mean"] = torch.randn(n, generator=g)
    sd[f"{prefix}.running_var"] = torch.rand(n, generator=g) + 0.5
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1234)


def _lmu(sd: dict[str, torch.Tensor], p: str, dim: int, memory: int, g: torch.Generator) -> None:
    sd[f"{p}.W_u.weight"] = torch.randn(1, dim, generator=g)
    sd[f"{p}.W_u.bias"] = torch.randn(1, generator=g)
    sd[f"{p}.W_h.weight"] = torch.randn(dim, memory + dim, generator=g)
    sd[f"{p}.W_h.bias"] = torch.randn(dim, generator=g)
    a, b = legendre_discrete(memory, 128.0)
    sd[f"{p}.A"], sd[f"{p}.B"] = a.float(), b.float()  # buffers, recomputed by us
    sd[f"{p}.H"] = impulse_response(a, b, 128).float()
    sd[f"{p}.fft_H"] = torch.fft.rfft(sd[f"{p}.H"], n=256, dim=-1)


def authors_state_dict(
    model: str, dim: int = 256, classes: int = 35, depth: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The authors' key names and shapes (src/lmu_rnn.py, src/blocks/*.py), random values,
    saved from nn.DataParallel (``module.`` prefix)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    hidden = 4 * dim
    if model == "lmuformer":  # lmu_rnn_conv1d: Tokenizer, LMU, ConvFFN
        for i, cin in enumerate((128, dim, dim, dim)):
            sd[f"patch_embed.conv_layers.{i}.0.weight"] = torch.randn(dim, cin, 3, generator=g)
            _bn(sd, f"patch_embed.conv_layers.{i}.3", dim, g)
        sd["patch_embed.rpe_conv.weight"] = torch.randn(dim, dim, 3, generator=g)
        for j in range(depth):
            _lmu(sd, f"block.{j}.attn.lmu", dim, dim, g)
            sd[f"block.{j}.attn.proj_conv.weight"] = torch.randn(dim, dim, 1, generator=g)
            sd[f"block.{j}.attn.proj_conv.bias"] = torch.randn(dim, generator=g)
            _bn(sd, f"block.{j}.attn.proj_bn", dim, g)
            sd[f"block.{j}.mlp.fc1_conv.weight"] = torch.randn(hidden, dim, 1, generator=g)
            sd[f"block.{j}.mlp.fc1_conv.bias"] = torch.randn(hidden, generator=g)
            _bn(sd, f"block.{j}.mlp.fc1_bn", hidden, g)
            sd[f"block.{j}.mlp.fc2_conv.weight"] = torch.randn(dim, hidden, 1, generator=g)
            sd[f"block.{j}.mlp.fc2_conv.bias"] = torch.randn(dim, generator=g)
            _bn(sd, f"block.{j}.mlp.fc2_bn", dim, g)
    else:  # slmu_rnn_ms_conv1d: Conv1d4EBMs, SLMUMs, ConvFFNMs, head_bn
        sd["patch_embed.proj_conv.weight"] = torch.randn(dim, 128, 3, generator=g)
        _bn(sd, "patch_embed.proj_bn", dim, g)
        for i in (1, 2, 3):
            sd[f"patch_embed.proj_conv{i}.weight"] = torch.randn(dim, dim, 3, generator=g)
            _bn(sd, f"patch_embed.proj_bn{i}", dim, g)
        sd["patch_embed.rpe_conv.weight"] = torch.randn(dim, dim, 3, generator=g)
        for j in range(depth):
            _bn(sd, f"block.{j}.attn.prev_bn", dim, g)
            _lmu(sd, f"block.{j}.attn.lmu", dim, 2 * dim, g)
            _bn(sd, f"block.{j}.attn.lmu.bn_u", 1, g)
            _bn(sd, f"block.{j}.attn.lmu.bn_m", 2 * dim, g)
            _bn(sd, f"block.{j}.attn.lmu.bn_h", dim, g)
            sd[f"block.{j}.attn.proj_conv.weight"] = torch.randn(dim, dim, 1, generator=g)
            sd[f"block.{j}.attn.proj_conv.bias"] = torch.randn(dim, generator=g)
            _bn(sd, f"block.{j}.attn.proj_bn", dim, g)
            _bn(sd, f"block.{j}.mlp.fc1_bn", dim, g)
            sd[f"block.{j}.mlp.fc1_conv.weight"] = torch.randn(hidden, dim, 1, generator=g)
            sd[f"block.{j}.mlp.fc1_conv.bias"] = torch.randn(hidden, generator=g)
            _bn(sd, f"block.{j}.mlp.fc2_bn", hidden, g)
            sd[f"block.{j}.mlp.fc2_conv.weight"] = torch.randn(dim, hidden, 1, generator=g)
            sd[f"block.{j}.mlp.fc2_conv.bias"] = torch.randn(dim, generator=g)
        _bn(sd, "head_bn", dim, g)
    sd["head.weight"] = torch.randn(classes, dim, generator=g)
    sd["head.bias"] = torch.randn(classes, generator=g)
    return {f"module.{k}": v for k, v in sd.items()}


def save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("model", ["lmuformer", "spiking-lmuformer"])
def test_paper_sized_conversion(model: str, tmp_path: Path) -> None:
    theirs = authors_state_dict(model)
    src = save(theirs, tmp_path / f"{model}_authors.pth")
    dst = tmp_path / f"{model}.safetensors"
    assert main(["convert-checkpoint", str(src), str(dst), "--model", model]) == 0
    net, meta = load_checkpoint(dst)
    assert sum(p.numel() for p in net.parameters()) == PAPER_PARAMS[model]
    ours = net.state_dict()
    mapping = key_map(model)
    assert set(mapping.values()) == set(ours)
    stripped = {k.removeprefix("module."): v for k, v in theirs.items()}
    for their_key, our_key in mapping.items():
        assert torch.equal(ours[our_key], stripped[their_key]), their_key
    # the mapping's meaning, spelled out for the layers whose names differ most
    pairs = {
        "lmuformer": [
            ("patch_embed.conv_layers.0.0.weight", "network.embed.conv0.weight"),
            ("patch_embed.conv_layers.3.3.running_var", "network.embed.bn3.running_var"),
            ("patch_embed.rpe_conv.weight", "network.embed.rpe.branch.conv.weight"),
            ("head.weight", "network.head.linear.weight"),
        ],
        "spiking-lmuformer": [
            ("patch_embed.proj_conv.weight", "network.embed.conv0.weight"),
            ("patch_embed.proj_conv3.weight", "network.embed.conv3.weight"),
            ("patch_embed.proj_bn3.weight", "network.embed.rpe.branch.bn.weight"),
            ("head_bn.running_mean", "network.head.bn.running_mean"),
        ],
    }[model]
    pairs.append(
        ("block.0.attn.lmu.W_h.weight", "network.blocks.block0.mixer.branch.lmu.cell.W_h.weight")
    )
    for their_key, our_key in pairs:
        assert torch.equal(ours[our_key], stripped[their_key])
    assert meta["labels"] == list(PAPER_LABELS)
    assert meta["features"]["num_mel_bins"] == 128
    assert meta["provenance"] == f"converted from {src.name}"
    assert meta["training"]["authors_model"] in ("lmu_rnn_conv1d", "slmu_rnn_ms_conv1d")
    assert any("fft_H" in note for note in meta["training"]["conversion_notes"])
    with torch.inference_mode():
        assert net(torch.randn(1, 16, 128)).shape == (1, 35)


def test_paper_labels_match_training_labels() -> None:
    from training.labels import SPEECH_COMMANDS_LABELS

    assert tuple(PAPER_LABELS) == tuple(SPEECH_COMMANDS_LABELS)


def test_tiny_model_with_labels(tmp_path: Path) -> None:
    src = save(
        authors_state_dict("spiking-lmuformer", dim=16, classes=4, depth=2), tmp_path / "t.pth"
    )
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\nc\nd\n")
    net, meta = convert_checkpoint(
        src, tmp_path / "t.safetensors", "spiking-lmuformer", str(labels_file)
    )
    assert (net.config.dim, net.config.depth, net.num_classes) == (16, 2, 4)
    assert net.config.resolved_memory_size == 32
    assert meta["labels"] == ["a", "b", "c", "d"]
    _, meta = convert_checkpoint(src, tmp_path / "u.safetensors", "spiking-lmuformer", "w,x,y,z")
    assert meta["labels"] == ["w", "x", "y", "z"]
    with pytest.raises(ConversionError, match="--labels"):
        convert_checkpoint(src, tmp_path / "v.safetensors", "spiking-lmuformer")  # 4 != 35
    with pytest.raises(ConversionError, match="3 labels"):
        convert_checkpoint(src, tmp_path / "v.safetensors", "spiking-lmuformer", "a,b,c")


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = authors_state_dict("lmuformer", dim=16, classes=35)
    src = save(good, tmp_path / "good.pth")
    out = tmp_path / "out.safetensors"
    with pytest.raises(ConversionError, match="unknown model"):
        convert_checkpoint(src, out, "transformer")
    with pytest.raises(SystemExit):
        main(["convert-checkpoint", str(src), str(out), "--model", "transformer"])
    capsys.readouterr()
    # the wrong one of the two models: the message names the right flag
    assert main(["convert-checkpoint", str(src), str(out), "--model", "spiking-lmuformer"]) == 2
    err = capsys.readouterr().err
    assert "lmu_rnn_conv1d" in err and "--model lmuformer" in err and "Traceback" not in err
    assert not out.exists()

    bad = dict(good)
    bad["module.head.bias"] = torch.zeros(7)
    with pytest.raises(ConversionError, match=r"wrong shapes: head\.bias \(7,\)"):
        convert_checkpoint(save(bad, tmp_path / "bad.pth"), out, "lmuformer")
    bad = dict(good)
    bad["module.patch_embed.rpe_conv.weight"] = torch.zeros(16, 16, 5)
    with pytest.raises(ConversionError, match="rpe_conv"):
        convert_checkpoint(save(bad, tmp_path / "bad.pth"), out, "lmuformer")
    bad = {k: v for k, v in good.items() if "fc2_bn.weight" not in k}
    with pytest.raises(ConversionError, match=r"missing \['block\.0\.mlp\.fc2_bn\.weight'\]"):
        convert_checkpoint(save(bad, tmp_path / "bad.pth"), out, "lmuformer")
    bad = {**good, "module.block.0.attn.extra.weight": torch.zeros(3)}
    with pytest.raises(ConversionError, match="unexpected"):
        convert_checkpoint(save(bad, tmp_path / "bad.pth"), out, "lmuformer")
    bad = {**good, "module.block.0.attn.lmu.A": good["module.block.0.attn.lmu.A"] * 1.5}
    with pytest.raises(ConversionError, match="theta"):
        convert_checkpoint(save(bad, tmp_path / "bad.pth"), out, "lmuformer")
    # not weights-only: refused, never unpickled
    torch.save({"args": argparse.Namespace(x=1), **good}, tmp_path / "pickled.pth")
    with pytest.raises(ConversionError, match="weights-only"):
        convert_checkpoint(tmp_path / "pickled.pth", out, "lmuformer")
    with pytest.raises(ConversionError, match="not found"):
        convert_checkpoint(tmp_path / "nope.pth", out, "lmuformer")
    assert not out.exists()
