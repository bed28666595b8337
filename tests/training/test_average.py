"""Averaging checkpoints (a model soup): the trainer's epoch checkpoints, the mean, its card."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from lmukws.cli import main
from models import load_checkpoint, read_metadata
from tests.training.test_dataset import make_tiny_corpus
from tests.training.test_ship import evaluate_and_ship, trained_like_checkpoint
from training.average import average_checkpoints, mean_state, select_greedy
from training.recipe import Recipe
from training.ship import checkpoint_record
from training.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs of a tiny model, every epoch's weights kept (its corpus: ../corpus)."""
    root = tmp_path_factory.mktemp("average")
    corpus = make_tiny_corpus(root / "corpus", per_voice=4)
    values = {"model": "lmuformer", "model_config": {"dim": 16}, "data": str(corpus),
              "out": str(root / "run"), "batch_size": 16, "epochs": 3, "steps_per_epoch": 2,
              "threads": 1, "keep_epoch_checkpoints": True}  # fmt: skip
    recipe = Recipe.from_dict(values)
    train(recipe, progress=False)
    return root / "run"


def test_trainer_keeps_every_epoch(run: Path) -> None:
    kept = sorted(p.name for p in run.glob("epoch-*.safetensors"))
    assert kept == ["epoch-001.safetensors", "epoch-002.safetensors", "epoch-003.safetensors"]
    last, _ = load_checkpoint(run / "last.safetensors")
    third, meta = load_checkpoint(run / "epoch-003.safetensors")
    for (name, a), b in zip(last.state_dict().items(), third.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert meta["training"]["epochs_trained"] == 3


def test_the_mean_of_epochs(run: Path, tmp_path: Path) -> None:
    members = [run / f"epoch-00{k}.safetensors" for k in (1, 2, 3)]
    out = average_checkpoints(members, tmp_path / "average.safetensors")
    model, meta = load_checkpoint(out)
    states = [load_checkpoint(p)[0].state_dict() for p in members]
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            expected = sum(s[name].double() for s in states) / 3
            torch.testing.assert_close(value, expected.float(), rtol=0, atol=1e-6)
        else:  # BatchNorm's batch counter: the last member's
            assert torch.equal(value, states[-1][name]), name
    averaged = meta["training"]["averaged_from"]
    assert [m["path"] for m in averaged] == [str(p) for p in members]
    assert [m["epochs_trained"] for m in averaged] == [1, 2, 3]
    assert all("val_acc" in m["metrics"] for m in averaged)
    assert meta["metrics"] == {}  # the mean itself was not validated by the trainer
    assert meta["labels"] == load_checkpoint(members[-1])[1]["labels"]


def test_the_mean_keeps_the_record_of_the_member_trained_last(run: Path, tmp_path: Path) -> None:
    """Members in any order (a greedy soup orders them by score): the training record, hence
    the model card's chain and commands, is the most-trained member's."""
    members = [run / "epoch-003.safetensors", run / "epoch-001.safetensors"]
    _, meta = load_checkpoint(average_checkpoints(members, tmp_path / "average.safetensors"))
    assert meta["training"]["epochs_trained"] == 3
    assert [m["epochs_trained"] for m in meta["training"]["averaged_from"]] == [3, 1]


def test_refuses_what_cannot_be_averaged(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([run / "best.safetensors"], tmp_path / "a.safetensors")
    other = trained_like_checkpoint(tmp_path / "other.safetensors")  # other labels
    with pytest.raises(ValueError, match="differ"):
        average_checkpoints([run / "best.safetensors", other], tmp_path / "a.safetensors")
    assert not (tmp_path / "a.safetensors").exists()
    code = main(["average-checkpoints", str(other), str(tmp_path / "missing.safetensors"),
                 "--out", str(tmp_path / "b.safetensors")])  # fmt: skip
    assert code == 2 and not (tmp_path / "b.safetensors").exists()


def test_a_shipped_average_names_its_members(tmp_path: Path) -> None:
    members = [
        str(
            trained_like_checkpoint(
                tmp_path / f"epoch-00{k}.safetensors",
                val_acc,
                recipe={"loss": "ce", "out": "data/runs/lmuformer-synth-600", "data": "data/synth"},
                epochs_trained=k,
            )
        )
        for k, val_acc in ((1, 0.5), (2, 0.6))
    ]
    out = tmp_path / "average.safetensors"
    assert main(["average-checkpoints", *members, "--out", str(out)]) == 0
    report = evaluate_and_ship(out, tmp_path)
    _, meta = load_checkpoint(tmp_path / "shipped" / "lmuformer.safetensors")
    assert len(meta["training"]["averaged_from"]) == 2
    assert (
        meta["metrics"]["test"]["accuracy"]
        == json.loads((report / "metrics.json").read_text())["accuracy"]
    )
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    assert "mean of 2 checkpoints" in card
    assert f"`{members[0]}` (epoch 1, validation 50.00 %)" in card
    repro = card[card.index("## Reproduce") :]
    assert f"lmukws average-checkpoints {' '.join(members)} --out {out}\n" in repro
    assert f"lmukws evaluate {out} --data {tmp_path / 'corpus'} " in repro  # the one tested
    assert f"lmukws ship-checkpoint {out} " in repro


def test_greedy_selection_keeps_what_does_not_hurt() -> None:
    soups = {(1, 2): 0.82, (1, 2, 3): 0.81, (0, 1, 2): 0.82}
    asked: list[list[int]] = []

    def score(members: list[int]) -> float:
        asked.append(members)
        return soups[tuple(sorted(members))]

    steps = select_greedy([0.5, 0.8, 0.7, 0.6], score)
    # best alone first; 2 raises the soup, 3 lowers it, 0 ties (kept: a flatter mean)
    assert steps == [(1, 0.8, True), (2, 0.82, True), (3, 0.81, False), (0, 0.82, True)]
    assert asked == [[1, 2], [1, 2, 3], [1, 2, 0]]


def test_greedy_soup_command(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    candidates = [str(run / f"epoch-00{k}.safetensors") for k in (1, 2, 3)]
    out = tmp_path / "soup.safetensors"
    corpus = run.parent / "corpus"
    command = ["average-checkpoints", *candidates, "--out", str(out)]
    assert main([*command, "--greedy"]) == 2 and not out.exists()
    assert "needs --data" in capsys.readouterr().out
    assert main([*command, "--greedy", "--data", str(corpus), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("% alone") == 3 and "wrote" in printed

    model, meta = load_checkpoint(out)
    record = meta["training"]["greedy_soup"]
    assert record["split"] == "validation" and record["clips"] > 0
    tried = record["candidates"]
    assert sorted(c["path"] for c in tried) == sorted(candidates)
    assert tried[0]["accuracy"] == max(c["accuracy"] for c in tried)
    kept = [c for c in tried if c["kept"]]
    assert kept[0] is tried[0] and record["accuracy"] == kept[-1]["soup_accuracy"]
    assert all(a["soup_accuracy"] <= b["soup_accuracy"] for a, b in itertools.pairwise(kept))
    assert [m["path"] for m in meta["training"]["averaged_from"]] == [c["path"] for c in kept]
    expected = mean_state([load_checkpoint(c["path"])[0].state_dict() for c in kept])
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6)
    # the recorded accuracy is what lmukws evaluate measures for the written soup
    report = tmp_path / "report"
    evaluate = ["evaluate", str(out), "--data", str(corpus), "--split", "validation"]
    assert main([*evaluate, "--out", str(report), "--threads", "1"]) == 0
    measured = json.loads((report / "metrics.json").read_text())["accuracy"]
    assert measured == pytest.approx(record["accuracy"])


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "read-from-the-file"])
def test_a_stage_that_began_at_a_mean_is_reproduced_with_it(tmp_path: Path, recorded: bool) -> None:
    recipe = {"loss": "ce", "out": "data/runs/lmuformer-synth-600", "data": "data/synth"}
    members = []
    for k in (1, 2):
        path = tmp_path / f"epoch-00{k}.safetensors"
        trained_like_checkpoint(path, recipe=recipe, epochs_trained=k, global_step=100 * k)
        members.append(str(path))
    start = tmp_path / "average.safetensors"
    assert main(["average-checkpoints", *members, "--out", str(start)]) == 0
    init_from = checkpoint_record(start, read_metadata(start))
    assert init_from["averaged_from"] == members
    if not recorded:  # a stage record written before records named an average's members
        del init_from["averaged_from"]
    stage = trained_like_checkpoint(
        tmp_path / "best.safetensors",
        recipe={**recipe, "out": "data/runs/lmuformer-synth-600-vtlp", "init_from": str(start)},
        init_from=init_from,
    )
    evaluate_and_ship(stage, tmp_path)
    card = (tmp_path / "shipped" / "lmuformer.md").read_text()
    assert (
        "lmukws train --config training/configs/lmuformer-synth-600.json\n"
        f"lmukws average-checkpoints {' '.join(members)} --out {start}\n"
        "lmukws train --config training/configs/lmuformer-synth-600-vtlp.json\n"
    ) in card
