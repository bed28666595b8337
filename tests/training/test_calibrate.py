"""Calibration: per-keyword thresholds that meet a false-alarm budget, stored for the server."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_model, read_metadata, save_checkpoint
from streaming.detector import DetectorConfig
from tests.training.conftest import STREAM_WORDS
from training.calibrate import (
    allocate,
    calibrate,
    choose_keyword_weight,
    heldout,
    run_curves,
    search_detector,
    shared_threshold,
    thresholds_for_budget,
    voice_folds,
)
from training.dataset import read_corpus_info
from training.grammar_calibration import COMMAND_GRID, choose_command_sensitivity
from training.stream_eval import StreamRun
from training.streams import KeywordEvent, Segment, Stream

GRID = (0.5, 0.7, 0.9, 0.99)
LABELS_3 = ("yes", "_unknown_", "_silence_")
# per keyword, per threshold of GRID: (hits, false alarms)
TABLES = {
    "yes": np.array([[10, 9], [9, 4], [8, 1], [5, 0]]),
    "no": np.array([[10, 2], [10, 1], [9, 0], [7, 0]]),
    "go": np.array([[10, 30], [6, 10], [3, 2], [1, 0]]),
}


def _brute(budget: float) -> int:
    best = -1
    for picks in itertools.product(range(len(GRID)), repeat=len(TABLES)):
        fa = sum(t[p, 1] for t, p in zip(TABLES.values(), picks, strict=True))
        if fa <= budget:
            best = max(best, sum(t[p, 0] for t, p in zip(TABLES.values(), picks, strict=True)))
    return best


@pytest.mark.parametrize("budget", [0, 1, 3, 5, 12, 50])
def test_allocation_meets_the_budget_on_given_scores(budget: float) -> None:
    thresholds = allocate(TABLES, GRID, budget)
    picks = {k: GRID.index(t) for k, t in thresholds.items()}
    fa = sum(TABLES[k][i, 1] for k, i in picks.items())
    hits = sum(TABLES[k][i, 0] for k, i in picks.items())
    assert fa <= budget
    # the Lagrangian optimum is on the convex hull: within a keyword's step of the brute force
    assert hits >= _brute(budget) - 3
    if budget == 0:
        assert thresholds == {"yes": 0.99, "no": 0.9, "go": 0.99}
    if budget >= 50:
        assert set(thresholds.values()) <= {0.5, 0.7}


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@pytest.mark.parametrize("budget", [0, 3, 12])
def test_thresholds_are_pulled_toward_the_shared_one(budget: float) -> None:
    own = allocate(TABLES, GRID, budget)
    shared = shared_threshold(TABLES, GRID, budget)
    # the shared threshold is the lowest at which the summed false alarms fit
    total = sum(t[:, 1] for t in TABLES.values())
    assert total[GRID.index(shared)] <= budget
    assert GRID.index(shared) == 0 or total[GRID.index(shared) - 1] > budget
    assert thresholds_for_budget(TABLES, GRID, budget, 1.0) == own
    assert thresholds_for_budget(TABLES, GRID, budget, 0.0) == dict.fromkeys(own, shared)
    half = thresholds_for_budget(TABLES, GRID, budget, 0.5)
    for k, t in half.items():  # halfway in logit space
        assert _logit(t) == pytest.approx((_logit(own[k]) + _logit(shared)) / 2)
    with pytest.raises(ValueError, match="keyword_weight"):
        thresholds_for_budget(TABLES, GRID, budget, 1.5)


def test_pulled_thresholds_never_rise_with_the_budget() -> None:
    for weight in (0.0, 0.5, 1.0):
        ladder = [thresholds_for_budget(TABLES, GRID, b, weight) for b in (0, 1, 3, 5, 12, 50)]
        for strict, loose in itertools.pairwise(ladder):
            assert all(loose[k] <= strict[k] for k in strict)


def _run(voice: str, peaks: list[tuple[int, int, float]], event: bool) -> StreamRun:
    """A minute of one voice: "yes" posteriors at ``peaks`` (start frame, frames, height),
    with a "yes" event at 10.0-10.5 s when ``event`` (its peak is in ``peaks``)."""
    T = 6_000
    posteriors = np.zeros((T, 3))
    posteriors[:, 2] = 1.0
    for start, frames, height in peaks:
        posteriors[start : start + frames] = (height, 0.0, 1.0 - height)
    stream = Stream(
        name=f"mixed/{voice}",
        kind="mixed",
        voice=voice,
        audio=np.broadcast_to(np.zeros(1, np.float32), (T * 160 + 240,)),
        events=[KeywordEvent("yes", 10.0, 10.5, "alone")] if event else [],
        segments=[Segment("keyword", 10.0, 10.5, "yes")] if event else [],
    )
    return StreamRun(stream, posteriors, [])


def test_voice_folds_keep_each_voice_in_one_fold() -> None:
    runs = [_run(v, [], False) for v in ("a", "b", "c", "a", "b", "d", "e")]
    fold = voice_folds(runs, 3)
    assert sorted(set(fold)) == [0, 1, 2]
    for voice in "abcde":
        assert len({f for f, r in zip(fold, runs, strict=True) if r.stream.voice == voice}) == 1
    assert sorted(set(voice_folds(runs, 10))) == [0, 1, 2, 3, 4]  # at most one fold per voice


def test_heldout_measures_thresholds_picked_on_the_other_voices() -> None:
    """Voice "a" has a false "yes" peak at 0.9 that voice "b" lacks. Calibrated on both, a
    zero-false-alarm budget puts the threshold above it; held out, the threshold picked on "b"
    alone does not know the peak, and "a" fires on it."""
    yes = (1015, 40, 0.97)
    runs = [_run("a", [yes, (3000, 40, 0.9)], True), _run("b", [yes], True)]
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    counts = run_curves(runs, base, base.keywords, GRID)
    assert counts.shape == (2, 1, len(GRID), 2)
    in_sample = allocate({"yes": counts.sum(axis=0)[0]}, GRID, 0)
    assert in_sample == {"yes": 0.99} or in_sample["yes"] > 0.9
    (point,) = heldout(runs, base, counts, [0.1], folds=2)
    assert point["target_fa_per_hour"] == 0.1
    assert point["recall"] == 1.0  # both keywords found
    hours = sum(r.stream.scored_seconds_after(1.0) for r in runs) / 3600
    assert point["fa_per_hour"] == pytest.approx(1 / hours)  # "a"'s peak, once
    assert heldout(runs[:1], base, counts[:1], [0.1]) is None  # one voice: nothing held out


def test_auto_weight_picks_the_best_held_out_recall_at_the_target() -> None:
    """Four voices, each with one "yes"; two have a false peak of their own. The weights'
    held-out curves differ, and the chosen one is the best at the target rate."""
    yes = (1015, 40, 0.97)
    runs = [
        _run("a", [yes, (3000, 40, 0.9)], True),
        _run("b", [yes], True),
        _run("c", [yes, (4000, 40, 0.6)], True),
        _run("d", [(1015, 40, 0.8)], True),
    ]
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    counts = run_curves(runs, base, base.keywords)
    weight, rows, points = choose_keyword_weight(runs, base, counts, 20.0, folds=4)
    assert [r["keyword_weight"] for r in rows] == [0.25, 0.5, 0.75, 1.0]
    assert sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["keyword_weight"] == weight
    reached = [r["heldout_recall_at_target"] for r in rows if r["heldout_recall_at_target"]]
    assert chosen["heldout_recall_at_target"] == max(reached)
    targets = [p["target_fa_per_hour"] for p in points]
    assert points == heldout(runs, base, counts, targets, folds=4, keyword_weight=weight)
    with pytest.raises(ValueError, match="two validation voices"):
        choose_keyword_weight(runs[:1], base, counts[:1], 20.0)


def _tiny_checkpoint(corpus: Path, tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """An untrained dim-16 lmuformer with the corpus's labels and a softmax detector."""
    labels = read_corpus_info(corpus)["labels"]
    torch.manual_seed(0)
    model = build_model("lmuformer", dim=16, num_classes=len(labels)).eval()
    metadata = {"labels": labels, "detector": {"posterior": "softmax"}}
    return save_checkpoint(tmp_path / "m.safetensors", model, metadata), model


def test_calibrate_writes_operating_points_the_server_reads(
    stream_corpus: Path, tmp_path: Path
) -> None:
    from streaming.engine import EngineConfig, StreamingEngine

    path, _ = _tiny_checkpoint(stream_corpus, tmp_path)
    out = tmp_path / "calibrated.safetensors"
    record = calibrate(path, stream_corpus, 5.0, out=out, runtime="torch", progress=False)
    meta = read_metadata(out)
    assert meta["detector"]["calibration"]["target_fa_per_hour"] == 5.0
    assert meta["detector"]["thresholds"] == record["operating_points"][4]["thresholds"]
    assert record["data"]["split"] == "validation" and record["data"]["hours"] > 0
    targets = [p["target_fa_per_hour"] for p in record["operating_points"]]
    assert targets == sorted(targets) and 5.0 in targets
    for p in record["operating_points"]:  # measured on the validation streams, all keywords on
        assert 0.0 <= p["recall"] <= 1.0 and p["fa_per_hour"] >= 0.0
    # one validation voice: no fold to hold out
    assert record["heldout"] is None and "heldout_recall" not in record["operating_points"][0]
    assert record["keyword_weight"] == 0.5
    engine = StreamingEngine.from_checkpoint(out, EngineConfig.from_metadata(meta))
    assert engine.sensitivity.calibrated
    default = engine.detector_config().keyword_thresholds
    assert default == pytest.approx(meta["detector"]["thresholds"])
    assert engine.detector_config(sensitivity=0.5).keyword_thresholds == pytest.approx(default)
    strict = engine.detector_config(sensitivity=0.0).keyword_thresholds
    assert all(strict[k] >= default[k] for k in default)
    with pytest.raises(ValueError, match="validation streams"):
        calibrate(path, stream_corpus, 5.0, split="test")
    with pytest.raises(ValueError, match="--folds"):
        calibrate(path, stream_corpus, 5.0, folds=1)
    with pytest.raises(ValueError, match="--keyword-weight"):
        calibrate(path, stream_corpus, 5.0, keyword_weight=-0.1)
    with pytest.raises(ValueError, match="--folds >= 2"):
        calibrate(path, stream_corpus, 5.0, keyword_weight="auto", folds=0)


def _spiky_run() -> StreamRun:
    """Two minutes with one "yes" (10.0-10.5 s: its posterior high for 400 ms up to 10.55 s)
    and three 40 ms peaks of the same height at 30, 50 and 70 s: no threshold tells them
    apart, but a patience longer than a peak does."""
    T = 12_000  # frames of 10 ms
    posteriors = np.zeros((T, 3))
    posteriors[:, 2] = 1.0  # _silence_
    for start, frames in ((1015, 40), (3000, 4), (5000, 4), (7000, 4)):
        posteriors[start : start + frames] = (0.97, 0.0, 0.03)
    stream = Stream(
        name="mixed/v",
        kind="mixed",
        voice="v",
        audio=np.broadcast_to(np.zeros(1, np.float32), (T * 160 + 240,)),
        events=[KeywordEvent("yes", 10.0, 10.5, "alone")],
        segments=[Segment("keyword", 10.0, 10.5, "yes")],
    )
    return StreamRun(stream, posteriors, [])


def test_the_detector_search_trades_patience_for_false_alarms() -> None:
    run = _spiky_run()
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    hours = run.stream.scored_seconds / 3600
    config, counts, rows, _ = search_detector(
        [run], base, hours, 1.0, [(1, 3, 0, 0.5), (1, 8, 0, 0.5)]
    )
    assert [(r["smoothing_frames"], r["patience_frames"]) for r in rows] == [(1, 3), (1, 8)]
    assert rows[0]["recall"] == 0.0 and rows[1]["recall"] == 1.0  # peaks fire at patience 3
    assert rows[1]["fa_per_hour"] == 0.0 and rows[1]["chosen"] and not rows[0]["chosen"]
    assert (config.smoothing_frames, config.patience_frames) == (1, 8)
    assert counts.shape[:2] == (1, 1)  # one run, one keyword
    # a delay bound no pair meets: the least delayed pair (one without detections has none)
    rows = search_detector(
        [run], base, hours, 1.0, [(1, 3, 0, 0.5), (1, 8, 0, 0.5)], max_delay_ms=-1e4
    )[2]
    assert rows[0]["delay_median_ms"] is None and rows[1]["delay_median_ms"] > -1e4
    assert [r["chosen"] for r in rows] == [False, True]
    # the look-ahead counts against the bound
    delay = rows[1]["delay_median_ms"]
    rows = search_detector([run], base, hours, 1.0, [(1, 8, 0, 0.5)], max_delay_ms=delay + 10.0)[2]
    assert rows[0]["chosen"]
    rows = search_detector(
        [run], base, hours, 1.0, [(1, 3, 0, 0.5), (1, 8, 0, 0.5)], max_delay_ms=delay + 10.0,
        lookahead_ms=20.0,
    )[2]  # fmt: skip
    assert [r["chosen"] for r in rows] == [False, True]  # none within: the least delayed


def _voice_run(voice: str, lift: float, peaks: list[int], event_at: int | None) -> StreamRun:
    """One minute of voice ``voice``: "yes" held at ``lift`` throughout, 300 ms peaks of 0.8 at
    the frames ``peaks`` (false alarms), and a 0.75 "yes" event at frame ``event_at``."""
    T = 6000
    posteriors = np.zeros((T, 3))
    posteriors[:, 0] = lift
    for start in peaks:
        posteriors[start : start + 30, 0] = 0.8
    events, segments = [], []
    if event_at is not None:
        posteriors[event_at : event_at + 30, 0] = 0.75
        t = event_at / 100
        events = [KeywordEvent("yes", t - 0.5, t, "alone")]
        segments = [Segment("keyword", t - 0.5, t, "yes")]
    posteriors[:, 2] = 1.0 - posteriors[:, 0]  # _silence_
    stream = Stream(
        name=f"mixed/{voice}",
        kind="mixed",
        voice=voice,
        audio=np.broadcast_to(np.zeros(1, np.float32), (T * 160 + 240,)),
        events=events,
        segments=segments,
    )
    return StreamRun(stream, posteriors, [])


def test_the_detector_search_takes_a_background_when_it_finds_more() -> None:
    """A voice that keeps lifting "yes" (0.05 throughout, peaks of 0.8 from 30 s on) and one
    that says "yes" once at 0.75: no threshold finds that "yes" without the other voice's false
    alarms, but the first voice's background raises its bar, so the search takes it."""
    runs = [
        _voice_run("lifts", 0.05, list(range(3000, 5800, 400)), None),
        _voice_run("says", 0.0, [], 4000),
    ]
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    hours = sum(r.stream.scored_seconds for r in runs) / 3600
    config, _, rows, _ = search_detector(
        runs, base, hours, 1.0, [(1, 3, 0, 0.5), (1, 3, 3000, 0.5)]
    )
    assert [r["background_frames"] for r in rows] == [0, 3000]
    assert rows[0]["recall"] == 0.0 and rows[0]["fa_per_hour"] == 0.0
    assert rows[1]["recall"] == 1.0 and rows[1]["fa_per_hour"] == 0.0
    assert config.background_frames == 3000 and rows[1]["chosen"]


def test_the_detector_search_keeps_a_repeated_command_with_a_lower_ceiling() -> None:
    """A user saying "yes" five times, each saying 1 s at 0.4 and then 300 ms at 0.75, beside
    a voice that keeps lifting "yes" (so the background is needed): with the default ceiling
    the 0.4 stretches raise "yes"'s own bar and the later sayings are missed; with a ceiling
    of 0.2 they do not count, and the search takes it."""
    T, sayings = 6000, range(500, 5500, 1000)
    posteriors = np.zeros((T, 3))
    events, segments = [], []
    for start in sayings:
        posteriors[start : start + 100, 0] = 0.4
        posteriors[start + 100 : start + 130, 0] = 0.75
        s, e = start / 100, (start + 130) / 100
        events.append(KeywordEvent("yes", s, e, "repeated"))
        segments.append(Segment("keyword", s, e, "yes"))
    posteriors[:, 2] = 1.0 - posteriors[:, 0]
    stream = Stream(
        name="repeats/says",
        kind="repeats",
        voice="says",
        audio=np.broadcast_to(np.zeros(1, np.float32), (T * 160 + 240,)),
        events=events,
        segments=segments,
    )
    runs = [_voice_run("lifts", 0.05, list(range(3000, 5800, 400)), None)]
    runs.append(StreamRun(stream, posteriors, []))
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    hours = sum(r.stream.scored_seconds for r in runs) / 3600
    candidates = [(1, 3, 0, 0.5), (1, 3, 3000, 0.5), (1, 3, 3000, 0.2)]
    config, _, rows, _ = search_detector(runs, base, hours, 1.0, candidates)
    assert [r["background_ceiling"] for r in rows] == [0.5, 0.5, 0.2]
    assert rows[0]["recall"] == 0.0  # no threshold tells the lifted peaks from the sayings
    assert 0.0 < rows[1]["recall"] < 1.0  # the first sayings only
    assert rows[2]["recall"] == 1.0 and rows[2]["fa_per_hour"] == 0.0 and rows[2]["chosen"]
    assert (config.background_frames, config.background_ceiling) == (3000, 0.2)


def test_the_detector_search_takes_the_speech_gate_when_it_finds_more() -> None:
    """A voice whose 0.8 "yes" peaks each end 3 s of other speech (``_unknown_`` on top: a
    sentence), and one saying "yes" at 0.75 after silence: no threshold finds the second
    without the first's false alarms, but the speech gate holds those back, so the search
    takes it (and says so in its rows)."""
    sentence = _voice_run("talks", 0.0, list(range(500, 5800, 500)), None)
    for start in range(500, 5800, 500):
        sentence.posteriors[start - 300 : start, 1] = 0.9  # _unknown_: other speech
        sentence.posteriors[start - 300 : start, 2] = 0.1
    runs = [sentence, _voice_run("says", 0.0, [], 4000)]
    base = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1)
    hours = sum(r.stream.scored_seconds for r in runs) / 3600
    config, _, rows, _ = search_detector(
        runs, base, hours, 1.0, [(1, 3, 0, 0.5, 0), (1, 3, 0, 0.5, 150)]
    )
    assert [r["speech_gate_frames"] for r in rows] == [0, 150]
    assert rows[0]["recall"] == 0.0
    assert rows[1]["recall"] == 1.0 and rows[1]["fa_per_hour"] == 0.0 and rows[1]["chosen"]
    assert config.speech_gate_frames == 150
    # four-element candidates keep the base's gate
    gated = DetectorConfig.build(LABELS_3, early_threshold=None, smoothing_frames=1,
                                 speech_gate_frames=150)  # fmt: skip
    rows = search_detector(runs, gated, hours, 1.0, [(1, 3, 0, 0.5)])[2]
    assert rows[0]["speech_gate_frames"] == 150 and rows[0]["recall"] == 1.0


def test_calibrate_with_a_detector_search_stores_the_chosen_settings(
    stream_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, model = _tiny_checkpoint(stream_corpus, tmp_path)
    out = tmp_path / "calibrated.safetensors"
    record = calibrate(
        path, stream_corpus, 5.0, out=out, runtime="torch", progress=False,
        smoothing_ms=(50.0, 100.0), patience_ms=(30.0,), background_s=(0.0, 20.0),
    )  # fmt: skip
    search = record["detector_search"]["candidates"]
    assert [
        (r["smoothing_frames"], r["patience_frames"], r["background_frames"]) for r in search
    ] == [(5, 3, 0), (5, 3, 2000), (10, 3, 0), (10, 3, 2000)]
    assert all("heldout_recall_at_target" in r for r in search)  # chosen by held-out recall
    assert sum(r["chosen"] for r in search) == 1
    chosen = next(r for r in search if r["chosen"])
    detector = read_metadata(out)["detector"]
    assert (
        detector["smoothing_frames"],
        detector["patience_frames"],
        detector["background_frames"],
    ) == (chosen["smoothing_frames"], chosen["patience_frames"], chosen["background_frames"])
    assert record["detector"]["background_frames"] == chosen["background_frames"]
    at_target = next(p for p in record["operating_points"] if p["target_fa_per_hour"] == 5.0)
    assert at_target["recall"] == chosen["recall"]
    assert record["detector_search"]["lookahead_ms"] == 10.0 * model.lookahead_frames
    assert "background_ceiling" not in detector  # the checkpoint's own (the default) kept
    calibrate_events = record["data"]["events"]
    assert record["data"]["kinds"] == ["mixed", "negatives"]
    # ceilings searched on streams with repeated sayings; the winner's stored for the server
    lower = tmp_path / "ceiling.safetensors"
    capsys.readouterr()
    record = calibrate(
        path, stream_corpus, 5.0, out=lower, runtime="torch", progress=True,
        background_s=(0.0, 20.0), background_ceiling=(0.2, 0.5), folds=0,
        kinds=("mixed", "negatives", "repeats"),
    )  # fmt: skip
    shown = capsys.readouterr().err  # the long search shows where it is
    assert all(f"detector settings {i}/3" in shown for i in (1, 2, 3))
    search = record["detector_search"]["candidates"]
    assert [(r["background_frames"], r["background_ceiling"]) for r in search] == [
        (0, 0.2),
        (2000, 0.2),
        (2000, 0.5),
    ]  # fmt: skip  (without a background the ceiling does nothing: searched once)
    chosen = next(r for r in search if r["chosen"])
    assert record["detector"]["background_ceiling"] == chosen["background_ceiling"]
    assert read_metadata(lower)["detector"]["background_ceiling"] == chosen["background_ceiling"]
    assert record["data"]["kinds"] == ["mixed", "negatives", "repeats"]
    assert record["data"]["events"] > calibrate_events  # the repeated sayings count
    with pytest.raises(ValueError, match="background_ceiling must be in"):
        calibrate(path, stream_corpus, 5.0, background_ceiling=(0.0,))
    with pytest.raises(ValueError, match="unknown stream kinds"):
        calibrate(path, stream_corpus, 5.0, runtime="torch", kinds=("mixed", "chatter"))
    with pytest.raises(ValueError, match="smoothing_ms must be > 0"):
        calibrate(path, stream_corpus, 5.0, smoothing_ms=(0.0,))
    with pytest.raises(ValueError, match="background_s must be >= 0"):
        calibrate(path, stream_corpus, 5.0, background_s=(-1.0,))
    with pytest.raises(ValueError, match="speech_gate_ms must be >= 0"):
        calibrate(path, stream_corpus, 5.0, speech_gate_ms=(-1.0,))
    # the speech gate searched: the winner stored for the server, and the record says it
    gated = tmp_path / "gated.safetensors"
    record = calibrate(
        path, stream_corpus, 5.0, out=gated, runtime="torch", progress=False, folds=0,
        speech_gate_ms=(0.0, 300.0),
    )  # fmt: skip
    search = record["detector_search"]["candidates"]
    assert [r["speech_gate_frames"] for r in search] == [0, 30]
    chosen = next(r for r in search if r["chosen"])
    assert record["detector"]["speech_gate_frames"] == chosen["speech_gate_frames"]
    assert read_metadata(gated)["detector"]["speech_gate_frames"] == chosen["speech_gate_frames"]
    assert record["detector"]["speech_gate_recent_frames"] == 100
    from streaming.engine import StreamingEngine

    engine = StreamingEngine.from_checkpoint(gated)  # its sessions gate as calibrated
    try:
        assert engine.detector_config().speech_gate_frames == chosen["speech_gate_frames"]
    finally:
        engine.close()


def _grammar_point(sensitivity: float, fa_per_hour: float) -> dict[str, float]:
    return {"parameter": sensitivity, "false_alarms_per_hour": fa_per_hour}


def test_the_commands_take_the_loosest_point_whose_grammar_meets_the_target() -> None:
    points = [_grammar_point(s, fa) for s, fa in ((0.5, 0.0), (0.6, 1.0), (0.7, 2.0), (0.8, 3.5))]
    assert choose_command_sensitivity(points, 2.0) == 2  # 0.7: exactly at the target
    assert choose_command_sensitivity(points, 10.0) == 3
    assert choose_command_sensitivity(points, 0.5) == 0
    # the wake word's own point misses: none (the commands keep the session's sensitivity)
    assert choose_command_sensitivity([_grammar_point(0.5, 3.0)], 2.0) is None
    # a looser point that dips back under the target after one that missed is not taken
    dip = [_grammar_point(0.5, 1.0), _grammar_point(0.6, 2.5), _grammar_point(0.7, 1.5)]
    assert choose_command_sensitivity(dip, 2.0) == 0


def test_calibrate_with_a_wake_word_stores_the_commands_point_the_server_uses(
    stream_corpus: Path, tmp_path: Path
) -> None:
    """The grammar's record: the commands' sweep from the wake word's default point to the
    loosest, measured on the validation commands streams; the chosen point is stored as the
    checkpoint's default, and a session with the wake word finds the commands it measured."""
    from streaming.engine import EngineConfig, StreamingEngine
    from training.stream_eval import run_engine, score
    from training.streams import build_command_streams

    path, _ = _tiny_checkpoint(stream_corpus, tmp_path)
    out = tmp_path / "grammar.safetensors"
    record = calibrate(
        path, stream_corpus, 5.0, out=out, runtime="torch", progress=False, wake_word="yes",
        grammar_target_fa_per_hour=1000.0,
    )  # fmt: skip
    grammar = record["grammar"]
    assert [p["parameter"] for p in grammar["points"]] == list(COMMAND_GRID)
    assert COMMAND_GRID[0] == 0.5 and COMMAND_GRID[-1] == 1.0
    assert grammar["data"]["commands"] == len(STREAM_WORDS) - 1  # one validation voice
    assert grammar["data"]["hours"] == record["data"]["hours"]
    chosen = choose_command_sensitivity(grammar["points"], 1000.0)
    assert chosen is not None and grammar["points"][chosen]["chosen"]
    assert sum(p["chosen"] for p in grammar["points"]) == 1
    assert grammar["command_sensitivity"] == COMMAND_GRID[chosen]
    meta = read_metadata(out)
    assert meta["detector"]["command_sensitivity"] == grammar["command_sensitivity"]
    assert meta["detector"]["calibration"]["grammar"] == grammar
    engine = StreamingEngine.from_checkpoint(out, EngineConfig.from_metadata(meta))
    assert engine.config.command_sensitivity == grammar["command_sensitivity"]
    requests = build_command_streams(stream_corpus, "validation", "yes")
    runs = run_engine(engine, requests, progress=False, wake_word="yes")
    found = score(runs, examples=0)["recall_by"].get("context:command")
    assert found == grammar["command_recall"]
    # calibrated again without a wake word: the old curve's commands point goes with it
    again = tmp_path / "again.safetensors"
    calibrate(out, stream_corpus, 5.0, out=again, runtime="torch", progress=False, folds=0)
    assert "command_sensitivity" not in read_metadata(again)["detector"]
    meta = read_metadata(again)  # one set by hand stays
    meta["detector"]["command_sensitivity"] = 0.9
    _, model = _tiny_checkpoint(stream_corpus, tmp_path)
    hand = save_checkpoint(tmp_path / "hand.safetensors", model, meta)
    calibrate(hand, stream_corpus, 5.0, runtime="torch", progress=False, folds=0)
    assert read_metadata(hand)["detector"]["command_sensitivity"] == 0.9
    with pytest.raises(ValueError, match="never fires"):
        calibrate(path, stream_corpus, 5.0, runtime="torch", wake_word="_unknown_")
    with pytest.raises(ValueError, match="grammar-target-fa-per-hour"):
        calibrate(path, stream_corpus, 5.0, wake_word="yes", grammar_target_fa_per_hour=0.0)
