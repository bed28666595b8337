"""Keyword-clip accuracy under the streams' backgrounds (``lmukws evaluate --backgrounds``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lmukws.cli import main
from models import FeatureConfig, save_checkpoint
from tests.training.test_evaluate import make_corpus, tiny
from training.backgrounds import DEFAULT_BACKGROUNDS, evaluate_backgrounds, parse_backgrounds
from training.dataset import ManifestDataset

#: make_corpus: three voices, each saying every label once as a tone of the label's pitch
LABELS = ["yes", "no", "up", "_unknown_"]


def test_backgrounds_parse() -> None:
    assert parse_backgrounds("babble:20, noise:7.5") == [("babble", 20.0), ("noise", 7.5)]
    for bad in ("wind:5", "babble", "babble:loud"):
        with pytest.raises(ValueError, match="background"):
            parse_backgrounds(bad)


def test_babble_comes_from_other_voices_and_is_seeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.streams

    data = make_corpus(tmp_path / "corpus", labels=LABELS)
    dataset = ManifestDataset(data, "test", labels=LABELS, augment=False, window_frames=128)
    mixed = []
    real = training.streams.add_background

    def spy(audio, kind, snr_db, rng, root, babble_rows):  # type: ignore[no-untyped-def]
        mixed.append({r["voice"] for r in babble_rows})
        return real(audio, kind, snr_db, rng, root, babble_rows)

    monkeypatch.setattr(training.streams, "add_background", spy)
    first = evaluate_backgrounds(tiny(), dataset, [("babble", 0.0)], batch_size=4)
    keyword_voices = [r["voice"] for r in dataset.rows if r["label"] != "_unknown_"]
    assert first["clips"] == 9 and len(mixed) == 9
    # the babble behind a clip is said by the split's other voices, never its own
    pairs = zip(mixed, keyword_voices, strict=True)
    assert all(voices == {"v0", "v1", "v2"} - {v} for voices, v in pairs)
    again = evaluate_backgrounds(tiny(), dataset, [("babble", 0.0)], batch_size=3)
    assert again == first  # seeded per clip: the same whatever the batching


def test_cli_reports_clean_and_mixed_keyword_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_corpus(tmp_path / "corpus", labels=LABELS)
    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, tiny(), {"labels": LABELS, "features": FeatureConfig().to_dict()})
    out = tmp_path / "report"
    args = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(out), "--threads", "1"]
    assert main([*args, "--backgrounds", "babble:10,noise:-20", "--batch-size", "5"]) == 0
    assert "keyword clips (9): clean" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    backgrounds = metrics["backgrounds"]
    assert list(backgrounds["backgrounds"]) == ["babble 10 dB", "noise -20 dB"]
    # the clean reference is the clean evaluation's own result on the same keyword clips
    with (out / "predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"] != "_unknown_"]
    assert backgrounds["clean"]["correct"] == sum(r["correct"] in ("1", "True") for r in rows)
    assert all(0 <= b["correct"] <= 9 for b in backgrounds["backgrounds"].values())
    readme = (out / "README.md").read_text()
    assert "## Under backgrounds" in readme and "| noise -20 dB |" in readme
    # alone, the flag measures the streams' own levels
    assert main([*args, "--backgrounds", "--limit", "4"]) == 0
    names = json.loads((out / "metrics.json").read_text())["backgrounds"]["backgrounds"]
    assert list(names) == [f"{k} {s:g} dB" for k, s in DEFAULT_BACKGROUNDS]
    with pytest.raises(SystemExit):
        main([*args, "--backgrounds", "wind:3"])
    assert "KIND:SNR_DB" in capsys.readouterr().err
