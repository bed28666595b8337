"""Stream windows: served-path geometry, labels from the ground truth, stream training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import MODEL_NAMES, build_model, load_checkpoint
from tests.models.conftest import streaming_params
from tests.training.conftest import STREAM_WORDS
from training.dataset import read_corpus_info
from training.recipe import Recipe
from training.stream_windows import IGNORE, StreamWindowConfig, StreamWindows, pooled_logits
from training.train import distilled_stream_targets, distilled_targets, train


@pytest.mark.parametrize("name", streaming_params(MODEL_NAMES))
def test_a_windows_pooled_logits_are_the_served_ones_after_any_history(name: str) -> None:
    """The window's history suffices: the frames it pools have the same logits when the window
    is the end of a much longer stream (what the server sees)."""
    config = StreamWindowConfig()
    torch.manual_seed(0)
    model = build_model(name, dim=16, num_classes=5).eval()
    assert config.lookahead_frames == model.lookahead_frames
    window = torch.randn(2, config.frames, 128)
    longer = torch.cat([torch.randn(2, 300, 128), window], dim=1)
    with torch.inference_mode():
        alone = pooled_logits(model.frame_logits(window), config)
        served = model.frame_logits(longer)[:, 300:]
    start = config.history_frames
    want = served[:, start : start + config.pool_frames].mean(dim=1)
    torch.testing.assert_close(alone, want, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def windows(stream_corpus: Path) -> StreamWindows:
    labels = read_corpus_info(stream_corpus)["labels"]
    return StreamWindows(stream_corpus, "train", labels, seed=1)


def test_labels_follow_the_keyword_inside_the_pooled_span(windows: StreamWindows) -> None:
    """Keyword windows hold the whole keyword in the pooled span; cut ones are _unknown_;
    every label appears; the same (seed, epoch, index) gives the same window."""
    lo, hi = windows.pool_span
    seen = {}
    for i in range(400):
        audio, label, kind = windows.item(i)
        assert audio.shape == (windows.window,)
        name = windows.labels[label]
        seen.setdefault(kind, set()).add(name)
        if name in STREAM_WORDS:
            assert kind == "keyword"
            assert np.abs(audio[lo:hi]).max() > 0.05
    assert seen["keyword"] >= {*STREAM_WORDS, "_unknown_"}  # whole and cut keywords
    assert seen["silence"] == {"_silence_"}
    assert seen["sentence"] <= {"_unknown_", "_silence_"} and "_unknown_" in seen["sentence"]
    assert seen["unknown"] <= {"_unknown_", "_silence_"}
    a, b = windows.item(7), windows.item(7)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    windows.set_epoch(1)
    assert not np.array_equal(windows.item(7)[0], a[0])
    windows.set_epoch(0)
    feats, labels = windows.batch(range(6))
    assert feats.shape == (6, windows.config.frames, 128) and labels.shape == (6,)


def test_placed_keyword_is_where_the_label_says(windows: StreamWindows) -> None:
    """Re-derive the label from the geometry: a keyword label means a keyword scene whose
    clip sits fully inside the pooled span (the scene placed with that offset)."""
    import random

    from training.augment import item_rng

    lo, hi = windows.pool_span
    checked = 0
    for i in range(200):
        seed = int(item_rng(windows.seed, 0, i).integers(2**63))
        rng = random.Random(seed)
        kind = rng.choices(windows.scene_kinds, weights=windows.scene_weights.tolist())[0]
        if kind != "keyword":
            continue
        scene, spans = windows._keyword_scene(rng)
        _, offset = windows._place_keyword(scene, spans, rng)
        _, label, _ = windows.item(i)
        whole = [
            (e, lab) for lab, s, e in spans
            if min(e + offset, hi) - max(s + offset, lo) >= 0.9 * (e - s)
        ]  # fmt: skip
        want = max(whole)[1] if whole else None
        if want is not None:
            assert windows.labels[label] == want
            checked += 1
    assert checked > 20


def test_an_almost_whole_keyword_is_left_out_of_the_loss(stream_corpus: Path) -> None:
    """With ``ambiguous_fraction`` a window holding 50-90 % of a keyword is IGNORE; under
    half of it stays ``_unknown_``; whole keywords keep their label; the bounds are checked."""
    labels = read_corpus_info(stream_corpus)["labels"]
    config = StreamWindowConfig.from_dict({"ambiguous_fraction": 0.5, "partial_share": 0.6})
    windows = StreamWindows(stream_corpus, "train", labels, config=config, seed=1)
    lo, hi = windows.pool_span
    span = hi - lo
    audio = np.zeros(windows.window, np.float32)
    audio[lo:hi] = 0.1
    word = ("yes", hi - span // 4, hi - span // 4 + span // 5)  # 1/5 s, ends past the span
    for inside, want in ((0.95, "yes"), (0.7, IGNORE), (0.3, "_unknown_")):
        length = word[2] - word[1]
        start = hi - int(inside * length)
        got = windows._label(audio, [("yes", start, start + length)], "keyword")
        assert got == (want if want == IGNORE else windows.index[want])
    counts = {"ignored": 0, "keyword": 0}
    for i in range(200):
        _, label, _ = windows.item(i)
        counts["ignored" if label == IGNORE else "keyword"] += 1
    assert counts["ignored"] > 5 and counts["keyword"] > 100
    _, batch_labels = windows.batch(range(40))
    assert int((batch_labels == IGNORE).sum()) == sum(
        windows.item(i)[1] == IGNORE for i in range(40)
    )
    with pytest.raises(ValueError, match="ambiguous_fraction"):
        StreamWindowConfig.from_dict({"ambiguous_fraction": 0.95})


def test_distilled_targets_mix_labels_with_the_teachers_probabilities() -> None:
    torch.manual_seed(0)
    teacher = build_model("lmuformer", dim=16, num_classes=5).eval()
    feats = torch.randn(3, 101, 128)
    targets = torch.nn.functional.one_hot(torch.tensor([0, 2, 4]), 5).float()
    recipe = Recipe.from_dict({"distill_weight": 0.25, "init_from": "x.safetensors"})
    mixed = distilled_targets(teacher, feats, targets, recipe, torch.device("cpu"))
    with torch.no_grad():
        probs = torch.softmax(teacher(feats), dim=1)
    torch.testing.assert_close(mixed, 0.75 * targets + 0.25 * probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="init_from or distill_from"):
        Recipe.from_dict({"distill_weight": 0.5})
    with pytest.raises(ValueError, match="distill_weight"):
        Recipe.from_dict({"distill_weight": 1.5, "init_from": "x.safetensors"})


def test_stream_targets_learn_the_teachers_served_posterior() -> None:
    """distill_streams: a window's target mixes its label with the softmax of the teacher's
    pooled logits over the window's pooled frames (the posterior the server would score),
    not the mean over the whole window."""

    class FrameTeacher(torch.nn.Module):
        """Frame logits that differ frame by frame: the first five feature bins, sharpened."""

        def frame_logits(self, feats: torch.Tensor) -> torch.Tensor:
            return 3.0 * feats[..., :5]

        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            return self.frame_logits(feats).mean(dim=1)

    config = StreamWindowConfig()
    torch.manual_seed(0)
    teacher = FrameTeacher()
    sfeats = torch.randn(3, config.frames, 128)
    sfeats[:, config.history_frames : config.history_frames + config.pool_frames, :5] += (
        torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0])
    )
    targets = torch.nn.functional.one_hot(torch.tensor([1, 3, 4]), 5).float()
    recipe = Recipe.from_dict(
        {"distill_weight": 0.4, "distill_streams": True, "init_from": "x.safetensors"}
    )
    mixed = distilled_stream_targets(teacher, sfeats, targets, config, recipe, torch.device("cpu"))
    with torch.no_grad():
        served = torch.softmax(pooled_logits(teacher.frame_logits(sfeats), config), dim=1)
        whole = torch.softmax(teacher(sfeats), dim=1)
    torch.testing.assert_close(mixed, 0.6 * targets + 0.4 * served, atol=1e-5, rtol=0)
    assert not torch.allclose(mixed, 0.6 * targets + 0.4 * whole, atol=1e-3)
    torch.testing.assert_close(mixed.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="distill_streams needs distill_weight"):
        Recipe.from_dict({"distill_streams": True})


def _tiny_run(corpus: Path, **keys: object) -> dict[str, object]:
    """The keys of a two-step run of a 16-wide lmuformer on ``corpus``, with ``keys`` over."""
    return {
        "model": "lmuformer",
        "model_config": {"dim": 16},
        "data": str(corpus),
        "batch_size": 8,
        "epochs": 1,
        "steps_per_epoch": 2,
        "threads": 1,
        "loss": "ce",
        "test_split": None,
        **keys,
    }


def test_stream_training_runs_and_reports_stream_metrics(
    stream_corpus: Path, tmp_path: Path
) -> None:
    recipe = Recipe.from_dict(
        _tiny_run(
            stream_corpus,
            out=str(tmp_path / "run"),
            epochs=2,
            stream_fraction=0.5,
            val_stream_items=12,
        )
    )
    summary = train(recipe, progress=False)
    row = summary["history"][-1]
    assert 0.0 <= row["train_stream_acc"] <= 1.0
    assert 0.0 <= row["val_stream_acc"] <= 1.0 and row["val_stream_items"] == 12
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["recipe"]["stream_fraction"] == 0.5
    assert meta["training"]["data"]["stream_windows"]["keyword_clips"] > 0
    assert "val_stream" in meta["metrics"]
    with pytest.raises(ValueError, match="stream_fraction"):
        Recipe.from_dict({"stream_fraction": 1.5})


def test_stream_training_from_a_teacher_with_ignored_windows(
    stream_corpus: Path, tmp_path: Path
) -> None:
    """distill_weight + ambiguous_fraction: a fine-tune from a checkpoint runs, records both
    and its validation stream accuracy counts only scored windows."""
    base = _tiny_run(stream_corpus)
    train(Recipe.from_dict({**base, "out": str(tmp_path / "first")}), progress=False)
    recipe = Recipe.from_dict(
        {
            **base,
            "out": str(tmp_path / "run"),
            "init_from": str(tmp_path / "first" / "last.safetensors"),
            "distill_weight": 0.5,
            "stream_fraction": 0.5,
            "stream": {"ambiguous_fraction": 0.5, "partial_share": 0.8},
            "val_stream_items": 24,
        }
    )
    summary = train(recipe, progress=False)
    row = summary["history"][-1]
    assert 0.0 <= row["val_stream_acc"] <= 1.0 and row["val_stream_items"] < 24
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["recipe"]["distill_weight"] == 0.5
    assert meta["training"]["recipe"]["stream"]["ambiguous_fraction"] == 0.5


def test_a_stronger_model_of_another_kind_teaches_through_distill_from(
    stream_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distill_from: a spiking student learns from an lmuformer teacher's softmax (the loaded
    checkpoint, not a copy of itself), the metadata names the teacher, and a teacher with other
    labels or another fbank is refused before training."""
    from models import save_checkpoint
    from training import train as train_module

    base = _tiny_run(stream_corpus)
    train(Recipe.from_dict({**base, "out": str(tmp_path / "teacher")}), progress=False)
    teacher_path = tmp_path / "teacher" / "last.safetensors"
    seen: list[str] = []
    real = train_module.distilled_targets

    def spy(teacher, feats, targets, recipe, device):  # type: ignore[no-untyped-def]
        seen.append(teacher.config.name)
        return real(teacher, feats, targets, recipe, device)

    monkeypatch.setattr(train_module, "distilled_targets", spy)
    student = {
        **base,
        "model": "spiking-lmuformer",
        "out": str(tmp_path / "student"),
        "distill_from": str(teacher_path),
        "distill_weight": 0.5,
    }
    train(Recipe.from_dict(student), progress=False)
    assert seen == ["lmuformer", "lmuformer"]  # every step, from the loaded teacher
    _, meta = load_checkpoint(tmp_path / "student" / "last.safetensors")
    assert meta["model"]["name"] == "spiking-lmuformer"
    assert meta["training"]["distilled_from"]["path"] == str(teacher_path)
    assert meta["training"]["recipe"]["distill_from"] == str(teacher_path)

    model, teacher_meta = load_checkpoint(teacher_path)
    for name, change in [
        ("labels", {"labels": list(reversed(teacher_meta["labels"]))}),
        ("fbank", {"features": {**teacher_meta["features"], "num_mel_bins": 64}}),
    ]:
        other = save_checkpoint(
            tmp_path / f"other-{name}.safetensors", model, {**teacher_meta, **change}
        )
        with pytest.raises(ValueError, match=name):
            train(Recipe.from_dict({**student, "distill_from": str(other)}), progress=False)
    with pytest.raises(ValueError, match="distill_weight"):
        Recipe.from_dict({"distill_from": str(teacher_path)})
    Recipe.from_dict({"distill_from": str(teacher_path), "distill_weight": 0.5})  # no init_from


def test_the_stream_half_learns_from_the_teacher_only_when_asked(
    stream_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distill_streams: every step's scored stream windows get the loaded teacher's targets;
    without it the stream half keeps its one-hot labels (the recipes before it unchanged)."""
    from training import train as train_module

    base = _tiny_run(stream_corpus, stream_fraction=0.5)
    train(Recipe.from_dict({**base, "out": str(tmp_path / "teacher")}), progress=False)
    teacher_path = tmp_path / "teacher" / "last.safetensors"
    seen: list[tuple[str, int]] = []
    real = train_module.distilled_stream_targets

    def spy(teacher, sfeats, targets, config, recipe, device):  # type: ignore[no-untyped-def]
        seen.append((teacher.config.name, len(sfeats)))
        return real(teacher, sfeats, targets, config, recipe, device)

    monkeypatch.setattr(train_module, "distilled_stream_targets", spy)
    student = {
        **base,
        "model": "spiking-lmuformer",
        "distill_from": str(teacher_path),
        "distill_weight": 0.5,
    }
    train(Recipe.from_dict({**student, "out": str(tmp_path / "clips")}), progress=False)
    assert seen == []
    train(
        Recipe.from_dict({**student, "out": str(tmp_path / "both"), "distill_streams": True}),
        progress=False,
    )
    assert [name for name, _ in seen] == ["lmuformer", "lmuformer"]
    assert all(n > 0 for _, n in seen)
    _, meta = load_checkpoint(tmp_path / "both" / "last.safetensors")
    assert meta["training"]["recipe"]["distill_streams"] is True


def test_mined_false_alarms_become_hard_scenes(stream_corpus: Path, tmp_path: Path) -> None:
    """mine-negatives keeps windows of training speech where a keyword fires (a random tiny
    model fires often at a low threshold), each a stream window long and ending with the
    triggering frame's look-ahead; stream windows then draw them as ``hard`` _unknown_ scenes."""
    from models import save_checkpoint
    from training.hard_negatives import read_hard_negatives
    from training.mining import mine_negatives

    labels = read_corpus_info(stream_corpus)["labels"]
    torch.manual_seed(3)
    model = build_model("lmuformer", dim=16, num_classes=len(labels)).eval()
    ckpt = save_checkpoint(
        tmp_path / "m.safetensors", model, {"labels": labels, "detector": {"posterior": "softmax"}}
    )
    summary = mine_negatives(
        ckpt, stream_corpus, tmp_path / "hard", threshold=0.05, runtime="torch", progress=False
    )
    paths = read_hard_negatives(tmp_path / "hard")
    assert summary["windows"] == len(paths) > 0
    windows = StreamWindows(stream_corpus, "train", labels, hard_negatives=tmp_path / "hard")
    assert "hard" in windows.scene_kinds
    assert windows.scene_weights[windows.scene_kinds.index("hard")] == pytest.approx(0.15)
    hard = [windows.item(i) for i in range(300)]
    hard = [(a, y) for a, y, kind in hard if kind == "hard"]
    assert hard and {windows.labels[y] for _, y in hard} <= {"_unknown_", "_silence_"}


def test_features_on_the_training_device_train_the_same_model(
    stream_corpus: Path, tmp_path: Path
) -> None:
    """Loaders that hand over waveforms, with the fbank in the training loop (how a GPU run
    keeps the fbank off the CPU), train the same weights on the CPU as loaders that hand over
    features; clips and stream windows both."""
    weights = []
    for on_device in (False, True):
        recipe = Recipe.from_dict(
            {
                "model": "lmuformer",
                "model_config": {"dim": 16},
                "data": str(stream_corpus),
                "out": str(tmp_path / f"run-{on_device}"),
                "batch_size": 8,
                "epochs": 1,
                "steps_per_epoch": 3,
                "threads": 1,
                "loss": "ce",
                "stream_fraction": 0.5,
                "mixup_prob": 0.5,
                "test_split": None,
                "features_on_device": on_device,
            }
        )
        train(recipe, progress=False)
        model, _ = load_checkpoint(tmp_path / f"run-{on_device}" / "last.safetensors")
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.allclose(value.float(), weights[1][key].float(), atol=1e-6), key


def _with_engine(corpus: Path, out: Path, voice: str, engine: str) -> Path:
    """A copy of ``corpus`` whose ``voice`` is labelled as coming from ``engine``."""
    import csv
    import shutil

    shutil.copytree(corpus, out)
    for name in ("manifest.csv", "continuous.csv"):
        with open(out / name, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        for r in rows:
            if r["voice"] == voice:
                r["engine"] = engine
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return out


def test_engine_repeat_oversamples_a_voice_source(stream_corpus: Path, tmp_path: Path) -> None:
    """``engine_repeat`` repeats a source's clips in the epoch's draw pool and weights its
    voices when stream scenes pick one; a source the split lacks is an error."""
    import random

    from training.dataset import ManifestDataset

    labels = read_corpus_info(stream_corpus)["labels"]
    voices = StreamWindows(stream_corpus, "train", labels, seed=1).voices
    assert len(voices) == 3
    corpus = _with_engine(stream_corpus, tmp_path / "corpus", voices[0], "neural")

    ds = ManifestDataset(corpus, "train", labels=labels)
    plain = ds.draw_pool()
    np.testing.assert_array_equal(plain, np.arange(len(ds)))
    pool = ds.draw_pool({"neural": 3})
    neural = [i for i, r in enumerate(ds.rows) if r["engine"] == "neural"]
    counts = np.bincount(pool, minlength=len(ds))
    assert set(counts[neural]) == {3}
    assert set(np.delete(counts, neural)) == {1}
    with pytest.raises(ValueError, match="kokoro"):
        ds.draw_pool({"kokoro": 2})

    weighted = StreamWindows(corpus, "train", labels, seed=1, engine_repeat={"neural": 4})
    assert weighted.voice_weight[voices[0]] == 4.0 and weighted.voice_weight[voices[1]] == 1.0
    rng = random.Random(0)
    picks = [weighted._pick_voice(rng, weighted.voices) for _ in range(3000)]
    share = picks.count(voices[0]) / len(picks)
    assert 0.6 < share < 0.73  # 4 / (4 + 1 + 1); uniform would give 1/3
    rng = random.Random(0)
    uniform = StreamWindows(corpus, "train", labels, seed=1)
    picks = [uniform._pick_voice(rng, uniform.voices) for _ in range(3000)]
    assert 0.28 < picks.count(voices[0]) / len(picks) < 0.39


def test_engine_repeat_in_a_recipe(stream_corpus: Path, tmp_path: Path) -> None:
    """A run with ``engine_repeat`` trains and records it; bad counts are refused."""
    recipe = Recipe.from_dict(
        _tiny_run(
            stream_corpus,
            out=str(tmp_path / "run"),
            stream_fraction=0.5,
            engine_repeat={"espeak-ng": 2},
        )
    )
    train(recipe, progress=False)
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["training"]["recipe"]["engine_repeat"] == {"espeak-ng": 2}
    for bad in (0, 1.5, "3", True):
        with pytest.raises(ValueError, match="engine_repeat"):
            Recipe.from_dict({"engine_repeat": {"kokoro": bad}})
    with pytest.raises(ValueError, match="not an engine"):
        lacking = Recipe.from_dict({**recipe.to_dict(), "engine_repeat": {"kokoro": 2}})
        train(lacking, progress=False)
