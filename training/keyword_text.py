"""Does a text say a keyword? The filter behind every keyword-free negative.

Continuous-speech negatives (synthetic sentences, real recordings with transcripts) must hold no
keyword and nothing that sounds like one. ``keywords_in(text)`` names the keywords a text says
or nearly says, from three rules over its words:

- the word is a keyword or one of its homophones, inflections or compounds (``HOMOPHONES``:
  "to"/"too" for "two", "know" for "no", "write" for "right", "someone" for "one", ...);
- the word is a keyword of three letters or more, or a homophone of four, plus a common
  suffix ("dogs", "stopped", "sixty", "writing", "knowing");
- the word contains a keyword of three letters or more, or a homophone of five, whole
  ("stopwatch", "bedroom", "street", "canine", "unknown"); words that start with "up" or
  "fore" ("upset", "forecast"). Spelled containment over-flags words that sound different
  ("phone" and "honey" for "one", "eyes" for "yes"), which only costs a sentence, never a
  false negative.

Digits count as the number words they are read as ("7" says "seven", "1990" says "nine").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from training.labels import SPEECH_COMMANDS_LABELS

__all__ = ["HOMOPHONES", "SUFFIXES", "is_keyword_free", "keywords_in", "words_of"]

# Words that sound like a keyword in some English accent, or hold it whole (inflections,
# compounds); the spelled-containment rule below adds the rest of the compounds.
HOMOPHONES: dict[str, frozenset[str]] = {
    keyword: frozenset(words)
    for keyword, words in {
        "backward": {"backwards"},
        "follow": {"follows", "followed", "following", "follower", "fallow"},
        "five": {"fives"},
        "bed": {"beds", "bedroom", "bedtime", "flowerbed", "seabed"},
        "zero": {"zeros", "zeroes", "xero"},
        "on": {"upon", "onto", "online", "awn"},
        "learn": {"learns", "learned", "learnt", "learning", "learner", "unlearn", "lern"},
        "two": {"to", "too", "tu", "tue", "tues", "tuesday", "into", "onto", "unto", "tattoo"},
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
            "write", "rite", "wright", "rights", "writes", "written", "bright", "fright",
            "alright",
            "upright", "copyright", "outright", "downright", "birthright",
        },
        "visual": {"visuals", "visualize", "audiovisual"},
        "four": {"for", "fore", "fours", "fourth", "fourteen", "forty", "before", "therefore"},
        "wow": {"wows", "powwow"},
        "no": {
            "know", "knows", "noh", "noes", "nose", "snow", "piano", "volcano", "casino",
            "rhino", "domino", "nobody", "known",
        },
        "nine": {"nein", "nines", "ninth", "nineteen", "ninety", "canine", "benign"},
        "off": {"of", "offs", "offer", "takeoff", "kickoff", "layoff", "oft"},
        "three": {"threes", "threesome"},
        "left": {"lefts", "lefty", "leftover"},
        "marvin": {"marvyn"},
        "yes": {"yess", "yeses", "yesterday"},
        "up": {
            "ups", "upper", "upon", "update", "upstairs", "setup", "backup", "pickup", "makeup",
        },
        "sheila": {"sheilas", "shelia"},
        "happy": {"unhappy", "happiness", "happily", "happier"},
        "bird": {"birds", "burred", "berd", "birdie", "blackbird"},
        "go": {
            "goes", "going", "gone", "goh", "ago", "ego", "logo", "mango", "tango", "cargo",
            "bingo",
        },
        "one": {
            "won", "wan", "once", "ones", "someone", "anyone", "everyone", "wonder", "oneself",
        },
    }.items()
}  # fmt: skip
SUFFIXES: tuple[str, ...] = (
    "s",
    "es",
    "ed",
    "d",
    "ing",
    "er",
    "ers",
    "y",
    "ly",
    "th",
    "teen",
    "ty",
)
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text``; each digit becomes its own word ("7" -> "seven")."""
    out = []
    for token in _WORD.findall(text.lower()):
        out.append(_DIGIT_WORDS[int(token)] if token.isdigit() else token)
    return out


_PREFIXES: dict[str, tuple[str, ...]] = {"up": ("up",), "four": ("fore", "four")}
_VOWELS = frozenset("aeiouy")


def _inflected(stem: str, form: str) -> bool:
    """``stem`` is ``form`` plus a suffix ("stopped", "writing", "dogs")."""
    for suffix in SUFFIXES:
        if stem == form + suffix:
            return True
        if form[-1] not in _VOWELS and stem == form + form[-1] + suffix:
            return True
        if form.endswith("e") and suffix[0] in _VOWELS and stem == form[:-1] + suffix:
            return True
    return False


@functools.lru_cache(maxsize=1 << 18)  # texts repeat their words; the tables are constant
def _says(word: str, keyword: str) -> bool:
    forms = (keyword, *HOMOPHONES.get(keyword, ()))
    if word in forms:
        return True
    stem = word.split("'", 1)[0]
    if stem in forms:  # "dog's", "one's"
        return True
    if (len(keyword) >= 3 and _inflected(stem, keyword)) or any(
        _inflected(stem, f) for f in forms[1:] if len(f) >= 4
    ):
        return True
    if (len(keyword) >= 3 and keyword in stem) or any(f in stem for f in forms[1:] if len(f) >= 5):
        return True
    return stem.startswith(_PREFIXES.get(keyword, ()) or ("\0",))


def keywords_in(text: str, keywords: Iterable[str] = SPEECH_COMMANDS_LABELS) -> list[str]:
    """The keywords (in ``keywords`` order) that ``text`` says or nearly says."""
    words = set(words_of(text))
    return [k for k in keywords if any(_says(w, k) for w in words)]


def is_keyword_free(text: str, keywords: Iterable[str] = SPEECH_COMMANDS_LABELS) -> bool:
    """True when ``text`` says no keyword, homophone, inflection or compound of one."""
    return not keywords_in(text, keywords)
