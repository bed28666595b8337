"""Long audio streams with ground truth, built from one split of a synthetic corpus.

A keyword spotter is judged on what an open microphone hears, so ``build_streams`` composes
minutes-long streams, one per voice of the split (a person talking, with pauses):

- **mixed** streams: every keyword clip of the voice once, alone (with silence around it),
  inside a carrier phrase of the same voice ("the word is" HAPPY "again") or in a sequence of
  two or three keywords ("go" "left"); runs of ``_unknown_`` words (near misses among them);
  silences; over a background drawn per stream: none, colored noise, babble of the split's other
  voices, or music-like tones, at 20, 10 or 5 dB SNR;
- **negatives** streams: the voice's keyword-free sentences and paragraphs (``lmukws data
  continuous``), clean; plus, from ``lmukws data recordings``, real recorded speech without
  keywords (``streams_from_recordings``), whose excluded spans (keywords that the line says) are
  not scored.
- **repeats** streams (only when asked for): a user repeating a command. Three of the voice's
  keywords, each said ``REPEATS`` times, 2-8 s apart, clean; what a detector that adapts to
  the session (``streaming.detector``'s background normalisation) must not learn to ignore.
- **commands** streams (``build_command_streams``, for the wake-word grammar): the voice says
  the wake word, then after a short pause one of its other keywords, for each of them in turn,
  over the mixed streams' backgrounds: the requests a wake-word grammar must pass.

Ground truth is exact: each keyword event is the span of its clip in the stream. Deterministic
for a seed. Only the split's own voices are used, so test streams hold no training voice.

Shapes: N samples at 16 kHz.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.config import FeatureConfig
from training.augment import colored_noise
from training.continuous import read_continuous
from training.dataset import read_manifest
from training.labels import SILENCE, UNKNOWN

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_KINDS",
    "KINDS",
    "KeywordEvent",
    "Segment",
    "Stream",
    "add_background",
    "babble_behind",
    "build_command_streams",
    "build_streams",
    "streams_from_recordings",
]

#: streams are at the model's input rate
RATE = FeatureConfig().sample_rate
#: (background, SNR dB) drawn per mixed stream, in turn
BACKGROUNDS: tuple[tuple[str, float | None], ...] = (
    ("clean", None),
    ("noise", 20.0),
    ("babble", 20.0),
    ("clean", None),
    ("tones", 10.0),
    ("babble", 10.0),
    ("noise", 10.0),
    ("babble", 5.0),
    ("noise", 5.0),
)
CONTEXT_SHARES = {"alone": 0.4, "carrier": 0.4, "sequence": 0.2}
GAP_WORDS_S = (0.04, 0.15)  # between the words of one phrase
GAP_ITEMS_S = (0.3, 1.5)  # between phrases, sentences and words said alone
#: repeats streams: keywords per voice, times each is said, seconds between two sayings
REPEATED_KEYWORDS, REPEATS, GAP_REPEATS_S = 3, 5, (2.0, 8.0)
#: commands streams: seconds from the wake word's end to its command, and between requests
GAP_COMMAND_S, GAP_REQUESTS_S = (0.2, 0.8), (2.0, 5.0)
#: kinds of stream ``build_streams`` makes, and those it makes unless asked for others
KINDS = ("mixed", "negatives", "repeats")
DEFAULT_KINDS = ("mixed", "negatives")


@dataclass(frozen=True)
class KeywordEvent:
    """A keyword spoken in a stream: the span (seconds) of its clip."""

    keyword: str
    start_s: float
    end_s: float
    context: str  # alone | carrier | sequence | repeated | wake | command


@dataclass(frozen=True)
class Segment:
    """What a span of the stream holds, to tell what triggered a false alarm."""

    #: keyword | carrier | sequence | unknown | sentence | paragraph | silence | recording |
    #: wake | command
    kind: str
    start_s: float
    end_s: float
    text: str


@dataclass
class Stream:
    """One stream: audio [N] float32 at 16 kHz, its keyword events and segments."""

    name: str
    kind: str  # mixed | negatives
    voice: str
    audio: np.ndarray
    events: list[KeywordEvent] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    background: str = "clean"
    snr_db: float | None = None
    #: spans (seconds) that are not scored: words of a recording that say a keyword
    exclude: list[tuple[float, float]] = field(default_factory=list)
    source: str = "synthetic"

    @property
    def seconds(self) -> float:
        return self.audio.size / RATE

    @property
    def scored_seconds(self) -> float:
        """Duration that false alarms are counted over (the excluded spans left out)."""
        return self.scored_seconds_after(0.0)

    def scored_seconds_after(self, late_s: float) -> float:
        """The scored duration when detections up to ``late_s`` after an excluded span are
        not scored either."""
        spans = [(s, min(self.seconds, e + late_s)) for s, e in self.exclude]
        return self.seconds - sum(e - s for s, e in _merge(spans))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "voice": self.voice,
            "source": self.source,
            "seconds": round(self.seconds, 3),
            "scored_seconds": round(self.scored_seconds, 3),
            "background": self.background,
            "snr_db": self.snr_db,
            "events": len(self.events),
        }


def _merge(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _read_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != RATE:
        raise ValueError(f"{path}: sample rate {rate}, expected {RATE}")
    return data[:, 0]


class _Writer:
    """Appends pieces to a stream and records where they went."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.n = 0
        self.events: list[KeywordEvent] = []
        self.segments: list[Segment] = []

    @property
    def now_s(self) -> float:
        return self.n / RATE

    def silence(self, seconds: float) -> None:
        n = round(seconds * RATE)
        if n > 0:
            self.pieces.append(np.zeros(n, np.float32))
            self.n += n

    def speech(self, audio: np.ndarray, gain: float = 1.0) -> tuple[float, float]:
        start = self.now_s
        self.pieces.append((audio * gain).astype(np.float32))
        self.n += audio.size
        return start, self.now_s

    def audio(self) -> np.ndarray:
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0, np.float32)

    def stream(
        self, kind: str, voice: str, audio: np.ndarray | None = None, **extra: Any
    ) -> Stream:
        """What was written as a ``kind`` stream of ``voice`` (``audio``: the written audio
        after a background was mixed in)."""
        return Stream(
            name=f"{kind}/{voice}",
            kind=kind,
            voice=voice,
            audio=self.audio() if audio is None else audio,
            events=self.events,
            segments=self.segments,
            **extra,
        )


def _gain(rng: random.Random) -> float:
    """A speaker's level for one phrase: within 6 dB below the clip's own."""
    return 10 ** (rng.uniform(-6.0, 0.0) / 20)


def _voice_items(rows: list[dict[str, str]], keywords: set[str]) -> dict[str, dict[str, list]]:
    by_voice: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if not r["path"]:
            continue
        if r["label"] in keywords:
            by_voice[r["voice"]]["keyword"].append(r)
        elif r["label"] == UNKNOWN:
            by_voice[r["voice"]]["unknown"].append(r)
    return by_voice


def build_streams(
    corpus: str | Path,
    split: str,
    *,
    seed: int = 0,
    kinds: Sequence[str] = DEFAULT_KINDS,
    keywords: Sequence[str] | None = None,
    max_voices: int | None = None,
) -> list[Stream]:
    """The split's streams: per voice, one stream of each of ``kinds`` (see the module
    docstring). ``keywords`` (default: every keyword label of the corpus) are the words placed
    as events; ``max_voices`` keeps the first N voices (sorted) for quick runs."""
    unknown_kinds = sorted(set(kinds) - set(KINDS))
    if unknown_kinds:
        raise ValueError(f"unknown stream kinds {unknown_kinds}; known: {list(KINDS)}")
    root = Path(corpus)
    rows, by_voice = _split_items(root, split, keywords)
    continuous: dict[str, list[dict[str, str]]] = defaultdict(list)
    try:
        for r in read_continuous(root, split):
            continuous[r["voice"]].append(r)
    except FileNotFoundError:
        if "negatives" in kinds:
            raise
    voices = sorted(set(by_voice) | set(continuous))
    if max_voices is not None:
        voices = voices[:max_voices]
    streams: list[Stream] = []
    for i, voice in enumerate(voices):
        rng = random.Random(f"streams:{seed}:{split}:{voice}")
        if "mixed" in kinds and by_voice[voice]["keyword"]:
            background, snr = BACKGROUNDS[(i + seed) % len(BACKGROUNDS)]
            others = babble_behind(rows, voice)
            streams.append(
                _mixed_stream(
                    root, voice, by_voice[voice], continuous[voice], rng, background, snr, others
                )
            )
        if "negatives" in kinds and any(
            r["kind"] in ("sentence", "paragraph") for r in continuous[voice]
        ):
            streams.append(_negatives_stream(root, voice, continuous[voice], rng))
        if "repeats" in kinds and by_voice[voice]["keyword"]:
            repeats_rng = random.Random(f"repeats:{seed}:{split}:{voice}")
            streams.append(_repeats_stream(root, voice, by_voice[voice]["keyword"], repeats_rng))
    return streams


def build_command_streams(
    corpus: str | Path,
    split: str,
    wake_word: str,
    *,
    seed: int = 0,
    keywords: Sequence[str] | None = None,
    max_voices: int | None = None,
) -> list[Stream]:
    """The split's commands streams, one per voice that says ``wake_word``: each of the
    voice's other keyword clips once, in a random order, right after a clip of the wake word
    (``GAP_COMMAND_S`` between them, ``GAP_REQUESTS_S`` between requests), over the
    backgrounds that the mixed streams take in turn (``BACKGROUNDS``). Events: the wake word
    (context ``wake``) and the command (``command``). ``keywords``, ``max_voices``: as
    ``build_streams``'."""
    root = Path(corpus)
    rows, by_voice = _split_items(root, split, keywords)
    if not any(r["label"] == wake_word for items in by_voice.values() for r in items["keyword"]):
        raise ValueError(f"{root}: no {wake_word!r} clip in split {split!r} to wake the commands")
    voices = sorted(by_voice)
    if max_voices is not None:
        voices = voices[:max_voices]
    streams = []
    for i, voice in enumerate(voices):
        clips = sorted(by_voice[voice]["keyword"], key=lambda r: r["path"])
        wake = [r for r in clips if r["label"] == wake_word]
        commands = [r for r in clips if r["label"] != wake_word]
        if not wake or not commands:
            continue
        background, snr = BACKGROUNDS[(i + seed) % len(BACKGROUNDS)]
        rng = random.Random(f"commands:{seed}:{split}:{voice}")
        rng.shuffle(commands)
        w = _Writer()
        w.silence(rng.uniform(*GAP_ITEMS_S))
        for command in commands:
            gain = _gain(rng)  # one request, one level
            for j, (context, row) in enumerate((("wake", rng.choice(wake)), ("command", command))):
                if j:
                    w.silence(rng.uniform(*GAP_COMMAND_S))
                s, e = w.speech(_read_wav(root / row["path"]), gain)
                w.events.append(KeywordEvent(row["label"], s, e, context))
                w.segments.append(Segment(context, s, e, row["label"]))
            w.silence(rng.uniform(*GAP_REQUESTS_S))
        audio = w.audio()
        if background != "clean" and snr is not None:
            audio = add_background(audio, background, snr, rng, root, babble_behind(rows, voice))
        streams.append(w.stream("commands", voice, audio, background=background, snr_db=snr))
    return streams


def _split_items(
    root: Path, split: str, keywords: Sequence[str] | None
) -> tuple[list[dict[str, str]], dict[str, dict[str, list]]]:
    """The split's manifest rows and, per voice, its clips of ``keywords`` (default: every
    keyword label) and of ``_unknown_``."""
    rows = [r for r in read_manifest(root) if r["split"] == split]
    if not rows:
        raise ValueError(f"{root}: no rows in split {split!r}")
    labels = {r["label"] for r in rows}
    wanted = set(keywords) if keywords is not None else labels - {UNKNOWN, SILENCE}
    return rows, _voice_items(rows, wanted)


def babble_behind(rows: list[dict[str, str]], voice: str) -> list[dict[str, str]]:
    """The ``_unknown_`` clips of the split's other voices: the babble behind ``voice``."""
    return [r for r in rows if r["path"] and r["label"] == UNKNOWN and r["voice"] != voice]


def _repeats_stream(
    root: Path, voice: str, keywords: list[dict[str, str]], rng: random.Random
) -> Stream:
    """``REPEATED_KEYWORDS`` of the voice's keyword clips, each said ``REPEATS`` times (the
    same clip at gains within 6 dB), ``GAP_REPEATS_S`` apart, 5-10 s between keywords."""
    rows = sorted(keywords, key=lambda r: r["path"])
    w = _Writer()
    w.silence(rng.uniform(*GAP_ITEMS_S))
    for row in rng.sample(rows, min(REPEATED_KEYWORDS, len(rows))):
        audio = _read_wav(root / row["path"])
        for _ in range(REPEATS):
            s, e = w.speech(audio, _gain(rng))
            w.events.append(KeywordEvent(row["label"], s, e, "repeated"))
            w.segments.append(Segment("keyword", s, e, row["label"]))
            w.silence(rng.uniform(*GAP_REPEATS_S))
        w.silence(rng.uniform(5.0, 10.0))
    return w.stream("repeats", voice)


def _mixed_stream(
    root: Path,
    voice: str,
    items: dict[str, list],
    continuous: list[dict[str, str]],
    rng: random.Random,
    background: str,
    snr_db: float | None,
    babble_rows: list[dict[str, str]],
) -> Stream:
    keywords = sorted(items["keyword"], key=lambda r: r["path"])
    unknown = sorted(items["unknown"], key=lambda r: r["path"])
    carriers: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for r in continuous:
        if r["kind"] in ("prefix", "suffix"):
            carriers[r["group"]][r["kind"]] = r
    groups = sorted(carriers)
    rng.shuffle(keywords)
    # plan the phrases: each keyword once, alone, in a carrier or in a sequence of 2-3
    plan: list[tuple[str, list[dict[str, str]], str]] = []
    k = 0
    while k < len(keywords):
        r = rng.random()
        if r < CONTEXT_SHARES["sequence"] and len(keywords) - k >= 2:
            n = min(len(keywords) - k, rng.choice((2, 2, 3)))
            plan.append(("sequence", keywords[k : k + n], ""))
            k += n
        elif r < CONTEXT_SHARES["sequence"] + CONTEXT_SHARES["carrier"] and groups:
            plan.append(("carrier", [keywords[k]], rng.choice(groups)))
            k += 1
        else:
            plan.append(("alone", [keywords[k]], ""))
            k += 1
    rng.shuffle(unknown)
    while unknown:  # runs of 2-5 unknown words
        n = min(len(unknown), rng.randint(2, 5))
        plan.append(("unknown", unknown[:n], ""))
        unknown = unknown[n:]
    for _ in range(max(1, len(plan) // 8)):
        plan.append(("silence", [], ""))
    rng.shuffle(plan)

    w = _Writer()
    w.silence(rng.uniform(*GAP_ITEMS_S))
    for context, rows, group in plan:
        gain = _gain(rng)
        start = w.now_s
        if context == "silence":
            w.silence(rng.uniform(1.0, 3.0))
            w.segments.append(Segment("silence", start, w.now_s, ""))
            continue
        texts = []
        parts: list[tuple[str, dict[str, str]]] = []
        if context == "carrier":
            if "prefix" in carriers[group]:
                parts.append(("speech", carriers[group]["prefix"]))
            parts.append(("keyword", rows[0]))
            if "suffix" in carriers[group]:
                parts.append(("speech", carriers[group]["suffix"]))
        else:
            parts = [("keyword" if context != "unknown" else "speech", r) for r in rows]
        for j, (role, row) in enumerate(parts):
            if j:
                w.silence(rng.uniform(*GAP_WORDS_S))
            s, e = w.speech(_read_wav(root / row["path"]), gain)
            if role == "keyword":
                w.events.append(KeywordEvent(row["label"], s, e, context))
            texts.append(row["label"] if role == "keyword" else row["text"])
        kind = "keyword" if context == "alone" else context
        w.segments.append(Segment(kind, start, w.now_s, " ".join(texts)))
        w.silence(rng.uniform(*GAP_ITEMS_S))
    audio = w.audio()
    if background != "clean" and snr_db is not None:
        audio = add_background(audio, background, snr_db, rng, root, babble_rows)
    return w.stream("mixed", voice, audio, background=background, snr_db=snr_db)


def _negatives_stream(
    root: Path, voice: str, continuous: list[dict[str, str]], rng: random.Random
) -> Stream:
    rows = sorted(
        (r for r in continuous if r["kind"] in ("sentence", "paragraph")), key=lambda r: r["path"]
    )
    rng.shuffle(rows)
    w = _Writer()
    w.silence(rng.uniform(*GAP_ITEMS_S))
    for r in rows:
        start = w.now_s
        w.speech(_read_wav(root / r["path"]), _gain(rng))
        w.segments.append(Segment(r["kind"], start, w.now_s, r["text"]))
        w.silence(rng.uniform(*GAP_ITEMS_S))
    return w.stream("negatives", voice)


def _tones(n: int, rng: random.Random) -> np.ndarray:
    """Music-like background: notes of a few harmonics with attack/decay envelopes, [n]."""
    out = np.zeros(n, np.float32)
    t0 = 0
    while t0 < n:
        length = int(rng.uniform(0.15, 0.6) * RATE)
        f0 = 110.0 * 2 ** (rng.randint(0, 36) / 12)
        t = np.arange(min(length, n - t0)) / RATE
        note = sum((0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(4))
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(2.0, 8.0))
        out[t0 : t0 + t.size] += (note * envelope).astype(np.float32)
        t0 += int(length * rng.uniform(0.5, 1.0))
    return out


def add_background(
    audio: np.ndarray,
    kind: str,
    snr_db: float,
    rng: random.Random,
    root: Path,
    babble_rows: list[dict[str, str]],
) -> np.ndarray:
    """``audio`` plus a background at ``snr_db`` below the speech's active level."""
    n = audio.size
    nrng = np.random.default_rng(rng.getrandbits(32))
    if kind == "noise":
        noise = colored_noise(n, rng.choice((0.0, 1.0, 2.0)), nrng)
    elif kind == "tones":
        noise = _tones(n, rng)
    elif kind == "babble" and babble_rows:
        noise = np.zeros(n, np.float32)
        for _ in range(3):  # three talkers at once
            pos = 0
            while pos < n:
                clip = _read_wav(root / rng.choice(babble_rows)["path"])
                take = min(clip.size, n - pos)
                noise[pos : pos + take] += clip[:take]
                pos += take + int(rng.uniform(0.05, 0.4) * RATE)
    else:
        noise = colored_noise(n, 1.0, nrng)
    active = np.abs(audio) > 1e-4
    speech_rms = float(np.sqrt(np.mean(audio[active] ** 2))) if active.any() else 1e-3
    noise_rms = float(np.sqrt(np.mean(noise**2))) + 1e-9
    mixed = audio + noise * (speech_rms / noise_rms) * 10 ** (-snr_db / 20)
    peak = float(np.max(np.abs(mixed))) if n else 0.0
    return (mixed / peak * 0.9 if peak > 0.99 else mixed).astype(np.float32)


def streams_from_recordings(
    root: str | Path,
    *,
    use: str,
    allow_eval: bool = False,
    seed: int = 0,
    max_seconds_per_stream: float = 600.0,
) -> list[Stream]:
    """Negatives streams of real recorded speech (``lmukws data recordings``, kind ``speech``)
    of one ``use``, one or more per speaker (at most ``max_seconds_per_stream`` each), with the
    lines' excluded spans (words that say a keyword) carried over."""
    from training.recordings import read_recordings

    records = read_recordings(root, use=use, kind="speech", allow_eval=allow_eval)
    by_speaker: dict[str, list] = defaultdict(list)
    for rec in records:
        name = (
            rec.speaker
            if rec.speaker.startswith(f"{rec.source}:")
            else f"{rec.source}:{rec.speaker}"
        )
        by_speaker[name].append(rec)
    streams: list[Stream] = []
    for speaker in sorted(by_speaker):
        recs = sorted(by_speaker[speaker], key=lambda r: r.path)
        rng = random.Random(f"recordings:{seed}:{speaker}")
        rng.shuffle(recs)
        groups: list[list[Any]] = [[]]
        seconds = 0.0
        for rec in recs:  # consecutive lines, at most max_seconds_per_stream per stream
            if seconds > max_seconds_per_stream:
                groups.append([])
                seconds = 0.0
            groups[-1].append(rec)
            seconds += rec.seconds + 0.65
        for part, group in enumerate(g for g in groups if g):
            w = _Writer()
            exclude: list[tuple[float, float]] = []
            for rec in group:
                w.silence(rng.uniform(0.3, 1.0))
                s, e = w.speech(_read_wav(Path(rec.path)))
                w.segments.append(Segment("recording", s, e, rec.text))
                exclude += [(s + a, s + b) for a, b in getattr(rec, "exclude", ())]
            streams.append(
                Stream(
                    name=f"recordings/{speaker}/{part}",
                    kind="negatives",
                    voice=speaker,
                    audio=w.audio(),
                    segments=w.segments,
                    exclude=exclude,
                    source="recorded",
                )
            )
    return streams
