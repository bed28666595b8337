"""Simulated rooms: RT60 and DRR as asked, the keyword stays in place, seeded; and the rooms,
devices and codecs of the waveform augmentation: off by default, switched on by a recipe."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from training.augment import AugmentConfig, WaveAugmenter, item_rng
from training.recipe import Recipe, load_recipe
from training.rooms import (
    SABINE,
    RirPool,
    Room,
    RoomConfig,
    critical_distance,
    draw_room,
    eyring_absorption,
    reverberate,
    room_rir,
    schroeder_rt60,
)

ROOT = Path(__file__).resolve().parents[2]
FS = 16000
S = 4000  # a short window keeps the augmenter's FFTs small


def _drr_db(rir: np.ndarray, lead: int) -> float:
    """Direct-to-reverberant ratio: the direct sample against everything after it."""
    return 10.0 * math.log10(rir[lead] ** 2 / np.sum(rir[lead + 1 :].astype(np.float64) ** 2))


def _room(distance: float, rt60: float = 0.5) -> Room:
    """A talker ``distance`` m from the microphone, off every symmetry axis of a 6 x 5 x 3 room
    (centred positions make mirror images coincide and add up coherently)."""
    mic = np.array([1.2, 1.9, 1.3])
    direction = np.array([0.85, 0.5, 0.16]) / np.linalg.norm([0.85, 0.5, 0.16])
    source = mic + distance * direction
    return Room(size=(6.0, 5.0, 3.0), source=tuple(source), mic=tuple(mic), rt60_s=rt60)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
def test_energy_decay_matches_the_requested_rt60(seed: int) -> None:
    rng = np.random.default_rng(seed)
    room = draw_room(rng)
    rir, _ = room_rir(room, rng, FS)
    assert schroeder_rt60(rir, FS) == pytest.approx(room.rt60_s, rel=0.2)


def test_eyring_absorption_gives_back_the_rt60() -> None:
    size = (5.0, 4.0, 3.0)
    a = eyring_absorption(size, 0.4)
    volume, surface = 60.0, 2 * (20.0 + 15.0 + 12.0)
    assert 0.0 < a < 1.0
    assert SABINE * volume / (-surface * math.log(1.0 - a)) == pytest.approx(0.4)


def test_distance_lowers_the_direct_to_reverberant_ratio_and_the_level() -> None:
    drr, direct = [], []
    for distance in (0.5, 1.0, 2.0, 4.0):
        rir, lead = room_rir(_room(distance), np.random.default_rng(0), FS)
        drr.append(_drr_db(rir, lead))
        direct.append(float(rir[lead]))
    assert all(a > b + 3.0 for a, b in itertools.pairwise(drr))  # ~6 dB per doubling
    assert [v * d for v, d in zip(direct, (0.5, 1.0, 2.0, 4.0), strict=True)] == pytest.approx(
        [direct[0] * 0.5] * 4, rel=1e-3
    )  # the direct path falls as 1 / r
    # far from the walls' first reflections, the diffuse-field DRR of Sabine's theory
    theory = 20.0 * math.log10(critical_distance((6.0, 5.0, 3.0), 0.5) / 4.0)
    assert drr[-1] == pytest.approx(theory, abs=3.0)


def test_a_talker_at_the_reference_distance_keeps_the_dry_energy() -> None:
    rir, _ = room_rir(_room(RoomConfig().reference_m), np.random.default_rng(0), FS)
    assert 10 * math.log10(np.sum(rir.astype(np.float64) ** 2)) == pytest.approx(0.0, abs=2.0)


def test_the_direct_path_keeps_a_click_in_place() -> None:
    x = np.zeros(S, np.float32)
    x[1234] = 1.0
    for seed in range(4):
        rng = np.random.default_rng(seed)
        rir, lead = room_rir(draw_room(rng, RoomConfig(distance_m=(1.0, 3.0))), rng, FS)
        y = reverberate(x, rir, lead)
        assert y.shape == (S,)
        assert abs(int(np.argmax(np.abs(y))) - 1234) <= 1


def test_rooms_are_seeded() -> None:
    a, b = RirPool(4), RirPool(4)
    rir_a, lead_a, room_a = a.get(2)
    rir_b, lead_b, room_b = b.get(2)
    assert room_a == room_b and lead_a == lead_b and np.array_equal(rir_a, rir_b)
    assert a.get(2)[0] is rir_a  # cached
    assert a.get(3)[2] != room_a
    assert rir_a.size <= a.max_len
    with pytest.raises(IndexError, match="outside"):
        a.get(4)


def test_drawn_rooms_keep_their_ranges() -> None:
    config = RoomConfig()
    for seed in range(20):
        room = draw_room(np.random.default_rng(seed), config)
        for v, (lo, hi) in zip(
            room.size, (config.length_m, config.width_m, config.height_m), strict=True
        ):
            assert lo <= v <= hi
        assert config.rt60_s[0] <= room.rt60_s <= config.rt60_s[1]
        assert room.distance_m <= config.distance_m[1] + 1e-9
        for p in (room.source, room.mic):
            assert all(
                config.margin_m - 1e-9 <= c <= L - config.margin_m + 1e-9
                for c, L in zip(p, room.size, strict=True)
            )


def test_bad_room_ranges_name_the_key() -> None:
    with pytest.raises(ValueError, match="rt60_s"):
        RoomConfig(rt60_s=(0.9, 0.2))
    with pytest.raises(ValueError, match="room_prob"):
        AugmentConfig(room_prob=1.5)


# -- in the waveform augmentation ---------------------------------------------------------------


def _utterances(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(1600) / FS
    return [
        (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) * np.hanning(t.size)).astype(np.float32)
        + 0.01 * rng.standard_normal(t.size).astype(np.float32)
        for i in range(n)
    ]


def test_defaults_leave_the_augmentation_bit_identical() -> None:
    """With every probability 0, the new keys' ranges change nothing (no draws, same FFT)."""
    utts = _utterances()
    other = AugmentConfig(
        room_rt60_s=(0.3, 0.4),
        room_distance_m=(2.0, 3.0),
        room_pool=3,
        device_highpass_hz=(100.0, 110.0),
        device_drive_db=(10.0, 12.0),
        opus_level=(0.0, 0.1),
    )
    base, changed = (
        WaveAugmenter(AugmentConfig(), S, babble=utts),
        WaveAugmenter(other, S, babble=utts),
    )
    assert base.n_fft == changed.n_fft and base.rooms is None
    for seed in range(3):
        rngs_a = [item_rng(seed, 0, i) for i in range(len(utts))]
        rngs_b = [item_rng(seed, 0, i) for i in range(len(utts))]
        assert np.array_equal(base.speech(utts, rngs_a), changed.speech(utts, rngs_b))
        assert [r.bit_generator.state for r in rngs_a] == [r.bit_generator.state for r in rngs_b]
        for i in range(4):
            a, b = base.silence(item_rng(seed, 1, i)), changed.silence(item_rng(seed, 1, i))
            assert np.array_equal(a, b)


def _dry(**changes: object) -> AugmentConfig:
    """Everything off but what ``changes`` turns on; 0 dB gain."""
    off = dict(
        speed_prob=0.0,
        gain_db_min=0.0,
        gain_db_max=0.0,
        eq_prob=0.0,
        highpass_prob=0.0,
        lowpass_prob=0.0,
        reverb_prob=0.0,
        noise_prob=0.0,
        floor_prob=0.0,
    )
    return AugmentConfig(**{**off, **changes})  # type: ignore[arg-type]


def test_a_room_keeps_the_keyword_in_place_in_the_batch() -> None:
    click = np.zeros(800, np.float32)
    click[300] = 0.5
    aug = WaveAugmenter(_dry(room_prob=1.0, room_pool=4, room_distance_m=(0.5, 2.0)), S)
    out, *_, info = aug.speech(
        [click] * 4, [item_rng(5, 0, i) for i in range(4)], return_parts=True
    )
    for b, item in enumerate(info):
        assert not math.isnan(item["rt60_s"]) and 0.5 * 0.8**5 <= item["distance_m"] <= 2.0
        assert abs(int(np.argmax(np.abs(out[b]))) - (int(item["start"]) + 300)) <= 1
        assert np.sum(out[b, int(item["start"]) + 310 :] ** 2) > 0  # a reverberant tail


def test_rooms_and_devices_are_seeded() -> None:
    config = _dry(room_prob=0.5, room_pool=4, device_prob=0.5, telephone_prob=0.3)
    utts = _utterances()
    aug = WaveAugmenter(config, S)
    a = aug.speech(utts, [item_rng(1, 0, i) for i in range(len(utts))])
    b = WaveAugmenter(config, S).speech(utts, [item_rng(1, 0, i) for i in range(len(utts))])
    c = aug.speech(utts, [item_rng(2, 0, i) for i in range(len(utts))])
    assert isinstance(a, np.ndarray) and a.shape == (len(utts), S) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0


def test_silence_goes_through_the_telephone_too() -> None:
    aug = WaveAugmenter(_dry(telephone_prob=1.0, silence_zero_share=0.0), S)
    x = aug.silence(item_rng(0, 0, 0))
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(S, 1 / FS)
    assert spec[f > 4200].sum() < 1e-3 * spec.sum()


def test_a_recipe_with_the_keys_parses() -> None:
    recipe = load_recipe(ROOT / "training" / "configs" / "lmuformer-streams-rooms.json")
    base = load_recipe(ROOT / "training" / "configs" / "lmuformer-streams.json")
    a = recipe.augment
    assert a.room_prob > 0 and a.device_prob > 0 and a.telephone_prob > 0 and a.opus_prob > 0
    assert isinstance(a.room_rt60_s, tuple) and isinstance(a.opus_level, tuple)
    assert recipe.stream_fraction == base.stream_fraction and recipe.model == base.model
    assert base.augment == AugmentConfig()
    over = load_recipe(None, ["augment.room_prob=0.3", "augment.room_distance_m=[0.5, 3]"])
    assert over.augment.room_prob == 0.3 and over.augment.room_distance_m == (0.5, 3)
    restored = Recipe.from_dict(dataclasses.asdict(recipe) | {"augment": recipe.augment.to_dict()})
    assert restored.augment == recipe.augment
    with pytest.raises(ValueError, match="telephone_prob \\+ opus_prob"):
        AugmentConfig(telephone_prob=0.7, opus_prob=0.6)
