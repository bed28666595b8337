"""The trainer on a tiny tone corpus with a tiny model: loss falls, resume, checkpoint metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from models import load_checkpoint
from tests.training.test_dataset import TINY_LABELS, make_tiny_corpus
from training.cli import register_train_parser
from training.recipe import Recipe, load_recipe
from training.train import clip_loss, main, train

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"), per_voice=4)


def _recipe(corpus: Path, out: Path, **overrides: object) -> Recipe:
    values: dict[str, object] = {
        "model": "lmuformer",
        "model_config": {"dim": 16},
        "data": str(corpus),
        "out": str(out),
        "batch_size": 16,
        "epochs": 3,
        "threads": 1,
        "progress": None,
    }
    values.pop("progress")
    values.update(overrides)
    return Recipe.from_dict(values)


def test_loss_falls_and_best_checkpoint_has_metadata(corpus: Path, tmp_path: Path) -> None:
    recipe = _recipe(corpus, tmp_path / "run", epochs=4, steps_per_epoch=4, mixup_prob=0.0)
    summary = train(recipe, progress=False)
    history = summary["history"]
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model, meta = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert meta["labels"] == TINY_LABELS
    assert meta["features"]["num_mel_bins"] == 128
    assert meta["training"]["recipe"]["lr"] == 2.5e-3
    assert meta["training"]["data"]["train"]["counts"]["yes"] > 0
    assert meta["training"]["data"]["train"]["corpus"]["source"] == "synthetic"
    assert 0.0 <= meta["metrics"]["val_acc"] <= 1.0 and meta["metrics"]["epoch"] >= 1
    assert "test_acc" in meta["metrics"]
    assert meta["detector"]["threshold"] == 0.5
    assert meta["detector"]["posterior"] == (
        "softmax" if meta["training"]["recipe"]["loss"] == "ce" else "sigmoid"
    )
    assert model(torch.zeros(2, 128, 128)).shape == (2, len(TINY_LABELS))
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in saved] == [1, 2, 3, 4]
    for row in saved:  # where the training time went: data, model, the rest
        assert 0.0 < row["model_share"] <= 1.0 and row["data_wait_s"] >= 0.0
        assert row["model_s"] + row["data_wait_s"] <= row["train_s"] + 1e-6


def test_resume_continues_from_saved_epoch(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_recipe(corpus, out, epochs=1, steps_per_epoch=2, test_split=None), progress=False)
    state = torch.load(out / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1
    summary = train(
        _recipe(corpus, out, epochs=2, steps_per_epoch=2, test_split=None), progress=False
    )
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert torch.load(out / "last_state.pt", weights_only=True)["global_step"] == 4
    # a finished run resumes to nothing
    again = train(_recipe(corpus, out, epochs=2, steps_per_epoch=2, test_split=None))
    assert len(again["history"]) == 2


def test_time_budget_stops_at_an_epoch_boundary_and_resumes(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # a budget shorter than any epoch: the first epoch runs, the second does not start
    tight = _recipe(corpus, out, epochs=3, steps_per_epoch=2, test_split=None, time_budget_s=1e-6)
    summary = train(tight, progress=False)
    assert summary["stopped_by_time_budget"] is True
    assert [row["epoch"] for row in summary["history"]] == [1]
    assert (out / "best.safetensors").is_file()
    # resumed under the same budget, it again trains one more epoch, then without one to the end
    assert [row["epoch"] for row in train(tight, progress=False)["history"]] == [1, 2]
    rest = train(_recipe(corpus, out, epochs=3, steps_per_epoch=2, test_split=None))
    assert rest["stopped_by_time_budget"] is False
    assert [row["epoch"] for row in rest["history"]] == [1, 2, 3]
    with pytest.raises(ValueError, match="time_budget_s"):
        _recipe(corpus, out, time_budget_s=-1)


def test_lr_schedule() -> None:
    r = Recipe()
    assert r.lr_at(0) == r.lr_at(9) == 2.5e-3
    assert r.lr_at(10) == pytest.approx(2.5e-3 * 0.85)
    assert r.lr_at(25) == pytest.approx(2.5e-3 * 0.85**2)
    fast = Recipe(lr_decay_start=2, lr_decay_every=2)
    assert fast.lr_at(1) == 2.5e-3 and fast.lr_at(2) == pytest.approx(2.5e-3 * 0.85)


def test_recipe_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "lmuformer", "epochs": 5, "augment": {"noise_prob": 0.2}}))
    r = load_recipe(path, ["epochs=7", "augment.snr_db=[0, 10]", "model_config.dim=32"])
    assert r.epochs == 7 and r.model == "lmuformer"
    assert r.augment.noise_prob == 0.2 and r.augment.snr_db == (0, 10)
    assert r.model_config == {"dim": 32}
    toml = tmp_path / "r.toml"
    toml.write_text('model = "lmuformer"\nbatch_size = 64\n[augment]\nreverb_prob = 0.1\n')
    r = load_recipe(toml)
    assert r.batch_size == 64 and r.augment.reverb_prob == 0.1
    with pytest.raises(ValueError, match="unknown recipe keys"):
        load_recipe(None, ["nope=1"])


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.json")))
def test_shipped_configs_parse(name: str) -> None:
    r = load_recipe(CONFIGS / name)
    assert r.model in name and r.batch_size >= 32 and r.notes
    if r.init_from and r.init_from.startswith("models/"):  # stages that start from a shipped file
        assert (CONFIGS.parents[1] / r.init_from).is_file()


def test_cli_parser(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_train_parser(sub)
    args = parser.parse_args(["train", "--set", "epochs=3", "--print-recipe"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 3
    out = tmp_path / "cli"
    code = main(
        [
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--model",
            "lmuformer",
            "--set",
            'model_config={"dim": 16}',
            "--set",
            "steps_per_epoch=1",
            "--set",
            "batch_size=8",
            "--epochs",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0 and (out / "best.safetensors").is_file()


def test_cross_entropy_option(corpus: Path, tmp_path: Path) -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([[1.0, 0.0, 0.0]])
    assert clip_loss(logits, target, "ce") == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([0])))
    )
    assert clip_loss(logits, target) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
    )
    recipe = _recipe(corpus, tmp_path / "ce", epochs=2, steps_per_epoch=3, loss="ce")
    history = train(recipe, progress=False)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    with pytest.raises(ValueError, match="loss must be"):
        Recipe.from_dict({"loss": "mse"})


def test_bf16_and_clean_steps(corpus: Path, tmp_path: Path) -> None:
    recipe = _recipe(
        corpus,
        tmp_path / "bf16",
        epochs=1,
        steps_per_epoch=2,
        loss="ce",
        precision="bf16",
        clean_steps=1,
        test_split=None,
    )
    summary = train(recipe, progress=False)
    assert summary["history"][0]["global_step"] == 2
    model, meta = load_checkpoint(tmp_path / "bf16" / "best.safetensors")
    assert next(model.parameters()).dtype == torch.float32
    assert meta["training"]["recipe"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision must be"):
        Recipe.from_dict({"precision": "fp8"})


def test_vtlp_option(corpus: Path, tmp_path: Path) -> None:
    recipe = _recipe(
        corpus, tmp_path / "vtlp", epochs=1, steps_per_epoch=2, vtlp_warp=0.1, test_split=None
    )
    train(recipe, progress=False)
    _, meta = load_checkpoint(tmp_path / "vtlp" / "best.safetensors")
    assert meta["training"]["recipe"]["vtlp_warp"] == 0.1
    with pytest.raises(ValueError, match="vtlp_warp must be"):
        Recipe.from_dict({"vtlp_warp": 1.5})


def test_loader_workers_build_the_same_batches(corpus: Path, tmp_path: Path) -> None:
    """Batches built ahead in a worker process equal the in-process ones: same weights after."""
    weights = []
    for workers in (0, 1):
        out = tmp_path / f"w{workers}"
        recipe = _recipe(
            corpus, out, epochs=1, steps_per_epoch=3, test_split=None, loader_workers=workers
        )
        train(recipe, progress=False)
        model, _ = load_checkpoint(out / "last.safetensors")
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_init_from_continues_from_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    train(_recipe(corpus, first, epochs=1, steps_per_epoch=2, test_split=None), progress=False)
    source, _ = load_checkpoint(first / "last.safetensors")
    # lr 0: the second run keeps the weights it started from (batch-norm statistics still
    # move in train mode), and says where they came from
    second = tmp_path / "second"
    recipe = _recipe(
        corpus,
        second,
        epochs=1,
        steps_per_epoch=2,
        lr=0.0,
        weight_decay=0.0,
        test_split=None,
        init_from=str(first / "last.safetensors"),
    )
    train(recipe, progress=False)
    model, meta = load_checkpoint(second / "last.safetensors")
    params = dict(model.named_parameters())
    for key, value in source.named_parameters():
        assert torch.equal(value, params[key]), key
    assert meta["training"]["init_from"]["path"] == str(first / "last.safetensors")
    assert meta["training"]["init_from"]["global_step"] == 2
    assert meta["training"]["init_from"]["run"] == str(first)  # the run that trained it
    assert meta["training"]["init_from"]["data"] == str(corpus)  # and the corpus it read
    assert meta["training"]["init_from"]["init_from"] is None  # the first stage started fresh
    third = tmp_path / "third"
    train(
        _recipe(
            corpus,
            third,
            epochs=1,
            steps_per_epoch=1,
            test_split=None,
            init_from=str(second / "last.safetensors"),
        ),
        progress=False,
    )
    _, meta = load_checkpoint(third / "last.safetensors")
    chain = meta["training"]["init_from"]
    assert chain["path"] == str(second / "last.safetensors")
    assert chain["init_from"]["path"] == str(first / "last.safetensors")
    other = _recipe(
        corpus,
        tmp_path / "other",
        model_config={"dim": 24},
        init_from=str(first / "last.safetensors"),
    )
    with pytest.raises(ValueError, match="differs from the recipe"):
        train(other, progress=False)


def test_frozen_norm_keeps_the_running_statistics_it_started_from(
    corpus: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    train(_recipe(corpus, first, epochs=1, steps_per_epoch=2, test_split=None), progress=False)
    source, _ = load_checkpoint(first / "last.safetensors")
    runs = {}
    for frozen in (False, True):
        out = tmp_path / f"frozen-{frozen}"
        recipe = _recipe(
            corpus, out, epochs=1, steps_per_epoch=2, test_split=None, frozen_norm=frozen,
            init_from=str(first / "last.safetensors"),
        )  # fmt: skip
        train(recipe, progress=False)
        runs[frozen] = load_checkpoint(out / "last.safetensors")[0]
    norms = [
        name
        for name, module in source.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert norms
    start = source.state_dict()
    for frozen, model in runs.items():
        state = model.state_dict()
        moved = [
            name
            for name in norms
            if not torch.equal(state[f"{name}.running_mean"], start[f"{name}.running_mean"])
        ]
        # frozen: every running statistic as it started; otherwise the batches moved them
        assert (moved == []) if frozen else (moved == norms), (frozen, moved)
        # the weights train either way, the BatchNorms' affine weights too
        assert not torch.equal(state[f"{norms[0]}.weight"], start[f"{norms[0]}.weight"])


def test_warm_start_copies_the_tensors_another_model_shares(corpus: Path, tmp_path: Path) -> None:
    first = tmp_path / "spiking-lmuformer"
    base = {"epochs": 1, "steps_per_epoch": 1, "test_split": None}
    train(_recipe(corpus, first, model="spiking-lmuformer", **base), progress=False)
    source, _ = load_checkpoint(first / "last.safetensors")
    # lr 0: what was copied stays as the source had it; spiking-lmu lacks the shortcut's BNs
    recipe = _recipe(
        corpus,
        tmp_path / "spiking-lmu",
        model="spiking-lmu",
        lr=0.0,
        weight_decay=0.0,
        warm_start_from=str(first / "last.safetensors"),
        **base,
    )
    train(recipe, progress=False)
    model, meta = load_checkpoint(tmp_path / "spiking-lmu" / "last.safetensors")
    warm = meta["training"]["warm_start_from"]
    assert warm["model"] == "spiking-lmuformer" and warm["path"] == str(first / "last.safetensors")
    theirs = dict(source.named_parameters())
    shared = [k for k, v in model.named_parameters() if k in theirs and theirs[k].shape == v.shape]
    assert len(shared) >= 10 and 0.5 < warm["copied_share"] < 1.0 and warm["fresh_tensors"]
    for key in shared:
        assert torch.equal(dict(model.named_parameters())[key], theirs[key]), key
    with pytest.raises(ValueError, match="exclude each other"):
        _recipe(corpus, tmp_path / "x", warm_start_from="a", init_from="b")


def test_cpu_bf16_support_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    from training.train import cpu_has_fast_bf16

    zen3 = tmp_path / "zen3"
    zen3.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n" * 2)
    sapphire = tmp_path / "sapphire"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_fast_bf16(zen3) is False
    assert cpu_has_fast_bf16(sapphire) is True
    assert cpu_has_fast_bf16(tmp_path / "absent") is None
