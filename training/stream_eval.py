"""Detection on streams: recall, false alarms per hour, detection delay and the DET curve.

``run_engine`` streams audio through the real ``StreamingEngine`` and detector, exactly as the
server does (100 ms chunks, many sessions batched per step), and keeps each stream's pooled
posteriors and detections. ``score`` matches detections to the ground truth:

- a detection of keyword k between the start of a k event and ``LATE_S`` after its end is a
  **hit** (the first one; more are **repeats**, counted as false alarms: one spoken keyword
  must give one detection);
- a detection of another keyword there is a **substitution**, anywhere else a plain **false
  alarm**; both count as false alarms, attributed to the segment that was playing;
- in recordings, detections inside an excluded span (a word that says a keyword) or up to
  ``LATE_S`` after it are not scored, and excluded time is left out of the hours.

False alarms per hour = false alarms / scored hours of every stream (keyword events included).
``sweep`` replays the detector (``streaming.detector.replay``) over the recorded posteriors at
other thresholds or sensitivities to draw the DET curve (miss rate against false alarms per
hour) without running the model again.

Shapes: T frames, K labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.detector import (
    NEVER_FIRE,
    DetectorConfig,
    normalized_from_rest,
    replay,
    sliding_mean,
)
from streaming.engine import StreamingEngine
from training.report import voice_engine
from training.streams import Stream

__all__ = ["LATE_S", "Found", "StreamRun", "grammar_sweep", "run_engine", "score", "sweep"]

LATE_S = 1.0  # a detection this long after the keyword's end still belongs to it
REPEAT_S = 60.0  # recall is also reported for keywords said again within this long
CHUNK_MS = 100  # what a client sends per message


@dataclass(frozen=True)
class Found:
    """One detection: keyword, audio time (s, end of the triggering frame) and score."""

    keyword: str
    time_s: float
    score: float


@dataclass
class StreamRun:
    """What the engine made of one stream: pooled posteriors [T, K] and its detections."""

    stream: Stream
    posteriors: np.ndarray
    detections: list[Found]
    smoothed: np.ndarray | None = None  # cached by ``detector_input``
    normalized: np.ndarray | None = None  # cached by ``detector_input``
    input_key: tuple[Any, ...] = ()  # the settings the cached arrays were computed with

    def detector_input(self, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
        """What the detector ranks on the posteriors from rest: (``normalized_from_rest``,
        its sliding mean over ``config.smoothing_frames``), [T, K] each. Threshold-independent,
        cached for the last smoothing window and background settings asked for."""
        key = (config.smoothing_frames, config.background_key)
        if self.smoothed is None or self.normalized is None or self.input_key != key:
            window = config.smoothing_frames
            self.normalized = normalized_from_rest(config, self.posteriors)
            ring = np.zeros((window - 1, self.posteriors.shape[1]))
            self.smoothed = sliding_mean(ring, self.normalized, 0, window)
            self.input_key = key
        return self.normalized, self.smoothed


def run_engine(
    engine: StreamingEngine,
    streams: Sequence[Stream],
    *,
    sessions: int = 32,
    progress: bool = True,
    **options: Any,
) -> list[StreamRun]:
    """Stream every stream through ``engine`` in 100 ms chunks, ``sessions`` at a time (one
    batched step per chunk round, as the server's worker batches live sessions). ``options``
    go to ``create_session`` (keywords, thresholds, sensitivity, wake_word, ...)."""
    from tqdm import tqdm

    from streaming.session import Detection, Posteriors

    chunk = 16000 * CHUNK_MS // 1000
    runs: list[StreamRun] = []
    total = sum(s.audio.size for s in streams) / 16000
    bar = tqdm(total=round(total), unit="audio s", desc="streams", disable=not progress)
    for first in range(0, len(streams), sessions):
        group = list(streams[first : first + sessions])
        live = [engine.create_session(16000, record_posteriors=True, **options) for _ in group]
        events: list[list[Any]] = [[] for _ in group]
        longest = max(s.audio.size for s in group)
        for start in range(0, longest, chunk):
            for stream, session in zip(group, live, strict=True):
                if start < stream.audio.size:
                    session.push(stream.audio[start : start + chunk])
                    if start + chunk >= stream.audio.size:
                        session.push_stop()
            while engine.step_ready():
                pass
            for i, session in enumerate(live):
                events[i] += session.poll()
            bar.update(round(sum(min(chunk, max(0, s.audio.size - start)) for s in group) / 16000))
        for i, session in enumerate(live):
            events[i] += session.poll()
            session.close()
        for stream, evs in zip(group, events, strict=True):
            rows = [e.values for e in evs if isinstance(e, Posteriors)]
            K = len(engine.labels)
            posteriors = np.concatenate(rows) if rows else np.zeros((0, K))
            found = [
                Found(e.keyword, e.audio_ms / 1000.0, e.score)
                for e in evs
                if isinstance(e, Detection)
            ]
            runs.append(StreamRun(stream, posteriors, found))
    bar.close()
    return runs


def firings_as_found(
    run: StreamRun, config: DetectorConfig, frame_s: float = 0.01, window_s: float = 0.025
) -> list[Found]:
    """The detections ``config`` makes on a run's posteriors (``replay``)."""
    normalized, smoothed = run.detector_input(config)
    return [
        Found(f.keyword, f.frame * frame_s + window_s, f.score)
        for f in replay(config, run.posteriors, smoothed, normalized=normalized)
    ]


def _inside(t: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(s <= t <= e + LATE_S for s, e in spans)


def _segment_at(stream: Stream, t: float) -> tuple[str, str]:
    """The segment playing at t (or the last one that ended within LATE_S before it)."""
    best = ("silence", "")
    for seg in stream.segments:
        if seg.start_s <= t <= seg.end_s + LATE_S:
            best = (seg.kind, seg.text)
            if t <= seg.end_s:
                return best
    return best


def voice_source(stream: Stream) -> str:
    """Who speaks in a stream: the synthesiser engine of a synthetic voice ("kokoro",
    "espeak-ng", ...), else the stream's source ("recordings")."""
    if stream.source != "synthetic":
        return stream.source
    return voice_engine(stream.voice) or stream.voice


def _repeat(events: Sequence[Any], j: int) -> str:
    """Whether event j's keyword was said in the ``REPEAT_S`` before it in the same stream
    (a background normalisation raises the bar of a keyword the session keeps hearing)."""
    e = events[j]
    said = any(
        o.keyword == e.keyword and e.start_s - REPEAT_S <= o.start_s < e.start_s for o in events
    )
    return f"said in the {REPEAT_S:g} s before" if said else f"first in {REPEAT_S:g} s"


def score(
    runs: Sequence[StreamRun],
    detections: Callable[[StreamRun], list[Found]] | None = None,
    *,
    keywords: Sequence[str] | None = None,
    examples: int = 200,
) -> dict[str, Any]:
    """Recall, false alarms per hour (overall, per set, per keyword), delays and what
    triggered the false alarms; ``detections`` (default: the engine's) per run."""
    pick = detections or (lambda run: run.detections)
    events_of: Counter[str] = Counter()
    hits_of: Counter[str] = Counter()
    fa_of: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    triggers: Counter[str] = Counter()
    hours: Counter[str] = Counter()
    fas: Counter[str] = Counter()
    delays: list[float] = []
    listed: list[dict[str, Any]] = []
    by_condition: dict[str, Counter[str]] = defaultdict(Counter)  # "context:alone" -> events, hits
    source_hours: Counter[str] = Counter()
    source_fas: Counter[str] = Counter()
    for run in runs:
        stream = run.stream
        group = stream.kind if stream.kind != "negatives" else f"negatives/{stream.source}"
        source = voice_source(stream)
        stream_hours = stream.scored_seconds_after(LATE_S) / 3600
        hours[group] += stream_hours
        source_hours[source] += stream_hours
        matched = [False] * len(stream.events)
        condition = (
            stream.background
            if stream.snr_db is None
            else f"{stream.background} {stream.snr_db:g} dB"
        )
        conditions = [
            (f"context:{e.context}", f"background:{condition}", f"voice:{source}",
             f"repeat:{_repeat(stream.events, j)}")
            for j, e in enumerate(stream.events)
        ]  # fmt: skip
        for e, names in zip(stream.events, conditions, strict=True):
            events_of[e.keyword] += 1
            for name in names:
                by_condition[name]["events"] += 1
        for d in sorted(pick(run), key=lambda d: d.time_s):
            if _inside(d.time_s, stream.exclude):
                continue
            kind = "false_alarm"
            for j, e in enumerate(stream.events):
                if e.start_s <= d.time_s <= e.end_s + LATE_S:
                    if d.keyword != e.keyword:
                        kind = "substitution"
                        continue
                    if not matched[j]:
                        matched[j] = True
                        hits_of[e.keyword] += 1
                        for name in conditions[j]:
                            by_condition[name]["hits"] += 1
                        delays.append(d.time_s - e.end_s)
                        kind = "hit"
                        break
                    kind = "repeat"
                    break
            if kind == "hit":
                continue
            kinds[kind] += 1
            fa_of[d.keyword] += 1
            fas[group] += 1
            source_fas[source] += 1
            segment, text = _segment_at(stream, d.time_s)
            triggers[segment] += 1
            if len(listed) < examples:
                listed.append(
                    {
                        "stream": stream.name,
                        "time_s": round(d.time_s, 3),
                        "keyword": d.keyword,
                        "score": round(d.score, 4),
                        "kind": kind,
                        "segment": segment,
                        "text": text,
                    }
                )
    total_hours = sum(hours.values())
    total_fa = sum(fas.values())
    names = list(keywords) if keywords is not None else sorted(set(events_of) | set(fa_of))
    names = [k for k in names if k not in NEVER_FIRE]
    per_keyword = {
        k: {
            "events": events_of[k],
            "hits": hits_of[k],
            "recall": hits_of[k] / events_of[k] if events_of[k] else None,
            "false_alarms": fa_of[k],
            "false_alarms_per_hour": fa_of[k] / total_hours if total_hours else None,
        }
        for k in names
    }
    n_events = sum(events_of.values())
    ms = np.asarray(delays) * 1000
    return {
        "recall": sum(hits_of.values()) / n_events if n_events else None,
        "false_alarms_per_hour": total_fa / total_hours if total_hours else None,
        "false_alarms": total_fa,
        "hours": total_hours,
        "events": n_events,
        "hits": sum(hits_of.values()),
        "sets": {
            group: {
                "hours": hours[group],
                "false_alarms": fas[group],
                "false_alarms_per_hour": fas[group] / hours[group] if hours[group] else None,
            }
            for group in sorted(hours)
        },
        "recall_by": {
            name: c["hits"] / c["events"] for name, c in sorted(by_condition.items()) if c["events"]
        },
        "false_alarms_by_voice": {
            source: {
                "hours": source_hours[source],
                "false_alarms": source_fas[source],
                "false_alarms_per_hour": (
                    source_fas[source] / source_hours[source] if source_hours[source] else None
                ),
            }
            for source in sorted(source_hours)
        },
        "false_alarm_kinds": dict(kinds),
        "false_alarm_triggers": dict(triggers.most_common()),
        "delay_ms": {
            "median": float(np.median(ms)) if ms.size else None,
            "p90": float(np.percentile(ms, 90)) if ms.size else None,
            "mean": float(ms.mean()) if ms.size else None,
        },
        "per_keyword": per_keyword,
        "false_alarm_examples": listed,
    }


def recall_by_voice(result: dict[str, Any]) -> dict[str, float]:
    """Voice source -> recall, from a ``score`` result's ``recall_by`` ("voice:kokoro")."""
    prefix = "voice:"
    return {
        k[len(prefix) :]: v for k, v in result.get("recall_by", {}).items() if k.startswith(prefix)
    }


def sweep(
    runs: Sequence[StreamRun],
    configs: Sequence[tuple[float, DetectorConfig]],
) -> list[dict[str, Any]]:
    """The DET curve: for each (parameter, detector config), recall (overall and per voice
    source) and false alarms per hour (overall and per set), by replaying the detector over
    the recorded posteriors."""
    points = []
    for value, config in configs:
        result = score(runs, lambda run, c=config: firings_as_found(run, c), examples=0)
        points.append(
            {
                "parameter": value,
                "recall": result["recall"],
                "miss_rate": None if result["recall"] is None else 1 - result["recall"],
                "false_alarms_per_hour": result["false_alarms_per_hour"],
                "sets": {k: v["false_alarms_per_hour"] for k, v in result["sets"].items()},
                "recall_by_voice": recall_by_voice(result),
            }
        )
    return points


def grammar_sweep(
    runs: Sequence[StreamRun],
    command_runs: Sequence[StreamRun],
    configs: Sequence[tuple[float, DetectorConfig]],
) -> list[dict[str, Any]]:
    """The wake-word grammar's DET curve: per (parameter, config with a wake word), the recall
    of the commands (events of context ``command``) and of the wake word (``wake``) on
    ``command_runs``, and the false alarms per hour (overall and per set) on ``runs``, by
    replaying the detector over the recorded posteriors, and of those false alarms the
    commands' alone (``command_false_alarms_per_hour``)."""
    points = []
    for value, config in configs:
        found = lambda run, c=config: firings_as_found(run, c)  # noqa: E731
        heard = score(runs, found, examples=0)
        asked = score(command_runs, found, examples=0)
        points.append(
            {
                "parameter": value,
                "command_recall": asked["recall_by"].get("context:command"),
                "wake_recall": asked["recall_by"].get("context:wake"),
                "false_alarms_per_hour": heard["false_alarms_per_hour"],
                "command_false_alarms_per_hour": command_false_alarms_per_hour(heard, config),
                "sets": {k: v["false_alarms_per_hour"] for k, v in heard["sets"].items()},
            }
        )
    return points


def command_false_alarms_per_hour(result: dict[str, Any], config: DetectorConfig) -> float:
    """The false alarms per hour of ``result`` (``score`` under ``config``, a wake-word
    grammar) that are commands, not the wake word itself: what an application that acts only on
    the commands after a wake word gets wrong (a false wake word alone opens the window, and
    acts on nothing)."""
    wake = config.labels[config.wake_label]
    own = (result["per_keyword"].get(wake) or {}).get("false_alarms", 0)
    hours = result["hours"]
    return (result["false_alarms"] - own) / hours if hours else 0.0


def threshold_configs(
    base: DetectorConfig, values: Sequence[float]
) -> list[tuple[float, DetectorConfig]]:
    """``base`` with every keyword at one threshold, for each value (an uncalibrated sweep)."""
    finite = np.isfinite(base.thresholds)
    out = []
    for v in values:
        thresholds = np.where(finite, float(v), math.inf)
        out.append((float(v), dataclasses.replace(base, thresholds=thresholds)))
    return out


def per_keyword_hits(runs: Sequence[StreamRun], found: Callable[[StreamRun], list[Found]]) -> dict:
    """Per keyword: (events, hits, false alarms) under ``found`` (used by calibration)."""
    result = score(runs, found, examples=0)
    return {
        k: (v["events"], v["hits"], v["false_alarms"]) for k, v in result["per_keyword"].items()
    }


def group_by_set(runs: Sequence[StreamRun]) -> dict[str, list[StreamRun]]:
    out: dict[str, list[StreamRun]] = defaultdict(list)
    for run in runs:
        out[run.stream.kind if run.stream.kind != "negatives" else run.stream.source].append(run)
    return dict(out)
