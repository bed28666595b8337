"""``lmukws mic``: the live terminal demo (rich), over a server or an in-process engine.

``LiveState`` is the pure part (what the view shows and the summary says), fed with captured
blocks and protocol events; ``run_mic`` wires a ``Microphone`` to a session and draws the state
with ``rich.live.Live`` (or prints lines when the output is not a terminal, or JSON lines).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import numpy as np

from client.audio import level_dbfs
from client.commands import report_error, session_options
from client.errors import ClientError
from client.exits import EXIT_OK, EXIT_UNAVAILABLE, default_url
from client.operating_point import operating_point_line, served_operating_point
from server.protocol import DetectionMessage, EndMessage, ReadyMessage, ScoresMessage

LOG_LINES = 8
BAR_WIDTH = 30
SCORES_EVERY_MS = 100
REFRESH_PER_SECOND = 10


class LiveSession(Protocol):
    """What the demo needs of a session (``StreamSession`` and ``LocalSession`` have it)."""

    ready: ReadyMessage
    samples_sent: int

    async def send_audio(self, samples: np.ndarray) -> None: ...
    def poll(self) -> list[DetectionMessage | ScoresMessage]: ...
    async def finish(self, timeout: float = ...) -> EndMessage: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class LoggedDetection:
    """A detection and its end-to-end latency: capture of its audio to being shown here."""

    message: DetectionMessage
    e2e_ms: float | None
    wall: float


@dataclass
class LiveState:
    """Everything the view shows; updated by the capture loop."""

    source: str
    device: str
    sample_rate: int
    ready: ReadyMessage
    started: float = field(default_factory=time.monotonic)
    level_db: float = -120.0
    peak_db: float = -120.0
    top: list[tuple[str, float]] = field(default_factory=list)
    log: collections.deque[LoggedDetection] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_LINES)
    )
    detections: list[LoggedDetection] = field(default_factory=list)
    samples_captured: int = 0
    overflows: int = 0
    end: EndMessage | None = None
    #: what the session's operating point measured (``operating_point_line``), if calibrated
    operating_point: str | None = None
    _sent: collections.deque[tuple[int, float]] = field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )

    def on_block(self, samples: np.ndarray, latest: np.ndarray | None = None) -> None:
        """Captured samples: count them; the level meter shows ``latest`` (default: all)."""
        self.samples_captured += samples.size
        latest = samples if latest is None else latest
        self.level_db = level_dbfs(latest)
        peak = float(np.max(np.abs(latest))) if latest.size else 0.0
        self.peak_db = max(-120.0, 20.0 * float(np.log10(peak + 1e-12)))

    def on_sent(self, total_samples: int, captured_at: float) -> None:
        """``total_samples`` input samples are sent; the last of them was captured then."""
        self._sent.append((total_samples, captured_at))

    def captured_time(self, audio_ms: float) -> float | None:
        """Monotonic capture time of the input sample at ``audio_ms`` (None if unknown)."""
        index = audio_ms * self.sample_rate / 1000.0
        for total, captured_at in self._sent:
            if total >= index:
                return captured_at - (total - index) / self.sample_rate
        return None

    def on_event(self, event: DetectionMessage | ScoresMessage, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if isinstance(event, ScoresMessage):
            self.top = list(event.top)
            return
        captured = self.captured_time(event.audio_ms)
        e2e = None if captured is None else max(0.0, (now - captured) * 1000.0)
        logged = LoggedDetection(event, e2e, now)
        self.log.append(logged)
        self.detections.append(logged)

    # -- text -------------------------------------------------------------------------------

    def title(self) -> str:
        """One line: where the session runs, the model, the input and the latency."""
        r = self.ready
        return (
            f"{self.source} · model {r.model} · input {self.device!r} at {self.sample_rate} Hz · "
            f"algorithmic latency {r.algorithmic_latency_ms:.0f} ms "
            f"({r.lookahead_frames} look-ahead frames)"
        )

    def header(self) -> str:
        """The title, and under it what the operating point measured (if calibrated)."""
        return "\n".join(x for x in (self.title(), self.operating_point) if x)

    def is_wake_word(self, d: LoggedDetection) -> bool:
        """Whether a detection is the session's wake word (the grammar's, in ``ready``)."""
        return d.message.keyword == self.ready.wake_word

    def detection_line(self, d: LoggedDetection) -> str:
        m, lat = d.message, d.message.latency
        e2e = f"{d.e2e_ms:.0f}" if d.e2e_ms is not None else "?"
        wake = "wake word  " if self.is_wake_word(d) else ""
        return (
            f"{m.audio_ms / 1000:8.2f} s  {m.keyword:<10} {m.score:.2f}  {wake}latency ms: "
            f"algorithmic {lat.algorithmic_ms:.0f} · queue {lat.queue_ms:.1f} · "
            f"compute {lat.compute_ms:.1f} · server {lat.server_ms:.1f} · end-to-end {e2e}"
        )

    def summary(self) -> str:
        """The session summary printed at exit."""
        wall = time.monotonic() - self.started
        audio_s = self.samples_captured / self.sample_rate if self.sample_rate else 0.0
        lines = [
            f"session summary: {audio_s:.1f} s of audio captured in {wall:.1f} s at "
            f"{self.sample_rate} Hz from {self.device!r} ({self.source}, model {self.ready.model})"
        ]
        if self.end is not None:
            lines.append(
                f"  server saw {self.end.audio_ms / 1000:.1f} s, {self.end.frames} frames, "
                f"{self.end.detections} detections"
            )
        counts = collections.Counter(d.message.keyword for d in self.detections)
        lines.append(
            f"  detections: {len(self.detections)}"
            + (
                " (" + ", ".join(f"{k} ×{n}" for k, n in counts.most_common()) + ")"
                if counts
                else ""
            )
        )
        if self.detections:
            parts = []
            for name in ("algorithmic_ms", "queue_ms", "compute_ms", "server_ms"):
                values = [getattr(d.message.latency, name) for d in self.detections]
                parts.append(f"{name[:-3]} {statistics.mean(values):.1f}/{max(values):.1f}")
            e2e = [d.e2e_ms for d in self.detections if d.e2e_ms is not None]
            if e2e:
                parts.append(f"end-to-end {statistics.mean(e2e):.0f}/{max(e2e):.0f}")
            lines.append("  latency ms (mean/max): " + " · ".join(parts))
        if self.overflows:
            lines.append(f"  input overflows: {self.overflows} (audio was lost)")
        return "\n".join(lines)

    def summary_dict(self) -> dict[str, Any]:
        counts = collections.Counter(d.message.keyword for d in self.detections)
        return {
            "type": "summary",
            "audio_s": self.samples_captured / self.sample_rate if self.sample_rate else 0.0,
            "wall_s": time.monotonic() - self.started,
            "sample_rate": self.sample_rate,
            "device": self.device,
            "detections": dict(counts),
            "end": self.end.model_dump(mode="json") if self.end else None,
            "overflows": self.overflows,
        }

    # -- rich -------------------------------------------------------------------------------

    def render(self) -> Any:
        """The live view: a rich renderable."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        level = Text()
        fill = round(BAR_WIDTH * (max(-60.0, self.level_db) + 60.0) / 60.0)
        style = "red" if self.peak_db > -1.0 else "green"
        level.append("input  ")
        level.append("█" * fill, style=style)
        level.append("░" * (BAR_WIDTH - fill), style="dim")
        audio_s = self.samples_captured / self.sample_rate
        level.append(
            f"  {self.level_db:6.1f} dBFS (peak {self.peak_db:6.1f})   audio {audio_s:6.1f} s"
        )
        if self.overflows:
            level.append(f"   overflows {self.overflows}", style="yellow")

        scores = Table.grid(padding=(0, 1))
        scores.add_column(width=12)
        scores.add_column()
        scores.add_column(justify="right")
        for label, p in self.top or [("(waiting)", 0.0)]:
            n = round(BAR_WIDTH * p)
            fired = p >= self.ready.thresholds.get(label, 2.0)
            scores.add_row(
                label,
                Text("█" * n, style="bold cyan" if fired else "cyan")
                + Text("░" * (BAR_WIDTH - n), style="dim"),
                f"{p:.2f}",
            )

        log = Table(box=None, pad_edge=False, show_edge=False)
        for name, justify in (
            ("audio time", "right"),
            ("keyword", "left"),
            ("score", "right"),
            ("algorithmic", "right"),
            ("queue", "right"),
            ("compute", "right"),
            ("server", "right"),
            ("end-to-end ms", "right"),
        ):
            log.add_column(name, justify=justify)  # type: ignore[arg-type]
        for d in reversed(self.log):
            m, lat = d.message, d.message.latency
            log.add_row(
                f"{m.audio_ms / 1000:.2f} s",
                Text(m.keyword, style="bold green")
                + (Text(" (wake word)", style="dim") if self.is_wake_word(d) else Text("")),
                f"{m.score:.2f}",
                f"{lat.algorithmic_ms:.0f}",
                f"{lat.queue_ms:.1f}",
                f"{lat.compute_ms:.1f}",
                f"{lat.server_ms:.1f}",
                f"{d.e2e_ms:.0f}" if d.e2e_ms is not None else "?",
            )
        return Group(
            Panel(level, title="lmukws mic", subtitle=self.title(), subtitle_align="left"),
            Text(self.operating_point or "", style="dim"),
            Panel(scores, title="top posteriors"),
            Panel(log, title=f"detections ({len(self.detections)})  ·  Ctrl-C to stop"),
        )


# ---------------------------------------------------------------------------------------------


def list_devices(out: TextIO) -> int:
    from client.mic import MicrophoneError, input_devices

    try:
        devices = input_devices()
    except MicrophoneError as error:
        return _no_audio(error)
    if not devices:
        return _no_audio(MicrophoneError("no audio input device found"))
    for d in devices:
        mark = "*" if d["default"] else " "
        print(
            f"{mark} {d['index']:3d}  {d['name']}  ({d['channels']} ch, "
            f"{d['default_samplerate']:.0f} Hz)",
            file=out,
        )
    return EXIT_OK


def _no_audio(error: Exception) -> int:
    print(f"lmukws mic: {error}", file=sys.stderr)
    return EXIT_UNAVAILABLE


async def _open_session(args: argparse.Namespace, rate: int) -> tuple[LiveSession, str, str | None]:
    """The session, where it runs, and what its operating point measured (None when the
    model is uncalibrated or the session sets its own thresholds)."""
    options: dict[str, Any] = {**session_options(args), "scores_every_ms": SCORES_EVERY_MS}
    own_thresholds = bool(options.get("thresholds"))
    if args.local:
        from client.local import LocalSession, load_engine

        engine = await asyncio.to_thread(
            load_engine, args.checkpoint, args.model, args.torch_device
        )
        try:
            session = LocalSession(engine, sample_rate=rate, **options)
        except Exception:
            engine.close()
            raise
        points = [] if own_thresholds else engine.sensitivity.describe()
        return session, "local engine", operating_point_line(points, args.sensitivity)
    from client.stream import connect, stream_url

    url = args.url or default_url()
    session = await connect(url, sample_rate=rate, encoding="pcm_f32le", **options)
    line = None if own_thresholds else await served_operating_point(url, args.sensitivity)
    return session, stream_url(url), line


class _Printer:
    """Output for a non-terminal: lines, or JSON lines."""

    def __init__(self, state: LiveState, as_json: bool, out: TextIO) -> None:
        self.state, self.as_json, self.out = state, as_json, out

    def start(self) -> None:
        if self.as_json:
            self._json(self.state.ready.model_dump(mode="json"))
        else:
            print(self.state.header(), file=self.out, flush=True)

    def detection(self, d: LoggedDetection) -> None:
        if self.as_json:
            self._json({**d.message.model_dump(mode="json"), "e2e_ms": d.e2e_ms})
        else:
            print(self.state.detection_line(d), file=self.out, flush=True)

    def finish(self) -> None:
        if self.as_json:
            if self.state.end is not None:
                self._json(self.state.end.model_dump(mode="json"))
            self._json(self.state.summary_dict())
        else:
            print(self.state.summary(), file=self.out, flush=True)

    def _json(self, record: dict[str, Any]) -> None:
        print(json.dumps(record), file=self.out, flush=True)


async def _mic(args: argparse.Namespace, out: TextIO) -> int:
    from client.mic import Microphone

    mic = Microphone(args.device, args.rate, args.block_ms)
    session, source, operating_point = await _open_session(args, mic.rate)
    state = LiveState(
        source, mic.device["name"], mic.rate, session.ready, operating_point=operating_point
    )
    printer = _Printer(state, args.json, out)
    interactive = not (args.plain or args.json) and out.isatty()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)

    def take_events() -> None:
        for event in session.poll():
            state.on_event(event)
            if isinstance(event, DetectionMessage) and not interactive:
                printer.detection(state.detections[-1])

    live: Any = None
    failure: BaseException | None = None
    try:
        if interactive:
            from rich.console import Console
            from rich.live import Live

            live = Live(state.render(), console=Console(file=out), auto_refresh=False)
            live.start()
        else:
            printer.start()
        async with mic:
            state.started = time.monotonic()
            drawn = 0.0
            while not stop.is_set():
                # everything captured so far goes out at once: a slow iteration (a busy CPU,
                # drawing) never builds a backlog that would add to the latency
                blocks = await mic.read_all(timeout=0.05)
                if blocks:
                    samples = np.concatenate([b.samples for b in blocks])
                    state.on_block(samples, blocks[-1].samples)
                    await session.send_audio(samples)
                    state.on_sent(session.samples_sent, blocks[-1].captured_at)
                    state.overflows = mic.overflows
                take_events()
                now = time.monotonic()
                if live is not None and now - drawn >= 1.0 / REFRESH_PER_SECOND:
                    live.update(state.render(), refresh=True)
                    drawn = now
        state.end = await session.finish(timeout=10.0)
        take_events()
    except (ClientError, TimeoutError, RuntimeError) as error:
        failure = error
    finally:
        if live is not None:
            live.update(state.render())
            live.stop()
        with contextlib.suppress(Exception):
            await session.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    printer.finish()
    if failure is not None:
        return report_error("mic", failure)
    return EXIT_OK


def run_mic(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``lmukws mic``."""
    from client.mic import MicrophoneError

    out = out or sys.stdout
    try:
        if args.list_devices:
            return list_devices(out)
        return asyncio.run(_mic(args, out))
    except MicrophoneError as error:
        return _no_audio(error)
    except (ClientError, ValueError, OSError) as error:
        return report_error("mic", error)


__all__ = ["LiveState", "LoggedDetection", "run_mic"]
