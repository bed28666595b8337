"""A tiny LMUFormer trained in seconds to tell tones apart: a model whose behaviour tests know.

Labels: ``low`` (a 440 Hz burst), ``high`` (a 2 kHz burst), ``_unknown_`` (a 1 kHz burst) and
``_silence_`` (faint noise only). Bursts last 300 ms. The model is trained like the real ones
(1 s clips, BCE on the clip logits), so streaming it with the engine detects each burst.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import Fbank, build_model, save_checkpoint

RATE = 16000
LABELS = ["low", "high", "_unknown_", "_silence_"]
FREQS = {"low": 440.0, "high": 2000.0, "_unknown_": 1000.0}
BURST_S = 0.3
NOISE = 0.003
VERSION = 1  # bump to retrain cached checkpoints


def burst(label: str, rate: int = RATE, seconds: float = BURST_S, amp: float = 0.3) -> np.ndarray:
    """A Hann-faded tone burst [n] for ``label`` at ``rate``."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
    return (amp * fade * np.sin(2 * np.pi * FREQS[label] * t)).astype(np.float32)


def sequence(
    events: list[tuple[str, float]], total_s: float, rate: int = RATE, seed: int = 0
) -> np.ndarray:
    """Faint noise [total_s * rate] with a burst of each (label, onset seconds)."""
    rng = np.random.default_rng(seed)
    x = (NOISE * rng.standard_normal(int(total_s * rate))).astype(np.float32)
    for label, onset in events:
        b = burst(label, rate)
        start = int(onset * rate)
        x[start : start + b.size] += b
    return x


def _clip(rng: np.random.Generator, k: int) -> np.ndarray:
    x = (NOISE * rng.uniform(0.3, 2.0) * rng.standard_normal(RATE)).astype(np.float32)
    label = LABELS[k]
    if label != "_silence_":
        b = burst(label, amp=float(rng.uniform(0.1, 0.5)))
        start = int(rng.integers(0, RATE - b.size))
        x[start : start + b.size] += b
    return x


def train_tone_model(path: Path, name: str = "lmuformer", steps: int = 120, seed: int = 0) -> Path:
    """Train the tiny tone model for ``steps`` Adam steps on CPU and save it to ``path``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(name, dim=16, num_classes=len(LABELS), num_embed_convs=2)
    fbank = Fbank()
    n = 256
    ks = np.arange(n) % len(LABELS)
    with torch.no_grad():
        feats = fbank(torch.from_numpy(np.stack([_clip(rng, int(k)) for k in ks])))
    targets = torch.nn.functional.one_hot(torch.from_numpy(ks), len(LABELS)).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(n, 64, replace=False))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(feats).argmax(1) == torch.from_numpy(ks)).float().mean())
    meta = {
        "labels": LABELS,
        "features": fbank.config.to_dict(),
        "training": {"data": "synthetic tone bursts (tests)", "steps": steps, "seed": seed},
        "metrics": {"train_accuracy": accuracy},
        "detector": {"thresholds": {}},
    }
    return save_checkpoint(path, model, meta)
