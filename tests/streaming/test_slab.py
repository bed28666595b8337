"""The state slab: rows gathered and scattered equal per-session states; slots reused fresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import MODEL_NAMES, build_model, select_state, stack_states
from models.state import flatten_state, state_shapes
from streaming.engine import EngineConfig, StreamingEngine
from streaming.slab import StateSlab
from tests.models.conftest import streaming_params
from tests.streaming.test_engine import EVENTS, run, without_latency
from tests.streaming.tone_model import sequence
from tests.tolerance import assert_same_events


def _states_equal(a: object, b: object) -> bool:
    la, _ = flatten_state(a)
    lb, _ = flatten_state(b)
    return len(la) == len(lb) and all(torch.equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("name", streaming_params(MODEL_NAMES))
def test_gather_scatter_match_stacked_per_session_states(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, dim=16).eval()
    slab = StateSlab(model, capacity=2)
    with torch.inference_mode():  # grown inside the engine's step ...
        slots = [slab.allocate() for _ in range(5)]  # grows 2 -> 4 -> 8
    slab.reset(torch.tensor(slots[:1]))  # ... and reset outside it
    assert slab.capacity == 8 and slab.in_use == 5 and slots == [0, 1, 2, 3, 4]
    per_session = [model.init_state(1) for _ in slots]
    with torch.inference_mode():
        for step, members in enumerate([[0, 2, 4], [1, 2], [4, 0, 3, 1]]):
            frames = torch.randn(len(members), 1 + step, 128)
            rows = torch.tensor([slots[i] for i in members])
            stacked = stack_states([per_session[i] for i in members])
            assert _states_equal(slab.gather(rows), stacked)
            want, _, want_state = model.stream_frames(frames, stacked)
            got, _, got_state = model.stream_frames(frames, slab.gather(rows))
            assert torch.equal(got, want)
            slab.scatter(rows, got_state)
            for j, i in enumerate(members):
                per_session[i] = select_state(want_state, j)
    for i, slot in enumerate(slots):
        assert _states_equal(slab.gather(torch.tensor([slot])), per_session[i])
    # a released slot comes back fresh
    slab.release(slots[2])
    with pytest.raises(ValueError, match="not in use"):
        slab.release(slots[2])
    again = slab.allocate()
    assert again == slots[2]
    assert _states_equal(slab.gather(torch.tensor([again])), model.init_state(1))
    assert state_shapes(slab.gather(torch.tensor([0, 1]))) == state_shapes(model.init_state(2))


def test_closed_sessions_slots_are_reused_without_leaking_state(tone_checkpoint: Path) -> None:
    """Sessions closed mid-stream (some while idle, some with audio queued) and new ones on their
    slots: every new session's events equal a solo run on a fresh engine."""
    torch.set_num_threads(1)
    engine = StreamingEngine.from_checkpoint(
        tone_checkpoint, EngineConfig(max_batch=8, max_sessions=6)
    )
    x = sequence(EVENTS[:2], 3.0, seed=3)
    solo = run(StreamingEngine.from_checkpoint(tone_checkpoint), x, 1600)
    engine.start()
    try:
        for _ in range(3):
            half = [engine.create_session() for _ in range(4)]
            for i, s in enumerate(half):
                s.accept(x[: 8000 + 1600 * i])
            for s in half[:2]:
                s.close()
            for s in half[2:]:
                s.push(x[:16000])  # closed with work queued or in flight
                s.close()
            assert_same_events(without_latency(run(engine, x, 1600)), without_latency(solo))
        assert engine.slab.capacity == 6  # never grew: closed sessions gave their rows back
    finally:
        engine.close()


def test_pooling_is_a_sliding_mean_with_the_same_bits_in_any_batch_or_chunking() -> None:
    W, K, T = 6, 3, 30
    model = build_model("lmuformer", num_classes=K, dim=16)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, T, K)) * 5
    together = StateSlab(model, capacity=4, pooling_frames=W)
    slots = np.array([together.allocate() for _ in range(4)])
    whole = together.pool(slots, x)
    naive = np.stack([x[:, max(0, t - W + 1) : t + 1].mean(axis=1) for t in range(T)], axis=1)
    np.testing.assert_allclose(whole, naive, rtol=1e-12, atol=1e-12)
    window = together.pool_window(int(slots[2]))
    np.testing.assert_array_equal(window, x[2, T - W + 1 :])
    apart = StateSlab(model, capacity=1, pooling_frames=W)
    for b in (3, 0):
        slot = np.array([apart.allocate()])
        start, rows = 0, []
        for size in (1, 4, 2, 7, 16):
            rows.append(apart.pool(slot, x[b : b + 1, start : start + size])[0])
            start += size
        assert np.array_equal(np.concatenate(rows), whole[b])
        apart.reset(torch.tensor(slot))
        assert not apart.pool_window(int(slot[0])).any() and apart.pool_seen[slot[0]] == 0
    single = StateSlab(model, capacity=1, pooling_frames=1)
    assert np.array_equal(single.pool(np.array([single.allocate()]), x[:1]), x[:1])
