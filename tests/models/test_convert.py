"""Converting the authors' released state dicts (their exact key names, built here by hand)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lmukws.cli import main
from models import MODEL_NAMES, load_checkpoint
from models.convert import (
    AUTHORS_MODELS,
    PAPER_LABELS,
    ConversionError,
    convert_checkpoint,
    key_map,
)
from models.lmu import impulse_response, legendre_discrete
from tests.models.test_streaming import authors_parameter_count

#: buffers of the authors' state dicts (everything else is a parameter)
BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "A", "B", "H", "fft_H")


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


def _conv(
    sd: dict[str, torch.Tensor],
    p: str,
    c_out: int,
    c_in: int,
    k: int,
    g: torch.Generator,
    bias: bool,
) -> None:
    sd[f"{p}.weight"] = torch.randn(c_out, c_in, k, generator=g)
    if bias:
        sd[f"{p}.bias"] = torch.randn(c_out, generator=g)


def _lmu(
    sd: dict[str, torch.Tensor], p: str, dim: int, memory: int, g: torch.Generator, spiking: bool
) -> None:
    """``LMUFFTCell`` (``SpikingLMUFFTCell`` adds bn_u, bn_m, bn_h)."""
    sd[f"{p}.W_u.weight"] = torch.randn(1, dim, generator=g)
    sd[f"{p}.W_u.bias"] = torch.randn(1, generator=g)
    sd[f"{p}.W_h.weight"] = torch.randn(dim, memory + dim, generator=g)
    sd[f"{p}.W_h.bias"] = torch.randn(dim, generator=g)
    a, b = legendre_discrete(memory, 128.0)
    sd[f"{p}.A"], sd[f"{p}.B"] = a.float(), b.float()  # buffers, recomputed by us
    sd[f"{p}.H"] = impulse_response(a, b, 128).float()
    sd[f"{p}.fft_H"] = torch.fft.rfft(sd[f"{p}.H"], n=256, dim=-1)
    if spiking:
        for name, n in (("bn_u", 1), ("bn_m", memory), ("bn_h", dim)):
            _bn(sd, f"{p}.{name}", n, g)


def authors_state_dict(
    model: str, dim: int = 256, classes: int = 35, depth: int = 1, seed: int = 0
) -> dict[str, torch.Tensor]:
    """The authors' key names and shapes (src/lmu_rnn.py, src/blocks/*.py), random values,
    saved from nn.DataParallel (``module.`` prefix). lmu_rnn_conv1d: Tokenizer, LMU, ConvFFN;
    slmu_rnn_ms_conv1d: Conv1d4EBMs, SLMUMs, ConvFFNMs, head_bn; slmu_rnn_conv1d: Conv1d4EB,
    SLMU, ConvFFN; attn_ms_conv1d: Conv1d4EBMs, SSA, ConvFFNMs, head_bn."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    hidden = 4 * dim
    spiking = model != "lmuformer"
    shortcut = model in ("spiking-lmuformer", "spiking-attention")  # the *Ms modules
    for i, c_in in enumerate((128, dim, dim, dim)):
        if spiking:  # Conv1d4EBMs / Conv1d4EB
            suffix = str(i) if i else ""
            _conv(sd, f"patch_embed.proj_conv{suffix}", dim, c_in, 3, g, bias=False)
            _bn(sd, f"patch_embed.proj_bn{suffix}", dim, g)
        else:  # Tokenizer
            _conv(sd, f"patch_embed.conv_layers.{i}.0", dim, c_in, 3, g, bias=False)
            _bn(sd, f"patch_embed.conv_layers.{i}.3", dim, g)
    _conv(sd, "patch_embed.rpe_conv", dim, dim, 3, g, bias=False)
    if spiking and not shortcut:
        _bn(sd, "patch_embed.rpe_bn", dim, g)
    for j in range(depth):
        if model == "spiking-attention":  # SSA: pre_bn, bias-free q/k/v convs, their BNs
            _bn(sd, f"block.{j}.attn.pre_bn", dim, g)
            for name in "qkv":
                _conv(sd, f"block.{j}.attn.{name}_conv", dim, dim, 1, g, bias=False)
                _bn(sd, f"block.{j}.attn.{name}_bn", dim, g)
        else:
            if shortcut:
                _bn(sd, f"block.{j}.attn.prev_bn", dim, g)
            _lmu(sd, f"block.{j}.attn.lmu", dim, 2 * dim if spiking else dim, g, spiking)
        _conv(sd, f"block.{j}.attn.proj_conv", dim, dim, 1, g, bias=True)
        _bn(sd, f"block.{j}.attn.proj_bn", dim, g)
        for name, c_in, c_out in (("fc1", dim, hidden), ("fc2", hidden, dim)):
            _conv(sd, f"block.{j}.mlp.{name}_conv", c_out, c_in, 1, g, bias=True)
            # ConvFFNMs normalises the conv's input, ConvFFN its output
            _bn(sd, f"block.{j}.mlp.{name}_bn", c_in if shortcut else c_out, g)
    if shortcut:
        _bn(sd, "head_bn", dim, g)
    sd["head.weight"] = torch.randn(classes, dim, generator=g)
    sd["head.bias"] = torch.randn(classes, generator=g)
    return {f"module.{k}": v for k, v in sd.items()}


def save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_paper_sized_conversion(model: str, tmp_path: Path) -> None:
    theirs = authors_state_dict(model)
    # their parameters (not buffers) add up to the count from their module definitions
    params = sum(v.numel() for k, v in theirs.items() if k.rpartition(".")[2] not in BUFFERS)
    assert params == authors_parameter_count(model)
    src = save(theirs, tmp_path / f"{model}_authors.pth")
    dst = tmp_path / f"{model}.safetensors"
    assert main(["convert-checkpoint", str(src), str(dst), "--model", model]) == 0
    net, meta = load_checkpoint(dst)
    assert sum(p.numel() for p in net.parameters()) == params
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
        "spiking-lmu": [
            ("patch_embed.proj_conv.weight", "network.embed.conv0.weight"),
            ("patch_embed.proj_bn3.weight", "network.embed.bn3.weight"),
            ("patch_embed.rpe_conv.weight", "network.embed.rpe.branch.conv.weight"),
            ("patch_embed.rpe_bn.running_var", "network.embed.rpe.branch.bn.running_var"),
            ("block.0.mlp.fc1_bn.weight", "network.blocks.block0.ffn.branch.fc1_bn.weight"),
            ("head.weight", "network.head.linear.weight"),
        ],
        "spiking-attention": [
            ("patch_embed.proj_bn3.weight", "network.embed.rpe.branch.bn.weight"),
            (
                "block.0.attn.pre_bn.running_var",
                "network.blocks.block0.mixer.branch.attn.pre_bn.running_var",
            ),
            ("block.0.attn.k_conv.weight", "network.blocks.block0.mixer.branch.attn.k_conv.weight"),
            (
                "block.0.attn.proj_conv.bias",
                "network.blocks.block0.mixer.branch.attn.proj_conv.bias",
            ),
            ("head_bn.running_mean", "network.head.bn.running_mean"),
        ],
    }[model]
    if model != "spiking-attention":
        pairs.append(
            (
                "block.0.attn.lmu.W_h.weight",
                "network.blocks.block0.mixer.branch.lmu.cell.W_h.weight",
            )
        )
    for their_key, our_key in pairs:
        assert torch.equal(ours[our_key], stripped[their_key])
    assert meta["labels"] == list(PAPER_LABELS)
    assert meta["features"]["num_mel_bins"] == 128
    assert meta["provenance"] == f"converted from {src.name}"
    assert meta["training"]["authors_model"] == AUTHORS_MODELS[model]
    notes = meta["training"]["conversion_notes"]
    assert any("fft_H" in note for note in notes) == (model != "spiking-attention")
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


def assert_told_apart(a: str, b: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A file of model ``a`` given as ``b``, and one of ``b`` given as ``a``, are refused with
    the right flag and write nothing; returns the output path they did not write."""
    out = tmp_path / "out.safetensors"
    for theirs, wrong in ((a, b), (b, a)):
        src = save(authors_state_dict(theirs, dim=16), tmp_path / f"{theirs}.pth")
        assert main(["convert-checkpoint", str(src), str(out), "--model", wrong]) == 2
        err = capsys.readouterr().err
        assert AUTHORS_MODELS[theirs] in err and err.rstrip().endswith(f"use --model {theirs}")
        assert "Traceback" not in err and not out.exists()
    return out


def test_the_two_spiking_models_are_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """slmu_rnn_conv1d (rpe_bn, no head_bn) and slmu_rnn_ms_conv1d share most names: a file of
    one given as the other is refused with the right flag; a tiny spiking-lmu converts with
    its sizes read from the tensors."""
    out = assert_told_apart("spiking-lmu", "spiking-lmuformer", tmp_path, capsys)
    src = save(authors_state_dict("spiking-lmu", dim=16, classes=3, depth=2), tmp_path / "t.pth")
    net, meta = convert_checkpoint(src, out, "spiking-lmu", "a,b,c")
    config = net.config
    assert (config.name, config.dim, config.depth, net.num_classes) == ("spiking-lmu", 16, 2, 3)
    assert net.config.resolved_memory_size == 32 and net.lookahead_frames == 5
    assert meta["training"]["paper_reported_test_accuracy"] is None  # the paper reports none


def test_the_attention_model_converts_and_is_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """attn_ms_conv1d shares slmu_rnn_ms_conv1d's embedding, channel mixer and head: a file of
    one given as the other is refused with the right flag. Its sizes come from the tensors,
    its head count (not in the tensors) from --num-heads, and the converted model computes the
    same arithmetic as the authors' SSA (checked in tests/models/test_attention.py)."""
    out = assert_told_apart("spiking-attention", "spiking-lmuformer", tmp_path, capsys)
    src = save(authors_state_dict("spiking-attention", dim=16, classes=3, depth=2), tmp_path / "a")
    args = ["convert-checkpoint", str(src), str(out), "--model", "spiking-attention"]
    assert main([*args, "--labels", "a,b,c", "--num-heads", "4"]) == 0
    assert "parallel only (window 128 frames)" in capsys.readouterr().out
    net, meta = load_checkpoint(out)
    config = net.config
    assert (config.name, config.dim, config.depth, config.num_heads) == (
        "spiking-attention",
        16,
        2,
        4,
    )
    assert not net.streaming and meta["training"]["authors_model"] == "attn_ms_conv1d"
    assert main([*args, "--labels", "a,b,c", "--num-heads", "5"]) == 2  # 5 does not divide 16
    assert "num_heads must be >= 1 and divide dim 16, got 5" in capsys.readouterr().err
