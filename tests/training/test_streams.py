"""Streams with ground truth, and the detector scored on them."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import build_model, save_checkpoint
from streaming.detector import DetectorConfig, normalized_from_rest, sliding_mean
from tests.training.conftest import STREAM_WORDS
from training.dataset import read_corpus_info, read_manifest
from training.stream_eval import Found, StreamRun, score
from training.streams import KeywordEvent, Segment, Stream, build_streams


def _wav(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float32")[0]


def test_a_keyword_placed_at_t_is_found_at_t(stream_corpus: Path) -> None:
    """Every keyword clip of the voice is in its mixed stream exactly where its event says
    (the clean stream: the audio there is the clip times one gain)."""
    streams = build_streams(stream_corpus, "test", seed=0)
    mixed = [s for s in streams if s.kind == "mixed"]
    assert mixed and mixed[0].background == "clean"
    stream = mixed[0]
    rows = read_manifest(stream_corpus)
    clips = {
        r["label"]: _wav(stream_corpus / r["path"])
        for r in rows
        if r["voice"] == stream.voice and r["label"] in STREAM_WORDS
    }
    assert sorted(e.keyword for e in stream.events) == sorted(STREAM_WORDS)
    for event in stream.events:
        start = round(event.start_s * 16000)
        clip = clips[event.keyword]
        assert round(event.end_s * 16000) - start == clip.size
        piece = stream.audio[start : start + clip.size]
        gain = float(piece @ clip / (clip @ clip))
        assert 0.49 < gain <= 1.0001
        np.testing.assert_allclose(piece, gain * clip, atol=2e-4)
        # silence or other speech around it, never the same clip again right after
        covering = [s for s in stream.segments if s.start_s <= event.start_s < s.end_s]
        assert len(covering) == 1 and covering[0].kind in ("keyword", "carrier", "sequence")


def test_streams_hold_only_the_splits_voices_and_are_deterministic(stream_corpus: Path) -> None:
    info = read_corpus_info(stream_corpus)
    split_of = {v["id"]: v["split"] for v in info["voices"]}
    a = build_streams(stream_corpus, "validation", seed=5)
    b = build_streams(stream_corpus, "validation", seed=5)
    assert [s.name for s in a] == [s.name for s in b]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.audio, y.audio) and x.events == y.events
    assert {split_of[s.voice] for s in a} == {"validation"}
    kinds = {s.kind for s in a}
    assert kinds == {"mixed", "negatives"}
    negatives = [s for s in a if s.kind == "negatives"]
    assert all(not s.events for s in negatives)
    assert {seg.kind for s in negatives for seg in s.segments} <= {"sentence", "paragraph"}
    other = build_streams(stream_corpus, "validation", seed=6)
    assert not np.array_equal(other[0].audio, a[0].audio)


def _silent(seconds: float) -> np.ndarray:
    """``seconds`` of silence without the memory (a read-only zero-stride view)."""
    return np.broadcast_to(np.zeros(1, np.float32), (round(seconds * 16000),))


def _stream() -> Stream:
    """One hour with a "yes" at 10 s, a carrier with "go" at 19-21 s and a sentence at 30 s."""
    return Stream(
        name="mixed/v",
        kind="mixed",
        voice="v",
        audio=_silent(3600),
        events=[
            KeywordEvent("yes", 10.0, 10.5, "alone"),
            KeywordEvent("go", 20.0, 20.4, "carrier"),
        ],
        segments=[
            Segment("keyword", 10.0, 10.5, "yes"),
            Segment("carrier", 19.0, 21.0, "the word is go"),
            Segment("sentence", 30.0, 33.0, "the night was fine"),
        ],
    )


def test_planted_detections_score_as_hits_inside_events_and_false_alarms_outside() -> None:
    stream = _stream()
    found = [
        Found("yes", 10.6, 0.9),  # hit: 100 ms after the keyword's end
        Found("yes", 11.2, 0.8),  # repeat of the same event
        Found("go", 10.7, 0.7),  # substitution inside the yes event
        Found("go", 21.3, 0.9),  # hit: inside the go event's late window
        Found("three", 31.0, 0.95),  # false alarm during a sentence
    ]
    run = StreamRun(stream, np.zeros((0, 4)), found)
    result = score([run], keywords=["yes", "go", "three"])
    assert result["recall"] == 1.0 and result["hits"] == 2
    assert result["false_alarms"] == 3
    assert result["false_alarms_per_hour"] == pytest.approx(3.0)
    assert result["false_alarm_kinds"] == {"repeat": 1, "substitution": 1, "false_alarm": 1}
    assert result["false_alarm_triggers"] == {"keyword": 2, "sentence": 1}
    assert result["per_keyword"]["go"] == {
        "events": 1,
        "hits": 1,
        "recall": 1.0,
        "false_alarms": 1,
        "false_alarms_per_hour": pytest.approx(1.0),
    }
    assert result["delay_ms"]["median"] == pytest.approx(500.0)  # (100 + 900) / 2
    missed = score([StreamRun(stream, np.zeros((0, 4)), found[2:3])])
    assert missed["recall"] == 0.0 and missed["false_alarms"] == 1


def _planted(frames: int, spikes: list[tuple[str, float, int, int]]) -> np.ndarray:
    """[frames, 5] posteriors over STREAM_LABELS: ``_unknown_`` on top, each (label, p, first,
    last) spike at p over its frames."""
    x = np.full((frames, len(STREAM_LABELS)), 0.05)
    x[:, STREAM_LABELS.index("_unknown_")] = 0.3
    for label, p, first, last in spikes:
        x[first:last, STREAM_LABELS.index(label)] = p
    return x


STREAM_LABELS = ("yes", "three", "go", "_unknown_", "_silence_")


def test_the_grammar_sweep_counts_commands_only_after_a_fired_wake_word() -> None:
    """Three requests ("yes" wakes): the second's wake word is said softly, the third's
    command too. At 0.5 every wake word and command fires; at 0.8 the soft wake word is missed,
    so its clear command is suppressed, and the soft command is missed. False alarms come from
    the other streams: a command alone never fires, a wake word and the command after it do."""
    from training.stream_eval import grammar_sweep, threshold_configs

    events = [
        KeywordEvent("yes", 1.0, 1.4, "wake"), KeywordEvent("go", 1.8, 2.2, "command"),
        KeywordEvent("yes", 6.0, 6.4, "wake"), KeywordEvent("three", 6.8, 7.2, "command"),
        KeywordEvent("yes", 11.0, 11.4, "wake"), KeywordEvent("go", 11.8, 12.2, "command"),
    ]  # fmt: skip
    requests = Stream("commands/v", "commands", "v", _silent(20), events=events)
    spikes = [
        ("yes", 0.9, 140, 160), ("go", 0.9, 220, 240), ("yes", 0.6, 640, 660),
        ("three", 0.9, 720, 740), ("yes", 0.9, 1140, 1160), ("go", 0.7, 1220, 1240),
    ]  # fmt: skip
    command_run = StreamRun(requests, _planted(2000, spikes), [])
    speech = Stream("negatives/v", "negatives", "v", _silent(3600))
    spikes = [("three", 0.95, 1000, 1030), ("yes", 0.95, 50000, 50030), ("go", 0.95, 50100, 50130)]
    heard = StreamRun(speech, _planted(360_000, spikes), [])
    base = DetectorConfig.build(
        STREAM_LABELS, smoothing_frames=1, patience_frames=2, refractory_frames=10,
        warmup_frames=0, early_threshold=None, wake_word="yes", command_frames=300,
    )  # fmt: skip
    points = grammar_sweep([heard], [command_run], threshold_configs(base, (0.5, 0.8)))
    assert [(p["wake_recall"], p["command_recall"]) for p in points] == [
        (1.0, 1.0),
        (pytest.approx(2 / 3), pytest.approx(1 / 3)),
    ]
    assert [p["false_alarms_per_hour"] for p in points] == pytest.approx([2.0, 2.0], rel=1e-3)
    # of them the command's: the wake word's own false alarm opens the window, acts on nothing
    assert [p["command_false_alarms_per_hour"] for p in points] == pytest.approx(
        [1.0, 1.0], rel=1e-3
    )
    assert points[0]["sets"] == {"negatives/synthetic": pytest.approx(2.0, rel=1e-3)}


def test_excluded_spans_are_not_scored() -> None:
    """A recording's words that say a keyword: detections there (and up to 1 s after) are not
    counted, and their time is left out of the hours."""
    stream = Stream(
        name="recordings/x/0",
        kind="negatives",
        voice="x",
        audio=_silent(100),
        exclude=[(10.0, 12.0), (11.0, 14.0)],
        source="recorded",
    )
    run = StreamRun(stream, np.zeros((0, 4)), [Found("go", 14.5, 0.9), Found("go", 50.0, 0.9)])
    result = score([run])
    assert result["false_alarms"] == 1
    assert result["sets"]["negatives/recorded"]["hours"] == pytest.approx(95 / 3600)  # +1 s late
    assert stream.scored_seconds == pytest.approx(96)


def test_recall_and_false_alarms_are_split_by_voice_source() -> None:
    """Each synthetic stream counts for its voice's engine, a recording for its source: the
    table that shows how the model meets the neural voices against the formant ones."""
    from training.stream_report import _voice_table

    kokoro = replace(_stream(), name="mixed/k", voice="kokoro:blend-3:s1")
    espeak = replace(_stream(), name="mixed/e", voice="espeak-ng:en-us:s2")
    recorded = Stream(
        name="recordings/x/0", kind="negatives", voice="x", audio=_silent(1800), source="recorded"
    )
    runs = [
        StreamRun(kokoro, np.zeros((0, 4)), [Found("yes", 10.6, 0.9), Found("go", 21.3, 0.9)]),
        StreamRun(espeak, np.zeros((0, 4)), [Found("yes", 10.6, 0.9), Found("six", 31.0, 0.9)]),
        StreamRun(recorded, np.zeros((0, 4)), [Found("go", 50.0, 0.9), Found("go", 90.0, 0.9)]),
    ]
    result = score(runs)
    assert result["recall_by"]["voice:kokoro"] == 1.0
    assert result["recall_by"]["voice:espeak-ng"] == 0.5
    assert "voice:recorded" not in result["recall_by"]  # no keyword events there
    by_voice = result["false_alarms_by_voice"]
    assert by_voice["kokoro"]["false_alarms"] == 0
    assert by_voice["espeak-ng"]["false_alarms_per_hour"] == pytest.approx(1.0)
    assert by_voice["recorded"]["false_alarms_per_hour"] == pytest.approx(4.0)
    table = "\n".join(_voice_table(result))
    assert "| kokoro | 1.000 | 0 | 1.00 | 0.0 |" in table
    assert "| recorded | – | 2 | 0.50 | 4.0 |" in table


def test_the_det_sweep_reads_recall_by_voice_source() -> None:
    """Each DET point carries each voice source's recall; the report reads every source's
    recall at 20/50/100 FA/h of all streams off those points."""
    from training.stream_report import recall_at_rates_by_voice

    def pt(fa: float, kokoro: float, espeak: float) -> dict[str, Any]:
        return {
            "false_alarms_per_hour": fa,
            "recall": (kokoro + espeak) / 2,
            "recall_by_voice": {"kokoro": kokoro, "espeak-ng": espeak},
        }

    by_voice = recall_at_rates_by_voice([pt(10.0, 0.0, 0.4), pt(100.0, 0.2, 0.8)])
    assert by_voice["kokoro"]["100"] == pytest.approx(0.2)
    assert by_voice["espeak-ng"]["20"] == pytest.approx(0.4 + 0.4 * math.log10(2))
    assert recall_at_rates_by_voice([{"false_alarms_per_hour": 1.0, "recall": 0.5}]) == {}

    from training.stream_eval import sweep, threshold_configs

    kokoro = replace(_stream(), name="mixed/k", voice="kokoro:blend-3:s1")
    espeak = replace(_stream(), name="mixed/e", voice="espeak-ng:en-us:s2")
    runs = [
        StreamRun(kokoro, np.zeros((0, 4)), []),
        StreamRun(espeak, np.zeros((0, 4)), []),
    ]
    for run in runs:  # "yes" (column 0) scores 0.6 inside its event, nothing else anywhere
        frames = (run.stream.audio.size - 400) // 160 + 1
        run.posteriors = np.zeros((frames, 4))
        start = int(10.0 * 100)
        run.posteriors[start : start + 40, 0] = 0.6 if run is runs[0] else 0.9
    config = DetectorConfig(
        labels=("yes", "go", "three", "_unknown_"),
        thresholds=np.array([0.5, 0.5, 0.5, math.inf]),
        smoothing_frames=1,
        patience_frames=1,
    )
    points = sweep(runs, threshold_configs(config, [0.5, 0.8]))
    assert points[0]["recall_by_voice"]["kokoro"] == pytest.approx(0.5)  # yes found, go not
    assert points[1]["recall_by_voice"] == {"kokoro": 0.0, "espeak-ng": pytest.approx(0.5)}


def test_evaluate_streams_end_to_end_on_a_tiny_model(stream_corpus: Path, tmp_path: Path) -> None:
    """The engine path on every stream of the test voice: the report's numbers are the scored
    engine detections, the DET sweep passes through the operating point, and replaying the
    recorded posteriors at the checkpoint's thresholds gives the engine's own detections. With
    a wake word, the grammar is scored on the streams (false alarms) and on commands streams
    (command recall); its sweep passes through the engine's operating point too, and the
    replayed grammar gives the engine's detections."""
    from training.stream_eval import firings_as_found, run_engine
    from training.stream_report import (
        SENSITIVITY_GRID,
        evaluate_streams,
        load_engine,
        load_streams,
    )
    from training.streams import build_command_streams

    labels = read_corpus_info(stream_corpus)["labels"]
    torch.manual_seed(0)
    model = build_model("lmuformer", dim=16, num_classes=len(labels)).eval()
    ckpt = save_checkpoint(
        tmp_path / "tiny.safetensors",
        model,
        {"labels": labels, "detector": {"threshold": 0.3, "posterior": "softmax"}},
    )
    out = tmp_path / "report"
    report = evaluate_streams(
        ckpt, stream_corpus, out, runtime="torch", wake_word="yes", progress=False
    )
    saved = json.loads((out / "streams.json").read_text())
    assert (out / "det.png").stat().st_size > 1000 and "DET" in (out / "README.md").read_text()
    assert saved["recall"] == report["recall"] and saved["events"] == len(STREAM_WORDS)
    assert set(saved["sets"]) == {"mixed", "negatives/synthetic"}
    assert set(saved["det"]["recall_at"]) == {"20", "50", "100"}
    assert "Recall at equal false-alarm rates" in (out / "README.md").read_text()
    assert set(saved["det"]["recall_at_by_voice"]) == {"espeak-ng"}
    assert (out / "det_by_voice.png").stat().st_size > 1000
    assert "Recall by voice source at equal" in (out / "README.md").read_text()
    assert f"`{saved['command']}`" in (out / "README.md").read_text()
    assert "--runtime torch" in saved["command"]
    at_03 = next(p for p in saved["det"]["points"] if p["parameter"] == 0.3)
    assert at_03["recall"] == saved["recall"]
    assert at_03["false_alarms_per_hour"] == pytest.approx(saved["false_alarms_per_hour"])
    wake = saved["wake_word"]
    commands = wake["commands"]
    assert (commands["streams"], commands["commands"]) == (1, len(STREAM_WORDS) - 1)
    at_op = next(p for p in wake["det"]["points"] if p["parameter"] == 0.3)
    assert at_op["false_alarms_per_hour"] == pytest.approx(wake["false_alarms_per_hour"])
    assert at_op["command_false_alarms_per_hour"] == pytest.approx(
        wake["command_false_alarms_per_hour"]
    )
    assert wake["command_false_alarms_per_hour"] <= wake["false_alarms_per_hour"]
    assert at_op["command_recall"] == commands["recall_by"]["context:command"]
    assert at_op["wake_recall"] == commands["recall_by"]["context:wake"]
    loose = wake["det"]["loose_commands"]  # the wake word's ladder, the commands at 1
    assert len(loose) == len(SENSITIVITY_GRID) and loose[-1]["wake_recall"] is not None
    readme = (out / "README.md").read_text()
    assert "Commands after the wake word" in readme and "| threshold | command recall" in readme
    assert (out / "det_wake.png").stat().st_size > 1000
    engine = load_engine(ckpt, "torch")
    streams = load_streams(stream_corpus, "test")
    runs = run_engine(engine, streams, progress=False)
    config = engine.detector_config()
    for run in runs:
        assert firings_as_found(run, config) == pytest.approx(run.detections)
        frames = run.posteriors.shape[0]
        assert frames == (run.stream.audio.size - 400) // 160 + 1
    grammar = engine.detector_config(wake_word="yes")
    requests = build_command_streams(stream_corpus, "test", "yes")
    for run in run_engine(engine, requests, progress=False, wake_word="yes"):
        assert firings_as_found(run, grammar) == pytest.approx(run.detections)
    # with a background normalisation, the engine's detections are the replay's too
    detector = {"threshold": 0.3, "posterior": "softmax", "background_ms": 2000,
                "background_floor": 1e-4}  # fmt: skip
    ckpt = save_checkpoint(
        tmp_path / "bg.safetensors", model, {"labels": labels, "detector": detector}
    )
    engine = load_engine(ckpt, "torch")
    config = engine.detector_config()
    assert config.background_key == (200, 1e-4, 0.5, -1)
    runs = run_engine(engine, streams, progress=False)
    for run in runs:
        assert firings_as_found(run, config) == pytest.approx(run.detections)
    assert any(not np.array_equal(r.detector_input(config)[0], r.posteriors) for r in runs)


def test_report_command_reruns_the_report_with_repository_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command a report prints names every option that shapes it, with paths relative to
    the working directory (not one machine's absolute paths), and parses back into the same
    arguments."""
    import argparse

    from training.stream_report import command_line, register_evaluate_streams_parser, shown_path

    monkeypatch.chdir(tmp_path)
    command = command_line(
        tmp_path / "models" / "m.safetensors",
        "data/synth",
        tmp_path / "reports" / "x",
        recordings=tmp_path / "data" / "recordings",
        seed=3,
        wake_word="marvin",
        compare=["reports/a", tmp_path / "reports" / "b"],
        command_sensitivity=1.0,
    )
    assert command == (
        "lmukws evaluate-streams models/m.safetensors --data data/synth --split test "
        "--recordings data/recordings --seed 3 --wake-word marvin --command-sensitivity 1 "
        "--compare reports/a --compare reports/b --out reports/x"
    )
    assert shown_path("/elsewhere/m.safetensors") == "/elsewhere/m.safetensors"
    parser = argparse.ArgumentParser()
    register_evaluate_streams_parser(parser.add_subparsers())
    args = parser.parse_args(command.split()[1:])
    assert args.checkpoint == Path("models/m.safetensors") and args.seed == 3
    assert args.compare == [Path("reports/a"), Path("reports/b")]
    assert (args.wake_word, args.out) == ("marvin", Path("reports/x"))
    assert args.command_sensitivity == 1.0
    assert args.kinds == ("mixed", "negatives")  # the default, not written
    from training import stream_report, streams

    assert stream_report.DEFAULT_KINDS == streams.DEFAULT_KINDS
    command = command_line("m.safetensors", "data/synth", "r", kinds=("repeats",))
    assert " --kinds repeats --out r" in command
    assert parser.parse_args(command.split()[1:]).kinds == ("repeats",)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate-streams", "m", "--data", "d", "--out", "o", "--kinds", "x"])


def test_recall_at_a_false_alarm_rate_reads_the_det_curve() -> None:
    """Interpolated in log FA/h between the points around the rate; the better recall where
    two points share a rate; None outside the measured range."""
    from training.stream_report import recall_at, recall_at_rates

    def pt(fa: float | None, recall: float | None) -> dict[str, float | None]:
        return {"false_alarms_per_hour": fa, "recall": recall}

    curve = [pt(100.0, 0.6), pt(10.0, 0.2), pt(10.0, 0.3), pt(None, None), pt(1000.0, 0.9)]
    assert recall_at(curve, 10.0) == pytest.approx(0.3)
    assert recall_at(curve, 100.0) == pytest.approx(0.6)
    assert recall_at(curve, 10.0**1.5) == pytest.approx(0.45)  # halfway in log FA/h
    assert recall_at(curve, 5.0) is None and recall_at(curve, 2000.0) is None
    assert recall_at([pt(0.0, 0.1), pt(20.0, 0.5)], 10.0) == pytest.approx(0.3)  # linear from 0
    assert recall_at([], 20.0) is None
    assert recall_at_rates(curve) == {"20": pytest.approx(0.3 + 0.3 * math.log10(2)),
                                      "50": pytest.approx(0.3 + 0.3 * math.log10(5)),
                                      "100": pytest.approx(0.6)}  # fmt: skip


def test_the_smoothing_cache_follows_the_window_and_the_background() -> None:
    """A replay with another smoothing window or background gets its own detector input,
    not the cached one."""
    run = StreamRun(_stream(), np.zeros((0, 3)), [])
    posteriors = np.random.default_rng(0).random((450, 3))
    run.posteriors = posteriors
    base = DetectorConfig(labels=("a", "b", "_unknown_"), thresholds=np.array([0.5, 0.5, np.inf]))
    for window, frames in ((5, 0), (10, 0), (5, 0), (5, 300), (5, 0)):
        config = replace(base, smoothing_frames=window, background_frames=frames)
        normalized = normalized_from_rest(config, posteriors)
        expected = sliding_mean(np.zeros((window - 1, 3)), normalized, 0, window)
        got_normalized, got_smoothed = run.detector_input(config)
        np.testing.assert_array_equal(got_normalized, normalized)
        np.testing.assert_allclose(got_smoothed, expected)
        assert (frames > 0) == (not np.array_equal(normalized, posteriors))


def test_the_report_sets_the_calibrations_held_out_estimate_beside_its_run() -> None:
    from training.stream_report import _calibration_lines

    calibration = {
        "target_fa_per_hour": 20.0,
        "recall": 0.41,
        "fa_per_hour": 19.4,
        "data": {"hours": 6.023},
        "heldout": {"recall": 0.36, "fa_per_hour": 20.1, "folds": 5, "by": "voice"},
    }
    (_, line) = _calibration_lines({"operating_point": {"calibration": calibration}})
    assert line == (
        "Calibrated to 20.0 FA/h on 6.02 h of validation streams: there recall 0.410 at "
        "19.4 FA/h; held out by voice (5 folds) recall 0.360 at 20.1 FA/h."
    )
    calibration["heldout"] = None  # calibrated before held-out estimates, or on one voice
    assert _calibration_lines({"operating_point": {"calibration": calibration}})[1].endswith(
        "there recall 0.410 at 19.4 FA/h."
    )
    assert _calibration_lines({"operating_point": {"calibration": None}}) == []


def test_a_compared_report_is_labelled_with_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One checkpoint compared with itself under other thresholds: the labels differ."""
    from training.stream_report import _label, _load_curve

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "reports" / "streams-before"
    folder.mkdir(parents=True)
    (folder / "streams.json").write_text(
        json.dumps({"model": "lmuformer", "checkpoint": "data/runs/x/half-fa20.safetensors"})
    )
    this = {"model": "lmuformer", "checkpoint": "data/runs/x/half-fa20.safetensors"}
    assert _label(this) == "lmuformer (half-fa20.safetensors)"
    other = _load_curve(Path("reports/streams-before"))
    assert _label(other) == "lmuformer (half-fa20.safetensors, reports/streams-before)"
    assert _label(_load_curve(folder / "streams.json")) == _label(other)


def test_recall_is_split_by_whether_the_keyword_was_said_in_the_minute_before() -> None:
    """ "yes" at 10 s, again at 50 s (40 s later: a repeat) and at 200 s (not within 60 s of the
    one before): the repeat's recall is reported apart from the first sayings'."""
    events = [
        KeywordEvent("yes", 10.0, 10.5, "alone"),
        KeywordEvent("go", 20.0, 20.4, "alone"),
        KeywordEvent("yes", 50.0, 50.5, "alone"),
        KeywordEvent("yes", 200.0, 200.5, "alone"),
    ]
    stream = replace(_stream(), events=events)
    found = [Found("yes", 10.6, 0.9), Found("go", 20.5, 0.9), Found("yes", 200.6, 0.9)]
    recall_by = score([StreamRun(stream, np.zeros((0, 4)), found)])["recall_by"]
    assert recall_by["repeat:first in 60 s"] == 1.0  # 10 s, 20 s ("go") and 200 s
    assert recall_by["repeat:said in the 60 s before"] == 0.0  # 50 s, missed


def test_the_report_names_the_detector_settings_of_its_run() -> None:
    from training.stream_report import _detector_line

    detector = {"smoothing_frames": 5, "patience_frames": 3, "background_frames": 30000,
                "background_floor": 0.001}  # fmt: skip
    (_, line) = _detector_line({"operating_point": {"detector": detector}})
    assert line == (
        "Detector: smoothing 5 frames, patience 3 frames, background normalisation with a "
        "300 s time constant (floor 0.001)."
    )
    (_, line) = _detector_line(
        {"operating_point": {"detector": {**detector, "background_ceiling": 0.2}}}
    )
    assert line.endswith("300 s time constant (floor 0.001, posteriors up to 0.2 counted).")
    old = {"calibration": {"detector": {"smoothing_frames": 5, "patience_frames": 3}}}
    assert _detector_line({"operating_point": old})[1].endswith("no background normalisation.")
    assert _detector_line({"operating_point": {"calibration": None}}) == []


def test_repeats_streams_say_each_keyword_again_and_again(stream_corpus: Path) -> None:
    """Asked for, a repeats stream per voice: keywords each said REPEATS times, 2-8 s apart,
    at their clip's position; scored, the later sayings count as repeats; the default kinds
    leave them out, an unknown kind is refused."""
    from training.streams import GAP_REPEATS_S, REPEATS

    streams = build_streams(stream_corpus, "test", kinds=("repeats",))
    assert streams and {s.kind for s in streams} == {"repeats"}
    stream = streams[0]
    rows = read_manifest(stream_corpus)
    clips = {
        r["label"]: _wav(stream_corpus / r["path"]) for r in rows if r["voice"] == stream.voice
    }
    words = [e.keyword for e in stream.events]
    assert len(words) % REPEATS == 0 and len(set(words)) == len(words) // REPEATS
    for i, event in enumerate(stream.events):
        start = round(event.start_s * 16000)
        clip = clips[event.keyword]
        piece = stream.audio[start : start + clip.size]
        np.testing.assert_allclose(piece, float(piece @ clip / (clip @ clip)) * clip, atol=2e-4)
        if i % REPEATS:
            gap = event.start_s - stream.events[i - 1].end_s
            assert GAP_REPEATS_S[0] - 1e-3 <= gap <= GAP_REPEATS_S[1] + 1e-3
    hits = [Found(e.keyword, e.end_s + 0.1, 0.9) for e in stream.events]
    result = score([StreamRun(stream, np.zeros((0, 4)), hits)])
    assert set(result["sets"]) == {"repeats"} and result["recall"] == 1.0
    assert result["recall_by"]["repeat:said in the 60 s before"] == 1.0
    assert "repeats" not in {s.kind for s in build_streams(stream_corpus, "test")}
    with pytest.raises(ValueError, match="unknown stream kinds"):
        build_streams(stream_corpus, "test", kinds=("mixed", "chatter"))


def test_commands_streams_say_each_command_right_after_the_wake_word(stream_corpus: Path) -> None:
    """One commands stream per voice of the split: the wake word, then after 0.2-0.8 s each of
    the voice's other keywords once, both at their clips' positions and one gain per request;
    deterministic; planted detections of the commands score as the commands' recall. A wake
    word the split never says is refused."""
    from training.streams import GAP_COMMAND_S, build_command_streams

    streams = build_command_streams(stream_corpus, "test", "go")
    assert [s.kind for s in streams] == ["commands"] and streams[0].background == "clean"
    again = build_command_streams(stream_corpus, "test", "go")
    assert np.array_equal(streams[0].audio, again[0].audio)
    stream = streams[0]
    rows = read_manifest(stream_corpus)
    clips = {
        r["label"]: _wav(stream_corpus / r["path"]) for r in rows if r["voice"] == stream.voice
    }
    contexts = [e.context for e in stream.events]
    assert contexts == ["wake", "command"] * (len(STREAM_WORDS) - 1)
    commands = [e.keyword for e in stream.events if e.context == "command"]
    assert sorted(commands) == sorted(set(STREAM_WORDS) - {"go"})
    for wake, command in zip(stream.events[::2], stream.events[1::2], strict=True):
        assert wake.keyword == "go"
        assert GAP_COMMAND_S[0] - 1e-3 <= command.start_s - wake.end_s <= GAP_COMMAND_S[1] + 1e-3
        gains = []
        for event in (wake, command):
            start = round(event.start_s * 16000)
            clip = clips[event.keyword]
            piece = stream.audio[start : start + clip.size]
            gains.append(float(piece @ clip / (clip @ clip)))
            np.testing.assert_allclose(piece, gains[-1] * clip, atol=2e-4)
        assert gains[0] == pytest.approx(gains[1], abs=1e-3)
    said = [Found(e.keyword, e.end_s + 0.1, 0.9) for e in stream.events if e.context == "command"]
    result = score([StreamRun(stream, np.zeros((0, 4)), said)])
    assert result["recall_by"]["context:command"] == 1.0
    assert result["recall_by"]["context:wake"] == 0.0 and result["false_alarms"] == 0
    with pytest.raises(ValueError, match="no 'marvin' clip"):
        build_command_streams(stream_corpus, "test", "marvin")


def test_with_commands_at_their_own_sensitivity_the_sweep_moves_the_wake_word(
    tmp_path: Path,
) -> None:
    """The grammar's DET sweep: without ``command_sensitivity`` every keyword moves together;
    with it (given, or the checkpoint's default) only the wake word moves, the commands keep
    their point; refused without a wake word."""
    from training.stream_report import det_configs, evaluate_streams, load_engine

    torch.manual_seed(0)
    model = build_model("lmuformer", dim=16, num_classes=len(STREAM_LABELS)).eval()
    meta = {"labels": list(STREAM_LABELS), "detector": {"posterior": "softmax"}}
    engine = load_engine(save_checkpoint(tmp_path / "t.safetensors", model, meta), "torch")
    name, joint = det_configs(engine, "yes")
    assert name == "threshold" and len({c.thresholds[1] for _, c in joint}) == len(joint)
    for default in (None, 0.9):
        meta["detector"]["command_sensitivity"] = default
        ckpt = save_checkpoint(tmp_path / "c.safetensors", model, meta)
        engine = load_engine(ckpt, "torch")
        name, ladder = det_configs(engine, "yes", None if default else 0.9)
        assert name == "wake-word sensitivity"
        wake = [c.thresholds[0] for _, c in ladder]
        assert wake == sorted(wake, reverse=True) and wake[0] > wake[-1]
        commands = engine.detector_config(sensitivity=0.9).thresholds[1:3]
        for _, config in ladder:
            np.testing.assert_allclose(config.thresholds[1:3], commands)
    with pytest.raises(ValueError, match="commands' point under a --wake-word"):
        evaluate_streams(ckpt, tmp_path, tmp_path / "out", command_sensitivity=0.5)
