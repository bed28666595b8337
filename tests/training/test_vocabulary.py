"""The _unknown_ vocabulary: big enough, near misses present, never a keyword or a homophone."""

from __future__ import annotations

import re

from training.labels import SILENCE, SPEECH_COMMANDS_LABELS, UNKNOWN, synthetic_labels
from training.vocabulary import NEAR_MISSES, UNKNOWN_WORDS, near_misses_for

# Words that sound like a keyword, in some English accent, or contain it whole (inflections,
# compounds): none may be an _unknown_ word.
HOMOPHONES: dict[str, set[str]] = {
    "backward": {"backwards"},
    "follow": {"follows", "followed", "following", "follower", "fallow"},
    "five": {"fives"},
    "bed": {"beds", "bedroom", "bedtime", "flowerbed", "seabed"},
    "zero": {"zeros", "zeroes", "xero"},
    "on": {"upon", "onto", "online", "awn"},
    "learn": {"learns", "learned", "learnt", "learning", "learner", "unlearn", "lern"},
    "two": {"to", "too", "tu", "tue", "into", "onto", "unto", "tattoo"},
    "house": {"houses", "household", "lighthouse", "hows", "how's", "housed"},
    "tree": {"trees", "treetop", "street"},
    "dog": {"dogs", "dawg", "hotdog", "bulldog", "doggy", "underdog", "watchdog"},
    "stop": {"stops", "stopped", "stopping", "nonstop", "stopwatch"},
    "seven": {"sevens", "seventh", "seventeen", "seventy"},
    "eight": {"ate", "ait", "eighth", "eighteen", "eighty", "eights"},
    "down": {"downs", "downtown", "download", "sundown", "countdown", "breakdown"},
    "six": {"sikhs", "sics", "sixth", "sixteen", "sixty", "sixes"},
    "forward": {"foreword", "forwards", "forwarded"},
    "cat": {"cats", "catch", "kat", "bobcat", "tomcat", "wildcat", "copycat"},
    "right": {
        "write",
        "rite",
        "wright",
        "rights",
        "writes",
        "bright",
        "fright",
        "alright",
        "upright",
        "copyright",
        "outright",
        "downright",
        "birthright",
    },
    "visual": {"visuals", "visualize", "audiovisual"},
    "four": {"for", "fore", "fours", "fourth", "fourteen", "forty", "before", "therefore"},
    "wow": {"wows", "powwow"},
    "no": {
        "know",
        "knows",
        "noh",
        "noes",
        "nose",
        "snow",
        "piano",
        "volcano",
        "casino",
        "rhino",
        "domino",
        "nobody",
    },
    "nine": {"nein", "nines", "ninth", "nineteen", "ninety", "canine", "benign"},
    "off": {"of", "offs", "offer", "takeoff", "kickoff", "layoff", "oft"},
    "three": {"threes", "threesome"},
    "left": {"lefts", "lefty", "leftover"},
    "marvin": {"marvyn"},
    "yes": {"yess", "yeses", "yesterday"},
    "up": {"ups", "upper", "upon", "update", "upstairs", "setup", "backup", "pickup", "makeup"},
    "sheila": {"sheilas", "shelia"},
    "happy": {"unhappy", "happiness", "happily", "happier"},
    "bird": {"birds", "burred", "berd", "birdie", "blackbird"},
    "go": {
        "goes",
        "going",
        "gone",
        "goh",
        "ago",
        "ego",
        "logo",
        "mango",
        "tango",
        "cargo",
        "bingo",
    },
    "one": {"won", "wan", "once", "ones", "someone", "anyone", "everyone", "wonder", "oneself"},
}
SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "y", "ly", "th", "teen", "ty")


def test_labels_are_the_papers_35_plus_two() -> None:
    assert len(SPEECH_COMMANDS_LABELS) == 35 == len(set(SPEECH_COMMANDS_LABELS))
    assert SPEECH_COMMANDS_LABELS[:3] == ("backward", "follow", "five")
    assert SPEECH_COMMANDS_LABELS[-1] == "one"
    labels = synthetic_labels()
    assert labels == [*SPEECH_COMMANDS_LABELS, UNKNOWN, SILENCE]
    assert labels[-2:] == ["_unknown_", "_silence_"]


def test_homophone_table_covers_every_keyword() -> None:
    assert set(HOMOPHONES) == set(SPEECH_COMMANDS_LABELS)


def test_vocabulary_size_and_form() -> None:
    assert len(UNKNOWN_WORDS) >= 150
    assert len(UNKNOWN_WORDS) == len(set(UNKNOWN_WORDS))
    for word in UNKNOWN_WORDS:
        assert re.fullmatch(r"[a-z]+", word), word


def test_no_keyword_homophone_or_inflection() -> None:
    words = set(UNKNOWN_WORDS)
    assert not words & set(SPEECH_COMMANDS_LABELS)
    for keyword, sounds_alike in HOMOPHONES.items():
        assert not words & sounds_alike, (keyword, words & sounds_alike)
        inflected = {keyword + s for s in SUFFIXES} | {keyword + keyword[-1] + s for s in SUFFIXES}
        assert not words & inflected, (keyword, words & inflected)


def test_near_misses_present() -> None:
    words = set(UNKNOWN_WORDS)
    for word in ("yet", "note", "dug", "bet", "cap", "often", "free", "night", "fine", "thee"):
        assert word in words, word
    assert set(NEAR_MISSES) == set(SPEECH_COMMANDS_LABELS)
    for keyword, misses in NEAR_MISSES.items():
        assert len(misses) >= 3, keyword
        assert set(misses) <= words
    assert "free" in near_misses_for(["three"]) and "night" in near_misses_for(["nine"])
