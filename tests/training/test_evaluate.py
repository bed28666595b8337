"""Evaluation through the streaming form, and the report folder, on tiny models and corpora."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lmukws.cli import main
from models import MODEL_NAMES, FeatureConfig, build_model, save_checkpoint
from models.config import SPIKING_MODELS
from tests.models.conftest import streaming_params
from training.evaluate import evaluate_batches, frames_to_fraction, stream_lockstep
from training.report import per_source_stats, per_voice_stats, voice_group, write_report

LABELS = ["yes", "no", "up", "down"]
T = 40  # frames per clip in the unit tests (the CLI test uses the real 128)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models stream fastest on one thread (and the CI machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(name: str = "lmuformer", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, dim=16, num_classes=4)
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():  # non-trivial eval-mode BatchNorm
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=g) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stream_lockstep_matches_parallel(chunk: int) -> None:
    model = tiny()
    feats = torch.randn(5, T, 128)
    with torch.inference_mode():
        streamed, ready = stream_lockstep(model, feats, chunk)
        parallel = model.frame_logits(feats)
    assert streamed.shape == parallel.shape
    assert torch.allclose(streamed, parallel, atol=1e-4)
    L = model.lookahead_frames
    assert L > 0
    k = np.arange(1, T + 1)
    if chunk == 1:  # after k input frames exactly k - L frames are final
        assert ready.tolist() == np.clip(k - L, 0, None).tolist()
    else:  # frames become known only when a call returns
        ends = np.minimum((np.ceil(k / chunk) * chunk).astype(int), T)
        assert all(ready <= np.clip(k - L, 0, None))
        assert all(ready[ends == k] == np.clip(k - L, 0, None)[ends == k])


@pytest.mark.parametrize("name", streaming_params(MODEL_NAMES))
def test_curve_pays_the_lookahead(name: str) -> None:
    model = tiny(name)
    feats = torch.randn(24, T, 128)
    with torch.inference_mode():
        parallel = model.frame_logits(feats)
    clip_pred = parallel.mean(1).argmax(-1)
    targets = torch.where(torch.arange(24) % 3 == 0, (clip_pred + 1) % 4, clip_pred)
    batches = [(feats[:10], targets[:10]), (feats[10:], targets[10:])]
    ev = evaluate_batches(model, batches, LABELS, chunk_frames=1)
    L = model.lookahead_frames
    assert ev.num_clips == 24 and ev.num_frames == T
    assert ev.accuracy == pytest.approx(16 / 24)
    assert ev.streaming_accuracy == pytest.approx(ev.accuracy)
    assert (ev.stream_predictions == ev.predictions).all()
    # reference: after k frames, the mean of the parallel logits of the first k - L frames
    cum = parallel.cumsum(1).argmax(-1)  # [B, T]
    for k in range(1, T + 1):
        n = k - L
        expected = int((cum[:, n - 1] == targets).sum()) if n > 0 else 0
        assert ev.streaming_correct[k - 1] == expected, k
        assert ev.parallel_correct[k - 1] == int((cum[:, k - 1] == targets).sum())
    assert (ev.streaming_correct[:L] == 0).all()
    assert ev.max_abs_diff < 1e-4 or name in SPIKING_MODELS


def test_frames_to_fraction() -> None:
    curve = np.array([0.0, 0.5, 0.9, 0.95, 0.99, 1.0])
    assert frames_to_fraction(curve, 1.0) == 5
    assert frames_to_fraction(curve, 0.95) == 4
    assert frames_to_fraction(np.zeros(3), 0.5) is None


def make_corpus(root: Path, labels: list[str] = LABELS, per_label: int = 3) -> Path:
    """Tones of a different pitch per label, as a window-mode corpus (test split only)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(labels):
        (root / label).mkdir(parents=True)
        for j in range(per_label):
            t = np.arange(8000) / 16000
            x = 0.3 * np.sin(2 * np.pi * (300 + 250 * i) * t) + 0.01 * rng.standard_normal(t.size)
            path = f"{label}/v{j}.wav"
            sf.write(root / path, x.astype(np.float32), 16000, subtype="PCM_16")
            rows.append([path, label, "test", f"v{j}", "tone", label])
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "voice", "engine", "text"])
        writer.writerows(rows)
    info = {"source": "test-tones", "labels": labels, "sample_rate": 16000}
    (root / "corpus.json").write_text(json.dumps(info))
    return root


def test_cli_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_corpus(tmp_path / "corpus")
    checkpoint = tmp_path / "tiny.safetensors"
    metadata = {"labels": LABELS, "features": FeatureConfig().to_dict(), "training": {"x": 1}}
    save_checkpoint(checkpoint, tiny(), metadata)
    out = tmp_path / "report"
    args = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(out)]
    assert main([*args, "--batch-size", "8", "--threads", "1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names >= {
        "metrics.json",
        "per_class.md",
        "confusion.png",
        "accuracy_vs_frames.json",
        "accuracy_vs_frames.png",
        "README.md",
        "predictions.csv",
    }
    for png in ("confusion.png", "accuracy_vs_frames.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_clips"] == 12 and metrics["split"] == "test"
    assert set(metrics["per_class"]) == set(LABELS)
    assert sum(metrics["counts"].values()) == 12
    assert metrics["correct"] == sum(s["correct"] for s in metrics["per_class"].values())
    assert np.asarray(metrics["confusion"]).sum() == 12
    assert metrics["checkpoint"]["model"]["name"] == "lmuformer"
    assert metrics["checkpoint"]["training"] == {"x": 1}
    curve = json.loads((out / "accuracy_vs_frames.json").read_text())
    L = curve["lookahead_frames"]
    assert len(curve["accuracy_streaming"]) == 128 == curve["num_frames"]
    assert curve["final_frames_known"][:L] == [0] * L and curve["final_frames_known"][-1] == 128 - L
    assert curve["final_accuracy"] == pytest.approx(metrics["accuracy"])
    k99 = curve["frames_to_99"]
    assert k99 is None or curve["accuracy_streaming"][k99 - 1] >= 0.99 * curve["final_accuracy"]
    readme = (out / "README.md").read_text()
    assert "![accuracy vs frames](accuracy_vs_frames.png)" in readme
    assert "![confusion matrix](confusion.png)" in readme
    table = (out / "per_class.md").read_text()
    assert all(f"| {label} |" in table for label in LABELS)
    voices = metrics["per_voice"]  # make_corpus: voice v{j} speaks clip j of every label
    assert set(voices) == {"v0", "v1", "v2"} and all(v["count"] == 4 for v in voices.values())
    assert sum(v["correct"] for v in voices.values()) == metrics["correct"]
    accuracies = [v["accuracy"] for v in voices.values()]
    assert accuracies == sorted(accuracies)  # weakest first
    assert (out / "per_voice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| v0 | 4 |" in (out / "per_voice.md").read_text()
    assert "![accuracy per voice](per_voice.png)" in readme
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["voice"] for row in rows} == {"v0", "v1", "v2"}


def test_labels_outside_the_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_corpus(tmp_path / "corpus", labels=["cat", "dog"], per_label=1)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, tiny(), {"labels": LABELS})
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--out", str(tmp_path)]) == 2
    assert "not in the labels" in capsys.readouterr().err


def test_report_without_metadata(tmp_path: Path) -> None:
    model = tiny()
    feats, y = torch.randn(6, T, 128), torch.tensor([0, 1, 2, 3, 0, 1])
    ev = evaluate_batches(model, [(feats, y)], LABELS, chunk_frames=4)
    metrics = write_report(tmp_path, ev, split="validation")
    assert metrics["split"] == "validation"
    assert metrics["per_voice"] == {} and not (tmp_path / "per_voice.png").exists()
    assert metrics["streaming"]["chunk_frames"] == 4
    assert (tmp_path / "README.md").is_file()


def test_per_voice_groups_a_voices_jittered_renditions() -> None:
    assert voice_group("espeak-ng:en-us+shelby:s137:p42") == "espeak-ng:en-us+shelby"
    assert voice_group("festival:don_diphone:s0.87:p1.05") == "festival:don_diphone"
    assert voice_group("0a7c2a8d") == "0a7c2a8d"  # a Speech Commands speaker
    model = tiny()
    feats, y = torch.randn(6, T, 128), torch.tensor([0, 1, 2, 3, 0, 1])
    ev = evaluate_batches(model, [(feats, y)], LABELS, chunk_frames=8)
    ev.predictions = np.array([0, 1, 2, 0, 2, 2])  # wrong: clips 3 (down), 4 (yes), 5 (no)
    ev.voices = ["a:x:s1", "a:x:s2", "b:y:p1", "b:y:p2", "b:y:p3", ""]
    stats = per_voice_stats(ev)
    assert list(stats) == ["b:y", "a:x"]  # weakest first; the voiceless clip is left out
    assert stats["b:y"] == {
        "count": 3,
        "correct": 1,
        "accuracy": pytest.approx(1 / 3),
        "predicted_instead": "yes",  # clip 3 said "yes", clip 4 "up": ties go to the first label
    }
    assert stats["a:x"]["accuracy"] == 1.0 and stats["a:x"]["predicted_instead"] is None
    ev.voices = ["a:x:s1", "a:z:s2", "b:y:p1", "b:y:p2", "b:y:p3", "0a7c2a8d"]
    sources = per_source_stats(per_voice_stats(ev))
    assert list(sources) == ["b", "a"]  # by engine, weakest first; a speaker id has none
    assert sources["a"] == {"count": 2, "correct": 2, "voices": 2, "accuracy": 1.0}
    assert sources["b"]["accuracy"] == pytest.approx(1 / 3)


DEV_LABELS = ["yes", "no", "up", "_unknown_"]


def make_recordings(root: Path, corpus: Path, labels: list[str] = DEV_LABELS) -> Path:
    """A tiny ``lmukws data recordings`` folder: two speakers, a copy of the corpus's test clip
    ``<label>/v0.wav`` as each keyword row, and (with ``_unknown_`` among the labels) a tone
    word each; plus rows the dev set must skip: a dev phrase, a train word and an eval row
    whose file does not exist (reading it would fail)."""
    from training.recordings import MANIFEST_COLUMNS

    rows = []

    def add(path: str, speaker: str, kind: str, label: str, use: str = "dev") -> None:
        rows.append({"path": path, "source": "kajongg", "speaker": speaker, "language": "en",
                     "kind": kind, "label": label, "text": label, "use": use, "seconds": "0.5",
                     "origin": f"usr/share/{path}", "exclude": ""})  # fmt: skip

    keywords = [label for label in labels if not label.startswith("_")]
    for s, speaker in enumerate(("kajongg:male1", "tuxpaint:en")):
        for label in keywords:
            path = f"audio/{s}/{label}.wav"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes((corpus / label / "v0.wav").read_bytes())
            add(path, speaker, "keyword", label)
        t = np.arange(6000) / 16000
        tone = (0.3 * np.sin(2 * np.pi * (900 + 100 * s) * t)).astype(np.float32)
        for kind, use, name in (("word", "dev", "east"), ("phrase", "dev", "phrase"),
                                ("word", "train", "letter")):  # fmt: skip
            if kind == "word" and use == "dev" and "_unknown_" not in labels:
                continue
            path = f"audio/{s}/{name}.wav"
            sf.write(root / path, tone, 16000, subtype="PCM_16")
            add(path, speaker, kind, "_unknown_", use)
    add("audio/uqm/never-read.wav", "uqm:commander", "speech", "_unknown_", "eval")
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (root / "recordings.json").write_text(json.dumps({"packages": {"kajongg": "1.0"}}))
    return root


def test_real_speech_dev_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--recordings scores the use=dev keyword and word clips as the held-out clips are scored
    (a copy of a test clip gets the same prediction and score) and reports them apart."""
    data = make_corpus(tmp_path / "corpus", labels=DEV_LABELS)
    recordings = make_recordings(tmp_path / "recordings", data)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, tiny(), {"labels": DEV_LABELS})
    out = tmp_path / "report"
    args = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(out)]
    assert main([*args, "--recordings", str(recordings), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "real-speech dev set:" in printed and "kajongg:male1" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    dev = metrics["real_speech_dev"]
    assert metrics["num_clips"] == 12  # the split itself is unchanged
    assert dev["clips"] == 8 and dev["speakers"] == 2  # 3 keywords + 1 word, per speaker
    assert dev["by_kind"]["keyword"]["count"] == 6 and dev["by_kind"]["word"]["count"] == 2
    assert dev["correct"] == sum(s["correct"] for s in dev["by_kind"].values())
    assert dev["accuracy"] == pytest.approx(dev["correct"] / 8)
    assert list(dev["per_speaker"]) == ["kajongg:male1", "tuxpaint:en"]
    for s in dev["per_speaker"].values():
        assert (s["count"], s["keyword"]["count"], s["word"]["count"]) == (4, 3, 1)
        assert s["correct"] == s["keyword"]["correct"] + s["word"]["correct"]
    assert dev["errors"] and len(dev["errors"]) == 8 - dev["correct"]
    assert dev["packages"] == {"kajongg": "1.0"} and "centred" in dev["method"]
    with (out / "predictions.csv").open() as handle:
        held_out = {row["path"]: row for row in csv.DictReader(handle)}
    with (out / "real_speech_dev.csv").open() as handle:
        clips = list(csv.DictReader(handle))
    assert len(clips) == 8 and not [
        c for c in clips if "phrase" in c["path"] or "letter" in c["path"]
    ]
    for clip in clips:
        if clip["kind"] == "keyword":  # a copy of <label>/v0.wav: scored alike
            same = held_out[f"{clip['label']}/v0.wav"]
            assert (clip["prediction"], clip["score"]) == (same["prediction"], same["score"])
        else:
            assert clip["label"] == "_unknown_"
        wrong = [e for e in dev["errors"] if e["path"] == clip["path"]]
        assert bool(wrong) == (clip["correct"] == "0")
        if wrong:
            assert wrong[0]["speaker"] == clip["speaker"]
            assert (wrong[0]["label"], wrong[0]["prediction"]) == (
                clip["label"],
                clip["prediction"],
            )
    table = (out / "real_speech_dev.md").read_text()
    assert "| kajongg:male1 | 4 |" in table and f"## Errors ({len(dev['errors'])})" in table
    readme = (out / "README.md").read_text()
    assert "## Real-speech dev set" in readme and "(real_speech_dev.md)" in readme
    assert f"accuracy {100 * dev['accuracy']:.2f} %" in readme


def test_real_speech_dev_needs_a_label_for_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A word (``_unknown_``) clip cannot be scored by a checkpoint without ``_unknown_``; the
    CLI says so (exit 2) instead of guessing."""
    data = make_corpus(tmp_path / "corpus")
    recordings = make_recordings(tmp_path / "recordings", data, labels=[*LABELS, "_unknown_"])
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, tiny(), {"labels": LABELS})
    args = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "r")]
    assert main([*args, "--recordings", str(recordings)]) == 2
    assert "'_unknown_' of" in capsys.readouterr().err


def test_a_window_model_is_streamed_as_the_server_serves_it() -> None:
    """spiking-attention has no streaming form: the curve holds what ``streaming.window``
    serves after k frames (the window recomputed every hop, left-padded), frame for frame."""
    from streaming.window import WindowStep
    from training.evaluate import evaluate_batches, window_lockstep

    torch.manual_seed(0)
    model = build_model("spiking-attention", dim=16, num_classes=4).eval()
    T, hop, pad = model.config.window, 10, -0.5
    feats = torch.randn(3, T, 128)
    with torch.inference_mode():
        held = window_lockstep(model, feats, hop, pad)
        step = WindowStep(model, hop, pad)
        state = step.init_state(3)
        served, _, _ = step.stream_leaves(feats, [state.ring, state.seen, state.last])
    assert held.shape == (3, T, 4)
    assert torch.allclose(held, served, atol=1e-5)
    y = held[:, -1].argmax(-1)
    ev = evaluate_batches(model, [(feats, y)], LABELS, pad_value=pad, hop_frames=hop)
    assert ev.streaming_correct[-1] == 3  # the last hop's prediction is the label here
    assert list(ev.ready_frames) == list(range(1, T + 1))
    from training.report import streaming_summary

    assert ev.window_hop_frames == hop
    assert streaming_summary(ev)["method"].startswith("a window model, served by recompute")
    with torch.inference_mode():
        hop_scores = [model(torch.cat([torch.full((3, T - t - 1, 128), pad), feats[:, : t + 1]], 1))
                      for t in (0, 60)]  # fmt: skip
    assert torch.allclose(held[:, 5], hop_scores[0], atol=1e-5)
    assert torch.allclose(held[:, 69], hop_scores[1], atol=1e-5)
