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


def _bursts(frames: int, every: int, label: int, p: float, seed: int = 0) -> np.ndarray:
    """Keywords near zero (as in speech without them), ``label`` at ``p`` for 30 frames every
    ``every`` frames."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.001, size=(frames, len(LABELS)))
    x[:, 2] = 0.6
    for start in range(every // 2, frames - 30, every):
        x[start : start + 30, label] = p
    return x


def test_background_normalisation_follows_its_formula() -> None:
    """A constant posterior: no change for two blocks, then its odds are divided by
    (b + floor) / floor, b the block-EMA of the posterior two blocks back."""
    from streaming.detector import BACKGROUND_BLOCK as L
    from streaming.detector import Background, normalize_background

    cfg = config(background_frames=400, background_floor=0.01)
    x = np.full((4 * L, len(LABELS)), 0.2)
    (state,), (out,) = normalize_background(cfg, [Background.initial(len(LABELS))], x[None], [0])
    decay = np.exp(-L / 400)
    np.testing.assert_array_equal(out[: 2 * L], x[: 2 * L])
    b1 = (1 - decay) * 0.2  # after block 0, used in block 2
    b2 = decay * b1 + (1 - decay) * 0.2  # after block 1, used in block 3
    for block, b in ((2, b1), (3, b2)):
        c = 0.01 / (b + 0.01)
        rows = out[block * L : (block + 1) * L]
        np.testing.assert_allclose(rows[:, :2], 0.2 * c / (0.2 * c + 0.8), rtol=1e-12)
        np.testing.assert_array_equal(rows[:, 2:], x[:L, 2:])  # _unknown_, _silence_ untouched
    b3 = decay * b2 + (1 - decay) * 0.2  # after block 2: what block 4 would use
    np.testing.assert_allclose(state.lagged, b3, rtol=1e-12)
    np.testing.assert_allclose(state.level, decay * b3 + (1 - decay) * 0.2, rtol=1e-12)


def test_a_keyword_a_voice_keeps_lifting_stops_firing_and_others_still_fire() -> None:
    """A voice the model keeps half-hearing as "yes" (0.3 for 30 of every 100 frames) and
    whose peaks reach 0.62 every 9 s: without a background each peak fires; with one (already
    risen 4.5 s in) none does, while a first "no" at the end still does."""
    x = _bursts(6000, 100, 0, 0.3)
    for start in range(450, 5800, 900):
        x[start : start + 30, 0] = 0.62
    x[5900:5930, 1] = 0.8
    plain = fired(config(), x)
    assert len([k for k, _ in plain if k == "yes"]) == 6 and ("no", 5902) in plain
    assert fired(config(background_frames=3000), x) == [("no", 5902)]


def test_a_command_said_clearly_again_and_again_keeps_firing() -> None:
    """Posteriors at or above the ceiling (a keyword said clearly) leave the background as it
    is: "yes" at 0.9 every 3 s fires every time; counted with a ceiling of 1, its own sayings
    raise its bar until it stops."""
    x = _bursts(6000, 300, 0, 0.9)
    plain = fired(config(), x)
    assert len(plain) == 20
    assert fired(config(background_frames=3000), x) == plain
    assert len(fired(config(background_frames=3000, background_ceiling=1.0), x)) < 10


def test_a_wake_word_said_again_and_again_keeps_its_bar() -> None:
    """The half-heard sayings of a keyword (0.3, under the ceiling) raise its bar until its
    clear ones (0.62) are missed; as the wake word, said again and again by design, it keeps
    firing, and in one batch a session without the grammar still normalises it."""
    from streaming.detector import detect_batch

    x = _bursts(6000, 100, 1, 0.3)
    for start in range(450, 5800, 900):
        x[start : start + 30, 1] = 0.62
    plain = fired(config(), x)
    assert [k for k, _ in plain] == ["no"] * 6
    assert fired(config(background_frames=3000), x) == []
    woken = config(background_frames=3000, wake_word="no", command_frames=100)
    assert fired(woken, x) == plain
    assert not woken.normalized_labels[1] and woken.normalized_labels[0]
    normalised = config(background_frames=3000)
    states = [DetectorState.initial(c) for c in (woken, normalised)]
    _, firings, _ = detect_batch([woken, normalised], states, np.stack([x, x]))
    assert [[(f.keyword, f.frame) for f in found] for found in firings] == [plain, []]


def test_background_gives_the_same_bits_chunked_batched_and_replayed() -> None:
    """Any chunking, a batch of sessions at other block phases, and the fast replay: the same
    firings, and the chunked scores are the same bits as the whole."""
    from streaming.detector import detect_batch, replay

    cfg = config(background_frames=500, smoothing_frames=3, patience_frames=2)
    x = _bursts(1500, 170, 0, 0.7, seed=1)
    x[:, 1] = _bursts(1500, 230, 1, 0.75, seed=2)[:, 1]
    x[:, 0] += _bursts(1500, 60, 0, 0.25, seed=3)[:, 0] * (x[:, 0] < 0.5)  # under the ceiling
    state0 = DetectorState.initial(cfg)
    _, whole, smoothed = detect(cfg, state0, x)
    assert whole and replay(cfg, x) == whole
    state, parts, scores = state0, [], []
    for chunk in np.array_split(x, [1, 99, 100, 101, 350, 777, 1234]):
        state, found, s = detect(cfg, state, chunk)
        parts += found
        scores.append(s)
    assert parts == whole
    assert np.array_equal(np.concatenate(scores), smoothed)
    # two sessions in one batch: one from rest, one 37 frames in (another block phase)
    other, _, _ = detect(cfg, state0, x[:37])
    states, firings, batch = detect_batch([cfg, cfg], [state0, other], np.stack([x[37:], x[37:]]))
    fresh = detect(cfg, state0, x[37:])
    assert np.array_equal(batch[0], fresh[2]) and firings[0] == fresh[1]
    assert np.array_equal(batch[1], smoothed[37:])
    assert firings[1] == [f for f in whole if f.frame >= 37]
    assert np.array_equal(states[1].background.level, state.background.level)


def test_background_settings_are_checked() -> None:
    for kwargs, match in (
        ({"background_frames": -1}, "background_frames"),
        ({"background_floor": 0.0}, "background_floor"),
        ({"background_ceiling": 0.0}, "background_ceiling"),
        ({"background_ceiling": 1.5}, "background_ceiling"),
    ):
        with pytest.raises(ValueError, match=match):
            config(**kwargs)
    assert DetectorState.initial(config()).background is None


def test_speech_gate_holds_a_keyword_back_right_after_long_other_speech() -> None:
    """``_unknown_`` (label 2) on top for 30 frames, then "yes": held back within 10 frames of
    that speech's end, fired later; after only 20 frames of speech (a short carrier) it fires
    at once; without the gate it fires in every case."""
    cfg = config(speech_gate_frames=25, speech_gate_recent_frames=10)
    long_then_yes = seq((2, 0.9, 30), (0, 0.9, 5))
    assert fired(config(), long_then_yes) == [("yes", 32)]
    assert fired(cfg, long_then_yes) == []  # frames 30-34: 1 to 5 frames after the speech
    later = seq((2, 0.9, 30), (3, 0.9, 5), (0, 0.9, 12))  # 5 frames of silence, then "yes"
    assert fired(cfg, later) == [("yes", 40)]  # 11 frames after the speech: the gate opens
    short_then_yes = seq((2, 0.9, 20), (0, 0.9, 5))
    assert fired(cfg, short_then_yes) == [("yes", 22)]
    # other speech only counts above SPEECH_GATE_POSTERIOR (0.5): a weak _unknown_ is not speech
    weak = seq((2, 0.45, 30), (0, 0.9, 5))
    assert fired(cfg, weak) == [("yes", 32)]


def test_speech_gate_never_holds_the_wake_word_back() -> None:
    cfg = config(speech_gate_frames=25, speech_gate_recent_frames=10, wake_word="no")
    x = seq((2, 0.9, 30), (1, 0.9, 5), (0, 0.9, 5))
    assert fired(cfg, x) == [("no", 32)]  # the command right after it is held back
    assert fired(config(wake_word="no", command_frames=20), x) == [("no", 32), ("yes", 37)]


def test_speech_gate_gives_the_same_firings_chunked_batched_and_replayed() -> None:
    """The gate's count carries across chunks (a run of speech split anywhere), sessions in
    one batch keep their own, and the fast replay gates as ``detect`` does."""
    from streaming.detector import detect_batch, replay, speech_gate

    rng = np.random.default_rng(7)
    rows = []
    for _ in range(60):  # stretches of other speech, silence and keywords of random lengths
        label = int(rng.choice([0, 1, 2, 2, 3]))
        rows.append((label, float(rng.uniform(0.55, 0.95)), int(rng.integers(3, 40))))
    x = seq(*rows)
    cfg = config(speech_gate_frames=20, speech_gate_recent_frames=15, refractory_frames=5)
    state0 = DetectorState.initial(cfg)
    _, whole, _ = detect(cfg, state0, x)
    ungated = fired(config(refractory_frames=5), x)
    assert whole and len(whole) < len(ungated)  # the gate held some back, not all
    assert replay(cfg, x) == whole
    closed, _ = speech_gate(cfg, state0.speech, x)
    assert not any(closed[f.frame] for f in whole)
    state, parts = state0, []
    for chunk in np.array_split(x, [1, 17, 18, 200, 401, 777]):
        state, found, _ = detect(cfg, state, chunk)
        parts += found
    assert parts == whole
    other, _, _ = detect(cfg, state0, x[:50])
    _, firings, _ = detect_batch([cfg, cfg], [state0, other], np.stack([x[50:], x[50:]]))
    assert firings[0] == detect(cfg, state0, x[50:])[1]
    assert firings[1] == [f for f in whole if f.frame >= 50]


def test_speech_gate_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="speech_gate_frames"):
        config(speech_gate_frames=-1)
    with pytest.raises(ValueError, match="speech_gate_recent_frames"):
        config(speech_gate_frames=10, speech_gate_recent_frames=0)
    with pytest.raises(ValueError, match="_unknown_"):
        DetectorConfig.build(("yes", "no"), speech_gate_frames=10)
    assert DetectorState.initial(config()).speech is None
    assert DetectorState.initial(config(speech_gate_frames=5)).speech is not None


def test_speech_gate_counts_the_same_frame_by_frame_and_by_array() -> None:
    """Live steps (a few frames) count frame by frame, replays of recordings with arrays: the
    same gate and count after any history, any length."""
    from streaming.detector import SpeechRun, _gate_by_array, _gate_by_frame

    cfg = config(speech_gate_frames=20, speech_gate_recent_frames=7)
    rng = np.random.default_rng(3)
    for _ in range(300):
        speech = rng.random(int(rng.integers(1, 120))) < rng.uniform(0.2, 0.95)
        current = int(rng.integers(0, 40)) * int(rng.random() < 0.5)
        since = 0 if current else int(rng.integers(1, 60))
        run = SpeechRun(current, current or int(rng.integers(0, 40)), since)
        a, after_a = _gate_by_frame(cfg, run, speech)
        b, after_b = _gate_by_array(cfg, run, speech)
        assert np.array_equal(a, b) and after_a == after_b
