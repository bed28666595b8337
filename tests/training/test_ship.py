"""Shipping a checkpoint: trimmed metadata with the test metrics, the report copy, a model card."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from lmukws.cli import main
from models import FeatureConfig, build_model, load_checkpoint, read_metadata, save_checkpoint
from tests.training.test_evaluate import LABELS, make_corpus, make_recordings
from training.ship import (
    _stream_commands,
    _streams_section,
    _weight_search_lines,
    checkpoint_record,
    sensitivity_sweep,
)


def trained_like_checkpoint(path: Path, val_acc: float = 0.5, **training: object) -> Path:
    """A tiny checkpoint with the metadata layout that ``lmukws train`` writes."""
    torch.manual_seed(0)
    model = build_model("lmuformer", dim=16, num_classes=len(LABELS)).eval()
    corpus = {"source": "test-tones", "counts": {"test": 12}, "engines": {"tone": 1},
              "speakers": {"v0": ["tone:v0"]}, "voices": ["tone:v0", "tone:v1"]}  # fmt: skip
    metadata = {
        "labels": LABELS,
        "features": FeatureConfig().to_dict(),
        "training": {
            "recipe": {"loss": "ce", "batch_size": 8, "notes": "a test run"},
            "data": {"train": {"corpus": corpus, "counts": {"yes": 3}}},
            "epochs_trained": 1,
            "global_step": 5,
            **training,
        },
        "metrics": {"val_acc": val_acc, "val_per_class_acc": {"yes": 1.0}},
        "detector": {"default_threshold": 0.5},
    }
    return save_checkpoint(path, model, metadata)


def legacy_stage_record(path: Path) -> dict[str, object]:
    """The ``init_from`` record an earlier trainer wrote for the checkpoint at ``path``: its
    identity (steps, epochs, accuracy) without the run and corpus folders ship must find."""
    record = checkpoint_record(path, read_metadata(path))
    return {k: v for k, v in record.items() if k not in ("run", "data")}


def evaluate_and_ship(
    checkpoint: Path,
    tmp_path: Path,
    *ship_options: str,
    recordings: bool = False,
    backgrounds: str | None = None,
) -> Path:
    """``lmukws evaluate`` on a tiny corpus (and, with ``recordings``, a tiny real-speech dev
    set) into tmp_path/report, then ``ship-checkpoint`` as lmuformer into tmp_path/shipped;
    returns the report folder."""
    data = make_corpus(tmp_path / "corpus")
    report = tmp_path / "report"
    evaluate = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(report)]
    if recordings:
        folder = make_recordings(tmp_path / "recordings", data, labels=LABELS)
        evaluate += ["--recordings", str(folder)]
    if backgrounds is not None:
        evaluate += ["--backgrounds", backgrounds]
    assert main([*evaluate, "--batch-size", "8", "--threads", "1"]) == 0
    ship = ["ship-checkpoint", str(checkpoint), "--report", str(report), "--name", "lmuformer"]
    assert main([*ship, "--out-dir", str(tmp_path / "shipped"), *ship_options]) == 0
    return report


def test_ship_writes_checkpoint_report_and_card(tmp_path: Path) -> None:
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5,
                                    "val_acc": 0.5}]))  # fmt: skip
    report = evaluate_and_ship(checkpoint, tmp_path, "--history", str(history))
    out = tmp_path / "shipped"

    model, meta = load_checkpoint(out / "lmuformer.safetensors")
    accuracy = json.loads((report / "metrics.json").read_text())["accuracy"]
    assert meta["metrics"]["test"]["accuracy"] == accuracy
    assert meta["metrics"]["test"]["clips"] == 12
    assert "val_per_class_acc" not in meta["metrics"]
    assert meta["detector"]["posterior"] == "softmax"  # trained with cross-entropy
    corpus = meta["training"]["data"]["train"]["corpus"]
    assert "voices" not in corpus and corpus["num_voices"] == 2 and corpus["counts"]
    assert meta["training"]["history"][0]["epoch"] == 1
    assert {p.name for p in (out / "reports" / "lmuformer").iterdir()} >= {
        "README.md", "metrics.json", "confusion.png", "accuracy_vs_frames.png", "per_voice.png"
    }  # fmt: skip
    card = (out / "lmuformer.md").read_text()
    weakest = next(iter(json.loads((report / "metrics.json").read_text())["per_voice"]))
    assert f"Weakest of the 3 held-out voices: {weakest} " in card
    assert "Trained on synthetic speech" in card
    assert f"{100 * accuracy:.2f} %" in card
    assert "does NOT yet meet" in card or "meets" in card
    assert "lmukws train --config training/configs/lmuformer-synth.json\n" in card
    assert model.num_classes == len(LABELS)
    assert "Real-speech dev set" not in card and "real_speech_dev" not in meta["metrics"]
    assert "Its accuracy on real microphones and real speakers is unknown" in card
    assert "## History" not in card
    assert "keyword clips under" not in card and "--backgrounds" not in card

    # a hand-written History section survives the next ship
    (out / "lmuformer.md").write_text(card + "\n## History\n\n| stage | result |\n| 1 | 80 % |\n")
    ship = ["ship-checkpoint", str(checkpoint), "--report", str(report), "--name", "lmuformer"]
    assert main([*ship, "--out-dir", str(out)]) == 0
    card = (out / "lmuformer.md").read_text()
    assert card.count("## History") == 1 and card.endswith("| 1 | 80 % |\n")
    assert "Trained on synthetic speech" in card


def test_the_card_shows_the_real_speech_dev_set(tmp_path: Path) -> None:
    """An evaluation with --recordings: the card gives the real-speech dev accuracy, overall
    and per speaker, the metadata keeps it, the report copy has its table."""
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    report = evaluate_and_ship(checkpoint, tmp_path, recordings=True)
    dev = json.loads((report / "metrics.json").read_text())["real_speech_dev"]
    out = tmp_path / "shipped"
    card = (out / "lmuformer.md").read_text()
    pct = f"{100 * dev['accuracy']:.2f} %"
    assert f"| real-speech dev set accuracy (8 clips, 2 real speakers) | **{pct}** |" in card
    assert "## Real-speech dev set" in card and f"**{pct}** of 8 clips (2 speakers)" in card
    for speaker, stats in dev["per_speaker"].items():  # keywords only: no words, "-"
        accuracy = f"{100 * stats['accuracy']:.2f} %"
        assert f"| {speaker} | 4 | {accuracy} | {accuracy} of 4 | - |" in card
    assert "measured only on a small real-speech dev set (8 clips of 2 speakers" in card
    assert "reports/lmuformer/real_speech_dev.md" in card
    assert f"--split test --recordings {tmp_path / 'recordings'} --out" in card
    meta = read_metadata(out / "lmuformer.safetensors")
    shipped = meta["metrics"]["real_speech_dev"]
    assert shipped["accuracy"] == dev["accuracy"] and shipped["clips"] == 8
    assert set(shipped["per_speaker"]) == {"kajongg:male1", "tuxpaint:en"}
    assert {"real_speech_dev.md", "real_speech_dev.csv"} <= {
        p.name for p in (out / "reports" / "lmuformer").iterdir()
    }


def test_ship_refuses_the_wrong_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    args = ["ship-checkpoint", str(checkpoint), "--report", str(tmp_path), "--name"]
    assert main([*args, "spiking-lmuformer", "--out-dir", str(tmp_path / "o")]) == 2
    assert "holds lmuformer, not spiking-lmuformer" in capsys.readouterr().out


def test_ship_a_two_stage_run(tmp_path: Path) -> None:
    """A run continued with init_from: the card names both stages, their histories and the
    commands of both."""
    checkpoint = trained_like_checkpoint(
        tmp_path / "best.safetensors",
        init_from={"path": "data/runs/lmuformer-synth/best.safetensors", "global_step": 1600},
        recipe={"loss": "ce", "batch_size": 8, "out": "data/runs/lmuformer-synth-stage2"},
    )
    histories = []
    for stage, epochs in ((1, 2), (2, 1)):
        path = tmp_path / f"history{stage}.json"
        rows = [{"epoch": e + 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5}
                for e in range(epochs)]  # fmt: skip
        path.write_text(json.dumps(rows))
        histories += ["--history", str(path)]
    evaluate_and_ship(checkpoint, tmp_path, *histories)
    out = tmp_path / "shipped"
    _, meta = load_checkpoint(out / "lmuformer.safetensors")
    assert [r["stage"] for r in meta["training"]["history"]] == [1, 1, 2]
    card = (out / "lmuformer.md").read_text()
    assert "1605 steps in all" in card
    assert "| stage | epoch |" in card and "| 2 | 1 |" in card
    assert "lmukws train --config training/configs/lmuformer-synth.json\n" in card
    assert "lmukws train --config training/configs/lmuformer-synth-stage2.json" in card
    assert "ship-checkpoint data/runs/lmuformer-synth-stage2/best.safetensors" in card
    assert "--history data/runs/lmuformer-synth-stage2/history.json" in card


def test_a_stage_that_started_from_the_shipped_file_it_replaces(tmp_path: Path) -> None:
    """Stage 2 continued the shipped copy (models/checkpoints/NAME.safetensors), which this ship
    overwrites: the card still names stage 1's run folder, its config and its history."""
    out = tmp_path / "shipped"
    out.mkdir()
    shipped_before = trained_like_checkpoint(
        out / "lmuformer.safetensors", recipe={"out": "data/runs/lmuformer-synth"}
    )
    checkpoint = trained_like_checkpoint(
        tmp_path / "best.safetensors",
        init_from=legacy_stage_record(shipped_before),
        recipe={"loss": "ce", "out": "data/runs/lmuformer-synth-gpu"},
    )
    evaluate_and_ship(checkpoint, tmp_path)
    _, meta = load_checkpoint(out / "lmuformer.safetensors")
    assert meta["training"]["init_from"]["run"] == "data/runs/lmuformer-synth"
    card = (out / "lmuformer.md").read_text()
    assert "training/configs/lmuformer-synth.json)" in card  # the stage line
    assert "lmukws train --config training/configs/lmuformer-synth.json\n" in card
    assert "lmukws train --config training/configs/lmuformer-synth-gpu.json" in card
    assert "--history data/runs/lmuformer-synth/history.json" in card
    assert "training/configs/shipped.json" not in card


def test_stage_runs_are_matched_by_identity_not_by_path(tmp_path: Path) -> None:
    """Stage 2 started from the shipped file, which now holds stage 3 (started from stage 2):
    the shipped file's own run is not stage 2's, but its recorded chain names stage 2's run."""
    from training.ship import _name_stage_runs

    def meta(step: int, acc: float) -> dict[str, object]:
        return {"global_step": step, "epochs_trained": step // 10, "metrics": {"val_acc": acc}}

    stage2 = {"path": str(tmp_path / "shipped.safetensors"), **meta(40, 0.7)}
    trained_like_checkpoint(tmp_path / "shipped.safetensors")  # replaced below
    model, shipped = load_checkpoint(tmp_path / "shipped.safetensors")
    shipped["training"] = {
        "recipe": {"out": "runs/stage3"},
        "global_step": 10,
        "epochs_trained": 1,
        "init_from": {**stage2, "run": "runs/stage2"},
    }
    shipped["metrics"] = {"val_acc": 0.75}
    save_checkpoint(tmp_path / "shipped.safetensors", model, shipped)
    stage3 = {"path": str(tmp_path / "shipped.safetensors"), **meta(10, 0.75)}
    gone = {"path": str(tmp_path / "missing" / "best.safetensors"), **meta(20, 0.4)}
    training = {"init_from": {**stage3, "init_from": {**stage2, "init_from": gone}}}
    _name_stage_runs(training)
    first = training["init_from"]
    assert first["run"] == "runs/stage3"
    assert first["init_from"]["run"] == "runs/stage2"
    assert first["init_from"]["init_from"]["run"] is None  # nothing on disk says


def test_a_stage_on_a_larger_corpus_is_reproduced_with_both_corpora(tmp_path: Path) -> None:
    """Stage 1 trained on the default corpus, stage 2 on one built with more renditions: the
    card's commands build both corpora, each as it was built, and evaluate on the corpus the
    evaluation report tested."""
    stage1 = trained_like_checkpoint(
        tmp_path / "stage1.safetensors",
        recipe={"out": "data/runs/lmuformer-synth", "data": "data/synth"},
    )
    larger = {"source": "synthetic", "seed": 0, "counts": {"train": {"yes": 600}},
              "config": {"renditions_per_word": 600, "heldout_renditions": 50}}  # fmt: skip
    checkpoint = trained_like_checkpoint(
        tmp_path / "best.safetensors",
        init_from=legacy_stage_record(stage1),
        recipe={"loss": "ce", "out": "data/runs/lmuformer-synth-600", "data": "data/synth-600"},
        data={"train": {"corpus": larger}},
    )
    evaluate_and_ship(checkpoint, tmp_path)
    _, meta = load_checkpoint(tmp_path / "shipped" / "lmuformer.safetensors")
    assert meta["training"]["init_from"]["data"] == "data/synth"  # found in stage 1's file
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    card = card[card.index("## Reproduce") :]
    # (where data/synth exists, as built before the accented and pico engines, it names its engines)
    assert re.search(r"lmukws data synth --out data/synth --jobs 2( --engines [\w,-]+)?\n", card)
    assert (
        "lmukws data synth --out data/synth-600 --jobs 2 --renditions 600 "
        "--heldout-renditions 50\n" in card
    )
    assert card.index("--out data/synth --jobs") < card.index("--out data/synth-600")
    tested = tmp_path / "corpus"  # the corpus the evaluation report says it tested on
    assert (
        f"lmukws evaluate data/runs/lmuformer-synth-600/best.safetensors --data {tested} " in card
    )


def test_synth_command_names_only_what_differs_from_the_defaults() -> None:
    from training.ship import synth_command

    assert synth_command("d", {}) == "lmukws data synth --out d --jobs 2"
    defaults = {"seed": 0, "config": {"renditions_per_word": 200, "heldout_renditions": 50}}
    assert synth_command("d", defaults) == "lmukws data synth --out d --jobs 2"
    other = {"seed": 3, "config": {"renditions_per_word": 400, "unknown_fraction": 0.3}}
    assert synth_command("d", other) == (
        "lmukws data synth --out d --jobs 2 --seed 3 --renditions 400 --unknown-fraction 0.3"
    )
    from training.voices import DEFAULT_ENGINES, ENGINES

    default = {"config": {"engines": list(DEFAULT_ENGINES)}}
    assert synth_command("d", default) == "lmukws data synth --out d --jobs 2"
    # a corpus with the opt-in Kokoro names all its engines
    everything = {"config": {"engines": list(ENGINES)}}
    assert synth_command("d", everything) == (
        f"lmukws data synth --out d --jobs 2 --engines {','.join(ENGINES)}"
    )
    wide = {"config": {"engines": list(ENGINES), "kokoro_max_scale": 150}}
    assert synth_command("d", wide).endswith(
        f"--engines {','.join(ENGINES)} --kokoro-max-scale 150"
    )
    # a corpus built before an engine was added names the engines it had, so it rebuilds alike
    older = {"config": {"engines": ["espeak-ng", "flite"]}}
    assert (
        synth_command("d", older) == "lmukws data synth --out d --jobs 2 --engines espeak-ng,flite"
    )


def test_stages_walks_the_chain_oldest_first() -> None:
    from training.ship import stages

    first = {"path": "a/best.safetensors", "global_step": 10}
    third = {"init_from": {"path": "b/best.safetensors", "global_step": 20, "init_from": first}}
    assert [s["path"] for s in stages(third)] == ["a/best.safetensors", "b/best.safetensors"]
    assert stages({}) == []


def test_card_notes_come_from_the_runs_config_as_it_is_now() -> None:
    """A config's notes are written up with the results after its run: the card takes them from
    the config file that describes the run (same ``out``), else from the checkpoint's recipe."""
    from training.ship import CONFIGS_DIR, config_notes

    config = json.loads((CONFIGS_DIR / "lmuformer-synth-stage3.json").read_text())
    recipe = {"out": config["out"], "notes": "written when training started"}
    assert config_notes(config["out"], recipe) == config["notes"]
    elsewhere = {"out": "runs/lmuformer-synth-stage3", "notes": "written when training started"}
    assert config_notes(elsewhere["out"], elsewhere) == "written when training started"
    assert config_notes("data/runs/no-such-config", {"notes": "n"}) == "n"


def test_ship_with_a_streams_report(tmp_path: Path) -> None:
    """--streams copies the evaluate-streams report beside the evaluation report and puts its
    recall and false alarms per hour, and its wake-word grammar's, into the metadata and the
    card."""
    streams = tmp_path / "streams"
    streams.mkdir()
    result = {
        "split": "test", "recall": 0.9, "false_alarms_per_hour": 3.5, "hours": 2.0,
        "events": 100, "delay_ms": {"median": 80.0, "p90": 200.0}, "calibrated": True,
        "sets": {"mixed": {"false_alarms_per_hour": 2.0},
                 "negatives/recorded": {"false_alarms_per_hour": 4.0}},
        "wake_word": {"word": "marvin", "false_alarms_per_hour": 0.5,
                      "command_false_alarms_per_hour": 0.2, "commands": {
            "commands": 34, "recall_by": {"context:command": 0.25, "context:wake": 0.5}}},
    }  # fmt: skip
    (streams / "streams.json").write_text(json.dumps(result))
    for plot in ("det.png", "det_by_voice.png", "det_wake.png"):
        (streams / plot).write_bytes(b"\x89PNG fake")
    (streams / "README.md").write_text("# Streams\n")
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    evaluate_and_ship(checkpoint, tmp_path, "--streams", str(streams))
    out = tmp_path / "shipped"
    meta = read_metadata(out / "lmuformer.safetensors")
    assert meta["metrics"]["streams"]["false_alarms_per_hour"] == 3.5
    assert meta["metrics"]["streams"]["sets"] == {"mixed": 2.0, "negatives/recorded": 4.0}
    copies = {p.name for p in (out / "reports" / "lmuformer").iterdir()}
    assert {"streams.json", "det.png", "det_by_voice.png", "det_wake.png", "streams.md"} <= copies
    grammar = meta["metrics"]["streams"]["wake_word"]
    assert grammar == {"word": "marvin", "false_alarms_per_hour": 0.5, "command_recall": 0.25,
                       "wake_recall": 0.5, "commands": 34, "command_sensitivity": None,
                       "command_false_alarms_per_hour": 0.2}  # fmt: skip
    card = (out / "lmuformer.md").read_text()
    assert "## Detection on streams" in card and "**3.5 false alarms per hour**" in card
    assert (
        "With the wake-word grammar (`wake_word: marvin`): 0.5 false alarms per hour on the same "
        "streams (0.2 of them commands, the rest the wake word's own); of 34 commands said "
        "right after the wake word, recall **25.00 %** (the wake word 50.00 %" in card
    )
    assert "recall **90.00 %** of 100 keywords" in card
    assert (
        "best.safetensors --data data/synth --split test --out reports/streams-lmuformer\n" in card
    )
    assert "--name lmuformer --streams reports/streams-lmuformer " in card
    assert "lmukws calibrate" not in card  # not calibrated


def test_the_card_reproduces_the_calibration() -> None:
    meta = {
        "detector": {"calibration": {"target_fa_per_hour": 20.0, "keyword_weight": 0.5, "data": {
            "corpus": "data/synth", "split": "validation", "recordings": "data/recordings"}}},
        "metrics": {"streams": {"split": "test", "recall": 0.3}},
    }  # fmt: skip
    commands, option = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert commands.splitlines() == [
        "lmukws calibrate soup.safetensors --data data/synth --target-fa-per-hour 20 "
        "--recordings data/recordings",
        "lmukws evaluate-streams soup.safetensors --data data/synth --split test "
        "--recordings data/recordings --out reports/streams-lmuformer",
    ]
    assert option == "--streams reports/streams-lmuformer "
    assert _stream_commands("lmuformer", {}, "x.safetensors") == ("", "")
    # calibrated before keyword_weight existed: per-keyword allocation alone
    del meta["detector"]["calibration"]["keyword_weight"]
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert commands.splitlines()[0].endswith(" --recordings data/recordings --keyword-weight 1")
    meta["detector"]["calibration"]["keyword_weight_search"] = {"candidates": []}
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert commands.splitlines()[0].endswith(" --keyword-weight auto")
    del meta["detector"]["calibration"]["keyword_weight_search"]
    # an ensemble's weight search: the candidates besides its own weights (the first row)
    rows = [{"weights": w} for w in ([0.7, 0.3], [0.8, 0.2], [0.6, 0.4])]
    meta["detector"]["calibration"]["ensemble_weight_search"] = {"candidates": rows}
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert ' --recordings data/recordings --ensemble-weights "0.8,0.2;0.6,0.4" ' in commands
    del meta["detector"]["calibration"]["ensemble_weight_search"]
    # a grammar calibration: its wake word, and its target where not the default
    meta["detector"]["calibration"]["grammar"] = {"wake_word": "marvin", "target_fa_per_hour": 2.0}
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --recordings data/recordings --wake-word marvin --keyword-weight 1" in commands
    meta["detector"]["calibration"]["grammar"]["target_fa_per_hour"] = 0.5
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --wake-word marvin --grammar-target-fa-per-hour 0.5 " in commands
    del meta["detector"]["calibration"]["grammar"]
    # a detector search: the settings that took several values (a background even at one)
    candidates = [{"smoothing_frames": 5, "patience_frames": 3, "background_frames": b}
                  for b in (0, 3000, 30000)]  # fmt: skip
    meta["detector"]["calibration"]["detector_search"] = {"candidates": candidates}
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --recordings data/recordings --background-s 0,30,300 " in commands.splitlines()[0]
    candidates[:] = [{"smoothing_frames": s, "patience_frames": 3, "background_frames": 10000}
                     for s in (5, 10)]  # fmt: skip
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --smoothing-ms 50,100 --background-s 100" in commands.splitlines()[0]
    assert "--background-ceiling" not in commands  # the default ceiling
    for row, gate in zip(candidates, (0, 200), strict=True):  # a speech gate searched
        row["speech_gate_frames"] = gate
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --background-s 100 --speech-gate-ms 0,2000" in commands.splitlines()[0]
    for row in candidates:
        del row["speech_gate_frames"]
    meta["detector"]["calibration"]["detector"] = {"background_ceiling": 0.2}
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert " --background-s 100 --background-ceiling 0.2" in commands.splitlines()[0]
    # ceilings searched on streams with repeats: the list once, and the kinds
    candidates[:] = [
        {
            "smoothing_frames": 5,
            "patience_frames": 3,
            "background_frames": b,
            "background_ceiling": c,
        }
        for b, c in ((0, 0.2), (10000, 0.2), (10000, 0.5))
    ]
    meta["detector"]["calibration"]["data"]["kinds"] = ["mixed", "negatives", "repeats"]
    commands, _ = _stream_commands("lmuformer", meta, "soup.safetensors")
    line = commands.splitlines()[0]
    assert (
        " --background-s 0,100 --background-ceiling 0.2,0.5 --kinds mixed,negatives,repeats" in line
    )
    assert line.count("--background-ceiling") == 1
    meta["detector"]["calibration"]["data"]["kinds"] = ["mixed", "negatives"]
    assert "--kinds" not in _stream_commands("lmuformer", meta, "soup.safetensors")[0]
    del meta["detector"]["calibration"]["data"]["kinds"]
    del meta["detector"]["calibration"]["detector"]
    del meta["detector"]["calibration"]["detector_search"]
    # the stream report's own command, where it ran on this checkpoint
    ran = (
        "lmukws evaluate-streams soup.safetensors --data data/synth --split test "
        "--recordings data/recordings --wake-word marvin --out reports/streams-x"
    )
    meta["metrics"]["streams"]["command"] = ran
    commands, option = _stream_commands("lmuformer", meta, "soup.safetensors")
    assert commands.splitlines()[1] == ran and option == "--streams reports/streams-x "
    commands, option = _stream_commands("lmuformer", meta, "other.safetensors")
    assert "--wake-word" not in commands and option == "--streams reports/streams-lmuformer "


def test_an_ensemble_card_shows_its_weight_search() -> None:
    rows = [
        {"weights": [0.7, 0.3], "heldout_recall_at_target": 0.4339, "heldout_fa_per_hour": 18.76,
         "chosen": True},
        {"weights": [0.8, 0.2], "heldout_recall_at_target": None, "heldout_fa_per_hour": 19.76,
         "chosen": False},
    ]  # fmt: skip
    calibration = {"target_fa_per_hour": 20.0, "ensemble_weight_search": {"candidates": rows}}
    lines = _weight_search_lines({"detector": {"calibration": calibration}})
    assert "held-out recall at 20 FA/h" in lines[1]
    assert lines[-2:] == ["| 0.7 / 0.3 | 0.434 | 18.8 | **kept** |", "| 0.8 / 0.2 | – | 19.8 |  |"]
    assert _weight_search_lines({"detector": {"calibration": {"target_fa_per_hour": 20}}}) == []


def test_the_card_names_the_background_and_the_calibration_streams() -> None:
    calibration = {"target_fa_per_hour": 20.0, "data": {"hours": 7.5}, "operating_points": []}
    meta = {
        "detector": {"calibration": calibration, "background_frames": 10000},
        "metrics": {"streams": {"split": "test", "recall": 0.3, "hours": 5.0, "events": 10}},
    }
    line = next(x for x in _streams_section("m", meta) if x.startswith("Thresholds"))
    assert "validation streams (7.5 h);" in line and "a 100 s time constant)" in line
    meta["detector"]["background_ceiling"] = 0.2
    calibration["data"]["kinds"] = ["mixed", "negatives", "repeats"]
    line = next(x for x in _streams_section("m", meta) if x.startswith("Thresholds"))
    assert "validation streams (7.5 h, with repeated commands);" in line
    assert "a 100 s time constant, counting posteriors up to 0.2)" in line
    assert "speech gate" not in line
    meta["detector"]["speech_gate_frames"] = 200
    line = next(x for x in _streams_section("m", meta) if x.startswith("Thresholds"))
    assert "; keywords are held back for a second after 2 s of other speech (the speech" in line


def test_provenance_of_stream_windows_is_kept_as_it_is() -> None:
    """A stream-trained checkpoint's provenance names its windows' corpus by folder (a string),
    beside the clip splits' corpus.json records, whose per-voice listings are dropped."""
    from training.ship import trim_provenance

    data = {
        "train": {"corpus": {"voices": ["a", "b"], "seed": 0}, "items": 10},
        "stream_windows": {"corpus": "data/synth", "keyword_clips": 5},
    }
    trimmed = trim_provenance(data)
    assert trimmed["stream_windows"] == data["stream_windows"]
    assert trimmed["train"]["corpus"] == {"seed": 0, "num_voices": 2}


def test_a_run_stopped_before_its_recipe_ends_is_reproduced_with_its_epochs(
    tmp_path: Path,
) -> None:
    checkpoint = trained_like_checkpoint(
        tmp_path / "best.safetensors",
        recipe={"loss": "ce", "epochs": 40, "notes": "a run stopped at 10 of 40"},
        epochs_trained=10,
    )
    evaluate_and_ship(checkpoint, tmp_path)
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    assert "lmukws train --config training/configs/lmuformer-synth.json --set epochs=10\n" in card


def test_a_further_stage_continues_the_shipped_cards_reproduce(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--continue-card: the new card's Reproduce is the shipped card's commands up to the one
    that writes the new run's start, then the new stage's (its soup made first); the history
    keeps the shipped rows and numbers the new stage after them."""
    first = trained_like_checkpoint(tmp_path / "first.safetensors")
    history = tmp_path / "history.json"
    row = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5}
    history.write_text(json.dumps([row, {**row, "epoch": 2}]))
    report = evaluate_and_ship(first, tmp_path, "--history", str(history))
    out = tmp_path / "shipped"
    card = (out / "lmuformer.md").read_text()
    earlier = [
        "lmukws data synth --out data/synth --jobs 2",
        f"lmukws data synth --out {tmp_path / 'corpus'} --jobs 2",  # the corpus tested on
        "lmukws train --config training/configs/old-stage.json",
        "lmukws calibrate data/runs/o/b.safetensors --data d --out data/runs/old/c.safetensors",
        "lmukws evaluate data/runs/old/c.safetensors --data data/synth --out reports/old",
    ]  # fmt: skip
    block = card.split("## Reproduce\n\n```sh\n", 1)[1].split("```", 1)[0]
    (out / "lmuformer.md").write_text(card.replace(block, "\n".join(earlier) + "\n"))

    recipe = {"loss": "ce", "batch_size": 8, "out": "data/runs/new", "data": "data/synth"}
    start = {"path": "data/runs/old/c.safetensors", "global_step": 5, "epochs_trained": 1}
    soup = {"path": "data/runs/new/soup.safetensors",
            "averaged_from": ["data/runs/new/epoch-001.safetensors",
                              "data/runs/new/epoch-002.safetensors"]}  # fmt: skip
    mix = trained_like_checkpoint(
        tmp_path / "mix.safetensors",
        recipe=recipe,
        init_from=start,
        averaged_from=[soup, {**start, "averaged_from": ["a", "b"]}],
    )
    new_history = tmp_path / "new-history.json"
    new_history.write_text(json.dumps([{**row, "val_acc": 0.75}]))
    ship = ["ship-checkpoint", str(mix), "--report", str(report), "--name", "lmuformer"]
    ship += ["--out-dir", str(out), "--history", str(new_history)]
    assert main([*ship, "--continue-card"]) == 0

    card = (out / "lmuformer.md").read_text()
    commands = card.split("## Reproduce\n\n```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert commands[:4] == earlier[:4]  # up to the command that writes the start, no further
    assert earlier[4] not in commands
    assert commands[4] == "lmukws train --config training/configs/new.json"
    assert commands[5] == (
        "lmukws average-checkpoints data/runs/new/epoch-001.safetensors "
        "data/runs/new/epoch-002.safetensors --out data/runs/new/soup.safetensors"
    )  # the soup member first; the start is made above, so not again
    assert commands[6] == (
        "lmukws average-checkpoints data/runs/new/soup.safetensors data/runs/old/c.safetensors "
        f"--out {mix}"
    )
    assert commands[-1].endswith("--continue-card --history data/runs/new/history.json")
    tested = tmp_path / "corpus"  # the evaluation's corpus, not the one the stage trained on
    assert f"lmukws evaluate {mix} --data {tested} --split test --out " in "\n".join(commands)
    assert sum(c.startswith("lmukws data synth") for c in commands) == 2
    meta = read_metadata(out / "lmuformer.safetensors")
    stages = [(r["stage"], r["epoch"], r["val_acc"]) for r in meta["training"]["history"]]
    assert stages == [(1, 1, 0.5), (1, 2, 0.5), (2, 1, 0.75)]
    assert "| 2 | 1 | 1.00e-01 | 1.000 | 0.500 | 0.750 |" in card

    # a start that no command of the shipped card writes is refused, nothing is written
    elsewhere = trained_like_checkpoint(
        tmp_path / "other.safetensors", recipe=recipe, init_from={"path": "data/runs/x.safetensors"}
    )
    ship[1] = str(elsewhere)
    assert main([*ship, "--continue-card"]) == 2
    assert "writes 'data/runs/x.safetensors'" in capsys.readouterr().out
    assert (out / "lmuformer.md").read_text() == card


def test_recalibrated_weights_keep_the_shipped_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--recalibrated: the shipped weights with a new calibration keep the card's Reproduce and
    history; its calibrate and evaluate-streams commands become the new ones (added before the
    ship command where the card has none). Other weights, or no streams report, are refused."""
    monkeypatch.chdir(tmp_path)
    first = trained_like_checkpoint(tmp_path / "first.safetensors")
    history = tmp_path / "history.json"
    row = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5}
    history.write_text(json.dumps([row]))
    report = evaluate_and_ship(first, tmp_path, "--history", str(history))
    out = tmp_path / "shipped"
    source = "data/runs/bg/b.safetensors"  # the card's commands name it relative to the root
    earlier = [
        "lmukws train --config training/configs/old-stage.json",
        f"lmukws calibrate {source} --data data/synth --target-fa-per-hour 20",
        f"lmukws evaluate-streams {source} --data data/synth --split test --out reports/s-old",
        f"lmukws evaluate-streams {source} --data data/synth --split test --out reports/s",
        f"lmukws ship-checkpoint {source} --report reports/r --name lmuformer --streams reports/s",
    ]

    def with_reproduce(lines: list[str]) -> None:
        card = (out / "lmuformer.md").read_text()
        block = card.split("## Reproduce\n\n```sh\n", 1)[1].split("```", 1)[0]
        (out / "lmuformer.md").write_text(card.replace(block, "\n".join(lines) + "\n"))

    def reproduce() -> list[str]:
        card = (out / "lmuformer.md").read_text()
        return card.split("## Reproduce\n\n```sh\n", 1)[1].split("```", 1)[0].splitlines()

    with_reproduce(earlier)
    card = (out / "lmuformer.md").read_text()
    (out / "lmuformer.md").write_text(card + "\n## History\n\nBy hand.\n")
    model, meta = load_checkpoint(first)
    meta["training"] = {"recipe": {"loss": "ce"}}  # the run folder's record, without history
    meta["detector"]["calibration"] = {
        "target_fa_per_hour": 20.0, "keyword_weight": 0.5,
        "data": {"corpus": "data/synth", "split": "validation"},
        "grammar": {"wake_word": "yes", "target_fa_per_hour": 2.0},
    }  # fmt: skip
    save_checkpoint(tmp_path / source, model, meta)
    streams = tmp_path / "streams"
    streams.mkdir()
    command = f"lmukws evaluate-streams {source} --data data/synth --split test --out reports/s"
    result = {
        "split": "test",
        "recall": 0.5,
        "false_alarms_per_hour": 9.0,
        "hours": 1.0,
        "events": 10,
        "delay_ms": {"median": 80.0},
        "sets": {},
        "command": command,
    }
    (streams / "streams.json").write_text(json.dumps(result))
    ship = ["ship-checkpoint", source, "--report", str(report), "--name", "lmuformer"]
    ship += ["--out-dir", str(out)]
    assert main([*ship, "--recalibrated"]) == 2  # no streams report: refused
    assert "needs the --streams report" in capsys.readouterr().out
    assert main([*ship, "--streams", str(streams), "--recalibrated"]) == 0

    calibrate = (
        f"lmukws calibrate {source} --data data/synth --target-fa-per-hour 20 --wake-word yes"
    )
    assert reproduce() == [earlier[0], calibrate, earlier[2], command, earlier[4]]
    card = (out / "lmuformer.md").read_text()
    assert card.endswith("## History\n\nBy hand.\n")
    shipped = read_metadata(out / "lmuformer.safetensors")
    assert [r["val_acc"] for r in shipped["training"]["history"]] == [0.5]  # the shipped rows
    assert shipped["detector"]["calibration"]["grammar"]["wake_word"] == "yes"
    assert shipped["metrics"]["streams"]["false_alarms_per_hour"] == 9.0

    # a card without those steps: they go before its ship command
    with_reproduce([earlier[0], earlier[4]])
    assert main([*ship, "--streams", str(streams), "--recalibrated"]) == 0
    assert reproduce() == [earlier[0], calibrate, command, earlier[4]]

    # the shipped weights copied and calibrated elsewhere: the copy, its commands and this ship
    # follow the card's commands (which made what was shipped)
    copied = "data/runs/gate/b.safetensors"
    save_checkpoint(tmp_path / copied, model, meta)
    again = ["ship-checkpoint", copied, "--report", str(report), "--name", "lmuformer"]
    assert main([*again, "--out-dir", str(out), "--streams", str(streams), "--recalibrated"]) == 0
    lines = reproduce()
    assert lines[:5] == [earlier[0], calibrate, command, earlier[4],
                         f"cp models/checkpoints/lmuformer.safetensors {copied}"]  # fmt: skip
    assert lines[5].startswith(f"lmukws calibrate {copied} --data data/synth ")
    assert lines[6].startswith(f"lmukws evaluate-streams {copied} ")
    assert lines[7] == (
        f"lmukws ship-checkpoint {copied} --report {report} --name lmuformer "
        f"--streams {streams} --recalibrated"
    )
    # other weights are a new stage, not a recalibration: refused, nothing written
    card = (out / "lmuformer.md").read_text()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(tmp_path / "other.safetensors", model, meta)
    ship[1] = str(tmp_path / "other.safetensors")
    assert main([*ship, "--streams", str(streams), "--recalibrated"]) == 2
    assert "the weights differ from the shipped lmuformer's" in capsys.readouterr().out
    assert (out / "lmuformer.md").read_text() == card


def test_ship_an_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ``lmukws ensemble`` checkpoint ships under its members' joined name: the card lists
    the members with their weights, files and cards, and reproduces it from them; it has no
    training history of its own."""
    members = []
    for name in ("lmuformer", "spiking-lmuformer"):
        torch.manual_seed(0)
        model = build_model(name, dim=16, num_classes=len(LABELS)).eval()
        meta = {"labels": LABELS, "features": FeatureConfig().to_dict(),
                "metrics": {"test": {"accuracy": 0.5}}}  # fmt: skip
        members.append(str(save_checkpoint(tmp_path / f"{name}.safetensors", model, meta)))
    ensemble = tmp_path / "ensemble.safetensors"
    assert main(["ensemble", *members, "--weights", "3,1", "--out", str(ensemble)]) == 0
    data = make_corpus(tmp_path / "corpus")
    report = tmp_path / "report"
    evaluate = ["evaluate", str(ensemble), "--data", str(data), "--out", str(report)]
    assert main([*evaluate, "--batch-size", "8", "--threads", "1"]) == 0
    name = "lmuformer+spiking-lmuformer"
    ship = ["ship-checkpoint", str(ensemble), "--report", str(report), "--name", name]
    out = tmp_path / "shipped"
    assert main([*ship, "--history", str(report / "metrics.json"), "--out-dir", str(out)]) == 2
    assert "it has no training history of its own" in capsys.readouterr().out
    assert main([*ship, "--out-dir", str(out)]) == 0

    model, meta = load_checkpoint(out / f"{name}.safetensors")
    assert model.config.name == name and model.config.weights == (0.75, 0.25)
    assert meta["provenance"].startswith("lmukws ensemble ")
    assert meta["provenance"].endswith("; shipped from ensemble.safetensors")
    accuracy = json.loads((report / "metrics.json").read_text())["accuracy"]
    assert meta["metrics"]["test"]["accuracy"] == accuracy
    card = (out / f"{name}.md").read_text()
    assert card.startswith(f"# Model card: {name}\n")
    assert f"| test accuracy (12 clips, unseen speakers) | **{100 * accuracy:.2f} %** |" in card
    digest = meta["ensemble"]["members"][0]["weights_sha256"][:12]
    assert f"- `lmuformer`, weight 0.75: `{members[0]}` (weights SHA-256 `{digest}`, " in card
    assert "trained as its card says: [spiking-lmuformer.md](spiking-lmuformer.md))" in card
    assert f"lmukws ensemble {' '.join(members)} --weights 0.75,0.25 --out {ensemble}\n" in card
    assert f"lmukws ship-checkpoint {ensemble} --report {report} --name {name}\n```" in card
    assert "Epochs trained" not in card and (out / "reports" / name / "metrics.json").is_file()
    # shipped again from a copy of the shipped file: it says once where it was shipped from
    again = tmp_path / "again.safetensors"
    shutil.copy2(out / f"{name}.safetensors", again)
    ship = ["ship-checkpoint", str(again), "--report", str(report), "--name", name]
    assert main([*ship, "--out-dir", str(out)]) == 0
    provenance = read_metadata(out / f"{name}.safetensors")["provenance"]
    assert provenance == meta["provenance"].replace("ensemble.safetensors", "again.safetensors")


def test_ship_refuses_a_name_that_is_no_model(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ship-checkpoint", "x.safetensors", "--report", "r", "--name"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "lmuformer+spiking-attention"])
    assert exit_.value.code == 2 and "not streaming models" in capsys.readouterr().err


def test_the_card_says_where_the_commands_sit_under_a_wake_word() -> None:
    grammar = {
        "wake_word": "marvin", "target_fa_per_hour": 2.0, "command_sensitivity": 1.0,
        "command_recall": 0.4321, "fa_per_hour": 0.33, "data": {"commands": 850},
    }  # fmt: skip
    calibration = {"target_fa_per_hour": 20.0, "data": {"hours": 6.0}, "grammar": grammar}
    meta = {
        "detector": {"calibration": calibration},
        "metrics": {"streams": {"split": "test", "recall": 0.3, "hours": 5.0, "events": 10}},
    }
    line = next(x for x in _streams_section("m", meta) if x.startswith("Wake-word grammar"))
    assert line == (
        "Wake-word grammar: `command_sensitivity` **1** (the default of every session with a "
        "wake word), the loosest commands' point whose grammar meets 2 FA/h on the validation "
        "commands streams (850 commands after `marvin`) and the validation streams: there 0.3 "
        "FA/h, commands found 43.21 %."
    )
    grammar.update(command_sensitivity=None, command_recall=None, fa_per_hour=None)
    line = next(x for x in _streams_section("m", meta) if x.startswith("Wake-word grammar"))
    assert "misses 2 FA/h" in line and "no `command_sensitivity` is stored" in line
    grammar["points"] = [{"parameter": 0.5, "false_alarms_per_hour": 7.14}]  # how far off
    line = next(x for x in _streams_section("m", meta) if x.startswith("Wake-word grammar"))
    assert "and the validation streams (there 7.1 FA/h), so no `command_sensitivity`" in line


def test_the_card_shows_keyword_clips_under_backgrounds(tmp_path: Path) -> None:
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    report = evaluate_and_ship(checkpoint, tmp_path, backgrounds="babble:10,noise:0")
    measured = json.loads((report / "metrics.json").read_text())["backgrounds"]
    _, meta = load_checkpoint(tmp_path / "shipped" / "lmuformer.safetensors")
    assert meta["metrics"]["backgrounds"] == measured
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    clean = f"{100 * measured['clean']['accuracy']:.2f} %"
    babble = f"{100 * measured['backgrounds']['babble 10 dB']['accuracy']:.2f} %"
    assert f"| keyword clips under babble 10 dB (clean {clean}) | {babble} |" in card
    assert "| keyword clips under noise 0 dB" in card
    assert "--backgrounds babble:10,noise:0 --out reports/lmuformer-synth" in card


def _sweep_point(s: float, recall: float, fa: float, recorded: float) -> dict[str, object]:
    return {"parameter": s, "recall": recall, "false_alarms_per_hour": fa,
            "sets": {"mixed": 2 * fa, "negatives/recorded": recorded}}  # fmt: skip


def test_the_card_shows_what_each_sensitivity_gave_on_the_test_streams(tmp_path: Path) -> None:
    """A calibrated checkpoint's streams report sweeps start.sensitivity: the card tables it
    every 0.1 (recall, FA/h of all streams and of real speech), the default row bold; a sweep
    over thresholds (uncalibrated) gives no table."""
    points = [_sweep_point(i / 20, 0.2 + i / 50, 1.0 + i, 0.5 * i) for i in range(21)]
    report = {"det": {"parameter": "sensitivity", "points": points}}
    sweep = sensitivity_sweep(report)
    assert [row["sensitivity"] for row in sweep] == [i / 10 for i in range(11)]
    assert sweep[5] == {"sensitivity": 0.5, "recall": 0.4, "false_alarms_per_hour": 11.0,
                        "sets": {"mixed": 22.0, "negatives/recorded": 5.0}}  # fmt: skip
    assert sensitivity_sweep({"det": {"parameter": "threshold", "points": points}}) == []
    assert sensitivity_sweep({}) == []

    calibration = {"target_fa_per_hour": 20.0, "data": {"hours": 6.0}}
    meta = {
        "detector": {"calibration": calibration},
        "metrics": {"streams": {"split": "test", "recall": 0.4, "hours": 5.0, "events": 10}},
    }
    lines = _streams_section("m", meta, sweep)
    header = lines.index(
        "| sensitivity | recall | false alarms per hour, all streams | per hour of real speech |"
    )
    rows = lines[header + 2 : header + 13]
    assert rows[0] == "| 0 | 20.00 % | 1.0 | 0.0 |"
    assert rows[5] == "| **0.5** (default) | **40.00 %** | **11.0** | **5.0** |"
    assert rows[10] == "| 1 | 60.00 % | 21.0 | 10.0 |"
    assert lines[header + 13] == ""
    assert not any(line.startswith("| sensitivity") for line in _streams_section("m", meta))

    streams = tmp_path / "streams"
    streams.mkdir()
    result = {
        "split": "test", "recall": 0.4, "false_alarms_per_hour": 11.0, "hours": 2.0,
        "events": 100, "delay_ms": {"median": 80.0, "p90": 200.0}, "calibrated": True,
        "sets": {"mixed": {"false_alarms_per_hour": 22.0}}, **report,
    }  # fmt: skip
    (streams / "streams.json").write_text(json.dumps(result))
    checkpoint = trained_like_checkpoint(tmp_path / "best.safetensors")
    model, trained = load_checkpoint(checkpoint)
    trained["detector"]["calibration"] = calibration
    save_checkpoint(checkpoint, model, trained)
    evaluate_and_ship(checkpoint, tmp_path, "--streams", str(streams))
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    assert "| **0.5** (default) | **40.00 %** | **11.0** | **5.0** |" in card


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "models" / "checkpoints"


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.safetensors")), ids=lambda p: p.name)
def test_every_shipped_card_shows_its_streams_report_as_shipped(path: Path) -> None:
    """The shipped cards' stream sections are what ship-checkpoint renders from their
    metadata and their report copy (the sensitivity table included)."""
    name = path.name.removesuffix(".safetensors")
    report = path.parent / "reports" / name / "streams.json"
    if not report.is_file():
        pytest.skip(f"{name} shipped without a streams report")
    sweep = sensitivity_sweep(json.loads(report.read_text()))
    section = "\n".join(_streams_section(name, read_metadata(path), sweep))
    assert section in (path.parent / f"{name}.md").read_text()
