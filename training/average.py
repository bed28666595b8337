"""``lmukws average-checkpoints``: one checkpoint whose weights are the element-wise mean of
several checkpoints of the same model (a "model soup", Wortsman et al., ICML 2022).

Checkpoints fine-tuned from a common start (the epochs of one run, or a stage and the run that
continued it with ``init_from``) lie in one basin of the loss; their mean often generalises
better than any of them, above all to data unlike the training data (here: unseen voices).
Pick the members on validation, never on test:

    lmukws average-checkpoints data/runs/A/best.safetensors data/runs/B/epoch-010.safetensors \\
        data/runs/B/best.safetensors --out data/runs/B-average/average.safetensors
    lmukws evaluate data/runs/B-average/average.safetensors --data data/synth --split validation

With ``--greedy --data CORPUS`` the members are picked on validation by the command itself
(Wortsman et al.'s greedy soup): the candidates are ranked by their own validation accuracy
and, best first, each is kept if the mean with it is at least as accurate as without; the
metadata records every candidate's score and whether it was kept.

Every floating-point tensor (weights and BatchNorm running statistics) is averaged in float64;
integer buffers (BatchNorm's batch counters) are the last member's. The metadata is that of
the member trained last (the longest ``init_from`` chain, then the most steps; on a tie the
last given): labels, features, detector, the training record and its chain, with
``training.averaged_from`` listing the members and no validation metrics (the mean was not
validated by the trainer).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.ship import checkpoint_record, stages


def _load_compatible(paths: Sequence[Path]) -> list[tuple[Any, dict[str, Any]]]:
    """Load ``paths``; raises ValueError unless all have the last one's model, labels and
    features."""
    from models import load_checkpoint

    loaded = [load_checkpoint(path) for path in paths]
    model, meta = loaded[-1]
    for path, (other, other_meta) in zip(paths, loaded, strict=True):
        if other.config != model.config:
            raise ValueError(
                f"{path}: model {other.config.to_dict()} differs from {paths[-1]}'s "
                f"{model.config.to_dict()}"
            )
        for key in ("labels", "features"):
            if other_meta.get(key) != meta.get(key):
                raise ValueError(f"{path}: its {key} differ from {paths[-1]}'s")
    return loaded


def mean_state(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Element-wise mean of state dicts: floating tensors in float64, integer buffers the last
    one's."""
    import torch

    return {
        key: torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value
        for key, value in states[-1].items()
    }


def _training_depth(meta: dict[str, Any]) -> tuple[int, int]:
    """(stages, steps) along a checkpoint's ``init_from`` chain: which of several members of a
    soup was trained last, hence whose training record (and how to reproduce it) the mean keeps."""
    training = meta.get("training") or {}
    chain = [*stages(training), training]
    return len(chain), sum(int(record.get("global_step") or 0) for record in chain)


def _save_mean(
    model: Any,
    paths: Sequence[Path],
    metas: Sequence[dict[str, Any]],
    states: Sequence[dict[str, Any]],
    out: Path,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` with the mean of ``states`` and the metadata of the member trained last,
    recording the members (``paths``, ``metas``) and ``extra`` in its training record."""
    from models import save_checkpoint

    model.load_state_dict(mean_state(states))
    meta = metas[max(range(len(metas)), key=lambda i: (*_training_depth(metas[i]), i))]
    averaged = dict(meta)
    training = dict(meta.get("training") or {})
    training["averaged_from"] = [
        checkpoint_record(path, member_meta) for path, member_meta in zip(paths, metas, strict=True)
    ]
    training.update(extra or {})
    averaged["training"] = training
    averaged["metrics"] = {}
    averaged["provenance"] = (
        f"mean of {len(paths)} checkpoint{'s' if len(paths) > 1 else ''} "
        "(lmukws average-checkpoints)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, model, averaged)


def average_checkpoints(paths: Sequence[Path], out: Path) -> Path:
    """Write the mean of ``paths`` (same model, labels and features) to ``out``; returns it."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    loaded = _load_compatible(paths)
    metas = [meta for _, meta in loaded]
    states = [model.state_dict() for model, _ in loaded]
    return _save_mean(loaded[-1][0], paths, metas, states, out)


def select_greedy(
    own: Sequence[float], score: Callable[[list[int]], float]
) -> list[tuple[int, float, bool]]:
    """The greedy soup's choice: candidates ranked by ``own`` score, best first; each is kept if
    ``score(kept + [it])`` is at least the best score so far.

    Returns (candidate index, the soup's score with it, kept) in the order tried; the first,
    the best alone, is kept with its own score (``score`` is never called on it alone).
    """
    order = sorted(range(len(own)), key=lambda i: -own[i])
    kept, best = [order[0]], own[order[0]]
    steps = [(order[0], best, True)]
    for i in order[1:]:
        value = score([*kept, i])
        keep = value >= best
        if keep:
            kept.append(i)
            best = value
        steps.append((i, value, keep))
    return steps


def greedy_soup(
    paths: Sequence[Path],
    out: Path,
    data: Path,
    split: str = "validation",
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Wortsman's greedy soup of ``paths`` on ``split`` of the corpus at ``data``; writes the
    mean of the kept members to ``out`` and returns it with the selection record.

    Accuracy is the parallel form's on the clean clips (what ``lmukws evaluate`` reports).
    A candidate is kept if the soup with it is at least as accurate as without (ties keep it:
    a flatter mean). The record (also in the metadata as ``training.greedy_soup``) lists every
    candidate, best first, with its own accuracy, the soup's accuracy with it, and ``kept``.
    """
    import torch
    from tqdm import tqdm

    from training.dataset import ManifestDataset
    from training.train import evaluate_features, precompute_features

    if len(paths) < 2:
        raise ValueError("a soup needs at least two candidates")
    loaded = _load_compatible(paths)
    model, meta = loaded[-1]
    target_length = int(meta.get("features", {}).get("target_length", 128))
    if not meta.get("labels"):
        raise ValueError(f"{paths[-1]}: the checkpoint metadata has no labels")
    dataset = ManifestDataset(
        data, split, labels=meta["labels"], augment=False, window_frames=target_length
    )
    feats, labels = precompute_features(dataset, batch_size)  # the clean features, once
    clips = len(labels)
    bar = tqdm(total=2 * len(paths) - 1, desc="greedy soup", disable=not progress)

    def accuracy(state: dict[str, Any]) -> float:
        model.load_state_dict(state)
        scores = evaluate_features(model, feats, labels, batch_size, torch.device("cpu"))
        bar.update(1)
        return scores["acc"]

    # copies: evaluating loads each state into the last member's model, in place
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m, _ in loaded]
    own = [accuracy(state) for state in states]
    steps = select_greedy(own, lambda members: accuracy(mean_state([states[k] for k in members])))
    candidates = [
        {"path": str(paths[i]), "accuracy": own[i], "soup_accuracy": score, "kept": keep}
        for i, score, keep in steps
    ]
    kept = [i for i, _, keep in steps if keep]
    best = max(score for _, score, keep in steps if keep)
    bar.close()
    record = {"data": str(data), "split": split, "clips": clips, "accuracy": best,
              "candidates": candidates}  # fmt: skip
    target = _save_mean(
        model,
        [paths[k] for k in kept],
        [loaded[k][1] for k in kept],
        [states[k] for k in kept],
        out,
        {"greedy_soup": record},
    )
    return target, record


def _run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.checkpoints]
    if args.greedy and not args.data:
        print("lmukws average-checkpoints: --greedy needs --data (the corpus to validate on)")
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if not args.greedy:
            target = average_checkpoints(paths, Path(args.out))
            print(f"wrote {target}: the mean of {len(paths)} checkpoints")
            return 0
        target, record = greedy_soup(
            paths, Path(args.out), Path(args.data), args.split, args.batch_size
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"lmukws average-checkpoints: {error}")
        return 2
    for c in record["candidates"]:
        mark = "kept" if c["kept"] else "left out"
        print(
            f"{c['path']}: {100 * c['accuracy']:.2f} % alone, soup with it "
            f"{100 * c['soup_accuracy']:.2f} % ({mark})"
        )
    kept = sum(c["kept"] for c in record["candidates"])
    print(
        f"wrote {target}: the mean of {kept} of {len(paths)} checkpoints, "
        f"{100 * record['accuracy']:.2f} % on {record['split']} ({record['clips']} clips)"
    )
    return 0


def register_average_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``average-checkpoints`` to the ``lmukws`` command."""
    parser = subparsers.add_parser(
        "average-checkpoints",
        help="average the weights of checkpoints of one model (a model soup)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("checkpoints", nargs="+", help="two or more .safetensors checkpoints")
    parser.add_argument("--out", required=True, help="the averaged .safetensors to write")
    parser.add_argument(
        "--greedy",
        action="store_true",
        help="pick the members on validation (greedy soup: best first, each kept if the mean "
        "does not get worse); needs --data",
    )
    parser.add_argument("--data", help="with --greedy: the corpus folder to validate on")
    parser.add_argument(
        "--split", default="validation", help="with --greedy: the split (default: validation)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="clips per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.set_defaults(func=_run)
    return parser
