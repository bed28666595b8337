"""A small thread-safe metrics registry with Prometheus text exposition (format 0.0.4).

Counters, gauges and histograms with optional label names; ``Registry.render()`` writes the text
that ``GET /metrics`` serves. Written here instead of depending on prometheus_client: the service
needs a dozen series and no push gateway or multiprocess mode.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence

# Default buckets in seconds: 0.1 ms .. 10 s.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class Counter(_Metric):
    """Monotonic counter: ``inc(amount, **labels)``."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def state(self) -> dict[tuple[str, ...], float]:
        """The values by label key (a copy, e.g. to send to another process)."""
        with self._lock:
            return dict(self._values)

    def load_state(self, state: dict[tuple[str, ...], float]) -> None:
        """Replace every value with ``state`` (from ``state()`` of a metric of the same kind)."""
        with self._lock:
            self._values = dict(state)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels_text(self.labelnames, key)} {_number(value)}"


class Gauge(Counter):
    """A value that goes up and down: ``set``, ``inc``, ``dec``."""

    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


class Histogram(_Metric):
    """Cumulative histogram with fixed upper bounds: ``observe(value, **labels)``."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        labelnames: Sequence[str] = (),
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._data: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        if not labelnames:
            self._data[()] = ([0] * (len(self.bounds) + 1), [0.0])

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
            counts[index] += 1
            total[0] += value

    def observe_many(self, values: Sequence[float], **labels: str) -> None:
        """``observe`` each of ``values`` (one lock and one key lookup for all of them)."""
        if not len(values):
            return
        key = self._key(labels)
        indices = [bisect.bisect_left(self.bounds, v) for v in values]
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
            for index in indices:
                counts[index] += 1
            total[0] += float(sum(values))

    def count(self, **labels: str) -> int:
        with self._lock:
            data = self._data.get(self._key(labels))
            return sum(data[0]) if data else 0

    def state(self) -> dict[tuple[str, ...], tuple[list[int], float]]:
        """Bucket counts and sum by label key (a copy, e.g. to send to another process)."""
        with self._lock:
            return {k: (list(c), s[0]) for k, (c, s) in self._data.items()}

    def load_state(self, state: dict[tuple[str, ...], tuple[list[int], float]]) -> None:
        """Replace every series with ``state`` (from ``state()`` of a histogram like this)."""
        with self._lock:
            self._data = {k: (list(c), [float(s)]) for k, (c, s) in state.items()}

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._data.items())
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
                running += n
                le = _labels_text(self.labelnames, key, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {running}"
            base = _labels_text(self.labelnames, key)
            yield f"{self.name}_sum{base} {_number(total)}"
            yield f"{self.name}_count{base} {running}"


class Registry:
    """A named set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> _Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, documentation, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, documentation, labelnames))  # type: ignore[return-value]

    def histogram(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        labelnames: Sequence[str] = (),
    ) -> Histogram:
        metric = Histogram(name, documentation, buckets, labelnames)
        return self._add(metric)  # type: ignore[return-value]

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines += metric.header()
            lines += list(metric.samples())
        return "\n".join(lines) + "\n"


class EngineMetrics:
    """The engine's and the server's series, in one registry."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        self.step_seconds = r.histogram(
            "lmukws_step_compute_seconds", "Compute time of one batched model step."
        )
        self.frame_seconds = r.histogram(
            "lmukws_frame_compute_seconds", "Step compute time divided by the frames it output."
        )
        self.queue_seconds = r.histogram(
            "lmukws_queue_wait_seconds",
            "Wait from receipt of the audio completing a session's oldest frame to its step.",
        )
        self.batch_size = r.histogram(
            "lmukws_batch_size", "Sessions in one model step.", buckets=SIZE_BUCKETS
        )
        self.detection_seconds = r.histogram(
            "lmukws_detection_server_latency_seconds",
            "Receipt of the audio that made the triggering frame final to detection sent.",
        )
        self.active_sessions = r.gauge("lmukws_active_sessions", "Open streaming sessions.")
        self.sessions_total = r.counter("lmukws_sessions_total", "Sessions opened.")
        self.frames_total = r.counter("lmukws_frames_total", "Frames scored by the model.")
        self.state_resets_total = r.counter(
            "lmukws_state_resets_total",
            "Sessions whose model output turned non-finite and whose state was reset.",
        )
        self.engines_live = r.gauge(
            "lmukws_engines_live", "Engine processes alive (or 1 for the in-process worker)."
        )
        self.engine_restarts_total = r.counter(
            "lmukws_engine_restarts_total",
            "Engine processes replaced, per reason (exited, hung).",
            ("reason",),
        )
        self.audio_seconds_total = r.counter(
            "lmukws_audio_seconds_total", "Seconds of audio received by streaming sessions."
        )
        self.detections_total = r.counter(
            "lmukws_detections_total", "Detections sent, per keyword.", ("keyword",)
        )
        self.errors_total = r.counter(
            "lmukws_errors_total", "Errors reported to clients, per kind.", ("code",)
        )
        self.scores_dropped_total = r.counter(
            "lmukws_scores_dropped_total",
            "Scores messages dropped because their client was not reading fast enough.",
        )
        self.classify_files_total = r.counter(
            "lmukws_classify_files_total", "Files classified by POST /v1/classify."
        )
        self.classify_seconds = r.histogram(
            "lmukws_classify_seconds", "Compute time of one POST /v1/classify batch."
        )


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{?)(.*)")


def merge_expositions(texts: Mapping[str, str], label: str) -> str:
    """One exposition of several of ``Registry.render()``'s, each sample labelled
    ``label="<key>"`` (e.g. the replica that rendered it); each family's HELP and TYPE once."""
    families: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for key, text in sorted(texts.items()):
        family = ""
        extra = f'{label}="{_escape(key)}"'
        for line in text.splitlines():
            if line.startswith("# HELP "):
                family = line.split(" ", 3)[2]
                if family not in families:
                    families[family] = [line]
                    samples[family] = []
            elif line.startswith("# TYPE "):
                if len(families.get(family, ())) == 1:
                    families[family].append(line)
            elif line and family:
                name, brace, rest = _SAMPLE.match(line).groups()  # type: ignore[union-attr]
                if brace:
                    samples[family].append(f"{name}{{{extra},{rest}")
                else:
                    samples[family].append(f"{name}{{{extra}}}{rest}")
    lines: list[str] = []
    for family, header in families.items():
        lines += header + samples[family]
    return "\n".join(lines) + "\n"
