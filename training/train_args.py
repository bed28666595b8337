"""The arguments of ``lmukws train`` and ``python -m training.train``.

Only argparse: the ``lmukws`` parser (``training.cli``) and the trainer's own ``main``
(``training.train``) both build on it, so building the parser imports no torch and neither of
those modules imports the other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_train_arguments"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``lmukws train`` (and ``python -m training.train``)."""
    parser.add_argument("--config", type=Path, help="recipe file (.json or .toml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (JSON value; dotted keys for augment./model_config.)",
    )
    parser.add_argument("--data", help="corpus folder (overrides the recipe's data)")
    parser.add_argument("--out", help="output folder (overrides the recipe's out)")
    parser.add_argument("--model", help="lmuformer | spiking-lmuformer")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--no-resume", action="store_true", help="start over, ignoring last_state")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--print-recipe", action="store_true", help="print the recipe and exit")
