"""The streaming engine end to end on CPU: exact frames, detections, batching, reset, limits,
and an ensemble checkpoint served like one model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models import Fbank, load_checkpoint, read_metadata, save_checkpoint
from models.ensemble_checkpoint import write_ensemble
from models.state import state_nbytes
from streaming.engine import EngineConfig, EngineFullError, StreamingEngine
from streaming.session import Detection, End, Event, Posteriors, Scores, SessionClosedError
from tests.streaming.tone_model import LABELS, sequence
from tests.tolerance import assert_same_events, batch_dependent_rounding

# low at 0.5 s, high at 2.0 s, _unknown_ at 3.5 s (never fires), low at 5.0 s
EVENTS = [("low", 0.5), ("high", 2.0), ("_unknown_", 3.5), ("low", 5.0)]
TOTAL_S = 6.5


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tone_checkpoint: Path) -> Iterator[StreamingEngine]:
    engine = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(max_sessions=8))
    yield engine
    engine.close()


def run(engine: StreamingEngine, x: np.ndarray, chunk: int, rate: int = 16000, **kw) -> list:
    session = engine.create_session(rate, **kw)
    events: list[Event] = []
    for i in range(0, x.size, chunk):
        events += session.accept(x[i : i + chunk])
    events += session.finish()
    session.close()
    return events


def detections(events: list[Event]) -> list[tuple[str, float]]:
    return [(e.keyword, e.audio_ms) for e in events if isinstance(e, Detection)]


def without_timing(events: list[Event]) -> list[object]:
    """Events with the wall-clock fields of detections dropped: for results that must be
    bit-identical (the same computation replayed; see tests/tolerance.py)."""
    return [
        (e.keyword, e.score, e.frame, e.audio_ms) if isinstance(e, Detection) else e for e in events
    ]


def without_latency(events: list[Event]) -> list[Event]:
    """Events with the wall-clock fields of detections zeroed, for ``assert_same_events``."""
    return [
        replace(e, received_at=0.0, queue_ms=0.0, compute_ms=0.0) if isinstance(e, Detection) else e
        for e in events
    ]


def test_tone_sequence_detected_in_order_at_the_right_times(engine: StreamingEngine) -> None:
    x = sequence(EVENTS, TOTAL_S)
    events = run(engine, x, 16000)
    found = detections(events)
    assert [k for k, _ in found] == ["low", "high", "low"]
    for (keyword, ms), (label, onset) in zip(found, [EVENTS[0], EVENTS[1], EVENTS[3]], strict=True):
        assert keyword == label
        # fires after the burst starts, well before the next burst (1.5 s later)
        assert onset * 1000 < ms < onset * 1000 + 600, (keyword, ms, onset)
    end = events[-1]
    assert isinstance(end, End)
    assert end.audio_ms == pytest.approx(TOTAL_S * 1000)
    assert end.frames == Fbank().num_frames(x.size) and end.detections == 3


def test_chunkings_give_identical_detections(engine: StreamingEngine) -> None:
    x = sequence(EVENTS[:2], 3.0, seed=1)
    results = [detections(run(engine, x, chunk)) for chunk in (16000, 592, 160)]
    assert results[0] and results[0] == results[1] == results[2]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
@pytest.mark.parametrize(
    "which", ["tone_checkpoint", "random_checkpoint", "random_spiking_lmu_checkpoint"]
)
def test_frames_are_exactly_the_offline_frames(
    which: str, runtime: str, request: pytest.FixtureRequest
) -> None:
    """No frame dropped or processed twice: with no pooling or smoothing, the per-frame
    posteriors of any chunking equal the parallel form on the whole clip (the tone model is
    an LMUFormer, the random ones a Spiking LMUFormer and a spiking-lmu), with the model's
    steps run by torch or by its ONNX export."""
    checkpoint = request.getfixturevalue(which)
    config = EngineConfig(pooling_frames=1, smoothing_frames=1, max_step_frames=7, runtime=runtime)
    engine = StreamingEngine.from_checkpoint(checkpoint, config)
    assert engine.runtime == runtime
    model, meta = load_checkpoint(checkpoint)
    labels = meta["labels"]
    x = sequence(EVENTS[:1], 1.5, seed=2)
    with torch.inference_mode():
        offline = torch.sigmoid(model.frame_logits(Fbank()(torch.from_numpy(x))))[0].numpy()
    for chunk in (16000, 1234, 100):
        events = run(engine, x, chunk, scores_every_ms=10)
        scores = [e for e in events if isinstance(e, Scores)]
        assert [s.frame for s in scores] == list(range(offline.shape[0]))
        streamed = np.array([[dict(s.top)[label] for label in labels] for s in scores])
        np.testing.assert_allclose(streamed, offline, atol=2e-5)


def test_resampled_input_gives_the_same_detections(engine: StreamingEngine) -> None:
    reference = detections(run(engine, sequence(EVENTS, TOTAL_S), 16000))
    # (the tiny tone model never saw band-limited audio, so no 8-12 kHz here; the resampler
    # itself is tested at every rate in test_resample.py)
    for rate in (22050, 48000):
        found = detections(run(engine, sequence(EVENTS, TOTAL_S, rate=rate), rate // 10, rate))
        assert [k for k, _ in found] == [k for k, _ in reference]
        assert np.abs(np.subtract([t for _, t in found], [t for _, t in reference])).max() <= 50


def test_reset_is_total(engine: StreamingEngine) -> None:
    """A reset session and a fresh one run the same computation (batch of one, the same
    chunks), so their events are bit-identical."""
    a = sequence([("high", 0.4)], 1.0, seed=3)  # cut off right after a burst
    b = sequence(EVENTS[:2], 3.0, seed=4)
    fresh = run(engine, b, 800, scores_every_ms=100)
    session = engine.create_session(16000, scores_every_ms=100)
    session.accept(a)
    session.reset()
    again: list[Event] = []
    for i in range(0, b.size, 800):
        again += session.accept(b[i : i + 800])
    again += session.finish()
    session.close()
    assert without_timing(again) == without_timing(fresh)


def test_concurrent_sessions_with_the_worker_are_independent(tone_checkpoint: Path) -> None:
    engine = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(max_batch=4))
    signals = [sequence(EVENTS[:2], 3.0, seed=s) for s in range(3)]
    signals.append(sequence([("low", 1.5)], 3.0, seed=9))
    chunks = [160 * 7, 1600, 3333, 16000]
    solo = [run(engine, x, c) for x, c in zip(signals, chunks, strict=True)]
    engine.start()
    results: list[list[Event]] = [[] for _ in signals]

    def worker(i: int) -> None:
        results[i] = run(engine, signals[i], chunks[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(signals))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    engine.close()
    for got, want in zip(results, solo, strict=True):
        assert detections(got) == detections(want) and got[-1] == want[-1]
    assert engine.metrics.batch_size.count() > 0


def test_latency_fields(engine: StreamingEngine) -> None:
    events = run(engine, sequence(EVENTS[:1], 1.5), 1600)
    (det,) = [e for e in events if isinstance(e, Detection)]
    assert det.queue_ms >= 0 and det.compute_ms > 0 and det.server_ms() > 0
    assert engine.algorithmic_latency_ms == 25 + 10 * engine.lookahead_frames


def test_state_stays_bounded_on_long_streams(engine: StreamingEngine) -> None:
    session = engine.create_session()
    x = sequence([], 1.0, seed=5)
    sizes = []
    for _ in range(20):
        session.accept(x)
        sizes.append((state_nbytes(session.model_state()), session.state.detector.ring.shape))
    assert len(set(sizes[2:])) == 1
    assert engine.slab.pool_window(session.slot).shape == (
        engine.config.pooling_frames - 1,
        len(engine.labels),
    )
    assert session.state.fbank.num_pending < 400 and session.queued_samples == 0
    session.close()


def test_session_limits_and_closing(tone_checkpoint: Path) -> None:
    engine = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(max_sessions=2))
    a, b = engine.create_session(), engine.create_session()
    with pytest.raises(EngineFullError, match="2 of 2"):
        engine.create_session()
    a.close()
    a.close()
    with pytest.raises(SessionClosedError, match="closed"):
        a.push(np.zeros(10, np.float32))
    b.finish()
    with pytest.raises(SessionClosedError, match="stopped"):
        b.push(np.zeros(10, np.float32))
    b.close()
    engine.start()
    for _ in range(200):
        s = engine.create_session(44100)
        s.push(np.zeros(4410, np.float32))
        s.close()
    engine.close()
    assert engine.sessions == {} and engine.ready_sessions == 0
    assert engine.metrics.active_sessions.value() == 0


def test_bad_session_options(engine: StreamingEngine) -> None:
    with pytest.raises(ValueError, match=r"unknown keywords \['yes'\]"):
        engine.create_session(keywords=["yes"])
    with pytest.raises(ValueError, match="unknown threshold keys"):
        engine.create_session(thresholds={"loud": 0.2})
    s = engine.create_session(keywords=["high"], thresholds={"high": 0.4})
    assert s.detector_config.keywords == ["high"]
    events = s.accept(sequence(EVENTS[:2], 3.0))
    assert [k for k, _ in detections(events)] == ["high"]
    s.close()


def test_classify_whole_clips(engine: StreamingEngine) -> None:
    clips = [sequence([(label, 0.3)], 1.0, seed=i) for i, label in enumerate(LABELS[:3])]
    clips.append(sequence([], 1.0, seed=7))
    clips.append(sequence([("high", 0.3)], 1.0, rate=44100))
    clips.append(sequence([("low", 2.0)], 4.0))  # longer than the window: best 1 s window
    rates = [16000] * 4 + [44100, 16000]
    posteriors = engine.classify(clips, rates)
    labels = [LABELS[int(np.argmax(p))] for p in posteriors]
    assert labels == [*LABELS, "high", "low"]


def test_sessions_behind_by_different_amounts_share_few_model_calls(tone_checkpoint: Path) -> None:
    """Backlogs of 1..40 frames are taken in powers of two: one step makes at most
    log2(max_step_frames) + 1 model calls, and every session still gets exactly its frames."""
    engine = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(max_step_frames=64))
    calls: list[tuple[int, int]] = []
    stream_frames = batch_dependent_rounding(engine.model.stream_frames)

    def counting(frames: torch.Tensor, state: object):  # type: ignore[no-untyped-def]
        calls.append(tuple(frames.shape[:2]))
        return stream_frames(frames, state)

    engine.model.stream_frames = counting  # type: ignore[method-assign]
    x = sequence(EVENTS[:1], 1.5, seed=6)
    sessions = [engine.create_session(scores_every_ms=10) for _ in range(40)]
    for k, s in enumerate(sessions):
        s.push(x[: 400 + 160 * k])  # k + 1 frames waiting
    assert engine.step_ready() == len(sessions)  # one step for all of them
    assert len(calls) <= 7 and sum(b * m for b, m in calls) <= sum(range(1, 41))
    assert {m for _, m in calls} <= {1, 2, 4, 8, 16, 32}
    # the rest comes in later steps, in order, and every frame is scored exactly once
    solo = run(StreamingEngine.from_checkpoint(tone_checkpoint), x, 16000, scores_every_ms=10)
    for s in sessions:
        s.push(x[400 + 160 * sessions.index(s) :])
    results = []
    for s in sessions:
        results.append(s.poll() + s.finish())
        s.close()
    for events in results:
        assert_same_events(without_latency(events), without_latency(solo))


def test_runtime_choice(tone_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: ONNX Runtime on the CPU (exported first, unless in the background as the server
    does), torch (with a warning) when the export cannot load; an explicit onnx runtime fails
    loudly instead."""
    auto = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(runtime="auto"))
    assert auto.runtime == "onnx"
    assert StreamingEngine.from_checkpoint(tone_checkpoint).runtime == "torch"  # library default
    with pytest.raises(ValueError, match="runtime must be one of"):
        EngineConfig(runtime="tensorrt")

    from models import onnx_step

    def broken(*args, **kwargs):
        raise RuntimeError("no graph today")

    monkeypatch.setattr(onnx_step.OnnxStreamStep, "__init__", broken)
    fallback = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(runtime="auto"))
    assert fallback.runtime == "torch" and fallback.step.runtime.model is fallback.model
    with pytest.raises(RuntimeError, match="no graph today"):
        StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(runtime="onnx"))


def test_a_failing_session_does_not_fail_the_others_of_its_step(
    tone_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model step that raises is retried session by session: only the session whose own
    step fails gets a Failure; the others of the batch keep their detections (run in batches of
    three, one and two, so their scores agree within the tolerance, not bit for bit)."""
    from streaming.session import Failure

    engine = StreamingEngine.from_checkpoint(tone_checkpoint, EngineConfig(max_batch=8))
    engine.model.stream_frames = batch_dependent_rounding(  # type: ignore[method-assign]
        engine.model.stream_frames
    )
    x = sequence(EVENTS[:2], 3.0, seed=1)
    want = without_latency(run(engine, x, 16000))
    sessions = [engine.create_session(16000) for _ in range(3)]
    culprit = sessions[1]
    gather = engine.slab.gather_leaves

    def failing(rows: torch.Tensor) -> list[torch.Tensor]:
        if culprit.slot in rows.tolist():
            raise RuntimeError("simulated kernel failure")
        return gather(rows)

    monkeypatch.setattr(engine.slab, "gather_leaves", failing)
    batches: list[int] = []
    for i in range(0, x.size, 1600):
        for s in sessions:
            if not s.failed:
                s.push(x[i : i + 1600])
        while n := engine.step_ready():
            batches.append(n)
    for s in sessions:
        if not s.failed:
            s.push_stop()
    while engine.step_ready():
        pass
    events = [s.poll() for s in sessions]
    assert batches[0] == 3  # the three sessions shared the step that failed
    (failure,) = events[1]
    assert isinstance(failure, Failure) and "simulated kernel failure" in failure.message
    assert_same_events(without_latency(events[0]), want)
    assert_same_events(without_latency(events[2]), want)


def test_sensitivity_wake_word_and_posteriors_of_a_session(engine: StreamingEngine) -> None:
    """``sensitivity`` moves every threshold along the curve (explicit thresholds still win);
    ``wake_word`` admits "high" only within the command window after "low"; the recorded
    posteriors replayed through the pure detector give the engine's own detections."""
    from streaming.detector import DetectorState, detect
    from streaming.session import Posteriors

    strict = engine.create_session(sensitivity=0.0)
    loose = engine.create_session(sensitivity=1.0, thresholds={"high": 0.6})
    assert strict.detector_config.keyword_thresholds["low"] > 0.95
    assert loose.detector_config.keyword_thresholds == pytest.approx({"low": 0.01, "high": 0.6})
    strict.close()
    loose.close()
    # under a wake word, the commands may take their own point of the curve
    woken = engine.create_session(sensitivity=0.0, wake_word="low", command_sensitivity=1.0)
    thresholds = woken.detector_config.keyword_thresholds
    assert thresholds["low"] > 0.95 and thresholds["high"] == pytest.approx(0.01)
    woken.close()
    with pytest.raises(ValueError, match="commands' point under a wake_word"):
        engine.create_session(command_sensitivity=1.0)
    # the engine's default applies to sessions with a wake word only
    loose_commands = replace(engine.config, command_sensitivity=1.0)
    engine.config = loose_commands
    try:
        woken = engine.detector_config(sensitivity=0.0, wake_word="low").keyword_thresholds
        plain = engine.detector_config(sensitivity=0.0).keyword_thresholds
    finally:
        engine.config = replace(loose_commands, command_sensitivity=None)
    assert woken["high"] == pytest.approx(0.01) and plain["high"] > 0.95
    with pytest.raises(ValueError, match="sensitivity must be in"):
        engine.create_session(sensitivity=2.0)
    with pytest.raises(ValueError, match="unknown wake words"):
        engine.create_session(wake_word="hey")

    x = sequence(EVENTS, TOTAL_S)  # low 0.5 s, high 2.0 s, low 5.0 s
    found = detections(run(engine, x, 1600, wake_word="low", command_window_ms=3000))
    assert [k for k, _ in found] == ["low", "high", "low"]
    found = detections(run(engine, x, 1600, wake_word="low", command_window_ms=500))
    assert [k for k, _ in found] == ["low", "low"]  # "high" came 1.5 s after "low"
    found = detections(run(engine, x, 1600, wake_word="high", command_window_ms=2000))
    assert [k for k, _ in found] == ["high"]  # "low" before the wake word, then too late

    events = run(engine, x, 1234, record_posteriors=True)
    rows = [e for e in events if isinstance(e, Posteriors)]
    assert [r.frame for r in rows] == list(np.cumsum([0] + [len(r.values) for r in rows[:-1]]))
    posteriors = np.concatenate([r.values for r in rows])
    assert posteriors.shape == (Fbank().num_frames(x.size), len(LABELS))
    config = engine.detector_config()
    _, firings, _ = detect(config, DetectorState.initial(config), posteriors)
    engine_found = [(e.keyword, e.frame) for e in events if isinstance(e, Detection)]
    assert [(f.keyword, f.frame) for f in firings] == engine_found


def test_a_state_that_turns_non_finite_is_reset_and_counted(engine: StreamingEngine) -> None:
    """Extreme samples (1e30: the fbank's power overflows) turn the model's output non-finite:
    those frames are dropped (no scores, no detections), the session's state is reset and the
    reset counted, and detections of what follows come at the right audio times."""
    bad = np.full(16000, 1e30, np.float32)
    good = sequence([("high", 0.5)], 2.0, seed=5)
    clean = detections(run(engine, good, 1600))
    assert clean
    resets = engine.metrics.state_resets_total.value()
    session = engine.create_session(16000, scores_every_ms=100)
    events = session.accept(bad)
    assert not any(isinstance(e, Detection) for e in events)
    for e in events:
        if isinstance(e, Scores):
            assert all(np.isfinite(p) for _, p in e.top)
    assert engine.metrics.state_resets_total.value() > resets
    for i in range(0, good.size, 1600):
        events += session.accept(good[i : i + 1600])
    events += session.finish()
    session.close()
    after = [(k, ms - 1000.0) for k, ms in detections(events)]
    assert [k for k, _ in after] == [k for k, _ in clean]
    for (_, ms), (_, expected) in zip(after, clean, strict=True):
        assert abs(ms - expected) <= 20.0  # the reset drops the < 10 ms of a partial hop
    end = events[-1]
    assert isinstance(end, End) and end.audio_ms == pytest.approx(3000.0)
    assert all(np.isfinite(p) for e in events if isinstance(e, Scores) for _, p in e.top)


def served(path: Path, audio: np.ndarray, posterior: str) -> tuple[np.ndarray, list[str]]:
    """The engine's pooled posteriors [T, K] and detected keywords for ``audio``."""
    config = EngineConfig.from_metadata(
        read_metadata(path), runtime="torch", max_sessions=2, posterior=posterior
    )
    engine = StreamingEngine.from_checkpoint(path, config)
    try:
        events = run(engine, audio, 1600, record_posteriors=True)
    finally:
        engine.close()
    rows = np.concatenate([e.values for e in events if isinstance(e, Posteriors)])
    return rows, [e.keyword for e in events if isinstance(e, Detection)]


@pytest.mark.parametrize("posterior", ["sigmoid", "softmax"])
def test_the_served_ensemble_averages_the_members_pooled_logits(
    tone_checkpoint: Path, tmp_path: Path, posterior: str
) -> None:
    """An ensemble checkpoint's pooled posteriors are those of the members' averaged pooled
    logits (log-odds averaged under a sigmoid, log-posteriors renormalised under a softmax),
    and it detects like any checkpoint."""
    model, meta = load_checkpoint(tone_checkpoint)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a second member: the tone model, its head perturbed
        head = model.network[-1][-1]
        head.weight.add_(0.5 * torch.randn(head.weight.shape, generator=generator))
    other = save_checkpoint(tmp_path / "other.safetensors", model, meta)
    ensemble = tmp_path / "ensemble.safetensors"
    write_ensemble([tone_checkpoint, other], (0.7, 0.3), ensemble)
    audio = sequence(EVENTS[:2], 3.0, seed=3)
    a, _ = served(tone_checkpoint, audio, posterior)
    b, _ = served(other, audio, posterior)
    e, found = served(ensemble, audio, posterior)
    assert a.shape == b.shape == e.shape and len(a) > 250
    if posterior == "sigmoid":
        expected = 1 / (1 + np.exp(-(0.7 * np.log(a / (1 - a)) + 0.3 * np.log(b / (1 - b)))))
    else:
        log = 0.7 * np.log(a) + 0.3 * np.log(b)
        expected = np.exp(log - log.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(e, expected, atol=1e-4)
    assert found == ["low", "high"]  # the tone model's bursts, still found
