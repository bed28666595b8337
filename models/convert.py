"""Convert the authors' released LMUFormer state dicts (``.pth``) into our checkpoints.

The authors (github.com/zeyuliu1037/LMUFormer) save ``model.state_dict()`` of an
``nn.DataParallel`` model: every key starts with ``module.``. Their four Speech Commands models:

- ``lmu_rnn_conv1d`` -> our ``lmuformer``: ``patch_embed.conv_layers.{i}.0`` (conv k=3, no bias)
  and ``.3`` (BatchNorm), ``patch_embed.rpe_conv``, ``block.{j}.attn.lmu.{W_u,W_h}``,
  ``block.{j}.attn.{proj_conv,proj_bn}``, ``block.{j}.mlp.{fc1_conv,fc1_bn,fc2_conv,fc2_bn}``,
  ``head``;
- ``slmu_rnn_ms_conv1d`` -> our ``spiking-lmuformer``: ``patch_embed.{proj_conv,proj_bn}``,
  ``proj_conv{1,2,3}``, ``proj_bn{1,2}``, ``proj_bn3`` + ``rpe_conv`` (the residual branch),
  ``block.{j}.attn.prev_bn``, ``block.{j}.attn.lmu.{W_u,W_h,bn_u,bn_m,bn_h}``,
  ``block.{j}.attn.{proj_conv,proj_bn}``, ``block.{j}.mlp.{fc1_bn,fc1_conv,fc2_bn,fc2_conv}``,
  ``head_bn``, ``head``;
- ``slmu_rnn_conv1d`` -> our ``spiking-lmu``: ``patch_embed.{proj_conv,proj_bn}``,
  ``proj_conv{1,2,3}``, ``proj_bn{1,2,3}``, ``rpe_conv`` + ``rpe_bn`` (the residual branch),
  ``block.{j}.attn.lmu.{W_u,W_h,bn_u,bn_m,bn_h}``, ``block.{j}.attn.{proj_conv,proj_bn}``,
  ``block.{j}.mlp.{fc1_conv,fc1_bn,fc2_conv,fc2_bn}``, ``head``;
- ``attn_ms_conv1d`` -> our ``spiking-attention``: ``slmu_rnn_ms_conv1d``'s embedding, channel
  mixer and head, with ``SSA`` in ``block.{j}.attn``: ``pre_bn``, ``{q,k,v}_conv`` (no bias),
  ``{q,k,v}_bn``, ``proj_conv``, ``proj_bn``. Its head count leaves no trace in the tensors:
  ``--num-heads`` (default 16, their ``gsc.yml``).

Their LIF nodes (spikingjelly) have no parameters. The LMU buffers ``A``, ``B``, ``H`` and
``fft_H`` are recomputed by our cell and dropped; ``A`` and ``B`` are checked against ours so a
file made with another theta is refused. Sizes (dim, depth, memory, classes, MLP ratio) are read
from the tensor shapes. Files are read with ``torch.load(weights_only=True)``: nothing is
unpickled beyond tensors.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import save_checkpoint
from models.config import MODEL_NAMES, SPIKING_MODELS, FeatureConfig, ModelConfig
from models.lmuformer import LMUFormer

#: our model name -> the authors' model (timm registry name in their src/lmu_rnn.py)
AUTHORS_MODELS = {
    "lmuformer": "lmu_rnn_conv1d",
    "spiking-lmuformer": "slmu_rnn_ms_conv1d",
    "spiking-lmu": "slmu_rnn_conv1d",
    "spiking-attention": "attn_ms_conv1d",
}
AUTHORS_REPO = "https://github.com/zeyuliu1037/LMUFormer"
#: the paper's Speech Commands V2 test accuracy of each model (not measured by us); none here
#: for slmu_rnn_conv1d and attn_ms_conv1d
PAPER_ACCURACY = {"lmuformer": 0.9653, "spiking-lmuformer": 0.9612}
#: LMU buffers that our cell recomputes
LMU_BUFFERS = ("A", "B", "H", "fft_H")

#: The paper's 35 labels in the authors' class-index order. models/ imports nothing from
#: training/, so this copies training.labels.SPEECH_COMMANDS_LABELS (a test keeps them equal).
PAPER_LABELS: tuple[str, ...] = (
    "backward", "follow", "five", "bed", "zero", "on", "learn", "two", "house", "tree",
    "dog", "stop", "seven", "eight", "down", "six", "forward", "cat", "right", "visual",
    "four", "wow", "no", "nine", "off", "three", "left", "marvin", "yes", "up",
    "sheila", "happy", "bird", "go", "one",
)  # fmt: skip


class ConversionError(ValueError):
    """The file is not one of the authors' models, or does not match the chosen one."""


def _module_map(model: str, depth: int) -> list[tuple[str, str]]:
    """(authors' module prefix, our module prefix) pairs for a model of ``depth`` blocks."""
    if model == "lmuformer":
        pairs = [(f"patch_embed.conv_layers.{i}.0", f"network.embed.conv{i}") for i in range(4)]
        pairs += [(f"patch_embed.conv_layers.{i}.3", f"network.embed.bn{i}") for i in range(4)]
        pairs += [("patch_embed.rpe_conv", "network.embed.rpe.branch.conv")]
        attn = ("lmu.W_u", "lmu.W_h", "proj_conv", "proj_bn")
        mlp = ("fc1_conv", "fc1_bn", "fc2_conv", "fc2_bn")
        head = [("head", "network.head.linear")]
    elif model in SPIKING_MODELS:
        shortcut = model != "spiking-lmu"  # Conv1d4EBMs: proj_bn3 opens the rpe branch
        convs = ("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3")
        bns = ("proj_bn", "proj_bn1", "proj_bn2", "proj_bn3")
        pairs = [(f"patch_embed.{name}", f"network.embed.conv{i}") for i, name in enumerate(convs)]
        pairs += [
            (f"patch_embed.{name}", f"network.embed.bn{i}")
            for i, name in enumerate(bns[:-1] if shortcut else bns)
        ]
        pairs += [("patch_embed.rpe_conv", "network.embed.rpe.branch.conv")]
        pairs += [
            (f"patch_embed.{'proj_bn3' if shortcut else 'rpe_bn'}", "network.embed.rpe.branch.bn")
        ]
        lmu = ("lmu.W_u", "lmu.W_h", "lmu.bn_u", "lmu.bn_m", "lmu.bn_h", "proj_conv", "proj_bn")
        attn = ("prev_bn", *lmu) if shortcut else lmu
        if model == "spiking-attention":  # SSA
            qkv = tuple(f"{x}_{part}" for x in "qkv" for part in ("conv", "bn"))
            attn = tuple(f"attn.{name}" for name in ("pre_bn", *qkv, "proj_conv", "proj_bn"))
        mlp = ("fc1_bn", "fc1_conv", "fc2_bn", "fc2_conv")
        head = [("head", "network.head.linear")]
        if shortcut:
            head.insert(0, ("head_bn", "network.head.bn"))
    else:
        raise ConversionError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    for j in range(depth):
        ours = f"network.blocks.block{j}"
        for name in attn:
            target = name.replace("lmu.", "lmu.cell.")
            theirs = name.removeprefix("attn.")
            pairs.append((f"block.{j}.attn.{theirs}", f"{ours}.mixer.branch.{target}"))
        pairs += [(f"block.{j}.mlp.{name}", f"{ours}.ffn.branch.{name}") for name in mlp]
    return pairs + head


def key_map(model: str, depth: int = 1) -> dict[str, str]:
    """Authors' state-dict key -> our key, for every tensor of our ``model`` (paper sizes)."""
    config = ModelConfig(name=model, dim=8, depth=depth, num_classes=2, num_heads=2)
    ours = LMUFormer(config).state_dict()
    modules = dict(_module_map(model, depth))
    reverse = {v: k for k, v in modules.items()}
    mapping: dict[str, str] = {}
    for key in ours:
        module, _, param = key.rpartition(".")
        if module not in reverse:
            raise AssertionError(f"no authors' name for our {key}")  # a bug in _module_map
        mapping[f"{reverse[module]}.{param}"] = key
    return mapping


def load_authors_state_dict(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """Read a ``.pth`` with ``weights_only=True``; unwrap ``{"state_dict": ...}``, strip
    ``module.`` prefixes; tensors only."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"file not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors of every kind
        raise ConversionError(
            f"{path}: not a weights-only PyTorch state dict ({type(error).__name__}: {error})"
        ) from error
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
    if not isinstance(raw, dict) or not raw:
        raise ConversionError(f"{path}: expected a state dict (name -> tensor), got {type(raw)}")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        while name.startswith("module."):
            name = name[len("module.") :]
        state[name] = value
    return state


def detect_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The authors' model a state dict belongs to, from its key names (None if unknown)."""
    if "patch_embed.conv_layers.0.0.weight" in state:
        return "lmu_rnn_conv1d"
    if any(k.endswith(".attn.q_conv.weight") for k in state):
        return "attn_ms_conv1d"
    if "patch_embed.rpe_bn.weight" in state:
        return "slmu_rnn_conv1d"
    if "patch_embed.proj_conv.weight" in state:
        return "slmu_rnn_ms_conv1d"
    return None


def infer_config(
    model: str, state: dict[str, torch.Tensor], theta: float, num_heads: int = 16
) -> ModelConfig:
    """Our ModelConfig with the sizes found in the authors' tensors (and ``num_heads``, which
    they do not show, for the attention model)."""
    variant = detect_variant(state)
    expected = AUTHORS_MODELS.get(model)
    if expected is None:
        raise ConversionError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    if variant != expected:
        hint = {v: k for k, v in AUTHORS_MODELS.items()}.get(variant or "")
        found = f"the authors' {variant}" if variant else "no known LMUFormer layout"
        advice = f"; use --model {hint}" if hint else " (not supported by this converter)"
        raise ConversionError(
            f"--model {model} expects the authors' {expected}, but the file holds {found}{advice}"
        )
    conv0 = (
        "patch_embed.conv_layers.0.0.weight"
        if model == "lmuformer"
        else "patch_embed.proj_conv.weight"
    )
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"block\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    attention = model == "spiking-attention"
    mixer = "block.0.attn.q_conv.weight" if attention else "block.0.attn.lmu.W_h.weight"
    needed = [conv0, mixer, "block.0.mlp.fc1_conv.weight", "head.weight"]
    missing = [k for k in needed if k not in state]
    if missing or depth < 1:
        raise ConversionError(f"the file lacks {missing or ['block.0.*']}")
    dim, in_features = int(state[conv0].shape[0]), int(state[conv0].shape[1])
    default_memory = 2 * dim if model in SPIKING_MODELS else dim
    memory = default_memory if attention else int(state[mixer].shape[1]) - dim
    hidden = int(state["block.0.mlp.fc1_conv.weight"].shape[0])
    window = 128
    h = state.get("block.0.attn.lmu.H")
    if h is not None and h.dim() == 2:
        window = int(h.shape[1])
    try:
        return ModelConfig(
            name=model,
            num_classes=int(state["head.weight"].shape[0]),
            in_features=in_features,
            dim=dim,
            depth=depth,
            memory_size=None if memory == default_memory else memory,
            theta=theta,
            window=window,
            mlp_ratio=hidden / dim,
            **({"num_heads": num_heads} if attention else {}),
        )
    except ValueError as error:
        raise ConversionError(f"inconsistent sizes in the file: {error}") from error


def convert_state_dict(
    state: dict[str, torch.Tensor], model: str, theta: float = 128.0, num_heads: int = 16
) -> tuple[LMUFormer, list[str]]:
    """Build our model and load the authors' tensors into it.

    Returns (model, notes): notes name the dropped buffers. Raises ConversionError on unknown,
    missing or wrongly shaped tensors, and on LMU matrices made with another theta.
    """
    config = infer_config(model, state, theta, num_heads)
    net = LMUFormer(config)
    ours = net.state_dict()
    mapping = key_map(model, config.depth)
    loaded: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    wrong: list[str] = []
    for key, value in state.items():
        target = mapping.get(key)
        if target is None:
            module, _, param = key.rpartition(".")
            if module.endswith("attn.lmu") and param in LMU_BUFFERS:
                dropped.append(key)
                _check_lmu_buffer(net, key, param, value, config)
            elif "lif" in module.rsplit(".", 1)[-1] or re.search(r"\.f_[umh]$", module):
                dropped.append(key)  # spiking neuron state, if a version saved any
            else:
                unknown.append(key)
            continue
        if tuple(value.shape) != tuple(ours[target].shape):
            wrong.append(f"{key} {tuple(value.shape)} -> {target} {tuple(ours[target].shape)}")
            continue
        loaded[target] = value.detach().to(ours[target].dtype)
    bad = {w.split(" ", 1)[0] for w in wrong}
    missing = [
        k
        for k, v in mapping.items()
        if v not in loaded and k not in bad and not v.endswith("num_batches_tracked")
    ]
    problems = []
    if wrong:
        problems.append(
            "wrong shapes: " + "; ".join(wrong[:6]) + (" ..." if len(wrong) > 6 else "")
        )
    if missing:
        problems.append(f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    if unknown:
        problems.append(f"unexpected {unknown[:6]}{' ...' if len(unknown) > 6 else ''}")
    if problems:
        raise ConversionError(
            f"the tensors do not match the authors' {AUTHORS_MODELS[model]}: " + "; ".join(problems)
        )
    merged = {k: loaded.get(k, v) for k, v in ours.items()}
    net.load_state_dict(merged)
    return net.eval(), [f"dropped {k} (recomputed)" for k in dropped]


def _check_lmu_buffer(
    net: LMUFormer, key: str, param: str, value: torch.Tensor, config: ModelConfig
) -> None:
    """Refuse A / B made with another theta or memory size (H / fft_H follow from them)."""
    if param not in ("A", "B"):
        return
    j = int(key.split(".")[1])
    cell = net.get_submodule(f"network.blocks.block{j}.mixer.branch.lmu.cell")
    ours = getattr(cell, param)
    theirs = value.detach().to(ours.dtype).reshape(-1)
    if theirs.numel() != ours.numel() or not torch.allclose(
        theirs, ours.reshape(-1), rtol=1e-4, atol=1e-6
    ):
        raise ConversionError(
            f"{key} differs from the Legendre matrix for memory {config.resolved_memory_size}, "
            f"theta {config.theta}; pass the theta the model was trained with (--theta)"
        )


def parse_labels(spec: str | None, num_classes: int) -> list[str]:
    """Labels from ``a,b,c`` or a file with one per line; default: the paper's 35."""
    if spec is None:
        if num_classes != len(PAPER_LABELS):
            raise ConversionError(
                f"the model has {num_classes} classes, not the paper's 35: pass --labels"
            )
        return list(PAPER_LABELS)
    path = Path(spec)
    if path.is_file():
        labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        labels = [part.strip() for part in spec.split(",")]
    labels = [label for label in labels if label]
    if len(labels) != num_classes or len(set(labels)) != len(labels):
        raise ConversionError(
            f"--labels gives {len(labels)} labels ({len(set(labels))} distinct) for a model "
            f"with {num_classes} classes"
        )
    return labels


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    model: str,
    labels: str | None = None,
    theta: float = 128.0,
    num_heads: int = 16,
) -> tuple[LMUFormer, dict[str, Any]]:
    """Convert the authors' ``src`` (.pth) into our ``dst`` (.safetensors); returns
    (model, metadata)."""
    src = Path(src)
    if model not in MODEL_NAMES:
        raise ConversionError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    state = load_authors_state_dict(src)
    net, notes = convert_state_dict(state, model, theta, num_heads)
    label_list = parse_labels(labels, net.num_classes)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    metadata: dict[str, Any] = {
        "labels": label_list,
        "features": FeatureConfig().to_dict(),
        "provenance": f"converted from {src.name}",
        "training": {
            "source": f"converted from {src.name}",
            "authors_model": AUTHORS_MODELS[model],
            "authors_repo": AUTHORS_REPO,
            "original_file": {"name": src.name, "sha256": digest},
            "data": "Google Speech Commands V2 (35 words), official split (the authors' training)",
            "paper_reported_test_accuracy": PAPER_ACCURACY.get(model),
            "conversion_notes": notes,
        },
        "metrics": {},
    }
    save_checkpoint(dst, net, metadata)
    return net, metadata
