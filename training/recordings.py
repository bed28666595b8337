"""``lmukws data recordings``: real recorded speech from Debian packages, as a prepared folder.

Four sources, each a Debian package set (``scripts/install-speech-data.sh`` installs them):

- ``kajongg``: 4 English voices (male1, male2, female1, female2), 42 clips each. The tile clips
  are two-word phrases, the keyword last ("bamboo one", "character five", "circle nine";
  checked with an ASR), so they are ``phrase`` rows labelled with their digit; "no choice" is a
  ``phrase`` labelled ``no``; winds, dragons, pung/chow/kong and calls are ``_unknown_``. Each
  keyword phrase is also force-aligned to its transcript (:func:`align_pcm`) and, where the
  alignment passes the sanity rule, its keyword (the digit, "no") with :data:`CUT_PAD_S`
  on each side is cut into a ``keyword`` row of its own (:func:`cut_keywords`). The
  German voices (``voices/de``) are skipped: their clips are German number words, many of them
  cognates of English keywords (drei, sechs, sieben, acht, neun), so neither clean positives
  nor clean negatives.
- ``tuxpaint`` (tuxpaint-stamps-default): English digits 0-9 in two voices (``N.ogg``, 11 kHz,
  and ``N_en_GB.ogg``) as ``keyword`` rows, the en_GB letter names as ``word`` rows, the English
  stamp descriptions ("A dog.") as ``phrase`` rows, the spoken descriptions in 12 other
  languages as ``speech``, German and Hebrew (dreidel) letter names as ``word`` and the stamp
  sounds as ``nonspeech``. Transcripts come from each stamp's ``.txt`` (first line English,
  then ``<lang>.utf8=...``). Number words in other languages are dropped (cognates of the
  English digits), and so is every description whose transcript says a keyword.
- ``hedgewars`` (hedgewars-data): short exclamations of 15 voice packs, ``speech`` for
  training; a clip whose file name says a keyword or near-homophone ("Nooo", "Yessir",
  "Enemydown", "Thisoneismine") is dropped.
- ``uqm`` (uqm-voice + uqm-content, Debian non-free, CC BY-NC-SA): English voice acting, for
  evaluation only. Only the 14 sets in :data:`UQM_SETS` are opened; the other 13
  (:data:`UQM_RESERVED_SETS`) are reserved for independent evaluation and never read. The
  transcript of a set is the one the game uses with the voice pack: the addon's
  ``3dovoice/<set>/<set>.txt`` where present, else ``base/comm/<set>/<set>.txt``; a line
  ``#(NAME) <set>-NNN.ogg`` starts each line's text. Every line is force-aligned to its
  transcript (pocketsphinx, :func:`align_pcm`; alien names spelled by espeak-ng) and each word
  that says a keyword or near-homophone becomes an excluded span, the word padded by
  :data:`EXCLUDE_PAD_S` on each side (manifest column ``exclude``, :attr:`Recording.exclude`):
  the stream evaluator scores neither detections there nor that time. A line whose alignment
  fails or fails the sanity rule (:func:`check_alignment`) keeps the old rule: kept, with
  nothing excluded, only if its whole transcript is keyword-free.

The sample sounds of alsa-utils and asterisk-core-sounds are reserved too; nothing here reads
them.

Rows: ``kind`` is ``keyword`` (an isolated keyword), ``word`` (an isolated non-keyword word),
``phrase`` (a short English phrase: labelled with its keyword if it says one as a plain word,
else ``_unknown_``), ``speech`` (keyword-free speech) or ``nonspeech`` (sound effects, labelled
``_silence_``: Speech Commands' background noise is ``_silence_`` too, the class with nothing to
detect). ``use`` is ``dev`` (the English keyword clips and their non-keyword words: kajongg,
tuxpaint's English digit voices and letters, tuxpaint's English keyword phrases), ``train``
(negatives that may train or calibrate) or ``eval`` (uqm; never train or calibrate on it:
:func:`read_recordings` refuses it unless ``allow_eval=True``). ``speaker`` names the recording
set (``kajongg:male1``, ``tuxpaint:fr``, ``hedgewars:Pirate``, ``uqm:commander``): a set may
be one person or several, and two sets may share a person.

Layout of ``DIR``: ``manifest.csv`` (:data:`MANIFEST_COLUMNS`, paths relative to ``DIR``;
``exclude`` holds a uqm line's excluded spans as ``"0.520-1.100;2.400-2.950"`` seconds, empty
elsewhere), ``recordings.json`` (package versions, counts and durations per source/kind/use,
what was dropped and why, the uqm alignment summary, the kajongg cuts per voice),
``alignments/uqm/<set>/<line>.json`` and ``alignments/kajongg/<voice>/<clip>.json`` (the
alignment cache: word timings keyed by a hash of the package file, the transcript and the
aligner, so a rebuild aligns only what changed and does not extract a line it drops again) and
``audio/<source>/...wav``: 16 kHz mono PCM16, DC removed, peak-normalised to -3 dBFS; isolated
words and phrases are trimmed of leading and trailing silence (a keyword cut keeps its pad).
Identical files (tuxpaint and hedgewars repeat many) are kept once. Deterministic; resumable
(valid outputs of the same generator version and package version are kept; cached alignments
are reused).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
import wave
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from training.keyword_text import keywords_in, words_of
from training.labels import SILENCE, UNKNOWN
from training.voices import (
    MIN_SPEECH_S,
    PEAK_DBFS,
    SAMPLE_RATE,
    highpass,
    is_valid_clip,
    normalize_peak,
    resample,
    trim,
    write_wav,
)

log = logging.getLogger(__name__)

__all__ = [
    "CUT_PAD_S",
    "EXCLUDE_PAD_S",
    "KINDS",
    "MANIFEST_COLUMNS",
    "SOURCES",
    "UQM_RESERVED_SETS",
    "UQM_SETS",
    "USES",
    "LineAlignment",
    "Recording",
    "RecordingsError",
    "WordTiming",
    "align_pcm",
    "build_recordings",
    "check_alignment",
    "cut_keywords",
    "cut_path",
    "format_spans",
    "keyword_cut",
    "keyword_spans",
    "merge_spans",
    "parse_spans",
    "read_recordings",
    "register_recordings_parser",
]

GENERATOR = "lmukws.training.recordings"
GENERATOR_VERSION = "1"
SOURCES: tuple[str, ...] = ("kajongg", "tuxpaint", "hedgewars", "uqm")
KINDS: tuple[str, ...] = ("keyword", "word", "phrase", "speech", "nonspeech")
USES: tuple[str, ...] = ("dev", "train", "eval")
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "source",
    "speaker",
    "language",
    "kind",
    "label",
    "text",
    "use",
    "seconds",
    "origin",
    "exclude",
)
INSTALL_HINT = "run scripts/install-speech-data.sh"
# Debian packages behind each source (all of them must be installed for the source).
PACKAGES: dict[str, tuple[str, ...]] = {
    "kajongg": ("kajongg",),
    "tuxpaint": ("tuxpaint-stamps-default",),
    "hedgewars": ("hedgewars-data",),
    "uqm": ("uqm-voice", "uqm-content"),
}
KAJONGG_DIR = "usr/share/kajongg/voices"
TUXPAINT_DIR = "usr/share/tuxpaint/stamps"
HEDGEWARS_DIR = "usr/share/games/hedgewars/Data/Sounds/voices"
UQM_VOICE_GLOB = "usr/share/games/uqm/content/addons/uqm-*-voice.uqm"
UQM_CONTENT_GLOB = "usr/share/games/uqm/content/packages/uqm-*-content.uqm"
# The uqm voice sets this project may use (evaluation only) ...
UQM_SETS: tuple[str, ...] = (
    "arilou",
    "commander",
    "ilwrath",
    "melnorme",
    "orz",
    "probe",
    "shofixti",
    "spathi",
    "supox",
    "talkingpet",
    "umgah",
    "utwig",
    "yehat",
    "zoqfotpik",
)
# ... and the ones reserved for independent evaluation: never opened (named for the record).
UQM_RESERVED_SETS: tuple[str, ...] = (
    "chmmr",
    "druuge",
    "kohrah",
    "mycon",
    "pkunk",
    "safeones",
    "slylandro",
    "starbase",
    "syreen",
    "thraddash",
    "urquan",
    "vux",
    "yehatrebels",
)
_ZIP_SEP = "!"  # origin of a zip member: "<zip path>!<member>"
_TRIMMED_KINDS = frozenset({"keyword", "word", "phrase"})
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# kajongg: what each English clip says (file stem -> text). The tile clips were checked with
# pocketsphinx: "b" bamboo, "c" character, "s" circle (the game's "stone"), digit last; "db"
# is heard as "blue dragon" (the game's white dragon).
_KAJONGG_SUITS = {"b": "bamboo", "c": "character", "s": "circle"}
_KAJONGG_TILES = {
    f"{k}{n}": f"{suit} {_DIGITS[n]}" for k, suit in _KAJONGG_SUITS.items() for n in range(1, 10)
}
KAJONGG_TEXT: dict[str, str] = {
    **_KAJONGG_TILES,
    "we": "east",
    "ws": "south",
    "ww": "west",
    "wn": "north",
    "db": "blue dragon",
    "dg": "green dragon",
    "dr": "red dragon",
    "pung": "pung",
    "chow": "chow",
    "kong": "kong",
    "mahjongg": "mahjongg",
    "nochoice": "no choice",
    "originalcall": "original call",
    "violatesoriginalcall": "violates original call",
    "dangerousgame": "dangerous game",
}  # fmt: skip

# tuxpaint: locale suffixes of localised stamp sounds and descriptions.
_TUX_DESC = re.compile(r"(?P<stamp>.+)_desc(?:_(?P<lang>[a-z]{2}))?")
_TUX_LOCALE = re.compile(r"[a-z]{2}(?:_[A-Za-z]{2})?")
_TUX_STAMP_FILES = (".png", ".svg", ".txt")
_GERMAN_LETTERS = {
    "a_with_umlaut": "ä",
    "o_with_umlaut": "ö",
    "u_with_umlaut": "ü",
    "ss_eszett": "ß",
}

# hedgewars: what each clip's file name (event) says, for the keyword check; digits stripped.
HEDGEWARS_TEXT: dict[str, str] = {
    "Amazing": "amazing", "Boring": "boring", "Brilliant": "brilliant", "Bugger": "bugger",
    "Byebye": "bye bye", "Comeonthen": "come on then", "Coward": "coward",
    "Cutitout": "cut it out", "Drat": "drat", "Enemydown": "enemy down",
    "Excellent": "excellent", "Fire": "fire", "Firepunch": "fire punch",
    "Firstblood": "first blood", "Flawless": "flawless", "Flyaway": "fly away",
    "Gonnagetyou": "gonna get you", "Grenade": "grenade", "Hello": "hello", "Hmm": "hmm",
    "Hurry": "hurry", "Illgetyou": "I'll get you", "Incoming": "incoming", "Jump": "jump",
    "Justyouwait": "just you wait", "Kamikaze": "kamikaze", "Laugh": "laugh",
    "Leavemealone": "leave me alone", "Melon": "melon", "Missed": "missed", "Nooo": "nooo",
    "Nutter": "nutter", "Ohdear": "oh dear", "Ooff": "ooff", "Oops": "oops", "Ouch": "ouch",
    "Ow": "ow", "PoisonCough": "poison cough", "PoisonMoan": "poison moan",
    "Reinforcements": "reinforcements", "Revenge": "revenge", "Runaway": "run away",
    "Sameteam": "same team", "Solong": "so long", "Stupid": "stupid", "Takecover": "take cover",
    "Thisoneismine": "this one is mine", "Traitor": "traitor", "Uh-oh": "uh oh",
    "Victory": "victory", "Watchit": "watch it", "Watchthis": "watch this",
    "Whatthe": "what the", "Yessir": "yes sir", "Youllregretthat": "you'll regret that",
}  # fmt: skip
# Drawn-out spellings of keywords that the word filter does not know ("nooo" ~ "no").
DRAWN_OUT: dict[str, str] = {"nooo": "no", "noooo": "no", "yesss": "yes", "yess": "yes"}
_PACK_LANGUAGE = {"es": "es", "pl": "pl", "ru": "ru", "uk": "uk"}  # voice pack suffix -> language


class RecordingsError(RuntimeError):
    """The recordings cannot be prepared (a package missing, a bad request); message for users."""


class SilentAudioError(RecordingsError):
    """A file holds no audible sound (tuxpaint ships a few silent stamp sounds)."""


@dataclass(frozen=True)
class Recording:
    """One extracted clip; ``path`` is absolute, ``origin`` the package file it came from."""

    path: Path
    source: str
    speaker: str
    language: str
    kind: str
    label: str
    text: str
    use: str
    seconds: float
    origin: str
    #: spans (seconds from the clip's start) not to score: words that say a keyword (uqm)
    exclude: tuple[tuple[float, float], ...] = ()

    @property
    def excluded_seconds(self) -> float:
        """Total duration of :attr:`exclude`."""
        return sum(e - s for s, e in self.exclude)

    @property
    def keyword_free_seconds(self) -> float:
        """The duration false alarms are counted over: the clip minus its excluded spans."""
        return max(0.0, self.seconds - self.excluded_seconds)


@dataclass(frozen=True)
class Item:
    """One clip to extract: ``path`` relative to the output folder, ``origin`` relative to the
    package root (``<zip>!<member>`` for a member of a zip)."""

    path: str
    source: str
    speaker: str
    language: str
    kind: str
    label: str
    text: str
    use: str
    origin: str
    #: keywords the transcript says (uqm: the fallback rule when the alignment is unusable)
    keywords: str = ""
    #: the transcript to align (uqm lines, kajongg keyword phrases; "" when there is none or
    #: the line cannot be aligned, see ``align_error``)
    align_text: str = ""
    align_error: str = ""


@dataclass
class SourcePlan:
    """What one source contributes: items to extract, items dropped (with why), notes."""

    items: list[Item] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)

    def drop(self, origin: str, reason: str, text: str = "", **extra: str) -> None:
        """Record that ``origin`` is left out and why."""
        self.dropped.append({"origin": origin, "reason": reason, "text": text[:300], **extra})


# ----------------------------------------------------------------------------- text rules


def classify_english(text: str) -> tuple[str, str] | None:
    """(kind, label) of an isolated English utterance, or None when it is ambiguous.

    A text that says exactly one keyword, as a plain word, is that keyword's ``keyword`` (alone)
    or ``phrase`` row; a keyword-free text is ``word`` (one word) or ``phrase``, ``_unknown_``.
    A keyword heard only through a homophone or compound ("A blackbird.") or several keywords
    make the clip neither a clean positive nor a clean negative: None.
    """
    words = words_of(text)
    found = keywords_in(text)
    if not found:
        return ("word" if len(words) == 1 else "phrase"), UNKNOWN
    if len(found) == 1 and found[0] in words:
        return ("keyword" if words == [found[0]] else "phrase"), found[0]
    return None


def says_keyword(text: str) -> list[str]:
    """Keywords a text says, counting drawn-out spellings ("Nooo", "yesss") as the keyword."""
    words = words_of(text)
    squeezed = [re.sub(r"([a-z])\1{2,}", r"\1", w) for w in words]
    extra = [DRAWN_OUT[w] for w in words if w in DRAWN_OUT]
    return keywords_in(" ".join([*words, *squeezed, *extra]))


# ----------------------------------------------------------------------------- packages


def package_version(package: str, root: Path = Path("/")) -> str | None:
    """The installed version of a Debian package (``dpkg-query``), or None."""
    if shutil.which("dpkg-query") is None:
        return None
    cmd = ["dpkg-query", "-W", "-f=${Status}\t${Version}", package]
    if root.resolve() != Path("/"):
        admin = root / "var/lib/dpkg"
        if not admin.is_dir():
            return None
        cmd.insert(1, f"--admindir={admin}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    status, _, version = out.stdout.partition("\t")
    if out.returncode != 0 or "install ok installed" not in status:
        return None
    return version.strip() or None


def _uqm_zips(root: Path) -> tuple[Path | None, Path | None]:
    voice = sorted(root.glob(UQM_VOICE_GLOB))
    content = sorted(root.glob(UQM_CONTENT_GLOB))
    return (voice[-1] if voice else None), (content[-1] if content else None)


def missing_packages(source: str, root: Path) -> list[str]:
    """The packages of ``source`` whose files are not under ``root`` (empty: usable)."""
    if source == "kajongg":
        return [] if (root / KAJONGG_DIR).is_dir() else ["kajongg"]
    if source == "tuxpaint":
        return [] if (root / TUXPAINT_DIR).is_dir() else ["tuxpaint-stamps-default"]
    if source == "hedgewars":
        return [] if (root / HEDGEWARS_DIR).is_dir() else ["hedgewars-data"]
    if source == "uqm":
        voice, content = _uqm_zips(root)
        return [p for p, z in (("uqm-voice", voice), ("uqm-content", content)) if z is None]
    raise RecordingsError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")


# ----------------------------------------------------------------------------- planning


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _stem(path: Path) -> str:
    """File name without its (possibly repeated) ``.ogg`` ("x_desc_da.ogg.ogg" -> "x_desc_da")."""
    name = path.name
    while name.lower().endswith(".ogg"):
        name = name[:-4]
    return name


def plan_kajongg(root: Path) -> SourcePlan:
    """The 4 English kajongg voices (every clip ``dev``); the German voices are skipped."""
    plan = SourcePlan()
    base = root / KAJONGG_DIR
    voices = sorted(d for d in base.iterdir() if d.is_dir() and d.name != "de")
    german = (
        sorted(d.name for d in (base / "de").iterdir() if d.is_dir())
        if (base / "de").is_dir()
        else []
    )
    plan.notes["voices"] = [v.name for v in voices]
    plan.notes["skipped_voices"] = {
        f"de/{v}": "German number words (drei, sechs, sieben, acht, neun ...) are cognates of "
        "English keywords: neither clean positives nor clean negatives"
        for v in german
    }
    for voice in voices:
        for ogg in sorted(voice.glob("*.ogg")):
            stem = _stem(ogg)
            text = KAJONGG_TEXT.get(stem)
            if text is None:
                plan.drop(_rel(ogg, root), "unknown clip (no transcript)")
                continue
            kind_label = classify_english(text)
            if kind_label is None:
                plan.drop(_rel(ogg, root), "keyword only as a homophone or compound", text)
                continue
            kind, label = kind_label
            cut = kind == "phrase" and label != UNKNOWN  # its keyword is cut out after alignment
            plan.items.append(
                Item(
                    path=f"audio/kajongg/{voice.name}/{stem}.wav",
                    source="kajongg",
                    speaker=f"kajongg:{voice.name}",
                    language="en",
                    kind=kind,
                    label=label,
                    text=text,
                    use="dev",
                    origin=_rel(ogg, root),
                    align_text=text if cut else "",
                )
            )
    return plan


def _stamp_exists(directory: Path, stamp: str) -> bool:
    return any((directory / f"{stamp}{ext}").exists() for ext in _TUX_STAMP_FILES)


@lru_cache(maxsize=4096)
def _stamp_texts(txt: Path) -> dict[str, str]:
    """A stamp's descriptions: ``""`` -> the English first line, ``<locale>`` -> translation."""
    if not txt.is_file():
        return {}
    out: dict[str, str] = {}
    lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if sep and key.endswith(".utf8"):
            out[key[: -len(".utf8")]] = value.strip()
        elif i == 0:
            out[""] = line.strip()
    return out


def _split_localised(directory: Path, stem: str) -> tuple[str, str] | None:
    """(stamp, locale) when ``stem`` is a stamp's sound in a locale ("0_zh_tw", "x_en_GB")."""
    if _stamp_exists(directory, stem):
        return None
    for i, char in enumerate(stem):
        if (
            char == "_"
            and _TUX_LOCALE.fullmatch(stem[i + 1 :])
            and _stamp_exists(directory, stem[:i])
        ):
            return stem[:i], stem[i + 1 :]
    return None


def _digit_stamp(rel_dir: str, stamp: str) -> int | None:
    """The digit of a ``symbols/math/N`` stamp, else None."""
    if rel_dir.endswith("symbols/math") and len(stamp) == 1 and stamp.isdigit():
        return int(stamp)
    return None


def plan_tuxpaint(root: Path) -> SourcePlan:
    """tuxpaint-stamps-default: digits, letters, descriptions in 13 languages, sound effects."""
    plan = SourcePlan()
    base = root / TUXPAINT_DIR
    for ogg in sorted(base.rglob("*.ogg")):
        if not ogg.is_file():
            continue
        stem = _stem(ogg)
        directory = ogg.parent
        rel_dir = _rel(directory, root)
        origin = _rel(ogg, root)
        out_rel = f"audio/tuxpaint/{_rel(directory, base)}/{stem}.wav".replace("/./", "/")
        common = {"path": out_rel, "source": "tuxpaint", "origin": origin}

        desc = _TUX_DESC.fullmatch(stem)
        localised = None if desc else _split_localised(directory, stem)
        if desc:  # a spoken description: English (no suffix) or another language
            stamp, lang = desc["stamp"], desc["lang"]
            texts = _stamp_texts(directory / f"{stamp}.txt")
            if lang is None:
                text = texts.get("", "")
                if not text:
                    plan.drop(origin, "no transcript (English: cannot check for keywords)")
                    continue
                kind_label = classify_english(text)
                if kind_label is None:
                    plan.drop(origin, "keyword only as a homophone or compound", text)
                    continue
                kind, label = kind_label
                use = "dev" if label != UNKNOWN else "train"
                plan.items.append(
                    Item(**common, speaker="tuxpaint:en-desc", language="en", kind=kind,
                         label=label, text=text, use=use)
                )  # fmt: skip
                continue
            if _digit_stamp(rel_dir, stamp) is not None:
                plan.drop(origin, "number word in another language (cognate of a keyword)")
                continue
            text = texts.get(lang, "")
            found = keywords_in(text) if text else []
            if found:
                plan.drop(origin, "transcript says a keyword", text, keywords=",".join(found))
                continue
            plan.items.append(
                Item(**common, speaker=f"tuxpaint:{lang}", language=lang, kind="speech",
                     label=UNKNOWN, text=text, use="train")
            )  # fmt: skip
            continue
        if localised:  # a stamp's sound in one locale: digits and letters here
            stamp, lang = localised
            digit = _digit_stamp(rel_dir, stamp)
            if lang == "en_GB":
                if digit is not None:
                    word = _DIGITS[digit]
                    plan.items.append(
                        Item(**common, speaker="tuxpaint:en_GB", language="en", kind="keyword",
                             label=word, text=word, use="dev")
                    )  # fmt: skip
                    continue
                if "/alphabets/english/" in f"/{rel_dir}/":
                    letter = stamp.split("_", 1)[0].lower()
                    plan.items.append(
                        Item(**common, speaker="tuxpaint:en_GB", language="en", kind="word",
                             label=UNKNOWN, text=letter, use="dev")
                    )  # fmt: skip
                    continue
                plan.drop(origin, "localised English sound of an unknown kind")
                continue
            if digit is not None:
                plan.drop(origin, "number word in another language (cognate of a keyword)")
                continue
            plan.drop(origin, "localised sound without a transcript")
            continue
        # a stamp's own sound: the English digits, letter names, or a sound effect
        digit = _digit_stamp(rel_dir, stem)
        if digit is not None:
            word = _DIGITS[digit]
            plan.items.append(
                Item(**common, speaker="tuxpaint:en", language="en", kind="keyword", label=word,
                     text=word, use="dev")
            )  # fmt: skip
            continue
        if "/alphabets/german/" in f"/{rel_dir}/":
            key = re.sub(r"_(filled|outline)$", "", stem)
            letter = _GERMAN_LETTERS.get(key.lower(), key)
            letter = letter.upper() if key[:1].isupper() else letter
            plan.items.append(
                Item(**common, speaker="tuxpaint:de-letters", language="de", kind="word",
                     label=UNKNOWN, text=letter, use="train")
            )  # fmt: skip
            continue
        if "/hanukkah/" in f"/{rel_dir}/" and stem.startswith("dreydl-"):
            letter = stem.split("-", 1)[1]
            plan.items.append(
                Item(**common, speaker="tuxpaint:dreidel", language="he", kind="word",
                     label=UNKNOWN, text=letter, use="train")
            )  # fmt: skip
            continue
        stamp_text = _stamp_texts(directory / f"{stem}.txt").get("", "")
        found = [k for k in keywords_in(stamp_text) if k in words_of(stamp_text)]
        if found:  # "Happy!", "A dog.": the sound may say it (a bark would not, but cheaply)
            plan.drop(origin, "the stamp's text says a keyword; its sound might", stamp_text)
            continue
        plan.items.append(
            Item(**common, speaker="tuxpaint:sfx", language="", kind="nonspeech", label=SILENCE,
                 text="", use="train")
        )  # fmt: skip
    return plan


def hedgewars_text(stem: str) -> str:
    """What a hedgewars clip says, from its file name ("Firepunch3" -> "fire punch")."""
    event = stem.rstrip("0123456789")
    if event in HEDGEWARS_TEXT:
        return HEDGEWARS_TEXT[event]
    return " ".join(re.findall(r"[A-Z]?[a-z']+|[A-Z]+(?![a-z])", event)).lower() or event.lower()


def plan_hedgewars(root: Path) -> SourcePlan:
    """hedgewars-data voice packs: exclamations for training, minus those saying a keyword."""
    plan = SourcePlan()
    base = root / HEDGEWARS_DIR
    for pack in sorted(d for d in base.iterdir() if d.is_dir()):
        suffix = pack.name.rsplit("_", 1)[1] if "_" in pack.name else ""
        language = _PACK_LANGUAGE.get(suffix, "en")
        for ogg in sorted(pack.glob("*.ogg")):
            stem = _stem(ogg)
            text = hedgewars_text(stem)
            found = says_keyword(text)
            if found:
                plan.drop(
                    _rel(ogg, root), "file name says a keyword", text, keywords=",".join(found)
                )
                continue
            plan.items.append(
                Item(
                    path=f"audio/hedgewars/{pack.name}/{stem}.wav",
                    source="hedgewars",
                    speaker=f"hedgewars:{pack.name}",
                    language=language,
                    kind="speech",
                    label=UNKNOWN,
                    text=text,
                    use="train",
                    origin=_rel(ogg, root),
                )
            )
    return plan


def uqm_set_of(member: str) -> str | None:
    """The voice set of a zip member (``3dovoice/<set>/...`` or ``base/comm/<set>/...``)."""
    parts = member.split("/")
    if len(parts) >= 3 and parts[0] == "3dovoice":
        return parts[1]
    if len(parts) >= 4 and parts[:2] == ["base", "comm"]:
        return parts[2]
    return None


def _check_allowed(member: str) -> None:
    if uqm_set_of(member) not in UQM_SETS:
        raise RecordingsError(f"refusing to read {member}: not one of the allowed uqm sets")


def _read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    _check_allowed(member)
    return zf.read(member)


def parse_uqm_transcript(text: str) -> list[tuple[str, str, str]]:
    """(name, ogg file, text) for every ``#(NAME) file.ogg`` entry (file may be empty)."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"#\((\w+)\)\s*(\S*)", line)
        if m:
            entries.append((m[1], m[2], []))
        elif entries:
            entries[-1][2].append(line.strip())
    return [(n, f, " ".join(t for t in lines if t).strip()) for n, f, lines in entries]


def plan_uqm(root: Path) -> SourcePlan:
    """uqm-voice lines of the 14 allowed sets, every one with audio and a transcript: ``eval``
    only. Whether a line is kept, and which of its spans are excluded, is decided after its
    alignment (:func:`_apply_alignments`)."""
    plan = SourcePlan()
    voice_zip, content_zip = _uqm_zips(root)
    assert voice_zip is not None and content_zip is not None
    per_set: dict[str, dict[str, int]] = {}
    with zipfile.ZipFile(voice_zip) as voice, zipfile.ZipFile(content_zip) as content:
        voice_names = set(voice.namelist())
        content_names = set(content.namelist())
        present = sorted({s for n in voice_names if (s := uqm_set_of(n))})
        plan.notes["reserved_sets_present_not_read"] = [s for s in present if s not in UQM_SETS]
        plan.notes["unknown_sets_not_read"] = [
            s for s in present if s not in UQM_SETS and s not in UQM_RESERVED_SETS
        ]
        transcripts: dict[str, str] = {}
        for name in UQM_SETS:
            stats = per_set.setdefault(name, Counter())
            addon, base = f"3dovoice/{name}/{name}.txt", f"base/comm/{name}/{name}.txt"
            if addon in voice_names:
                raw, transcripts[name] = _read_member(voice, addon), "addon"
            elif base in content_names:
                raw, transcripts[name] = _read_member(content, base), "base"
            else:
                transcripts[name] = "missing"
                log.warning("uqm set %s has no transcript; skipping it", name)
                continue
            by_file: dict[str, list[str]] = defaultdict(list)
            for _, ogg, text in parse_uqm_transcript(raw.decode("utf-8", errors="replace")):
                if ogg:
                    by_file[ogg].append(text)
            for ogg in sorted(by_file):
                member = f"3dovoice/{name}/{ogg}"
                origin = f"{_rel(voice_zip, root)}{_ZIP_SEP}{member}"
                texts = by_file[ogg]
                text = texts[0]
                if member not in voice_names:
                    stats["missing_audio"] += 1
                    plan.drop(
                        origin, "transcript names a file the voice pack lacks", text, set=name
                    )
                    continue
                if not text:
                    stats["no_transcript"] += 1
                    plan.drop(origin, "empty transcript", text, set=name)
                    continue
                found = sorted({k for t in texts for k in says_keyword(t)})
                several = len(set(texts)) > 1  # which one the actor read is unknown
                stats["lines"] += 1
                plan.items.append(
                    Item(
                        path=f"audio/uqm/{name}/{Path(ogg).stem}.wav",
                        source="uqm",
                        speaker=f"uqm:{name}",
                        language="en",
                        kind="speech",
                        label=UNKNOWN,
                        text=text,
                        use="eval",
                        origin=origin,
                        keywords=",".join(found),
                        align_text="" if several else text,
                        align_error="several different transcripts for one file" if several else "",
                    )
                )
            for member in sorted(n for n in voice_names if n.startswith(f"3dovoice/{name}/")):
                if member.endswith(".ogg") and Path(member).name not in by_file:
                    stats["no_transcript"] += 1
                    plan.drop(
                        f"{_rel(voice_zip, root)}{_ZIP_SEP}{member}", "no transcript", set=name
                    )
    plan.notes["transcripts"] = transcripts
    plan.notes["sets"] = {k: dict(v) for k, v in per_set.items()}
    plan.notes["license"] = "CC BY-NC-SA 2.5 (non-commercial): evaluation only"
    return plan


_PLANNERS = {
    "kajongg": plan_kajongg,
    "tuxpaint": plan_tuxpaint,
    "hedgewars": plan_hedgewars,
    "uqm": plan_uqm,
}


def _dedupe(plan: SourcePlan, root: Path) -> None:
    """Keep one item per identical source file; drop copies of dropped files too."""
    if not plan.items:
        return
    dropped_digests = {_digest(root, d["origin"]) for d in plan.dropped if "keyword" in d["reason"]}
    first: dict[str, str] = {}
    kept: list[Item] = []
    for item in plan.items:
        digest = _digest(root, item.origin)
        if digest in dropped_digests:
            plan.drop(item.origin, "same audio as a clip dropped for a keyword", item.text)
        elif digest in first:
            plan.drop(item.origin, "duplicate", item.text, of=first[digest])
        else:
            first[digest] = item.origin
            kept.append(item)
    plan.items = kept


def _digest(root: Path, origin: str) -> str:
    return hashlib.md5(_origin_bytes(root, origin)).hexdigest()


# ----------------------------------------------------------------------------- audio


@lru_cache(maxsize=4)
def _zip(path: str, pid: int) -> zipfile.ZipFile:
    """One open zip per process: a forked worker must not share the parent's file offset."""
    return zipfile.ZipFile(path)


def _origin_bytes(root: Path, origin: str) -> bytes:
    """The bytes of a package file or zip member (only allowed uqm sets are ever opened)."""
    if _ZIP_SEP in origin:
        zip_rel, member = origin.split(_ZIP_SEP, 1)
        return _read_member(_zip(str(root / zip_rel), os.getpid()), member)
    return (root / origin).read_bytes()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Float32 mono samples and their rate: soundfile (Vorbis, WAV, FLAC ...), else an external
    decoder (ffmpeg, oggdec or sox) if one is installed."""
    import soundfile as sf

    try:
        x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return x.mean(axis=1), int(rate)
    except (RuntimeError, TypeError, ValueError) as error:  # LibsndfileError is a RuntimeError
        problem = f"soundfile: {error}"
    for cmd in (
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "wav", "-acodec", "pcm_s16le", "pipe:1"],
        ["oggdec", "-Q", "-o", "-", "-"],
        ["sox", "-q", "-t", "ogg", "-", "-t", "wav", "-e", "signed", "-b", "16", "-"],
    ):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            run = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.SubprocessError) as error:
            problem += f"; {cmd[0]}: {error}"
            continue
        if run.returncode == 0 and run.stdout:
            x, rate = sf.read(io.BytesIO(run.stdout), dtype="float32", always_2d=True)
            return x.mean(axis=1), int(rate)
        problem += f"; {cmd[0]}: {run.stderr.decode(errors='replace').strip()[:200]}"
    raise RecordingsError(f"cannot decode audio ({problem})")


def process(x: np.ndarray, rate: int, kind: str) -> np.ndarray:
    """16 kHz, DC removed, trimmed (isolated words and phrases), peak-normalised to -3 dBFS."""
    y = highpass(resample(x.astype(np.float32), rate))
    if kind in _TRIMMED_KINDS:
        y = trim(y)
    if len(y) < MIN_SPEECH_S * SAMPLE_RATE or float(np.max(np.abs(y))) <= 1e-5:
        raise SilentAudioError(f"silent or shorter than {MIN_SPEECH_S:.2f} s")
    return normalize_peak(y)


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def _extract(task: tuple[str, str, str, str, str]) -> tuple[str, float | None, str | None]:
    """Worker: (root, out dir, item path, origin, kind) -> (path, seconds, error)."""
    root, out, rel, origin, kind = task
    try:
        x, rate = decode(_origin_bytes(Path(root), origin))
        y = process(x, rate, kind)
        write_wav(Path(out) / rel, y)
        return rel, len(y) / SAMPLE_RATE, None
    except (RecordingsError, OSError, ValueError, RuntimeError, zipfile.BadZipFile) as error:
        return rel, None, f"{type(error).__name__}: {error}"


def extract(
    root: Path,
    out: Path,
    items: Sequence[Item],
    *,
    reuse: set[str],
    jobs: int = 2,
    progress: bool = True,
) -> tuple[dict[str, float], dict[str, str]]:
    """Extract every item not already valid on disk; returns (path -> seconds, path -> error).

    ``reuse``: the sources whose existing outputs may be kept.
    """
    audio = out / "audio"
    if audio.is_dir():
        for stale in audio.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    todo = []
    for item in items:
        target = out / item.path
        if item.source in reuse and is_valid_clip(target):
            seconds[item.path] = _wav_seconds(target)
        else:
            todo.append((str(root), str(out), item.path, item.origin, item.kind))
    if seconds:
        log.info(
            "%d of %d clips already extracted; extracting %d", len(seconds), len(items), len(todo)
        )
    failed: dict[str, str] = {}
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), unit="clip", desc="recordings", disable=not progress, dynamic_ncols=True
    )
    try:
        if jobs <= 1 or len(todo) <= 1:
            results = map(_extract, todo)
            for rel, secs, error in results:
                _collect(rel, secs, error, seconds, failed)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                chunk = max(1, min(64, len(todo) // (8 * jobs)))
                for rel, secs, error in pool.map(_extract, todo, chunksize=chunk):
                    _collect(rel, secs, error, seconds, failed)
                    bar.update(1)
    finally:
        bar.close()
    return seconds, failed


def _collect(rel: str, secs: float | None, error: str | None, seconds: dict, failed: dict) -> None:
    if error is None and secs is not None:
        seconds[rel] = secs
    else:
        failed[rel] = error or "no audio"


# ----------------------------------------------------------------------------- alignment (uqm)

# What the keyword-span rule pads around a word that says a keyword, on each side (seconds).
EXCLUDE_PAD_S = 0.25
# The aligner: pocketsphinx's en-us acoustic model and CMU dictionary, forced alignment (no
# language model); words the dictionary lacks (alien names) are spelled by espeak-ng (IPA mapped
# to ARPABET). Up to four attempts per line (:func:`align_pcm`): the default beams, a
# half-second pad after the audio, wide beams, both; a line that none completes is not used.
ALIGNER_VERSION = "2"
ALIGN_WIDE_BEAMS = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}
ALIGN_PAD_S = 0.5
# (wide beams, padded) per attempt, in order: the first complete alignment is kept.
ALIGN_ATTEMPTS: tuple[tuple[bool, bool], ...] = (
    (False, False), (False, True), (True, False), (True, True)
)  # fmt: skip
# Sanity rule (:func:`check_alignment`): an alignment is used only if it places every word of
# the transcript, its words' mean acoustic score per frame (natural log, relative to the best
# senone of each frame) is at least ALIGN_MIN_SCORE, and its words cover at least
# ALIGN_MIN_COVERAGE of the line's audio. Chosen on the digit-free lines, each aligned to its
# own transcript and, as a control, to another line's transcript through the same attempts:
# the rule rejects the control alignments that come out complete and keeps most true ones;
# both tests are needed (score alone, or a lower score bound, lets controls through).
ALIGN_MIN_SCORE = -3.0
ALIGN_MIN_COVERAGE = 0.5
_FRAME_S = 0.01
_LOG_FLOOR = -745.0  # ln of the smallest double: a score that underflowed
_ALIGN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# espeak-ng's en-us IPA -> the ARPABET phones of the pocketsphinx en-us model (longest first).
_IPA_ARPABET: dict[str, str] = {
    "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY", "tʃ": "CH", "dʒ": "JH",
    "ɑ": "AA", "a": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɔ": "AO", "ɛ": "EH",
    "e": "EH", "ɚ": "ER", "ɜ": "ER", "ɪ": "IH", "ᵻ": "IH", "i": "IY", "o": "OW", "ʊ": "UH",
    "u": "UW", "b": "B", "d": "D", "ð": "DH", "f": "F", "ɡ": "G", "g": "G", "h": "HH", "k": "K",
    "l": "L", "ɫ": "L", "m": "M", "n": "N", "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R", "s": "S",
    "ʃ": "SH", "t": "T", "θ": "TH", "v": "V", "w": "W", "j": "Y", "z": "Z", "ʒ": "ZH",
    "ɾ": "T", "x": "K", "ç": "HH", "ʔ": "",
}  # fmt: skip
_IPA_KEYS = sorted(_IPA_ARPABET, key=len, reverse=True)
_IPA_IGNORED = re.compile(r"[ˈˌːˑ\s_\u0300-\u036f]")  # stress, length, separators, diacritics


@dataclass(frozen=True)
class WordTiming:
    """One aligned word: ``start``/``end`` in seconds of the line, ``score`` the mean acoustic
    score per frame (natural log, relative to each frame's best senone; 0 is a perfect match)."""

    word: str
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class LineAlignment:
    """A line's forced alignment: its words, or ``error`` (why there is no usable one)."""

    words: tuple[WordTiming, ...] = ()
    error: str = ""
    attempt: int = 0  # which of ALIGN_ATTEMPTS gave it (1-based; 0: none)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the cache file's content)."""
        return {
            "words": [[w.word, w.start, w.end, w.score] for w in self.words],
            "error": self.error,
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LineAlignment:
        """The alignment that :meth:`to_json` wrote."""
        words = tuple(
            WordTiming(str(w), float(s), float(e), float(c)) for w, s, e, c in data["words"]
        )
        return cls(words=words, error=str(data["error"]), attempt=int(data.get("attempt", 0)))


def alignment_words(text: str) -> list[str]:
    """The words of a transcript to align (lower case, hyphenated words split).

    Raises ValueError when the transcript cannot be aligned as written: digits (how "2418-B" or
    "1940's" was read is unknown) or no word at all.
    """
    if re.search(r"[0-9]", text):
        raise ValueError("digits in the transcript (how they were read is unknown)")
    words = _ALIGN_WORD.findall(text.lower())
    if not words:
        raise ValueError("no words in the transcript")
    return words


def ipa_to_arpabet(ipa: str) -> list[str]:
    """ARPABET phones of an espeak-ng IPA string (stress and length marks and language switches
    such as "(fr)" dropped)."""
    s = _IPA_IGNORED.sub("", re.sub(r"\([a-z-]+\)", "", ipa))
    phones: list[str] = []
    i = 0
    while i < len(s):
        for key in _IPA_KEYS:
            if s.startswith(key, i):
                if _IPA_ARPABET[key]:
                    phones.append(_IPA_ARPABET[key])
                i += len(key)
                break
        else:  # a symbol with no English phone: skipped
            i += 1
    return phones


@lru_cache(maxsize=4096)
def espeak_arpabet(word: str) -> tuple[str, ...]:
    """A pronunciation of ``word`` from espeak-ng (en-us), as ARPABET; empty if unavailable."""
    if shutil.which("espeak-ng") is None:
        return ()
    try:
        run = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "-v", "en-us", word],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(ipa_to_arpabet(run.stdout)) if run.returncode == 0 else ()


@lru_cache(maxsize=4)
def _decoder(pid: int, wide: bool) -> Any:
    """A pocketsphinx decoder for alignment (no language model), one per process and beam."""
    import pocketsphinx

    return pocketsphinx.Decoder(lm=None, loglevel="FATAL", **(ALIGN_WIDE_BEAMS if wide else {}))


def _try_align(decoder: Any, pcm: bytes, words: Sequence[str]) -> list[tuple[str, int, int, float]]:
    """One forced alignment: (word, first frame, last frame, log acoustic score) per word, or
    [] when the search found no path. Independent of what the decoder aligned before."""
    decoder.set_align_text(" ".join(words))
    with warnings.catch_warnings():  # "deprecated and unnecessary", yet without it the
        warnings.simplefilter("ignore", DeprecationWarning)  # front end carries state from
        decoder.start_stream()  # the previous line and timings depend on the order of lines
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return []
    return [
        (
            re.sub(r"\(\d+\)$", "", seg.word),  # "to(3)": the third pronunciation of "to"
            seg.start_frame,
            seg.end_frame,
            math.log(seg.ascore) if seg.ascore > 0 else _LOG_FLOOR,
        )
        for seg in decoder.seg()
        if not seg.word.startswith(("<", "[", "+"))  # silence and fillers
    ]


def align_pcm(pcm: bytes, words: Sequence[str]) -> LineAlignment:
    """Force-align ``words`` to 16 kHz mono PCM16 ``pcm`` with pocketsphinx.

    An alignment counts only when it places every word, in order. pocketsphinx often stops a
    word or two short (the search's best path at the last frame is not in the final state), and
    which setting avoids that varies by line, so four are tried in turn, the first complete one
    kept (:data:`ALIGN_ATTEMPTS`): default or wide beams, the audio as it is or followed by half
    a second of near-silence (lines end right after their last word).
    """
    for word in dict.fromkeys(words):
        for wide in (False, True):
            decoder = _decoder(os.getpid(), wide)
            if decoder.lookup_word(word) is None:
                phones = espeak_arpabet(word)
                if not phones:
                    return LineAlignment(error=f"no pronunciation ({word!r})")
                decoder.add_word(word, " ".join(phones), True)
    seconds = len(pcm) // 2 / SAMPLE_RATE
    rng = np.random.default_rng(0)
    pad = (rng.standard_normal(round(ALIGN_PAD_S * SAMPLE_RATE)) * 3).astype("<i2").tobytes()
    placed = 0
    for attempt, (wide, padded) in enumerate(ALIGN_ATTEMPTS, start=1):
        try:
            segs = _try_align(_decoder(os.getpid(), wide), pcm + pad if padded else pcm, words)
        except RuntimeError as error:
            return LineAlignment(error=f"pocketsphinx: {error}")
        if [w for w, *_ in segs] != list(words):
            placed = max(placed, len(segs))
            continue
        timings = tuple(
            WordTiming(
                word,
                round(min(first * _FRAME_S, seconds), 3),
                round(min((last + 1) * _FRAME_S, seconds), 3),
                round(score / (last - first + 1), 3),
            )
            for word, first, last, score in segs
        )
        return LineAlignment(words=timings, attempt=attempt)
    if placed:
        return LineAlignment(error=f"incomplete alignment (at most {placed} of {len(words)} words)")
    return LineAlignment(error="no alignment (the search found no path)")


def check_alignment(alignment: LineAlignment, seconds: float) -> str:
    """Why an alignment is not usable ("" when it is): an error, a mean word score per frame
    under :data:`ALIGN_MIN_SCORE`, or words covering under :data:`ALIGN_MIN_COVERAGE` of the
    line (a transcript squeezed into part of the audio)."""
    if alignment.error:
        return alignment.error
    frames = [max(w.end - w.start, _FRAME_S) for w in alignment.words]
    if not frames or seconds <= 0:
        return "no words aligned"
    score = sum(w.score * f for w, f in zip(alignment.words, frames, strict=True)) / sum(frames)
    if score < ALIGN_MIN_SCORE:
        return f"poor acoustic score ({score:.2f} < {ALIGN_MIN_SCORE} per frame)"
    coverage = sum(frames) / seconds
    if coverage < ALIGN_MIN_COVERAGE:
        return f"low word coverage ({coverage:.0%} of the audio < {ALIGN_MIN_COVERAGE:.0%})"
    return ""


def merge_spans(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted union of ``spans``: overlapping or touching spans become one."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def keyword_spans(
    words: Iterable[WordTiming], seconds: float, pad: float = EXCLUDE_PAD_S
) -> list[tuple[float, float]]:
    """Excluded spans of a line: every word that says a keyword or near-homophone
    (:func:`says_keyword`), padded by ``pad`` on each side, clipped to [0, ``seconds``],
    merged where they overlap or touch; rounded outwards to the millisecond."""
    spans = [
        (max(0.0, w.start - pad), min(seconds, w.end + pad)) for w in words if says_keyword(w.word)
    ]
    return [
        (math.floor(s * 1000 + 1e-6) / 1000, min(seconds, math.ceil(e * 1000 - 1e-6) / 1000))
        for s, e in merge_spans(spans)
    ]


def format_spans(spans: Iterable[tuple[float, float]]) -> str:
    """``"0.520-1.100;2.400-2.950"`` (the manifest's ``exclude``); "" for none."""
    return ";".join(f"{s:.3f}-{e:.3f}" for s, e in spans)


def parse_spans(text: str) -> tuple[tuple[float, float], ...]:
    """The spans of :func:`format_spans`'s text (ValueError on a malformed one)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        start, sep, end = part.partition("-")
        if not sep or float(start) > float(end):
            raise ValueError(f"bad excluded span {part!r}")
        out.append((float(start), float(end)))
    return tuple(out)


def _aligner_id() -> str:
    """What an alignment depends on besides audio and text (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ps_version = version("pocketsphinx")
    except PackageNotFoundError:
        ps_version = "missing"
    espeak = "espeak-ng" if shutil.which("espeak-ng") else "no-espeak"
    return f"{ALIGNER_VERSION}/pocketsphinx-{ps_version}/{espeak}"


def _cache_key(root: Path, item: Item, aligner: str) -> str:
    """What a line's alignment depends on: the aligner, the audio processing, the package
    file's bytes and the transcript."""
    parts = (aligner, GENERATOR_VERSION, _digest(root, item.origin), item.align_text)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cache_path(out: Path, rel: str) -> Path:
    return out / "alignments" / Path(rel).relative_to("audio").with_suffix(".json")


def plan_alignments(
    root: Path, out: Path, items: Sequence[Item]
) -> tuple[dict[str, LineAlignment], dict[str, float], dict[str, str]]:
    """Before extraction: (path -> alignment, path -> the line's seconds) of the uqm lines whose
    alignment is cached (``out/alignments``) or cannot be made, and path -> cache key of the
    lines still to align. Only the allowed sets are ever looked at."""
    for item in items:
        if uqm_set_of(item.origin.split(_ZIP_SEP, 1)[-1]) not in UQM_SETS:  # never a reserved set
            raise RecordingsError(f"refusing to align {item.origin}: not an allowed uqm set")
    if not _have_pocketsphinx():
        log.warning("pocketsphinx is not installed (pip install -e '.[dev]'): uqm lines are "
                    "not aligned; lines that say a keyword are dropped whole")  # fmt: skip
        return (
            {it.path: LineAlignment(error="pocketsphinx is not installed") for it in items},
            {},
            {},
        )
    return _cached_alignments(root, out, items)


def _have_pocketsphinx() -> bool:
    """Whether the aligner can run (``pocketsphinx`` imports)."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def _cached_alignments(
    root: Path, out: Path, items: Sequence[Item]
) -> tuple[dict[str, LineAlignment], dict[str, float], dict[str, str]]:
    """(path -> alignment, path -> seconds) of the items whose alignment is cached in
    ``out/alignments`` under their current key or cannot be made (no ``align_text``), and
    path -> cache key of the items still to align."""
    aligner = _aligner_id()
    done: dict[str, LineAlignment] = {}
    seconds: dict[str, float] = {}
    keys: dict[str, str] = {}
    for item in items:
        if not item.align_text:
            done[item.path] = LineAlignment(error=item.align_error or "no transcript")
            continue
        key = _cache_key(root, item, aligner)
        try:
            data = json.loads(_cache_path(out, item.path).read_text(encoding="utf-8"))
            if data.get("key") == key:
                done[item.path] = LineAlignment.from_json(data)
                seconds[item.path] = float(data["seconds"])
                continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        keys[item.path] = key
    return done, seconds, keys


def _align_task(task: tuple[str, str]) -> dict[str, Any]:
    """Worker: (wav path, transcript) -> the alignment as JSON, with the line's duration and
    the compute time."""
    path, text = task
    started = time.monotonic()
    seconds = 0.0
    try:
        with wave.open(path, "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise ValueError("not 16 kHz mono PCM16")
            pcm = w.readframes(w.getnframes())
            seconds = w.getnframes() / SAMPLE_RATE
        result = align_pcm(pcm, alignment_words(text))
    except (ValueError, OSError, wave.Error) as error:
        result = LineAlignment(error=str(error))
    return {**result.to_json(), "seconds": seconds, "compute_seconds": time.monotonic() - started}


def align_items(
    out: Path,
    items: Sequence[Item],
    keys: dict[str, str],
    *,
    jobs: int = 2,
    progress: bool = True,
) -> tuple[dict[str, LineAlignment], dict[str, Any]]:
    """Align extracted uqm lines (at most ``jobs`` processes), each written to the cache under
    ``keys[path]`` as soon as it is done; returns (path -> alignment, a summary: lines, audio
    hours and compute time)."""
    started = time.monotonic()
    results: dict[str, LineAlignment] = {}
    compute = audio_s = 0.0
    aligner = _aligner_id()

    def store(item: Item, data: dict[str, Any]) -> None:
        nonlocal compute, audio_s
        compute += float(data.pop("compute_seconds"))
        audio_s += float(data["seconds"])
        results[item.path] = LineAlignment.from_json(data)
        path = _cache_path(out, item.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        record = {"key": keys[item.path], "aligner": aligner, "text": item.align_text, **data}
        tmp.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)  # written as each line finishes: an interrupted build resumes here

    from tqdm import tqdm

    tasks = [(str(out / item.path), item.align_text) for item in items]
    bar = tqdm(total=len(tasks), unit="line", desc="align", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    try:
        if jobs <= 1 or len(tasks) <= 1:
            for item, data in zip(items, map(_align_task, tasks), strict=True):
                store(item, data)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                done = pool.map(_align_task, tasks, chunksize=4)
                for item, data in zip(items, done, strict=True):
                    store(item, data)
                    bar.update(1)
    finally:
        bar.close()
    wall = time.monotonic() - started
    summary = {
        "aligner": aligner,
        "aligned_now": len(items),
        "audio_hours_aligned_now": round(audio_s / 3600, 3),
        "compute_seconds": round(compute, 1),
        "wall_seconds": round(wall, 1),
        "compute_seconds_per_audio_hour": round(compute / audio_s * 3600, 1) if audio_s else None,
        "wall_seconds_per_audio_hour": round(wall / audio_s * 3600, 1) if audio_s else None,
        "jobs": jobs,
    }
    return results, summary


def _failure_kind(problem: str) -> str:
    """A failure reason without its numbers ("poor acoustic score (-3.41 ...)" -> its head)."""
    return re.split(r" \(|:", problem, maxsplit=1)[0]


def _unusable_keyword_lines(
    plan: SourcePlan, alignments: dict[str, LineAlignment], seconds: dict[str, float]
) -> set[str]:
    """Paths of the lines that say a keyword and whose (cached) alignment is unusable."""
    return {
        it.path
        for it in plan.items
        if it.keywords
        and it.path in alignments
        and it.path in seconds
        and check_alignment(alignments[it.path], seconds[it.path])
    }


def _apply_alignments(
    out: Path,
    plan: SourcePlan,
    seconds: dict[str, float],
    line_seconds: dict[str, float],
    alignments: dict[str, LineAlignment],
) -> dict[str, dict[str, Any]]:
    """Decide every uqm line from its alignment: usable -> kept with its keyword spans excluded;
    unusable -> kept whole if its transcript is keyword-free, else dropped (and its audio, if
    extracted, removed from ``seconds`` and disk). ``line_seconds``: the durations of lines not
    extracted (their cached alignment already said they go). Returns path -> {"set",
    "seconds", "problem", "kept", "exclude"}."""
    lines: dict[str, dict[str, Any]] = {}
    for item in plan.items:
        secs = seconds.get(item.path, line_seconds.get(item.path))
        if secs is None or item.path not in alignments:  # not extracted (silent, failed)
            continue
        problem = check_alignment(alignments[item.path], secs)
        line = {"set": item.speaker.split(":", 1)[1], "seconds": secs, "problem": problem,
                "kept": True, "exclude": ""}  # fmt: skip
        if not problem:
            line["exclude"] = format_spans(keyword_spans(alignments[item.path].words, secs))
        elif item.keywords:
            line["kept"] = False
            plan.drop(
                item.origin,
                "transcript says a keyword and its alignment is unusable",
                item.text,
                keywords=item.keywords,
                set=line["set"],
                alignment=problem,
            )
            seconds.pop(item.path, None)
            (out / item.path).unlink(missing_ok=True)
        lines[item.path] = line
    return lines


# ----------------------------------------------------------------------------- keyword cuts

# What a keyword cut keeps before and after its aligned word (seconds; clipped to the clip): no
# lead, since the word before the digit ends where it starts (a lead puts the end of that word
# into the cut, which the model then hears as part of the keyword), and a tail for the digit's
# release.
CUT_PAD_S = (0.0, 0.05)
_CUT_SEP = "#"  # origin of a keyword cut: "<phrase origin>#<start>-<end>"


def cut_path(phrase_path: str, keyword: str) -> str:
    """Where the keyword cut of a phrase clip goes ("audio/kajongg/male1/b1.wav", "one" ->
    "audio/kajongg/male1/b1-one.wav")."""
    path = Path(phrase_path)
    return (path.parent / f"{path.stem}-{keyword}{path.suffix}").as_posix()


def keyword_cut(
    alignment: LineAlignment,
    seconds: float,
    keyword: str,
    pad: tuple[float, float] = CUT_PAD_S,
) -> tuple[tuple[float, float] | None, str]:
    """(span, "") of ``keyword``'s word in an aligned phrase of ``seconds``, with ``pad``
    (before, after) seconds around it, clipped to the phrase and rounded outwards to the
    millisecond; (None, why)
    when the alignment fails the sanity rule (:func:`check_alignment`), does not place the
    keyword exactly once, or leaves under :data:`MIN_SPEECH_S` of audio."""
    problem = check_alignment(alignment, seconds)
    if problem:
        return None, problem
    hits = [w for w in alignment.words if w.word == keyword]
    if len(hits) != 1:
        return None, f"keyword not placed once ({keyword!r} aligned {len(hits)} times)"
    start = max(0.0, math.floor((hits[0].start - pad[0]) * 1000 + 1e-6) / 1000)
    end = min(seconds, math.ceil((hits[0].end + pad[1]) * 1000 - 1e-6) / 1000)
    if end - start < MIN_SPEECH_S:
        return None, f"keyword too short ({end - start:.3f} s < {MIN_SPEECH_S} s)"
    return (start, end), ""


def _write_cut(out: Path, phrase: str, target: str, span: tuple[float, float]) -> float:
    """Cut ``span`` (seconds) out of the phrase clip ``out/phrase``, peak-normalise it like
    every clip and write it to ``out/target`` unless the file already holds exactly that audio
    (a rebuild leaves it untouched); returns its duration."""
    with wave.open(str(out / phrase), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    piece = x[round(span[0] * SAMPLE_RATE) : round(span[1] * SAMPLE_RATE)]
    y = normalize_peak(piece)
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2").tobytes()
    path = out / target
    if is_valid_clip(path):
        with wave.open(str(path), "rb") as w:
            if w.readframes(w.getnframes()) == pcm:
                return len(y) / SAMPLE_RATE
    write_wav(path, y)
    return len(y) / SAMPLE_RATE


def cut_keywords(
    root: Path,
    out: Path,
    plan: SourcePlan,
    seconds: dict[str, float],
    *,
    jobs: int = 2,
    progress: bool = True,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Cut the keyword out of every extracted phrase of ``plan`` that has an ``align_text``
    (kajongg's "bamboo one" ... "circle nine", "no choice") into a ``keyword`` row of its own.

    Each phrase is force-aligned to its transcript (:func:`align_pcm`, cached in
    ``out/alignments`` like the uqm lines); where the alignment passes the sanity rule, the
    keyword's word with :data:`CUT_PAD_S` around it (:func:`keyword_cut`) becomes
    ``<phrase>-<keyword>.wav``: same speaker, label and use, origin
    ``<phrase origin>#<start>-<end>`` (seconds of the phrase's extracted clip). The phrase row
    stays. Returns (manifest rows, a summary per speaker with why the others failed)."""
    phrases = [it for it in plan.items if it.align_text and it.path in seconds]
    aligner: dict[str, Any] = {}
    if not phrases:
        alignments: dict[str, LineAlignment] = {}
    elif not _have_pocketsphinx():
        log.warning("pocketsphinx is not installed (pip install -e '.[dev]'): %s phrases are "
                    "not cut into keyword clips", plan.items[0].source)  # fmt: skip
        missing = LineAlignment(error="pocketsphinx is not installed")
        alignments = {it.path: missing for it in phrases}
    else:
        alignments, _, keys = _cached_alignments(root, out, phrases)
        todo = [it for it in phrases if it.path in keys]
        fresh, aligner = align_items(out, todo, keys, jobs=jobs, progress=progress)
        alignments.update(fresh)
        aligner["cached"] = len(phrases) - len(todo)
    rows: list[dict[str, str]] = []
    speakers: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, str]] = []
    for item in phrases:
        stats = speakers.setdefault(item.speaker, {"phrases": 0, "cut": 0, "failed": 0,
                                                   "failed_reasons": Counter()})  # fmt: skip
        stats["phrases"] += 1
        target = cut_path(item.path, item.label)
        span, problem = keyword_cut(alignments[item.path], seconds[item.path], item.label)
        if span is None:
            stats["failed"] += 1
            stats["failed_reasons"][_failure_kind(problem)] += 1
            failed.append({"origin": item.origin, "text": item.text, "reason": problem})
            (out / target).unlink(missing_ok=True)  # a cut an earlier build made
            continue
        stats["cut"] += 1
        rows.append(
            {
                "path": target,
                "source": item.source,
                "speaker": item.speaker,
                "language": item.language,
                "kind": "keyword",
                "label": item.label,
                "text": item.label,
                "use": item.use,
                "seconds": f"{_write_cut(out, item.path, target, span):.3f}",
                "origin": f"{item.origin}{_CUT_SEP}{span[0]:.3f}-{span[1]:.3f}",
                "exclude": "",
            }
        )
    for stats in speakers.values():
        stats["failed_reasons"] = dict(sorted(stats["failed_reasons"].items()))
    total = {k: sum(s[k] for s in speakers.values()) for k in ("phrases", "cut", "failed")}
    summary = {
        "rule": f"each phrase labelled with a keyword is force-aligned to its transcript; if the "
        f"alignment is usable (the uqm sanity rule) and places the keyword once, the keyword's "
        f"word with {CUT_PAD_S[0]} s before and {CUT_PAD_S[1]} s after it (clipped to the "
        "clip) becomes a keyword row",
        "pad_seconds": CUT_PAD_S,
        "speakers": dict(sorted(speakers.items())),
        "total": total,
        "failed": failed,
        "alignment": aligner,
    }
    return rows, summary


# ----------------------------------------------------------------------------- outputs


def write_manifest(out: Path, rows: Sequence[dict[str, str]]) -> Path:
    """Write ``manifest.csv`` atomically."""
    path = out / "manifest.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _tally(rows: Iterable[dict[str, str]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """source -> kind -> use -> {"clips", "seconds", "hours"}."""
    acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: [0, 0.0])))
    for r in rows:
        cell = acc[r["source"]][r["kind"]][r["use"]]
        cell[0] += 1
        cell[1] += float(r["seconds"])
    return {
        s: {
            k: {u: _cell(n, secs) for u, (n, secs) in sorted(uses.items())}
            for k, uses in sorted(kinds.items(), key=lambda kv: KINDS.index(kv[0]))
        }
        for s, kinds in sorted(acc.items(), key=lambda kv: SOURCES.index(kv[0]))
    }


def _cell(n: int, seconds: float) -> dict[str, float]:
    return {"clips": n, "seconds": round(seconds, 1), "hours": round(seconds / 3600, 3)}


def _reasons(dropped: Sequence[dict[str, str]]) -> dict[str, int]:
    return dict(sorted(Counter(d["reason"] for d in dropped).items()))


def build_recordings(
    out_dir: str | Path,
    *,
    root: str | Path = "/",
    sources: Sequence[str] | None = None,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Extract the recordings of ``sources`` (default: every installed one) under ``root`` into
    ``out_dir``; returns ``out_dir``.

    A source named in ``sources`` must be installed (:class:`RecordingsError` names the missing
    package); with ``sources=None`` missing ones are skipped with a warning, and at least one
    must be present.
    """
    started = time.monotonic()
    root = Path(root)
    out = Path(out_dir)
    wanted = list(sources) if sources else list(SOURCES)
    for source in wanted:
        if source not in SOURCES:
            raise RecordingsError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    missing = {s: m for s in wanted if (m := missing_packages(s, root))}
    if sources and missing:
        names = sorted({p for m in missing.values() for p in m})
        raise RecordingsError(
            f"package{'s' if len(names) > 1 else ''} {', '.join(names)} "
            f"{'are' if len(names) > 1 else 'is'} not installed under {root}: {INSTALL_HINT}"
        )
    present = [s for s in wanted if s not in missing]
    if not present:
        names = sorted({p for m in missing.values() for p in m})
        raise RecordingsError(
            f"none of the speech packages is installed ({', '.join(names)}): {INSTALL_HINT}"
        )
    if missing:
        log.warning(
            "skipping sources whose packages are not installed: %s (%s)",
            ", ".join(f"{s} ({', '.join(m)})" for s, m in missing.items()),
            INSTALL_HINT,
        )
    out.mkdir(parents=True, exist_ok=True)
    versions = {p: package_version(p, root) for s in present for p in PACKAGES[s]}

    plans: dict[str, SourcePlan] = {}
    for source in present:
        plan = _PLANNERS[source](root)
        _dedupe(plan, root)
        plans[source] = plan
        log.info("%s: %d clips to extract, %d left out", source, len(plan.items), len(plan.dropped))

    meta_path = out / "recordings.json"
    reuse: set[str] = set()
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
        if previous.get("generator_version") == GENERATOR_VERSION:
            old = previous.get("packages", {})
            reuse = {s for s in present if all(old.get(p) == versions[p] for p in PACKAGES[s])}
        stale = sorted(set(present) - reuse)
        if stale:
            log.warning("%s: re-extracting %s (other generator or package version)", out, stale)
    else:
        reuse = set(present)

    items = [item for source in present for item in plans[source].items]
    alignments: dict[str, LineAlignment] = {}
    line_seconds: dict[str, float] = {}
    to_align: dict[str, str] = {}
    skip: set[str] = set()
    if "uqm" in plans:
        alignments, line_seconds, to_align = plan_alignments(root, out, plans["uqm"].items)
        skip = _unusable_keyword_lines(plans["uqm"], alignments, line_seconds)  # not extracted
        log.info("uqm alignment: %d lines cached, %d to align", len(line_seconds), len(to_align))
    seconds, failed = extract(
        root, out, [it for it in items if it.path not in skip], reuse=reuse, jobs=jobs,
        progress=progress,
    )  # fmt: skip
    by_path = {item.path: item for item in items}
    for path in [p for p, error in failed.items() if error.startswith(SilentAudioError.__name__)]:
        item = by_path[path]
        plans[item.source].drop(item.origin, "silent or too short", item.text)
        del failed[path]
    for path, error in list(failed.items())[:20]:
        log.warning("failed %s: %s", path, error)

    uqm_lines: dict[str, dict[str, Any]] = {}
    alignment_summary: dict[str, Any] = {}
    if "uqm" in plans:
        todo = [it for it in plans["uqm"].items if it.path in to_align and it.path in seconds]
        fresh, alignment_summary = align_items(out, todo, to_align, jobs=jobs, progress=progress)
        alignment_summary["cached"] = len(line_seconds)
        alignments.update(fresh)
        uqm_lines = _apply_alignments(out, plans["uqm"], seconds, line_seconds, alignments)

    rows = [
        {
            "path": it.path,
            "source": it.source,
            "speaker": it.speaker,
            "language": it.language,
            "kind": it.kind,
            "label": it.label,
            "text": it.text,
            "use": it.use,
            "seconds": f"{seconds[it.path]:.3f}",
            "origin": it.origin,
            "exclude": uqm_lines.get(it.path, {}).get("exclude", ""),
        }
        for it in items
        if it.path in seconds
    ]
    kajongg_cuts: dict[str, Any] = {}
    if "kajongg" in plans:
        cut_rows, kajongg_cuts = cut_keywords(
            root, out, plans["kajongg"], seconds, jobs=jobs, progress=progress
        )
        rows += cut_rows
        log.info("kajongg keyword cuts: %d of %d phrases", kajongg_cuts["total"]["cut"],
                 kajongg_cuts["total"]["phrases"])  # fmt: skip
    rows.sort(key=lambda r: (USES.index(r["use"]), SOURCES.index(r["source"]), r["path"]))
    write_manifest(out, rows)

    uqm_sets = {}
    if "uqm" in plans:
        uqm_sets = _uqm_summary(plans["uqm"], uqm_lines)
    meta = {
        "source": "debian-recordings",
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "root": str(root),
        "sample_rate": SAMPLE_RATE,
        "audio": {
            "format": "wav",
            "encoding": "pcm_s16le",
            "channels": 1,
            "peak_dbfs": PEAK_DBFS,
            "highpass_hz": 50,
            "trimmed_kinds": sorted(_TRIMMED_KINDS),
        },
        "columns": list(MANIFEST_COLUMNS),
        "conventions": {
            "kinds": {
                "keyword": "an isolated Speech Commands keyword; label = the keyword (kajongg: "
                f"cut out of a phrase at its forced alignment, {CUT_PAD_S[0]} s kept before the "
                f"word and {CUT_PAD_S[1]} s after; "
                "origin '<phrase origin>#<start>-<end>', seconds of the phrase's clip)",
                "word": "an isolated non-keyword word; label _unknown_",
                "phrase": "a short English phrase; label = the keyword it says as a plain word, "
                "else _unknown_",
                "speech": "keyword-free speech (by transcript or file name); label _unknown_",
                "nonspeech": "sound effects; label _silence_ (nothing to detect, like Speech "
                "Commands' background noise)",
            },
            "uses": {
                "dev": "real-speech dev set: English keyword clips and their non-keyword words",
                "train": "may train or calibrate (negatives)",
                "eval": "evaluation only: never train or calibrate (read_recordings refuses it "
                "without allow_eval=True)",
            },
            "speaker": "the recording set (a voice, pack, language or uqm set), not a verified "
            "person",
        },
        "packages": versions,
        "keyword_filter": _filter_fingerprint(),
        "sources_missing": missing,
        "reserved_never_read": {
            "uqm_sets": list(UQM_RESERVED_SETS),
            "packages": ["alsa-utils (sample sounds)", "asterisk-core-sounds-*"],
        },
        "counts": _tally(rows),
        "totals": {
            u: _cell(
                sum(1 for r in rows if r["use"] == u),
                sum(float(r["seconds"]) for r in rows if r["use"] == u),
            )
            for u in USES
        },
        "languages": {
            u: {
                lang or "-": _cell(
                    sum(1 for r in rows if r["use"] == u and r["language"] == lang),
                    sum(
                        float(r["seconds"]) for r in rows if r["use"] == u and r["language"] == lang
                    ),
                )
                for lang in sorted({r["language"] for r in rows if r["use"] == u})
            }
            for u in USES
        },
        "speakers": dict(sorted(Counter(r["speaker"] for r in rows).items())),
        "labels": dict(sorted(Counter(r["label"] for r in rows if r["use"] == "dev").items())),
        "notes": {s: p.notes for s, p in plans.items() if p.notes},
        "uqm_sets": uqm_sets,
        "kajongg_cuts": kajongg_cuts,
        "uqm_alignment": {
            **alignment_summary,
            "rule": {
                "exclude": f"each word that says a keyword or near-homophone, padded by "
                f"{EXCLUDE_PAD_S} s on each side, clipped to the line, merged where spans "
                "overlap or touch",
                "usable": f"every word placed in order, words' mean acoustic score per frame "
                f">= {ALIGN_MIN_SCORE}, words cover >= {ALIGN_MIN_COVERAGE:.0%} of the line",
                "unusable": "kept whole only if the transcript is keyword-free, else dropped",
            },
        }
        if "uqm" in plans
        else {},
        "dropped_reasons": {s: _reasons(p.dropped) for s, p in plans.items()},
        "dropped": {
            s: [d for d in p.dropped if d["reason"] != "duplicate"] for s, p in plans.items()
        },
        "failed": failed,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(meta_path)
    log.info(
        "recordings %s: %d clips (%d failed) in %.0f s", out, len(rows), len(failed),
        time.monotonic() - started,
    )  # fmt: skip
    return out


def _filter_fingerprint() -> str:
    """sha256 (12 hex) of training/keyword_text.py: the drops depend on its rules."""
    from training import keyword_text

    return hashlib.sha256(Path(keyword_text.__file__).read_bytes()).hexdigest()[:12]


def _seconds_and_hours(name: str, seconds: float) -> dict[str, float]:
    return {f"{name}_seconds": round(seconds, 1), f"{name}_hours": round(seconds / 3600, 3)}


def _uqm_summary(plan: SourcePlan, lines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per allowed set (and ``total``): lines, how many aligned (usable) or failed and why,
    hours of every line, hours kept, excluded within them and keyword-free (kept - excluded)."""
    out: dict[str, dict[str, Any]] = {}
    for name in (*UQM_SETS, "total"):
        mine = [v for v in lines.values() if name in ("total", v["set"])]
        kept = [v for v in mine if v["kept"]]
        total_s = sum(v["seconds"] for v in mine)
        kept_s = sum(v["seconds"] for v in kept)
        excluded_s = sum(e - s for v in kept for s, e in parse_spans(v["exclude"]))
        notes = plan.notes["sets"]
        out[name] = {
            "lines": len(mine),
            "aligned": sum(1 for v in mine if not v["problem"]),
            "failed_alignments": sum(1 for v in mine if v["problem"]),
            "failed_reasons": dict(
                sorted(Counter(_failure_kind(v["problem"]) for v in mine if v["problem"]).items())
            ),
            "lines_with_excluded_spans": sum(1 for v in kept if v["exclude"]),
            "kept": len(kept),
            "dropped_keyword": len(mine) - len(kept),
            **_seconds_and_hours("total", total_s),
            **_seconds_and_hours("kept", kept_s),
            **_seconds_and_hours("excluded", excluded_s),
            **_seconds_and_hours("keyword_free", kept_s - excluded_s),
            **_seconds_and_hours("dropped", total_s - kept_s),
            "no_transcript": sum(
                int(notes.get(n, {}).get("no_transcript", 0))
                for n in UQM_SETS
                if name in ("total", n)
            ),
            "missing_audio": sum(
                int(notes.get(n, {}).get("missing_audio", 0))
                for n in UQM_SETS
                if name in ("total", n)
            ),
        }
    return out


# ----------------------------------------------------------------------------- reading


def _selection(
    value: str | Iterable[str] | None, allowed: Sequence[str], what: str
) -> set[str] | None:
    if value is None:
        return None
    chosen = {value} if isinstance(value, str) else set(value)
    bad = sorted(chosen - set(allowed))
    if bad:
        raise ValueError(f"unknown {what} {bad}; choose from {', '.join(allowed)}")
    return chosen


def read_recordings(
    root: str | Path,
    *,
    use: str | Iterable[str] | None = None,
    kind: str | Iterable[str] | None = None,
    source: str | Iterable[str] | None = None,
    language: str | Iterable[str] | None = None,
    allow_eval: bool = False,
) -> list[Recording]:
    """The rows of ``root/manifest.csv`` matching every filter given, as :class:`Recording`.

    ``use="eval"`` rows are evaluation-only: asking for them without ``allow_eval=True`` raises
    ValueError, and ``use=None`` (all) leaves them out unless ``allow_eval=True``.
    """
    root = Path(root)
    uses = _selection(use, USES, "use")
    if uses is None:
        uses = set(USES) if allow_eval else set(USES) - {"eval"}
    elif "eval" in uses and not allow_eval:
        raise ValueError(
            "use='eval' rows are for evaluation only (never train or calibrate on them); "
            "pass allow_eval=True to read them"
        )
    kinds = _selection(kind, KINDS, "kind")
    sources = _selection(source, SOURCES, "source")
    languages = {language} if isinstance(language, str) else set(language) if language else None
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `lmukws data recordings --out {root}`")
    out = []
    with manifest.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["use"] not in uses or (row["use"] == "eval" and not allow_eval):
                continue
            if kinds is not None and row["kind"] not in kinds:
                continue
            if sources is not None and row["source"] not in sources:
                continue
            if languages is not None and row["language"] not in languages:
                continue
            out.append(
                Recording(
                    path=root / row["path"],
                    source=row["source"],
                    speaker=row["speaker"],
                    language=row["language"],
                    kind=row["kind"],
                    label=row["label"],
                    text=row["text"],
                    use=row["use"],
                    seconds=float(row["seconds"]),
                    origin=row["origin"],
                    exclude=parse_spans(row.get("exclude") or ""),
                )
            )
    return out


# ----------------------------------------------------------------------------------- CLI


def register_recordings_parser(
    data_subparsers: argparse._SubParsersAction,
) -> argparse.ArgumentParser:
    """Add ``recordings`` to the ``lmukws data`` subcommands."""
    p = data_subparsers.add_parser(
        "recordings",
        help="extract real recorded speech from Debian packages (dev/train/eval sets)",
        description="Extract the real recordings of kajongg, tuxpaint-stamps-default, "
        "hedgewars-data and uqm-voice (scripts/install-speech-data.sh installs them) into "
        "DIR/audio as 16 kHz mono WAV, with DIR/manifest.csv and DIR/recordings.json. "
        "Resumable.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (DIR)")
    p.add_argument(
        "--root", type=Path, default=Path("/"), help="where the packages are installed (default /)"
    )
    p.add_argument(
        "--sources",
        default=None,
        help=f"comma-separated subset of {','.join(SOURCES)} (default: every installed one; "
        "a source named here must be installed)",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel extraction processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_recordings)
    return p


def run_recordings(args: argparse.Namespace) -> int:
    """Entry point of ``lmukws data recordings``; exit code 2 with a message on a data error."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    try:
        out = build_recordings(
            args.out, root=args.root, sources=sources, jobs=args.jobs, progress=not args.no_progress
        )
    except RecordingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    meta = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    for source, kinds in meta["counts"].items():
        for kind, uses in kinds.items():
            for use, cell in uses.items():
                print(
                    f"{source:10} {kind:10} {use:6} {cell['clips']:6d} clips {cell['hours']:7.3f} h"
                )
    for speaker, cuts in (meta.get("kajongg_cuts") or {}).get("speakers", {}).items():
        reasons = ", ".join(f"{k} {n}" for k, n in cuts["failed_reasons"].items())
        print(
            f"{speaker}: {cuts['cut']} of {cuts['phrases']} phrases cut into keyword clips"
            + (f" (failed: {reasons})" if reasons else "")
        )
    total = meta.get("uqm_sets", {}).get("total")
    if total:
        print(
            f"uqm: {total['lines']} lines ({total['total_hours']:.3f} h), {total['aligned']} "
            f"aligned; kept {total['kept_hours']:.3f} h, excluded {total['excluded_hours']:.3f} h, "
            f"keyword-free {total['keyword_free_hours']:.3f} h"
        )
    print(out / "manifest.csv")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.recordings --out DIR`` (the same as ``lmukws data recordings``)."""
    parser = argparse.ArgumentParser(prog="python -m training.recordings")
    sub = parser.add_subparsers(dest="command")
    register_recordings_parser(sub)
    args = parser.parse_args(["recordings", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
