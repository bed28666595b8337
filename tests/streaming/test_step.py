"""The engine's step driven directly, with no scheduler: ``(states, audio) -> (states, events)``.

What a session, the scheduler and the engine processes add is queueing; the events are the
step's. Here a test feeds the step by hand and gets what a session of the engine gets.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models.state import flatten_state
from streaming.engine import StreamingEngine
from streaming.events import Detection, End, Event
from streaming.step import BatchStep, Reset, SessionSpec, SessionState, StepInput, Stop
from tests.streaming.tone_model import sequence
from tests.tolerance import assert_same_events

EVENTS = [("low", 0.5), ("high", 2.0)]


def feed(
    step: BatchStep,
    spec: SessionSpec,
    state: SessionState,
    samples: np.ndarray,
    marker: Reset | Stop | None = None,
) -> StepInput:
    """One session's input: its new samples, all received now."""
    frames = step.fbank.num_frames(state.fbank.num_pending + samples.size)
    return StepInput(spec, state, samples, np.zeros(frames), marker)


def without_latency(events: list[Event]) -> list[Event]:
    return [
        replace(e, received_at=0.0, queue_ms=0.0, compute_ms=0.0) if isinstance(e, Detection) else e
        for e in events
    ]


def test_the_step_alone_gives_a_sessions_events(tone_checkpoint: Path) -> None:
    """Two streams stepped together by hand (one batched step per chunk, the second one
    shorter, so the batch changes shape) give the events of engine sessions; a reset gives a
    fresh state on the same slab row."""
    torch.set_num_threads(1)
    engine = StreamingEngine.from_checkpoint(tone_checkpoint)
    step = engine.step
    x = [sequence(EVENTS, 3.0, seed=1), sequence(EVENTS[:1], 1.5, seed=2)]
    want = []
    for signal in x:
        session = engine.create_session(16000, scores_every_ms=100)
        want.append(without_latency(session.accept(signal) + session.finish()))
        session.close()

    spec = engine.session_spec(16000, scores_every_ms=100)
    states = [step.initial_state(spec) for _ in x]
    events: list[list[Event]] = [[], []]
    chunk = 1600
    for start in range(0, x[0].size, chunk):
        live = [i for i in range(2) if start < x[i].size]
        inputs = []
        for i in live:
            last = start + chunk >= x[i].size
            marker = Stop(0.0, 1000.0 * x[i].size / 16000) if last else None
            inputs.append(feed(step, spec, states[i], x[i][start : start + chunk], marker))
        for i, out in zip(live, step.run(inputs), strict=True):
            assert not out.failed
            states[i] = out.state
            events[i] += out.events
    for got, expected in zip(events, want, strict=True):
        assert isinstance(got[-1], End) and any(isinstance(e, Detection) for e in got)
        assert_same_events(without_latency(got), expected)

    slot = states[0].slot
    (out,) = step.run([feed(step, spec, states[0], np.zeros(800, np.float32), Reset())])
    fresh = out.state
    assert fresh.slot == slot and fresh.fbank.num_pending == 0
    assert (fresh.samples_in, fresh.frames_in, fresh.frames_out, fresh.detector.frames) == (0,) * 4
    leaves, _ = flatten_state(step.model_state(fresh))
    initial, _ = flatten_state(engine.model.init_state(1))
    assert all(torch.equal(a, b) for a, b in zip(leaves, initial, strict=True))
    step.release([states[0].slot, states[1].slot])
