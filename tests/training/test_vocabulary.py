"""The _unknown_ vocabulary: big enough, near misses present, never a keyword or a homophone."""

from __future__ import annotations

import re

from training.keyword_text import HOMOPHONES, SUFFIXES, is_keyword_free, keywords_in
from training.labels import SILENCE, SPEECH_COMMANDS_LABELS, UNKNOWN, synthetic_labels
from training.vocabulary import NEAR_MISSES, UNKNOWN_WORDS, near_misses_for


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


def test_keywords_in_text() -> None:
    """Keywords, homophones, inflections, compounds and digits are found; near misses are not
    (they are the hard negatives a keyword-free sentence should hold)."""
    assert keywords_in("Go left, then stop.") == ["stop", "left", "go"]
    assert keywords_in("I want to write it before noon") == ["two", "right", "four"]
    assert keywords_in("The stopwatch fell in the street") == ["tree", "stop"]
    assert keywords_in("Her dog's bed") == ["bed", "dog"]
    assert keywords_in("Call me at 7") == ["seven"]
    assert keywords_in("Someone knows") == ["no", "one"]
    assert is_keyword_free("The night was fine, and the hero felt free.")
    assert is_keyword_free("Please close the window.")
    assert keywords_in("YES! Sheila, happy?") == ["yes", "sheila", "happy"]


def test_keywords_in_words_that_hold_a_keyword_or_a_homophone() -> None:
    """Inflections of homophones, compounds, "up"/"fore" prefixes; and the short forms that
    would over-flag everyday words are left alone."""
    flagged = {
        "writing": "right", "unknown": "no", "snowy": "no", "wonderful": "one",
        "housing": "house", "upset": "up", "forecast": "four", "tuesday": "two",
        "nineteen": "nine", "stopped": "stop",
    }  # fmt: skip
    for word, keyword in flagged.items():
        assert keywords_in(word) == [keyword], word
    for word in ("good", "only", "tooth", "favourite", "water", "noon", "god"):
        assert keywords_in(word) == [], word
