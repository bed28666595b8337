"""Label sets: Google Speech Commands V2 (35 words) in the paper's order, plus the synthetic extras.

The order is the class index order of the authors' Speech Commands preparation: LMUFormer's
``data/speech_commands/prep_sc.py`` maps words to indices through AST's
``speechcommands_class_labels_indices.csv`` (index 0 = "backward" ... 34 = "one"), which is the
on-disk listing order of the extracted archive, not the alphabetical order. Keeping it means the
authors' released checkpoints map onto our label indices unchanged.
"""

from __future__ import annotations

SPEECH_COMMANDS_LABELS: tuple[str, ...] = (
    "backward",
    "follow",
    "five",
    "bed",
    "zero",
    "on",
    "learn",
    "two",
    "house",
    "tree",
    "dog",
    "stop",
    "seven",
    "eight",
    "down",
    "six",
    "forward",
    "cat",
    "right",
    "visual",
    "four",
    "wow",
    "no",
    "nine",
    "off",
    "three",
    "left",
    "marvin",
    "yes",
    "up",
    "sheila",
    "happy",
    "bird",
    "go",
    "one",
)

UNKNOWN = "_unknown_"
SILENCE = "_silence_"


def synthetic_labels() -> list[str]:
    """The synthetic corpus's 37 labels: the 35 words, then ``_unknown_`` and ``_silence_``."""
    return [*SPEECH_COMMANDS_LABELS, UNKNOWN, SILENCE]
