"""``lmukws data synth``: the offline synthetic keyword corpus.

Every installed offline English synthesiser (see :mod:`training.voices`) speaks the 35 Speech
Commands words and a vocabulary of other words (``_unknown_``, with near misses of the
keywords). The corpus is split by speaker: whole voices (espeak-ng variants, flite, RHVoice and
festival speakers, across engines when they share a recorded person) are held out for
validation and test; Kokoro's blended pseudo-speakers are split by region of blend space (see
:mod:`training.kokoro`: one style never trains). Clips are stored trimmed, peak-normalised,
16 kHz mono PCM16; everything else (placement in the 1 s window, shift, gain, speed, noise,
reverb, ``_silence_``) is done online by the training data pipeline. ``_silence_`` rows have
an empty path.

Layout of ``DIR``: ``manifest.csv`` (``path,label,split,voice,engine,text``), ``corpus.json``
(labels, voices and their split, counts, seed, generator version) and ``audio/<label>/...wav``.
Deterministic for a seed; resumable (valid files already written are kept).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from training import kokoro
from training.labels import SILENCE, SPEECH_COMMANDS_LABELS, UNKNOWN
from training.vocabulary import GENERAL_WORDS, NEAR_MISS_WORDS, near_misses_for
from training.voices import (
    DEFAULT_ENGINES,
    ENGINES,
    EXOTIC_VARIANTS,
    SAMPLE_RATE,
    Voice,
    base_voices,
    engine_available,
    engine_version,
    espeak_variants,
    espeak_voice,
    is_valid_clip,
    kokoro_voice,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

GENERATOR = "lmukws.training.synth"
GENERATOR_VERSION = "1"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "split", "voice", "engine", "text")
# Share of each split's renditions per engine (renormalised over the engines present).
ENGINE_WEIGHTS: dict[str, float] = {
    "espeak-ng": 0.35,
    "espeak-ng-mbrola": 0.10,
    "flite": 0.15,
    "festival": 0.20,
    "rhvoice": 0.20,
    "espeak-ng-mbrola-accented": 0.15,
    "pico": 0.05,
    "kokoro": 0.20,
}
# Engines whose speakers are held out one per split, in this order (a speaker shared by two
# engines, e.g. arctic:slt, counts for both). The speakers of every other engine
# (espeak-ng-mbrola-accented, pico) always train: installing or adding them changes only the
# training split, so validation and test stay clip for clip the corpus that earlier models were
# scored on.
HOLDOUT_ORDER: tuple[str, ...] = ("flite", "rhvoice", "festival", "espeak-ng-mbrola")
# Engines that hold out speakers of their own (Kokoro: regions of blend space) and plan apart:
# their validation and test voices come on top of the other engines' ``heldout_renditions``, and
# their _unknown_ words are drawn from their own stream, so adding or removing them leaves every
# other engine's held-out clips as they were.
SEPARATE_ENGINES: tuple[str, ...] = ("kokoro",)
ESPEAK_HOLDOUT_FRACTION = 0.1  # of the natural (non-effect) espeak-ng variants, per split
NEAR_MISS_SHARE = 0.5  # of the _unknown_ clips
_INTONATION = ((".", ""), (".", ""), ("?", "_q"), ("!", "_x"))  # espeak-ng and kokoro
_COST = {"kokoro": 3, "festival": 3, "rhvoice": 2}  # render slow engines first


@dataclass(frozen=True)
class Clip:
    """One planned utterance: ``path`` relative to the corpus folder."""

    path: str
    label: str
    split: str
    voice: Voice
    text: str
    spoken: str


@dataclass
class Plan:
    """Everything the corpus will contain, decided before any audio is made."""

    keywords: list[str]
    clips: list[Clip]
    silence: dict[str, int]
    speakers: dict[str, str]
    voices: dict[str, tuple[Voice, str]]
    skipped: dict[str, str]


# ------------------------------------------------------------------------------ planning


def _rng(seed: int, *purpose: object) -> random.Random:
    return random.Random(":".join(map(str, (seed, *purpose))))


_PROBED: dict[str, str | None] = {}  # voice id -> probe error, for this process


def _probe(voice: Voice) -> tuple[str, str | None]:
    return voice.id, voice.probe()


def _run_parallel(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (4 * jobs))))


def discover_voices(
    engines: Sequence[str], *, jobs: int = 2, variants: Sequence[str] | None = None
) -> tuple[dict[str, list[Voice]], list[str], dict[str, str]]:
    """Working base voices per engine, working espeak-ng variants, and skipped voices -> why.

    espeak-ng is probed per accent (default variant) and per variant (``en-us``); the corpus
    combines them. Every other voice is probed by rendering a test word.
    """
    found: dict[str, list[Voice]] = {}
    candidates: list[Voice] = []
    variant_voices: list[Voice] = []
    for engine in engines:
        voices = base_voices(engine)
        found[engine] = voices
        candidates += voices
    if "espeak-ng" in engines and found.get("espeak-ng"):
        chosen = list(variants) if variants is not None else list(espeak_variants())
        variant_voices = [espeak_voice("en-us", v) for v in chosen]
    unprobed = [v for v in candidates + variant_voices if v.id not in _PROBED]
    _PROBED.update(_run_parallel(_probe, unprobed, jobs))
    results = {v.id: _PROBED[v.id] for v in candidates + variant_voices}
    skipped = {vid: err for vid, err in results.items() if err is not None}
    for vid, err in sorted(skipped.items()):
        log.warning("skipping voice %s: %s", vid, err.splitlines()[0] if err else err)
    working = {e: [v for v in vs if results[v.id] is None] for e, vs in found.items()}
    good_variants = [v.base.split("+", 1)[1] for v in variant_voices if results[v.id] is None]
    return working, good_variants, skipped


def assign_speakers(
    voices: dict[str, list[Voice]], variants: Sequence[str], seed: int
) -> dict[str, str]:
    """Speaker -> split. Held out per split: one speaker of each engine in HOLDOUT_ORDER that
    keeps at least two for training, and ESPEAK_HOLDOUT_FRACTION of the natural espeak-ng
    variants (effect variants such as whisper or robots always train). Kokoro's speakers (the
    dominant style of a blend) go where :func:`training.kokoro.style_split` says, whatever
    the seed."""
    rng = _rng(seed, "speakers")
    split_of: dict[str, str] = {}
    by_engine = {e: sorted({v.speaker for v in vs}) for e, vs in voices.items()}
    for split in ("test", "validation"):
        for engine in HOLDOUT_ORDER:
            groups = by_engine.get(engine, [])
            if any(split_of.get(g) == split for g in groups):
                continue
            free = [g for g in groups if g not in split_of]
            if len(free) >= 3:
                split_of[rng.choice(free)] = split
    natural = sorted(v for v in variants if v not in EXOTIC_VARIANTS)
    rng.shuffle(natural)
    n_hold = max(1, round(ESPEAK_HOLDOUT_FRACTION * len(natural))) if len(natural) >= 3 else 0
    for i, variant in enumerate(natural[: 2 * n_hold]):
        split_of[f"espeak-ng:{variant}"] = "test" if i < n_hold else "validation"
    for group in by_engine.get("kokoro", []):
        split_of[group] = kokoro.style_split(group.split(":", 1)[1])
    for groups in by_engine.values():
        for group in groups:
            split_of.setdefault(group, "train")
    for variant in variants:
        split_of.setdefault(f"espeak-ng:{variant}", "train")
    return dict(sorted(split_of.items()))


def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    norm = sum(weights.values())
    if total <= 0 or norm <= 0:
        return dict.fromkeys(weights, 0)
    raw = {k: total * w / norm for k, w in weights.items()}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (out[k] - raw[k], k))[: total - sum(out.values())]:
        out[k] += 1
    return out


def _espeak_grid(
    accents: Sequence[str], variants: Sequence[str], n: int, rng: random.Random
) -> list[Voice]:
    """n accent x variant combinations that spread over both: every variant before repeats,
    natural variants before effect ones (robots, whisper, ...)."""
    accents = list(accents)
    rng.shuffle(accents)
    natural = [v for v in variants if v not in EXOTIC_VARIANTS]
    exotic = [v for v in variants if v in EXOTIC_VARIANTS]
    rng.shuffle(natural)
    rng.shuffle(exotic)
    variants = natural + exotic
    out = []
    for i in range(n):
        variant = variants[i % len(variants)]
        accent = accents[(i + i // len(variants)) % len(accents)]
        out.append(espeak_voice(accent, variant))
    return out


def _pick_voices(
    engine: str, bases: list[Voice], n: int, rng: random.Random, taken: set[str]
) -> list[Voice]:
    """n jittered renditions cycling over ``bases``, each id unique."""
    order = list(bases)
    rng.shuffle(order)
    out: list[Voice] = []
    for i in range(n):
        base = order[i % len(order)]
        for _ in range(50):
            voice = base.jitter(rng)
            if voice.id not in taken:
                break
        else:
            continue
        taken.add(voice.id)
        out.append(voice)
    return out


def _kokoro_voices(
    split: str, n: int, rng: random.Random, taken: set[str], max_scale: int
) -> list[Voice]:
    """n Kokoro renditions for ``split``, each a new pseudo-speaker from the split's region of
    blend space (:func:`training.kokoro.draw_blend`, training perturbations up to
    ``max_scale`` %) at a random speed."""
    out: list[Voice] = []
    for _ in range(n):
        for _ in range(50):
            voice = kokoro_voice(kokoro.draw_blend(split, rng, max_scale)).jitter(rng)
            if voice.id not in taken:
                break
        else:
            continue
        taken.add(voice.id)
        out.append(voice)
    return out


def _spoken(voice: Voice, word: str, seed: int) -> tuple[str, str]:
    """Text for the engine and a file-name tag: espeak-ng and Kokoro vary the intonation."""
    if voice.engine.startswith("espeak-ng") or voice.engine == "kokoro":
        punct, tag = _rng(seed, "intonation", voice.id, word).choice(_INTONATION)
        return word + punct, tag
    return word, ""


def plan_corpus(
    *,
    seed: int = 0,
    renditions: int = 200,
    heldout_renditions: int | None = None,
    unknown_fraction: float = 0.25,
    engines: Sequence[str] | None = None,
    words: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    jobs: int = 2,
    kokoro_max_scale: int = kokoro.DEFAULT_SCALE,
) -> Plan:
    """Decide voices, splits and utterances (probes the voices; renders nothing else)."""
    if not 0 <= unknown_fraction < 1:
        raise ValueError("unknown_fraction must be in [0, 1)")
    if kokoro_max_scale < kokoro.DEFAULT_SCALE:
        raise ValueError(
            f"kokoro_max_scale must be >= {kokoro.DEFAULT_SCALE} (percent), got {kokoro_max_scale}"
        )
    keywords = list(words) if words is not None else list(SPEECH_COMMANDS_LABELS)
    bad = [w for w in keywords if w not in SPEECH_COMMANDS_LABELS]
    if bad:
        raise ValueError(f"not Speech Commands words: {bad}")
    wanted = list(engines) if engines else list(DEFAULT_ENGINES)
    for engine in wanted:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    present = [e for e in wanted if engine_available(e)]
    for engine in sorted(set(wanted) - set(present)):
        log.warning("engine %s is not installed; skipping it", engine)
    voices_by_engine, good_variants, skipped = discover_voices(
        present, jobs=jobs, variants=variants
    )
    voices_by_engine = {e: vs for e, vs in voices_by_engine.items() if vs}
    if "espeak-ng" in voices_by_engine and not good_variants:
        del voices_by_engine["espeak-ng"]
    if not voices_by_engine:
        raise RuntimeError("no working speech synthesiser found (install espeak-ng at least)")
    speakers = assign_speakers(voices_by_engine, good_variants, seed)
    accents = [v.base for v in voices_by_engine.get("espeak-ng", [])]
    held = heldout_renditions if heldout_renditions is not None else max(1, renditions // 4)

    voices: dict[str, tuple[Voice, str]] = {}
    taken: set[str] = set()
    for split in SPLITS:
        per_split = renditions if split == "train" else held
        pools: dict[str, list[Voice]] = {}
        for engine, vs in voices_by_engine.items():
            if engine == "espeak-ng":
                split_variants = [v for v in good_variants if speakers[f"espeak-ng:{v}"] == split]
                if split_variants:
                    pools[engine] = _espeak_grid(
                        accents,
                        split_variants,
                        len(accents) * len(split_variants),
                        _rng(seed, "grid", split),
                    )
            else:
                in_split = [v for v in vs if speakers[v.speaker] == split]
                if in_split:
                    pools[engine] = in_split
        counts = _largest_remainder(per_split, {e: ENGINE_WEIGHTS[e] for e in pools})
        if split != "train":  # SEPARATE_ENGINES come on top of the others' held-out voices
            others = {e: ENGINE_WEIGHTS[e] for e in pools if e not in SEPARATE_ENGINES}
            counts = {**counts, **_largest_remainder(per_split, others)}
        for engine in sorted(pools):
            rng = _rng(seed, "voices", split, engine)
            if engine == "kokoro":
                for voice in _kokoro_voices(split, counts[engine], rng, taken, kokoro_max_scale):
                    voices[voice.id] = (voice, split)
                continue
            if engine == "espeak-ng":
                grid = pools[engine]
                bases = grid[: counts[engine]] if counts[engine] <= len(grid) else grid
            else:
                bases = pools[engine]
            for voice in _pick_voices(engine, bases, counts[engine], rng, taken):
                voices[voice.id] = (voice, split)

    clips: list[Clip] = []
    silence: dict[str, int] = {}
    for split in SPLITS:
        split_voices = sorted(vid for vid, (_, s) in voices.items() if s == split)
        groups = {"": [v for v in split_voices if voices[v][0].engine not in SEPARATE_ENGINES]}
        for engine in SEPARATE_ENGINES:
            groups[engine] = [v for v in split_voices if voices[v][0].engine == engine]
        silence[split] = 0
        for group, group_voices in groups.items():
            if group and not group_voices:
                continue
            silence[split] += len(group_voices)
            rng = _rng(seed, "unknown", split, *([group] if group else []))
            clips += _group_clips(
                [voices[v][0] for v in group_voices], split, keywords, unknown_fraction, rng, seed
            )
    return Plan(keywords, clips, silence, speakers, voices, skipped)


def _group_clips(
    group: list[Voice],
    split: str,
    keywords: list[str],
    unknown_fraction: float,
    rng: random.Random,
    seed: int,
) -> list[Clip]:
    """Every keyword for each voice of ``group`` (sorted by id), and _unknown_ words: enough for
    ``unknown_fraction`` of the group's rows (its keywords and one _silence_ row per voice),
    spread evenly over its voices, half near misses of the keywords, none twice per voice."""
    near = list(near_misses_for(keywords)) or list(NEAR_MISS_WORDS)
    general = list(GENERAL_WORDS)
    n_kw = len(keywords) * len(group)
    n_silence = round(n_kw / max(1, len(keywords)))
    n_unknown = round(unknown_fraction / (1 - unknown_fraction) * (n_kw + n_silence))
    order = [v.id for v in group]
    rng.shuffle(order)
    quota = Counter({vid: n_unknown // max(1, len(order)) for vid in order})
    for vid in order[: n_unknown - sum(quota.values())]:
        quota[vid] += 1
    near_stream = _word_stream(near, rng)
    general_stream = _word_stream(general, rng)
    clips: list[Clip] = []
    for voice in group:
        vid = voice.id
        for word in keywords:
            spoken, tag = _spoken(voice, word, seed)
            clips.append(
                Clip(f"audio/{word}/{voice.slug}{tag}.wav", word, split, voice, word, spoken)
            )
        chosen: list[str] = []
        for k in range(quota[vid]):
            stream = near_stream if rng.random() < NEAR_MISS_SHARE else general_stream
            word = next(stream)
            for _ in range(len(near) + len(general)):
                if word not in chosen:
                    break
                word = next(stream)
            if word in chosen:
                log.debug("voice %s: only %d distinct unknown words", vid, k)
                break
            chosen.append(word)
            spoken, tag = _spoken(voice, word, seed)
            clips.append(
                Clip(
                    f"audio/{UNKNOWN}/{word}__{voice.slug}{tag}.wav",
                    UNKNOWN,
                    split,
                    voice,
                    word,
                    spoken,
                )
            )
    return clips


def _word_stream(words: list[str], rng: random.Random) -> Iterable[str]:
    """Endless stream of words: each pass a new shuffle, so coverage stays even."""

    def gen() -> Iterable[str]:
        while True:
            batch = list(words)
            rng.shuffle(batch)
            yield from batch

    return iter(gen())


# ----------------------------------------------------------------------------- rendering


def _render_task(task: tuple[Voice, list[tuple[str, str]]]) -> list[tuple[str, str | None]]:
    voice, items = task
    errors = voice.render_many([(spoken, Path(out)) for spoken, out in items])
    return [(out, err) for (_, out), err in zip(items, errors, strict=True)]


def render_clips(
    out_dir: Path,
    clips: Sequence[Clip],
    *,
    jobs: int = 2,
    progress: bool = True,
    reuse: bool = True,
) -> dict[str, str]:
    """Render every clip not already on disk; returns failed path -> error."""
    for stale in (out_dir / "audio").rglob(".*.tmp") if (out_dir / "audio").is_dir() else ():
        stale.unlink(missing_ok=True)  # left by an interrupted run
    by_voice: dict[str, list[Clip]] = defaultdict(list)
    todo = 0
    for clip in clips:
        if reuse and is_valid_clip(out_dir / clip.path):
            continue
        by_voice[clip.voice.id].append(clip)
        todo += 1
    tasks = [
        (cs[0].voice, [(c.spoken, str(out_dir / c.path)) for c in cs])
        for _, cs in sorted(by_voice.items())
    ]
    tasks.sort(key=lambda t: -_COST.get(t[0].engine, 1))
    if len(clips) > todo:
        log.info(
            "%d of %d clips already rendered; rendering %d", len(clips) - todo, len(clips), todo
        )
    failed: dict[str, str] = {}
    from tqdm import tqdm

    bar = tqdm(total=todo, unit="clip", desc="synth", disable=not progress, dynamic_ncols=True)
    try:
        if jobs <= 1:
            for task in tasks:
                results = _render_task(task)
                failed.update({o: e for o, e in results if e is not None})
                bar.update(len(results))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_render_task, t) for t in tasks]
                for future in as_completed(futures):
                    results = future.result()
                    failed.update({o: e for o, e in results if e is not None})
                    bar.update(len(results))
    finally:
        bar.close()
    root = str(out_dir) + "/"
    return {path.removeprefix(root): err for path, err in sorted(failed.items())}


# ------------------------------------------------------------------------------- outputs


def _duration_stats(out_dir: Path, paths: Sequence[str]) -> dict[str, float]:
    import wave

    secs = []
    for path in paths:
        with wave.open(str(out_dir / path), "rb") as w:
            secs.append(w.getnframes() / w.getframerate())
    if not secs:
        return {}
    a = np.array(secs)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.median(a)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "over_1s": int((a > 1.0).sum()),
    }


def write_manifest(out_dir: Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write ``manifest.csv`` (atomically)."""
    path = out_dir / "manifest.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def build_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    renditions_per_word: int = 200,
    heldout_renditions: int | None = None,
    unknown_fraction: float = 0.25,
    engines: Sequence[str] | None = None,
    limit_words: int | None = None,
    words: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    jobs: int = 2,
    progress: bool = True,
    kokoro_max_scale: int = kokoro.DEFAULT_SCALE,
) -> Path:
    """Build (or finish) the synthetic corpus in ``out_dir``; returns ``out_dir``.

    ``renditions_per_word``: voices (hence renditions of every keyword) in the training split;
    ``heldout_renditions``: the same for validation and test (default a quarter);
    ``unknown_fraction``: share of ``_unknown_`` rows; ``engines``: subset of
    :data:`training.voices.ENGINES` (default :data:`~training.voices.DEFAULT_ENGINES`);
    ``limit_words``/``words``: the first N keywords in the paper's order, or an explicit list;
    ``variants``: espeak-ng variants to use (default all); ``kokoro_max_scale``: the largest
    perturbation (percent of the styles' spread) of Kokoro's training pseudo-speakers, whose
    scales spread evenly from the default up to it (:func:`training.kokoro.wide_scale`); the
    held-out splits do not change with it.
    """
    started = time.monotonic()
    import scipy.signal  # noqa: F401  (imported once here, inherited by forked workers)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if words is None and limit_words is not None:
        words = list(SPEECH_COMMANDS_LABELS[:limit_words])
    plan = plan_corpus(
        seed=seed,
        renditions=renditions_per_word,
        heldout_renditions=heldout_renditions,
        unknown_fraction=unknown_fraction,
        engines=engines,
        words=words,
        variants=variants,
        jobs=jobs,
        kokoro_max_scale=kokoro_max_scale,
    )
    reuse = True
    meta_path = out / "corpus.json"
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text())
            reuse = previous.get("generator_version") == GENERATOR_VERSION
        except (OSError, ValueError):
            reuse = False
        if not reuse:
            log.warning("%s was made by another generator version; re-rendering", out)
    log.info("planned %d clips from %d voices", len(plan.clips), len(plan.voices))
    failed = render_clips(out, plan.clips, jobs=jobs, progress=progress, reuse=reuse)
    for path, err in list(failed.items())[:20]:
        log.warning("failed %s: %s", path, err.splitlines()[0] if err else err)

    labels = [*plan.keywords, UNKNOWN, SILENCE]
    label_index = {label: i for i, label in enumerate(labels)}
    rows = [
        {
            "path": c.path,
            "label": c.label,
            "split": c.split,
            "voice": c.voice.id,
            "engine": c.voice.engine,
            "text": c.text,
        }
        for c in plan.clips
        if c.path not in failed
    ]
    for split, n in plan.silence.items():
        rows += [
            {"path": "", "label": SILENCE, "split": split, "voice": "", "engine": "", "text": ""}
        ] * n
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), label_index[r["label"]], r["path"]))
    write_manifest(out, rows)

    counts = {s: dict(Counter(r["label"] for r in rows if r["split"] == s)) for s in SPLITS}
    counts = {s: {lab: c[lab] for lab in labels if lab in c} for s, c in counts.items()}
    engines_used = sorted(
        {v.engine for v, _ in plan.voices.values()}, key=lambda e: ENGINES.index(e)
    )
    meta = {
        "source": "synthetic",
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "labels": labels,
        "sample_rate": SAMPLE_RATE,
        "audio": {
            "format": "wav",
            "encoding": "pcm_s16le",
            "channels": 1,
            "trimmed": True,
            "peak_dbfs": -3.0,
            "note": "placement, shift, gain, speed, noise, reverb and _silence_ "
            "are made online by the training pipeline",
        },
        "config": {
            "renditions_per_word": renditions_per_word,
            "heldout_renditions": heldout_renditions
            if heldout_renditions is not None
            else max(1, renditions_per_word // 4),
            "unknown_fraction": unknown_fraction,
            "near_miss_share": NEAR_MISS_SHARE,
            "engines": list(engines) if engines else list(DEFAULT_ENGINES),
            "engine_weights": ENGINE_WEIGHTS,
            "words": plan.keywords,
            "espeak_holdout_fraction": ESPEAK_HOLDOUT_FRACTION,
            **(
                {"kokoro_max_scale": kokoro_max_scale}
                if kokoro_max_scale != kokoro.DEFAULT_SCALE
                else {}
            ),
        },
        "split_by": "speaker: the recorded person (or espeak-ng variant) behind each voice; "
        "no speaker, hence no voice, is in two splits",
        **({"kokoro": kokoro.describe()} if "kokoro" in engines_used else {}),
        "silence_rows": plan.silence,
        "counts": counts,
        "engines": {
            e: {
                "version": engine_version(e),
                "voices": dict(Counter(s for v, s in plan.voices.values() if v.engine == e)),
                "bases": sorted({v.base for v, _ in plan.voices.values() if v.engine == e}),
            }
            for e in engines_used
        },
        "speakers": plan.speakers,
        "voices": [
            {
                "id": vid,
                "engine": v.engine,
                "base": v.base,
                "speaker": v.speaker,
                "split": s,
                "params": v.params,
            }
            for vid, (v, s) in sorted(plan.voices.items())
        ],
        "skipped_voices": plan.skipped,
        "failed_clips": failed,
        "durations_s": {
            "keywords": _duration_stats(
                out, [r["path"] for r in rows if r["path"] and r["label"] != UNKNOWN]
            ),
            "unknown": _duration_stats(out, [r["path"] for r in rows if r["label"] == UNKNOWN]),
        },
        "unknown_words": sorted({c.text for c in plan.clips if c.label == UNKNOWN}),
    }
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(meta_path)
    n_audio = sum(1 for r in rows if r["path"])
    log.info(
        "corpus %s: %d clips (%d failed), %d silence rows, %.0f s",
        out,
        n_audio,
        len(failed),
        sum(plan.silence.values()),
        time.monotonic() - started,
    )
    return out


# ----------------------------------------------------------------------------------- CLI


def register_synth_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``synth`` to the ``lmukws data`` subcommands."""
    p = data_subparsers.add_parser(
        "synth",
        help="build the offline synthetic keyword corpus",
        description="Synthesize the 35 Speech Commands words and _unknown_ words with every "
        "installed offline English synthesiser; split train/validation/test by "
        "speaker; write DIR/manifest.csv and DIR/corpus.json.",
    )
    p.add_argument("--out", required=True, type=Path, help="corpus folder (DIR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--renditions",
        type=int,
        default=200,
        help="renditions of each keyword in the training split (default 200)",
    )
    p.add_argument(
        "--heldout-renditions",
        type=int,
        default=None,
        help="renditions per keyword in validation and in test (default a quarter)",
    )
    p.add_argument(
        "--unknown-fraction",
        type=float,
        default=0.25,
        help="share of _unknown_ rows (default 0.25)",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes")
    p.add_argument(
        "--engines",
        default=None,
        help=f"comma-separated subset of {','.join(ENGINES)} (default {','.join(DEFAULT_ENGINES)})",
    )
    p.add_argument(
        "--limit-words",
        type=int,
        default=None,
        help="only the first N keywords (tiny corpora for tests)",
    )
    p.add_argument(
        "--kokoro-max-scale",
        type=int,
        default=kokoro.DEFAULT_SCALE,
        metavar="PERCENT",
        help="widen Kokoro's training pseudo-speakers: their perturbations spread evenly from "
        f"{kokoro.DEFAULT_SCALE} %% up to PERCENT %% of the styles' spread (timbres farther "
        "from the heard styles); held-out voices stay as they are "
        f"(default {kokoro.DEFAULT_SCALE}: no widening)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth)
    return p


def run_synth(args: argparse.Namespace) -> int:
    """Entry point of ``lmukws data synth``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
    out = build_corpus(
        args.out,
        seed=args.seed,
        renditions_per_word=args.renditions,
        heldout_renditions=args.heldout_renditions,
        unknown_fraction=args.unknown_fraction,
        engines=engines,
        limit_words=args.limit_words,
        jobs=args.jobs,
        progress=not args.no_progress,
        kokoro_max_scale=args.kokoro_max_scale,
    )
    print(out / "manifest.csv")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.synth --out DIR ...`` (the same as ``lmukws data synth``)."""
    parser = argparse.ArgumentParser(prog="python -m training.synth")
    sub = parser.add_subparsers(dest="command")
    register_synth_parser(sub)
    args = parser.parse_args(["synth", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
