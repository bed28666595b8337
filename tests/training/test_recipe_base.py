"""Recipe files that overlay a ``base`` recipe, and the shipped configs the model cards train."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from models.config import ENSEMBLE_JOIN
from training.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
CARDS = sorted((ROOT / "models" / "checkpoints").glob("*.md"))
#: cards of trained checkpoints; an ensemble's (``a+b.md``) makes it from shipped members
TRAINED_CARDS = [card for card in CARDS if ENSEMBLE_JOIN not in card.stem]
ENSEMBLE_CARDS = [card for card in CARDS if ENSEMBLE_JOIN in card.stem]


def _write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_an_overlay_takes_its_base_and_overrides_it(tmp_path: Path) -> None:
    _write(
        tmp_path / "base.json",
        {
            "model": "lmuformer",
            "epochs": 30,
            "lr": 0.001,
            "augment": {"noise_prob": 0.5, "reverb_prob": 0.2},
            "model_config": {"dim": 32},
            "notes": "base",
        },
    )
    overlay = _write(
        tmp_path / "stage2.json",
        {"base": "base.json", "lr": 0.0005, "augment": {"noise_prob": 0.1}, "notes": "stage 2"},
    )
    r = load_recipe(overlay, ["epochs=3"])
    assert r.model == "lmuformer" and r.lr == 0.0005 and r.epochs == 3 and r.notes == "stage 2"
    assert r.augment.noise_prob == 0.1 and r.augment.reverb_prob == 0.2  # tables merge by key
    assert r.model_config == {"dim": 32}


def test_a_base_may_have_a_base_and_lives_beside_its_overlay(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "root.json", {"model": "lmuformer", "epochs": 5, "lr": 0.1})
    _write(tmp_path / "sub" / "middle.json", {"base": "../root.json", "epochs": 6})
    top = tmp_path / "sub" / "top.toml"
    top.write_text('base = "middle.json"\nlr = 0.2\n')
    r = load_recipe(top)
    assert (r.model, r.epochs, r.lr) == ("lmuformer", 6, 0.2)


def test_a_base_that_leads_back_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"base": "b.json"})
    _write(tmp_path / "b.json", {"base": "a.json"})
    with pytest.raises(ValueError, match=r"leads back to a\.json"):
        load_recipe(tmp_path / "a.json")
    with pytest.raises(FileNotFoundError):
        load_recipe(_write(tmp_path / "c.json", {"base": "missing.json"}))


def _reproduce_commands(card: Path) -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", card.read_text(encoding="utf-8"), flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("card", TRAINED_CARDS, ids=[c.stem for c in TRAINED_CARDS])
def test_every_stage_a_model_card_trains_starts_from_a_file_a_clone_can_make(card: Path) -> None:
    """Each ``init_from`` of a config the card trains is a file in the repository or one that an
    earlier command of the card writes (a run folder, an averaged checkpoint)."""
    written: list[str] = []  # run folders and files the commands so far make

    def made(path: str) -> bool:
        return path in written or any(path.startswith(folder + "/") for folder in written)

    trained = 0
    for words in _reproduce_commands(card):
        if words[:2] == ["lmukws", "train"]:
            config = words[words.index("--config") + 1]
            overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
            recipe = load_recipe(ROOT / config, overrides)
            if recipe.init_from:
                assert made(recipe.init_from) or (ROOT / recipe.init_from).is_file(), (
                    f"{config}: init_from {recipe.init_from} is made by no earlier command"
                )
            written.append(recipe.out)
            trained += 1
        elif words[:2] == ["lmukws", "average-checkpoints"]:
            out = words.index("--out")
            members = [w for w in words[2:out] if not w.startswith("--")]
            assert all(made(m) for m in members), members
            written.append(words[out + 1])
    assert trained >= 2


@pytest.mark.parametrize("card", ENSEMBLE_CARDS, ids=[c.stem for c in ENSEMBLE_CARDS])
def test_an_ensemble_card_averages_shipped_members_whose_cards_train_them(card: Path) -> None:
    """An ensemble's card starts from files in the repository (the members' shipped
    checkpoints), each with its own card, and ships what its ``lmukws ensemble`` wrote."""
    commands = _reproduce_commands(card)
    (ensemble,) = [w for w in commands if w[:2] == ["lmukws", "ensemble"]]
    out = ensemble.index("--out")
    members = [w for w in ensemble[2:out] if not w.startswith("--") and w.endswith(".safetensors")]
    assert len(members) >= 2
    for member in members:
        assert (ROOT / member).is_file() and (ROOT / member).with_suffix(".md") in TRAINED_CARDS
    (ship,) = [w for w in commands if w[:2] == ["lmukws", "ship-checkpoint"]]
    assert ship[2] == ensemble[out + 1] and ship[ship.index("--name") + 1] == card.stem
