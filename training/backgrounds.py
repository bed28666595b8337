"""Keyword-clip accuracy with the test streams' backgrounds mixed in (``lmukws evaluate
--backgrounds``).

The stream evaluation finds far fewer keywords under babble than under noise at the same SNR;
this measures the model's part of it on clips, without the detector: every keyword clip of the
split, in the window the clean evaluation uses, gets a background of the kind and SNR the
streams use (``training.streams.add_background``: three talkers saying the ``_unknown_`` words
of the split's other voices, or colored noise; the SNR is against the speech's active level),
and the clip path (the mean of the frame logits) classifies it. The same clips clean are the
reference. Deterministic: each clip's background is seeded by its index.

Shapes: B clips, S samples of a window, T frames, F mel bins.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.labels import SILENCE, UNKNOWN

if TYPE_CHECKING:
    import torch

#: (kind, SNR dB) of ``--backgrounds`` without a value: the streams' babble and noise levels
DEFAULT_BACKGROUNDS: tuple[tuple[str, float], ...] = (
    ("babble", 20.0),
    ("babble", 10.0),
    ("noise", 20.0),
    ("noise", 10.0),
)
KINDS = ("babble", "noise", "tones")


def parse_backgrounds(text: str) -> list[tuple[str, float]]:
    """``"babble:20,noise:10"`` -> [("babble", 20.0), ("noise", 10.0)]; ValueError names a bad
    item."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        kind, _, snr = item.partition(":")
        if kind not in KINDS or not snr:
            raise ValueError(f"background {item!r}: expected KIND:SNR_DB with KIND in {KINDS}")
        try:
            out.append((kind, float(snr)))
        except ValueError:
            raise ValueError(f"background {item!r}: {snr!r} is not a number of dB") from None
    return out


def condition_name(kind: str, snr_db: float) -> str:
    return f"{kind} {snr_db:g} dB"


def evaluate_backgrounds(
    model: torch.nn.Module,
    dataset: Any,
    backgrounds: Sequence[tuple[str, float]],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy of ``model`` on ``dataset``'s keyword clips (a clean ``ManifestDataset``),
    clean and under each (kind, SNR dB) -> {"clips", "clean": {...}, "backgrounds": {name:
    {"kind", "snr_db", "correct", "accuracy"}}}."""
    import torch
    from tqdm import tqdm

    from training.streams import add_background, babble_behind

    rows = dataset.rows
    keyword = [
        i
        for i, r in enumerate(rows)
        if r["path"] and r["label"] not in (UNKNOWN, SILENCE) and r["label"] in dataset.labels
    ]
    if not keyword:
        raise ValueError("the split has no keyword clips to mix backgrounds into")
    root = Path(dataset.root)
    behind: dict[str, list[dict[str, str]]] = {}  # voice -> the babble behind it
    for i in keyword:
        voice = rows[i].get("voice", "")
        if voice not in behind:
            behind[voice] = babble_behind(rows, voice)
    conditions: list[tuple[str, float] | None] = [None, *backgrounds]
    correct = {c: 0 for c in conditions}
    targets = torch.from_numpy(np.asarray(dataset.targets)[keyword])
    bar = tqdm(
        total=len(keyword) * len(conditions),
        desc="backgrounds",
        unit="clip",
        disable=not progress,
    )
    model = model.to(device).eval()
    with bar, torch.inference_mode():
        for start in range(0, len(keyword), batch_size):
            chunk = keyword[start : start + batch_size]
            clean = dataset.waveforms(chunk)  # [B, S]
            y = targets[start : start + len(chunk)].to(device)
            for condition in conditions:
                if condition is None:
                    waves = clean
                else:
                    kind, snr = condition
                    waves = np.stack(
                        [
                            add_background(
                                wave,
                                kind,
                                snr,
                                random.Random(i),
                                root,
                                behind[rows[i].get("voice", "")],
                            )
                            for i, wave in zip(chunk, clean, strict=True)
                        ]
                    )
                feats = dataset.features(waves).to(device)
                predicted = model(feats).argmax(dim=-1)
                correct[condition] += int((predicted == y).sum())
                bar.update(len(chunk))
    n = len(keyword)
    return {
        "clips": n,
        "clean": {"correct": correct[None], "accuracy": correct[None] / n},
        "backgrounds": {
            condition_name(kind, snr): {
                "kind": kind,
                "snr_db": snr,
                "correct": correct[(kind, snr)],
                "accuracy": correct[(kind, snr)] / n,
            }
            for kind, snr in backgrounds
        },
    }
