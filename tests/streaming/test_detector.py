"""The detector on hand-written posterior sequences."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.detector import Detector, DetectorConfig, DetectorState, detect, sliding_mean

LABELS = ("yes", "no", "_unknown_", "_silence_")


def config(**kwargs: object) -> DetectorConfig:
    params: dict = dict(
        smoothing_frames=1,
        patience_frames=3,
        refractory_frames=10,
        warmup_frames=0,
        early_threshold=None,
    )
    params.update(kwargs)
    return DetectorConfig.build(LABELS, default_threshold=0.5, **params)


def seq(*rows: tuple[int, float, int]) -> np.ndarray:
    """Rows of (label, p, frames): that label at p, every other label at 0.05."""
    out = []
    for label, p, n in rows:
        frame = np.full(len(LABELS), 0.05)
        frame[label] = p
        out += [frame] * n
    return np.array(out)


def fired(cfg: DetectorConfig, posteriors: np.ndarray) -> list[tuple[str, int]]:
    _, firings, _ = detect(cfg, DetectorState.initial(cfg), posteriors)
    return [(f.keyword, f.frame) for f in firings]


def test_patience_counts_consecutive_frames() -> None:
    cfg = config()
    assert fired(cfg, seq((0, 0.1, 5), (0, 0.8, 2), (0, 0.1, 3))) == []
    assert fired(cfg, seq((0, 0.1, 5), (0, 0.8, 3))) == [("yes", 7)]


def test_one_utterance_fires_once_and_rearms_after_dropping() -> None:
    cfg = config(refractory_frames=0)
    x = seq((0, 0.9, 50), (0, 0.1, 2), (0, 0.9, 3))
    assert fired(cfg, x) == [("yes", 2), ("yes", 54)]


def test_refractory_blocks_every_keyword() -> None:
    cfg = config(refractory_frames=10)
    x = seq((0, 0.9, 3), (1, 0.9, 3), (2, 0.1, 10), (1, 0.9, 3))
    assert fired(cfg, x) == [("yes", 2), ("no", 18)]


def test_unknown_and_silence_never_fire() -> None:
    cfg = config(early_threshold=0.5)
    assert fired(cfg, seq((2, 0.99, 20), (3, 0.99, 20))) == []
    assert np.isinf(cfg.thresholds[2:]).all()
    assert cfg.keywords == ["yes", "no"]


def test_warmup_mutes_then_fires_if_still_above() -> None:
    cfg = config(warmup_frames=10)
    assert fired(cfg, seq((0, 0.9, 5), (0, 0.1, 10))) == []
    assert fired(cfg, seq((0, 0.9, 12))) == [("yes", 10)]


def test_early_decision_skips_patience() -> None:
    cfg = config(patience_frames=5, early_threshold=0.95)
    assert fired(cfg, seq((1, 0.1, 3), (1, 0.97, 1), (1, 0.1, 3))) == [("no", 3)]
    assert fired(cfg, seq((1, 0.1, 3), (1, 0.9, 4), (1, 0.1, 3))) == []


def test_smoothing_averages_the_last_frames() -> None:
    cfg = DetectorConfig.build(
        LABELS,
        default_threshold=0.45,
        smoothing_frames=4,
        patience_frames=1,
        refractory_frames=0,
        warmup_frames=0,
        early_threshold=None,
    )
    # smoothed "yes": 0.1 x4, then (0.3 + 0.9) / 4 = 0.3, then 0.5 -> fires at frame 5
    x = seq((0, 0.1, 4), (0, 0.9, 4))
    assert fired(cfg, x) == [("yes", 5)]
    _, _, smoothed = detect(cfg, DetectorState.initial(cfg), x)
    assert smoothed[:, 0] == pytest.approx([0.1] * 4 + [0.3, 0.5, 0.7, 0.9])


def test_only_the_top_label_fires() -> None:
    cfg = config(patience_frames=1)
    x = np.array([[0.7, 0.8, 0.05, 0.05]] * 3)
    assert fired(cfg, x) == [("no", 0)]


def test_thresholds_priority_and_keyword_subset() -> None:
    cfg = DetectorConfig.build(
        LABELS,
        default_threshold=0.5,
        label_thresholds={"yes": 0.7, "no": 0.6},
        overrides={"no": 0.2},
        keywords=["no"],
    )
    assert np.isinf(cfg.thresholds[0]) and cfg.thresholds[1] == 0.2
    with pytest.raises(ValueError, match=r"unknown keywords \['maybe'\]"):
        DetectorConfig.build(LABELS, keywords=["maybe"])
    with pytest.raises(ValueError, match="unknown threshold keys"):
        DetectorConfig.build(LABELS, overrides={"nope": 0.3})


def test_any_split_of_the_sequence_gives_the_same_result() -> None:
    rng = np.random.default_rng(0)
    cfg = config(smoothing_frames=3, patience_frames=2, refractory_frames=5, warmup_frames=4)
    x = rng.uniform(0, 1, size=(200, len(LABELS))) ** 3
    whole = fired(cfg, x)
    assert whole
    det = Detector(cfg)
    parts = []
    for chunk in np.array_split(x, [1, 2, 17, 50, 51, 120]):
        parts += [(f.keyword, f.frame) for f in det.update(chunk)]
    assert parts == whole
    det.reset()
    assert [(f.keyword, f.frame) for f in det.update(x)] == whole


def test_detect_is_pure() -> None:
    cfg = config()
    state = DetectorState.initial(cfg)
    before = (state.ring.copy(), state.armed.copy())
    detect(cfg, state, seq((0, 0.9, 5)))
    assert np.array_equal(state.ring, before[0]) and np.array_equal(state.armed, before[1])
    assert state.frames == 0
    with pytest.raises(ValueError, match=r"posteriors must be \[T, 4\]"):
        detect(cfg, state, np.zeros((3, 5)))


def test_sliding_mean_is_the_same_bits_batched_and_chunked() -> None:
    """A row's mean depends only on its window: batch size and chunking do not change a bit."""
    rng = np.random.default_rng(0)
    W, K, T, B = 7, 4, 40, 5
    x = rng.standard_normal((B, T, K)) * 10
    whole = sliding_mean(np.zeros((B, W - 1, K)), x, np.zeros(B, dtype=int), W)
    for b in range(B):
        history, seen, rows = np.zeros((W - 1, K)), 0, []
        for size in (1, 3, 2, 9, 25):
            chunk = x[b, seen : seen + size]
            rows.append(sliding_mean(history, chunk, seen, W))
            history = np.concatenate((history, chunk))[chunk.shape[0] :]
            seen += chunk.shape[0]
        assert np.array_equal(np.concatenate(rows), whole[b])
    naive = np.stack(
        [x[:, max(0, t - W + 1) : t + 1].sum(axis=1) / min(W, t + 1) for t in range(T)], axis=1
    )
    np.testing.assert_allclose(whole, naive, rtol=1e-12, atol=1e-12)


def test_a_score_wobbling_around_the_threshold_fires_once() -> None:
    """A long word (or a sentence around it) passing through the pooling window: its score dips
    under the threshold and climbs back several times; it re-arms only well below it."""
    cfg = config(refractory_frames=0)
    x = seq((0, 0.8, 10), (0, 0.45, 4), (0, 0.7, 10), (0, 0.42, 3), (0, 0.9, 20), (0, 0.1, 5))
    assert fired(cfg, x) == [("yes", 2)]
    assert fired(config(refractory_frames=0, rearm_fraction=1.0), x) == [
        ("yes", 2),
        ("yes", 16),
        ("yes", 29),
    ]
    x = seq((0, 0.8, 10), (0, 0.3, 4), (0, 0.8, 10))  # a second utterance: dropped well below
    assert fired(cfg, x) == [("yes", 2), ("yes", 16)]
    with pytest.raises(ValueError, match="rearm_fraction"):
        config(rearm_fraction=0.0)


def test_wake_word_grammar_opens_a_command_window() -> None:
    """With wake word "no", "yes" fires only within command_frames after "no" fired, and the
    wake word's firing does not start the refractory period for the command."""
    cfg = config(wake_word="no", command_frames=20, refractory_frames=50)
    assert cfg.wake_label == 1
    alone = seq((0, 0.9, 5), (2, 0.1, 40))
    assert fired(cfg, alone) == []  # a command without the wake word
    inside = seq((1, 0.9, 4), (0, 0.9, 5), (2, 0.1, 40))
    assert fired(cfg, inside) == [("no", 2), ("yes", 6)]
    late = seq((1, 0.9, 4), (2, 0.1, 30), (0, 0.9, 5))
    assert fired(cfg, late) == [("no", 2)]  # the window closed 20 frames after the wake word
    assert fired(config(), late) == [("no", 2), ("yes", 36)]  # no grammar: both fire
    restricted = config(wake_word="no", command_frames=20, keywords=["yes"])
    assert restricted.keywords == ["yes", "no"]  # the wake word can always fire
    with pytest.raises(ValueError, match=r"unknown wake words \['hey'\]"):
        config(wake_word="hey")
    with pytest.raises(ValueError, match="never fires"):
        config(wake_word="_unknown_")


def test_wake_word_window_carries_across_chunks() -> None:
    cfg = config(wake_word="no", command_frames=20)
    x = seq((1, 0.9, 4), (2, 0.1, 10), (0, 0.9, 5), (2, 0.1, 40), (0, 0.9, 5))
    whole = fired(cfg, x)
    assert whole == [("no", 2), ("yes", 16)]
    det = Detector(cfg)
    parts = []
    for chunk in np.array_split(x, [3, 9, 15, 30]):
        parts += [(f.keyword, f.frame) for f in det.update(chunk)]
    assert parts == whole


@pytest.mark.parametrize("wake", [None, "no"])
def test_replay_skips_quiet_stretches_and_fires_like_detect(wake: str | None) -> None:
    """Long sparse posteriors (bursts of a keyword in noise): the fast replay gives detect's
    firings for every threshold of a sweep, with and without the wake-word grammar."""
    from streaming.detector import replay

    rng = np.random.default_rng(4)
    T = 3000
    x = rng.uniform(0, 0.3, size=(T, len(LABELS)))
    x[:, 2] = 0.5  # _unknown_ on top most of the time
    for start in rng.integers(0, T - 40, size=40):
        x[start : start + rng.integers(3, 30), rng.integers(0, 2)] = rng.uniform(0.5, 1.0)
    for threshold in (0.35, 0.5, 0.7, 0.9):
        cfg = DetectorConfig.build(
            LABELS,
            default_threshold=threshold,
            smoothing_frames=3,
            patience_frames=2,
            refractory_frames=20,
            warmup_frames=5,
            wake_word=wake,
            command_frames=100,
        )
        want = detect(cfg, DetectorState.initial(cfg), x)[1]
        assert replay(cfg, x) == want
        if threshold == 0.5:
            assert len(want) > 5
