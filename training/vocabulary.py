"""Words spoken for the ``_unknown_`` label of the synthetic corpus.

Two parts: near misses of each keyword (one sound changed, added or dropped: "yet" for "yes",
"night" for "nine", "free" for "three") and plain everyday words. Excluded on purpose:
homophones of a keyword ("for", "to", "won", "know", "write", "ate", ...), inflected or derived
forms ("trees", "sixth", "going"), compounds that contain a keyword whole ("someone", "before",
"into", "upstairs", "bedroom") and accent-dependent homophones ("of", "wan"). The test
``tests/training/test_vocabulary.py`` checks the list against a homophone table.
"""

from __future__ import annotations

# keyword -> words that differ from it by about one sound.
NEAR_MISSES: dict[str, tuple[str, ...]] = {
    "backward": ("backyard", "awkward", "bark"),
    "follow": ("hollow", "fellow", "swallow", "fall"),
    "five": ("fire", "hive", "dive", "file", "fight"),
    "bed": ("bet", "bad", "bread", "red", "head"),
    "zero": ("hero", "zebra", "arrow", "zeal"),
    "on": ("an", "in", "odd", "own"),
    "learn": ("earn", "lean", "turn", "burn", "yearn"),
    "two": ("tooth", "tune", "true", "do", "shoe"),
    "house": ("mouse", "horse", "how", "hose", "blouse"),
    "tree": ("free", "treat", "tea", "trip"),
    "dog": ("dug", "dock", "dig", "log", "doll"),
    "stop": ("step", "shop", "top", "stock", "stamp"),
    "seven": ("heaven", "several", "eleven", "sever"),
    "eight": ("ape", "hate", "late", "bait", "weight"),
    "down": ("town", "gown", "dawn", "brown", "drown"),
    "six": ("sticks", "sits", "fix", "mix", "sick"),
    "forward": ("coward", "reward", "sword"),
    "cat": ("cap", "cut", "cot", "kit", "bat", "hat"),
    "right": ("ride", "rice", "light", "rate", "rise"),
    "visual": ("vision", "usual", "visit", "virtual"),
    "four": ("floor", "fork", "door", "core", "pour"),
    "wow": ("vow", "now", "wall", "wound"),
    "no": ("note", "knee", "gnome", "nor", "nap"),
    "nine": ("night", "mine", "line", "nice", "fine", "knife", "dine"),
    "off": ("often", "cough", "ox", "soft"),
    "three": ("free", "thee", "threw", "thread", "freeze", "thrill"),
    "left": ("lift", "loft", "lest", "theft", "leaf"),
    "marvin": ("marble", "martin", "margin", "marvel", "carving"),
    "yes": ("yet", "yell", "mess", "yeast", "chess"),
    "up": ("cup", "hop", "app", "pop"),
    "sheila": ("shield", "sheet", "she", "shelter"),
    "happy": ("hippie", "poppy", "happen", "hobby", "nappy"),
    "bird": ("board", "word", "third", "beard", "burst"),
    "go": ("goat", "goal", "grow", "glow", "ghost", "so"),
    "one": ("wine", "run", "gun", "sun", "done", "when"),
}

# Everyday words, none close to a keyword.
# fmt: off
GENERAL_WORDS: tuple[str, ...] = (
    "apple", "banana", "orange", "lemon", "water", "bottle", "table", "chair", "window",
    "garden", "kitchen", "paper", "pencil", "letter", "number", "people", "money", "family",
    "animal", "monkey", "tiger", "lion", "rabbit", "turtle", "camera", "doctor", "river",
    "mountain", "ocean", "island", "village", "summer", "winter", "autumn", "pocket", "rocket",
    "planet", "silver", "purple", "yellow", "green", "blue", "black", "white", "music",
    "morning", "evening", "hello", "please", "thanks", "sorry", "maybe", "never", "always",
    "open", "close", "start", "begin", "finish", "pause", "play", "next", "again", "later",
    "cheese", "butter", "sugar", "salt", "pepper", "chicken", "fish", "sheep", "duck", "frog",
    "snake", "spider", "flower", "grass", "cloud", "rain", "thunder", "wind", "sky", "star",
    "moon", "earth", "metal", "glass", "wood", "engine", "wheel", "truck", "train", "plane",
    "boat", "ship", "bicycle", "bridge", "market", "school", "student", "teacher", "lesson",
    "question", "answer", "problem", "idea", "story", "picture", "movie", "phone", "screen",
    "keyboard", "printer", "dollar", "minute", "hour", "week", "month", "year", "birthday",
    "party", "dinner", "lunch", "breakfast", "pizza", "salad", "soup", "milk", "juice",
    "soap", "towel", "mirror", "pillow", "blanket", "jacket", "shirt", "glove", "scarf",
    "umbrella", "basket", "bucket", "candle", "ladder", "hammer", "needle", "magnet",
    "puzzle", "robot", "dragon", "castle", "kingdom", "captain", "pirate", "soldier",
    "farmer", "baker", "dancer", "singer", "lawyer", "nurse", "police", "hospital",
    "library", "museum", "circus", "jungle", "desert", "valley", "canyon", "beach", "harbor",
    "garage", "cellar", "attic", "balcony", "elevator", "ticket", "airport", "station",
    "tunnel", "highway", "corner", "circle", "square", "triangle", "dozen", "half", "quarter",
    "double", "single", "simple", "quiet", "loud", "quick", "slow", "early", "angry", "tired",
    "hungry", "thirsty", "funny", "lucky", "pretty", "clean", "dirty", "empty", "heavy",
    "dark", "warm", "cold", "hot", "cool", "hard", "sweet", "sour", "bitter", "fresh",
    "twenty", "thirty", "hundred", "thousand", "million", "twelve", "ten", "fifty", "thirteen",
    "computer", "weather", "travel", "holiday", "language", "science", "history", "pumpkin",
    "penguin", "giraffe", "elephant", "dolphin", "parrot", "button", "cookie", "carpet",
)
# fmt: on


def _unique(words: list[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for word in words:
        seen.setdefault(word, None)
    return tuple(seen)


NEAR_MISS_WORDS: tuple[str, ...] = _unique([w for ws in NEAR_MISSES.values() for w in ws])
"""Every near-miss word once, in keyword order."""

UNKNOWN_WORDS: tuple[str, ...] = _unique([*NEAR_MISS_WORDS, *GENERAL_WORDS])
"""All words for ``_unknown_``: the near misses first, then the everyday words."""


def near_misses_for(keywords: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The near-miss words of the given keywords, each once."""
    return _unique([w for k in keywords for w in NEAR_MISSES.get(k, ())])
