"""The continuous-speech texts: enough of them, plain words, keyword-free, near misses present."""

from __future__ import annotations

import re

from training.keyword_text import is_keyword_free, keywords_in, words_of
from training.labels import SPEECH_COMMANDS_LABELS
from training.sentences import (
    CARRIERS,
    COMMAND_SEQUENCES,
    PARAGRAPHS,
    SENTENCES,
    keyword_free_paragraphs,
    keyword_free_sentences,
)
from training.vocabulary import NEAR_MISSES

_PLAIN = re.compile(r"[A-Za-z' ,.?!]+")
_SENTENCE = re.compile(r"[A-Z][A-Za-z' ,.?!]*[a-z][.?!]")
_SENTENCE_END = re.compile(r"[.?!](?: |$)")


def test_counts_and_distinctness() -> None:
    assert len(SENTENCES) >= 700
    assert len(PARAGRAPHS) >= 40
    assert len(CARRIERS) >= 80
    assert len(COMMAND_SEQUENCES) >= 30
    for texts in (SENTENCES, PARAGRAPHS, CARRIERS, COMMAND_SEQUENCES):
        assert len(set(texts)) == len(texts)
    lowered = [s.lower().rstrip(".?!") for s in SENTENCES]
    assert len(set(lowered)) == len(lowered)


def test_texts_are_plain_words() -> None:
    """Only letters, spaces and . , ? ! ' : nothing a synthesiser might read its own way."""
    for text in (*SENTENCES, *PARAGRAPHS):
        assert _PLAIN.fullmatch(text), text
        assert "  " not in text and " ," not in text and text == text.strip(), text
    for sentence in SENTENCES:
        assert _SENTENCE.fullmatch(sentence), sentence
    for prefix, suffix in CARRIERS:
        for side in (prefix, suffix):
            assert side == "" or _PLAIN.fullmatch(side), side
            assert side == side.strip(), side


def test_sentences_and_paragraphs_are_keyword_free() -> None:
    for text in (*SENTENCES, *PARAGRAPHS):
        assert keywords_in(text) == [], (text, keywords_in(text))
    assert keyword_free_sentences() == SENTENCES
    assert keyword_free_paragraphs() == PARAGRAPHS


def test_keyword_free_helpers_take_a_keyword_set() -> None:
    assert keyword_free_sentences(["marvin", "sheila"]) == SENTENCES
    assert keyword_free_sentences(iter(SPEECH_COMMANDS_LABELS)) == SENTENCES
    # Every text is free of any set of keywords; a word the texts use drops its sentences.
    with_night = keyword_free_sentences(["night"])
    assert 0 < len(with_night) < len(SENTENCES)
    assert all("night" not in words_of(s) for s in with_night)
    assert len(keyword_free_paragraphs(["the"])) == 0


def test_paragraph_lengths() -> None:
    """Three to six sentences, about ten to thirty seconds at a speaking rate near 150 words/min."""
    for paragraph in PARAGRAPHS:
        assert 3 <= len(_SENTENCE_END.findall(paragraph)) <= 6, paragraph
        assert 25 <= len(paragraph.split()) <= 80, paragraph


def test_sentence_lengths_spread() -> None:
    lengths = [len(s.split()) for s in SENTENCES]
    assert sum(n <= 5 for n in lengths) >= 100
    assert sum(n >= 15 for n in lengths) >= 100
    assert sum(6 <= n <= 14 for n in lengths) >= 100
    assert max(lengths) <= 25
    assert sum(s.endswith("?") for s in SENTENCES) >= 50
    assert sum(s.endswith("!") for s in SENTENCES) >= 20


def test_near_misses_present() -> None:
    """The hard negatives: near misses of nearly every keyword occur in the sentences."""
    words = {w for s in SENTENCES for w in words_of(s)}
    covered = [k for k, misses in NEAR_MISSES.items() if words & set(misses)]
    assert len(covered) >= 30, sorted(set(SPEECH_COMMANDS_LABELS) - set(covered))
    for word in ("night", "fine", "free", "yet", "shop", "town", "hero", "bet", "fire", "light"):
        assert word in words, word
    for word in ("lift", "note"):
        assert word in words, word


def test_carriers_place_exactly_one_keyword() -> None:
    for prefix, suffix in CARRIERS:
        assert prefix or suffix, "a carrier needs a prefix or a suffix"
        assert is_keyword_free(prefix), prefix
        assert is_keyword_free(suffix), suffix
        for keyword in SPEECH_COMMANDS_LABELS:
            phrase = " ".join(part for part in (prefix, keyword, suffix) if part)
            assert keywords_in(phrase) == [keyword], phrase
    prefixes = {prefix for prefix, _ in CARRIERS}
    for command_word in ("computer", "okay lights", "please", "then", "and then", "now"):
        assert command_word in prefixes, command_word
    assert sum(1 for p, s in CARRIERS if p and s) >= 10
    assert sum(1 for p, s in CARRIERS if not p) >= 10


def test_command_sequences_are_keywords() -> None:
    labels = set(SPEECH_COMMANDS_LABELS)
    for sequence in COMMAND_SEQUENCES:
        assert 2 <= len(sequence) <= 3, sequence
        assert set(sequence) <= labels, sequence
    used = {k for sequence in COMMAND_SEQUENCES for k in sequence}
    assert used == labels, sorted(labels - used)
