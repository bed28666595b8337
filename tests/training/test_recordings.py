"""Real recordings from Debian packages: extraction from tiny fake package trees."""

from __future__ import annotations

import argparse
import csv
import ctypes
import io
import json
import math
import shutil
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import recordings as rec
from training.labels import SILENCE, UNKNOWN
from training.recordings import (
    EXCLUDE_PAD_S,
    MANIFEST_COLUMNS,
    UQM_RESERVED_SETS,
    UQM_SETS,
    LineAlignment,
    RecordingsError,
    WordTiming,
    align_pcm,
    build_recordings,
    check_alignment,
    classify_english,
    format_spans,
    hedgewars_text,
    keyword_spans,
    merge_spans,
    parse_spans,
    parse_uqm_transcript,
    read_recordings,
    register_recordings_parser,
    says_keyword,
)
from training.voices import SAMPLE_RATE, resample

TUX = "usr/share/tuxpaint/stamps"
KAJ = "usr/share/kajongg/voices"
HW = "usr/share/games/hedgewars/Data/Sounds/voices"
UQM_VOICE = "usr/share/games/uqm/content/addons/uqm-0.8.0-voice.uqm"
UQM_CONTENT = "usr/share/games/uqm/content/packages/uqm-0.8.0-content.uqm"


def _tone(seed: int, seconds: float = 0.4, rate: int = 22050, peak: float = 0.5) -> np.ndarray:
    """A tone burst with silence on both sides (distinct per seed, so no two files match)."""
    t = np.arange(int(seconds * rate)) / rate
    burst = np.sin(2 * np.pi * (200 + 37 * seed) * t) * np.hanning(len(t))
    pad = np.zeros(int(0.2 * rate))
    return (np.concatenate([pad, burst, pad]) * peak / np.abs(burst).max()).astype(np.float32)


def _ogg_bytes(seed: int, *, rate: int = 22050, channels: int = 1, peak: float = 0.5) -> bytes:
    x = _tone(seed, rate=rate, peak=peak)
    if channels == 2:
        x = np.stack([x, x], axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="OGG", subtype="VORBIS")
    return buf.getvalue()


SENTENCE = "please go to the shop"


def _espeak_cli(text: str, voice: str | None = None) -> tuple[np.ndarray, int]:
    """What ``espeak-ng [-v VOICE] -w out.wav TEXT`` writes (read from ``--stdout``): samples,
    rate."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/install-system-packages.sh")
    command = ["espeak-ng", "--stdout", *(["-v", voice] if voice else []), text]
    out = subprocess.run(command, capture_output=True, check=True)
    x, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    return x, int(rate)


class _EspeakEvent(ctypes.Structure):
    # espeak_EVENT of espeak-ng's speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


def _espeak_lib(text: str, voice: str | None = None) -> tuple[np.ndarray, int, list[float]] | None:
    """espeak-ng's own rendering through libespeak-ng (in ``voice``, else its default), with
    each word's start (seconds) from its word events; None when the library cannot be loaded."""
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        return None
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
    )
    chunks: list[np.ndarray] = []
    starts: list[float] = []

    def on_audio(wav: object, n: int, events: object) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())  # type: ignore[arg-type]
        i = 0
        while events[i].type != 0:  # type: ignore[index]
            if events[i].type == 1:  # type: ignore[index]  # espeakEVENT_WORD
                starts.append(events[i].audio_position / 1000)  # type: ignore[index]
            i += 1
        return 0

    callback = callback_type(on_audio)
    rate = lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    if rate <= 0:
        return None
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName((voice or "en").encode())
    data = text.encode()
    lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
    lib.espeak_Synchronize()
    if not chunks:
        return None
    return np.concatenate(chunks).astype(np.float32) / 32768.0, int(rate), starts


def _speech_ogg(text: str, rate: int = 11025, voice: str | None = None) -> bytes:
    """``text`` spoken by espeak-ng, as the game ships its lines (mono Vorbis, 11 kHz)."""
    x, espeak_rate = _espeak_cli(text, voice)
    buf = io.BytesIO()
    sf.write(buf, resample(x, espeak_rate, rate), rate, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def _put(root: Path, rel: str, data: bytes | str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


PHRASE = "bamboo one"  # kajongg's b1.ogg: the digit last
# espeak-ng's default voice says it too unlike a person for the alignment's sanity rule; this
# one passes it (score about -2.2 per frame)
PHRASE_VOICE = "en-us+f3"


def _fake_kajongg(root: Path) -> None:
    """Tone bursts (their alignment fails: no keyword cut), but male1's "bamboo one" is speech
    (espeak-ng), so its digit is cut out."""
    for i, (voice, peak) in enumerate((("male1", 0.01), ("female2", 0.4))):
        for j, stem in enumerate(("b1", "s9", "we", "nochoice", "pung")):
            _put(root, f"{KAJ}/{voice}/{stem}.ogg", _ogg_bytes(10 * i + j, channels=2, peak=peak))
    _put(root, f"{KAJ}/male1/b1.ogg", _speech_ogg(PHRASE, rate=22050, voice=PHRASE_VOICE))
    _put(root, f"{KAJ}/de/male1/b1.ogg", _ogg_bytes(99))


def _fake_tuxpaint(root: Path) -> None:
    _put(root, f"{TUX}/animals/dog.txt", "A dog.\nes.utf8=Un perro.\nfr.utf8=Un chien.\n")
    _put(root, f"{TUX}/animals/dog.png", b"")
    _put(root, f"{TUX}/animals/dog.ogg", _ogg_bytes(20))  # a bark, but the stamp says "dog"
    _put(root, f"{TUX}/animals/dog_desc.ogg", _ogg_bytes(21))
    _put(root, f"{TUX}/animals/dog_desc_es.ogg", _ogg_bytes(22))
    _put(root, f"{TUX}/animals/dog_desc_fr.ogg", _ogg_bytes(23))
    _put(root, f"{TUX}/animals/frog.txt", "A frog.\nca.utf8=Una granota.\n")
    _put(root, f"{TUX}/animals/frog.png", b"")
    _put(root, f"{TUX}/animals/frog.ogg", _ogg_bytes(24))  # a croak: nonspeech
    _put(root, f"{TUX}/animals/frog_desc.ogg", _ogg_bytes(25))
    catalan = _ogg_bytes(26)  # Vorbis streams get random serial numbers: reuse the bytes
    _put(root, f"{TUX}/animals/frog_desc_ca.ogg", catalan)
    _put(root, f"{TUX}/animals/frog2_desc_ca.ogg", catalan)  # the same bytes: a duplicate
    _put(root, f"{TUX}/animals/blackbird.txt", "A blackbird.\n")
    _put(root, f"{TUX}/animals/blackbird_desc.ogg", _ogg_bytes(27))
    _put(root, f"{TUX}/food/mango.txt", "A mango.\nes.utf8=Un mango.\n")
    _put(root, f"{TUX}/food/mango_desc_es.ogg", _ogg_bytes(28))  # "mango" says "go": dropped
    _put(root, f"{TUX}/food/pear_desc_lt.ogg.ogg", _ogg_bytes(29))  # no transcript, kept
    math = f"{TUX}/symbols/math"
    _put(root, f"{math}/1.txt", "One.\nfr.utf8=Un.\n")
    _put(root, f"{math}/1.png", b"")
    _put(root, f"{math}/1.ogg", _ogg_bytes(30, rate=11025))
    _put(root, f"{math}/1_en_GB.ogg", _ogg_bytes(31, rate=44100))
    _put(root, f"{math}/1_zh_tw.ogg", _ogg_bytes(32))
    _put(root, f"{math}/1_desc_fr.ogg", _ogg_bytes(33))
    letters = f"{TUX}/symbols/alphabets/english/filled/lowercase"
    _put(root, f"{letters}/b_filled.png", b"")
    _put(root, f"{letters}/b_filled_en_GB.ogg", _ogg_bytes(34, rate=44100))


def _fake_hedgewars(root: Path) -> None:
    for i, stem in enumerate(("Hello", "Nooo", "Yessir", "Enemydown", "Firepunch2")):
        _put(root, f"{HW}/Pirate/{stem}.ogg", _ogg_bytes(40 + i))
    _put(root, f"{HW}/Default_es/Hello.ogg", _ogg_bytes(46))


COMMANDER_TXT = """#(HELLO)\tcommander-000.ogg
Hurry back, Captain.

#(FUEL) commander-001.ogg
We will now transport 5 units
to your vessel.

#(NO_AUDIO) commander-002.ogg
This line has no audio file.

#(SILENT)
Text without a file.

#(SHOP) commander-003.ogg
Please go to the shop.
"""


def _fake_uqm(root: Path, *, reserved: bool = True) -> None:
    voice = root / UQM_VOICE
    voice.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(voice, "w") as z:
        z.writestr("3dovoice/commander/commander-000.ogg", _ogg_bytes(50, rate=11025))
        z.writestr("3dovoice/commander/commander-001.ogg", _ogg_bytes(51, rate=11025))
        z.writestr("3dovoice/commander/commander-003.ogg", _speech_ogg("Please go to the shop."))
        z.writestr("3dovoice/arilou/arilou.txt", "#(HI) arilou-000.ogg\nGreetings, friend.\n")
        z.writestr("3dovoice/arilou/arilou-000.ogg", _ogg_bytes(52, rate=11025))
        if reserved:
            z.writestr("3dovoice/starbase/starbase-000.ogg", _ogg_bytes(53, rate=11025))
            z.writestr("3dovoice/starbase/starbase.txt", "#(HI) starbase-000.ogg\nHello.\n")
            z.writestr("3dovoice/yehatrebels/yehatrebels-000.ogg", _ogg_bytes(54, rate=11025))
    content = root / UQM_CONTENT
    content.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(content, "w") as z:
        z.writestr("base/comm/commander/commander.txt", COMMANDER_TXT)
        z.writestr("base/comm/arilou/arilou.txt", "#(HI) arilou-000.ogg\nPC text, not used.\n")
        if reserved:
            z.writestr("base/comm/yehatrebels/yehatrebels.txt", "#(HI) yehatrebels-000.ogg\nHi.\n")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    _fake_kajongg(root)
    _fake_tuxpaint(root)
    _fake_hedgewars(root)
    _fake_uqm(root)
    return root


@pytest.fixture(scope="module")
def built(packages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_recordings(
        tmp_path_factory.mktemp("out") / "recordings", root=packages, jobs=1, progress=False
    )


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return {Path(r["origin"].split("!")[-1]).as_posix(): r for r in csv.DictReader(f)}


def _row(rows: dict[str, dict[str, str]], suffix: str) -> dict[str, str]:
    found = [r for origin, r in rows.items() if origin.endswith(suffix)]
    assert len(found) == 1, (suffix, sorted(rows))
    return found[0]


# ----------------------------------------------------------------------------- text rules


def test_classify_english() -> None:
    assert classify_english("Seven.") == ("keyword", "seven")
    assert classify_english("bamboo one") == ("phrase", "one")
    assert classify_english("A dog.") == ("phrase", "dog")
    assert classify_english("no choice") == ("phrase", "no")
    assert classify_english("A frog.") == ("phrase", UNKNOWN)
    assert classify_english("east") == ("word", UNKNOWN)
    assert classify_english("A blackbird.") is None  # only inside a compound
    assert classify_english("one two") is None  # two keywords


def test_hedgewars_names_and_drawn_out_keywords() -> None:
    assert hedgewars_text("Firepunch3") == "fire punch"
    assert hedgewars_text("Thisoneismine") == "this one is mine"
    assert hedgewars_text("SomethingNew2") == "something new"
    assert says_keyword(hedgewars_text("Nooo")) == ["no"]
    assert says_keyword("yesss") == ["yes"]
    assert says_keyword(hedgewars_text("Yessir")) == ["yes"]
    assert says_keyword(hedgewars_text("Enemydown")) == ["down"]
    assert says_keyword(hedgewars_text("Stupid")) == []


def test_parse_uqm_transcript() -> None:
    entries = parse_uqm_transcript(COMMANDER_TXT)
    assert entries[0] == ("HELLO", "commander-000.ogg", "Hurry back, Captain.")
    assert entries[1][2] == "We will now transport 5 units to your vessel."
    assert entries[3] == ("SILENT", "", "Text without a file.")


# ----------------------------------------------------------------------------- alignment


def _w(word: str, start: float, end: float, score: float = -2.0) -> WordTiming:
    return WordTiming(word, start, end, score)


def test_keyword_spans_pad_clip_and_merge() -> None:
    words = [
        _w("well", 0.0, 0.2),
        _w("no", 0.1, 0.3),  # at the start: clipped to 0
        _w("captain", 0.35, 1.0),
        _w("go", 1.6, 1.8),  # "go" and "to" pad into each other: one span
        _w("to", 1.9, 2.0),
        _w("the", 2.0, 2.1),
        _w("shop", 2.1, 2.6),
        _w("someone", 4.0, 4.5),  # a compound of "one"
        _w("write", 5.0, 5.3),  # a homophone of "right"; near the end: clipped
    ]
    spans = keyword_spans(words, seconds=5.4)
    assert spans == [(0.0, 0.55), (1.35, 2.25), (3.75, 5.4)]  # 4.75 touches 4.75: merged
    assert keyword_spans([_w("nooooooo", 1.0, 1.5)], 3.0) == [(0.75, 1.75)]  # drawn out
    assert keyword_spans([_w("captain", 0.0, 1.0), _w("shop", 1.0, 2.0)], 2.0) == []
    assert keyword_spans([_w("go", 1.0, 1.2)], 3.0, pad=0.0) == [(1.0, 1.2)]
    assert EXCLUDE_PAD_S == 0.25


def test_merge_spans() -> None:
    assert merge_spans([]) == []
    assert merge_spans([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0)]) == [(0.0, 2.0), (3.0, 4.0)]
    assert merge_spans([(0.0, 1.0), (1.0, 2.0)]) == [(0.0, 2.0)]  # touching
    assert merge_spans([(0.0, 1.0), (1.001, 2.0)]) == [(0.0, 1.0), (1.001, 2.0)]
    assert merge_spans([(0.0, 5.0), (1.0, 2.0)]) == [(0.0, 5.0)]  # contained


def test_span_text_round_trip() -> None:
    spans = [(0.52, 1.1), (2.4, 2.95)]
    assert format_spans(spans) == "0.520-1.100;2.400-2.950"
    assert parse_spans(format_spans(spans)) == tuple(spans)
    assert format_spans([]) == "" and parse_spans("") == ()
    for bad in ("1.0", "2.0-1.0", "a-b"):
        with pytest.raises(ValueError):
            parse_spans(bad)


def test_check_alignment_rule() -> None:
    good = LineAlignment(words=(_w("hello", 0.1, 0.6), _w("there", 0.6, 1.0)), attempt=1)
    assert check_alignment(good, 1.1) == ""
    assert check_alignment(LineAlignment(error="no alignment (x)"), 1.0) == "no alignment (x)"
    poor = LineAlignment(words=(_w("hello", 0.1, 0.6, -4.0), _w("there", 0.6, 1.0, -3.5)))
    assert check_alignment(poor, 1.1).startswith("poor acoustic score")
    squeezed = LineAlignment(words=(_w("hello", 0.1, 0.3), _w("there", 0.3, 0.5)))
    assert check_alignment(squeezed, 2.0).startswith("low word coverage (20% of the audio")
    assert rec._failure_kind(check_alignment(squeezed, 2.0)) == "low word coverage"
    assert rec.alignment_words("Hurry back, Captain -- Zoq-Fot-Pik!") == [
        "hurry", "back", "captain", "zoq", "fot", "pik",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="digits"):
        rec.alignment_words("5 units")


def test_keyword_cut_rule() -> None:
    phrase = LineAlignment(words=(_w("bamboo", 0.0, 0.31), _w("one", 0.31, 0.74)), attempt=1)
    assert rec.CUT_PAD_S == (0.0, 0.05)
    assert rec.keyword_cut(phrase, 0.743, "one") == ((0.31, 0.743), "")  # clipped at the end
    assert rec.keyword_cut(phrase, 0.9, "bamboo", pad=(0.05, 0.05)) == ((0.0, 0.36), "")
    assert rec.keyword_cut(phrase, 0.9, "one", pad=(0.0, 0.0)) == ((0.31, 0.74), "")
    span, problem = rec.keyword_cut(phrase, 0.9, "two")
    assert span is None and problem.startswith("keyword not placed once")
    span, problem = rec.keyword_cut(phrase, 3.0, "one")  # words cover a quarter of the clip
    assert span is None and problem.startswith("low word coverage")
    poor = LineAlignment(words=(_w("bamboo", 0.0, 0.31, -4.0), _w("one", 0.31, 0.74, -3.5)))
    assert rec.keyword_cut(poor, 0.743, "one")[1].startswith("poor acoustic score")
    assert rec.keyword_cut(LineAlignment(error="no alignment"), 1.0, "one") == (
        None,
        "no alignment",
    )
    assert rec.cut_path("audio/kajongg/male1/b1.wav", "one") == "audio/kajongg/male1/b1-one.wav"


def test_cut_the_digit_of_an_espeak_phrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut of "bamboo one" holds "one": where espeak-ng said it (its word events), and in
    the last part of the clip, as the build trims and cuts it.

    espeak's synthetic phrase scores poorly against pocketsphinx's acoustic model, near
    :data:`ALIGN_MIN_SCORE` and on either side of it: -2.87 to -4.15 per frame here, depending
    on the rendering path (library or CLI) and on what the library synthesised before in the
    same process. The sanity rule has its own test (``test_keyword_cut_rule``); this one is
    about where the cut falls, so it turns the score floor off."""
    monkeypatch.setattr(rec, "ALIGN_MIN_SCORE", -math.inf)
    rendered = _espeak_lib(PHRASE, PHRASE_VOICE)
    if rendered is None:  # no library: the CLI's audio, without espeak's word timing
        x, rate = _espeak_cli(PHRASE, PHRASE_VOICE)
        starts = None
    else:
        x, rate, starts = rendered
        assert len(starts) == 2
    for kind in ("speech", "phrase"):  # untrimmed (espeak's timeline), trimmed (the build's)
        y = rec.process(x, rate, kind)
        pcm = np.clip(np.round(y * 32767), -32768, 32767).astype("<i2").tobytes()
        seconds = len(y) / SAMPLE_RATE
        alignment = align_pcm(pcm, PHRASE.split())
        span, problem = rec.keyword_cut(alignment, seconds, "one")
        assert span is not None and problem == "", (kind, problem, alignment)
        start, end = span
        one = alignment.words[-1]
        assert one.word == "one"
        assert start == pytest.approx(max(0.0, one.start - rec.CUT_PAD_S[0]), abs=1e-3)
        assert end == pytest.approx(min(seconds, one.end + rec.CUT_PAD_S[1]), abs=1e-3)
        assert alignment.words[0].end <= start + 1e-3 < end, (kind, alignment)
        if kind == "phrase":  # trimmed: "one" is the last part of the clip
            assert 0.45 * seconds < start and end > 0.85 * seconds, (start, end, seconds)
            assert end - start < 0.6 * seconds
        if kind == "speech" and starts is not None:
            assert abs(one.start - starts[1]) < 0.15, (one.start, starts)
            assert start < starts[1] and alignment.words[0].start < starts[1] - 0.2


def test_espeak_pronunciations() -> None:
    assert rec.ipa_to_arpabet("ʃˈɑːfɪkstˌi") == ["SH", "AA", "F", "IH", "K", "S", "T", "IY"]
    assert rec.ipa_to_arpabet("dʒˈuː tʃˈeɪ") == ["JH", "UW", "CH", "EY"]
    assert rec.ipa_to_arpabet("(fr)bɔ̃ʒˈuːɹ(en)") == ["B", "AO", "ZH", "UW", "R"]
    assert rec.espeak_arpabet("dogar")[0] == "D"


def test_align_an_espeak_sentence() -> None:
    """pocketsphinx places "go" and "to" where espeak-ng said them (its own word events)."""
    rendered = _espeak_lib(SENTENCE)
    if rendered is None:  # no library: the CLI's audio, without espeak's word timing
        x, rate = _espeak_cli(SENTENCE)
        starts = None
    else:
        x, rate, starts = rendered
        assert len(starts) == 5
    y = rec.process(x, rate, "speech")  # as the build does: 16 kHz, high-passed, normalised
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype("<i2").tobytes()
    seconds = len(y) / SAMPLE_RATE
    alignment = align_pcm(pcm, SENTENCE.split())
    assert alignment.error == "" and alignment.attempt >= 1
    assert [w.word for w in alignment.words] == SENTENCE.split()
    assert check_alignment(alignment, seconds) == ""
    timing = {w.word: w for w in alignment.words}
    assert 0 <= timing["please"].start < timing["go"].start < timing["to"].start
    assert timing["to"].start < timing["shop"].start < timing["shop"].end <= seconds
    if starts is not None:
        for word, start in zip(SENTENCE.split(), starts, strict=True):
            assert abs(timing[word].start - start) < 0.15, (word, timing[word].start, start)
    spans = keyword_spans(alignment.words, seconds)
    assert len(spans) == 1  # "go to": one merged span
    (start, end) = spans[0]
    assert start == pytest.approx(max(0.0, timing["go"].start - EXCLUDE_PAD_S), abs=1e-3)
    assert end == pytest.approx(timing["to"].end + EXCLUDE_PAD_S, abs=1e-3)
    assert timing["please"].start < start and end < timing["shop"].end


# ----------------------------------------------------------------------------- the build


def test_manifest_layout_and_audio(built: Path) -> None:
    with (built / "manifest.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        rows = list(reader)
    assert rows
    for row in rows:
        assert row["kind"] in rec.KINDS and row["use"] in rec.USES
        with wave.open(str(built / row["path"]), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        peak = np.abs(pcm).max() / 32768.0
        assert peak == pytest.approx(10 ** (-3 / 20), abs=0.01), row["path"]  # quiet ones too
        assert float(row["seconds"]) == pytest.approx(len(pcm) / SAMPLE_RATE, abs=1e-3)


def test_kajongg_rows(built: Path) -> None:
    rows = _rows(built)
    b1 = _row(rows, "male1/b1.ogg")
    assert (b1["kind"], b1["label"], b1["text"], b1["use"]) == (
        "phrase",
        "one",
        "bamboo one",
        "dev",
    )
    assert (b1["speaker"], b1["language"]) == ("kajongg:male1", "en")
    assert _row(rows, "female2/s9.ogg")["label"] == "nine"
    assert (
        _row(rows, "male1/nochoice.ogg")["kind"],
        _row(rows, "male1/nochoice.ogg")["label"],
    ) == (
        "phrase",
        "no",
    )
    we = _row(rows, "male1/we.ogg")
    assert (we["kind"], we["label"], we["text"]) == ("word", UNKNOWN, "east")
    assert _row(rows, "female2/pung.ogg")["kind"] == "word"
    assert not [o for o in rows if "/de/" in o]  # German voices skipped
    assert sum(r["source"] == "kajongg" for r in rows.values()) == 11  # 10 clips and a cut


def test_kajongg_keyword_cut(built: Path) -> None:
    """male1's "bamboo one" (speech) gets a keyword row cut out of it; the tone bursts' phrases
    fail the alignment's sanity rule and get none."""
    rows = _rows(built)
    cuts = {o: r for o, r in rows.items() if "#" in o}
    assert len(cuts) == 1
    ((origin, cut),) = cuts.items()
    phrase = _row(rows, "male1/b1.ogg")
    assert origin.startswith(f"{KAJ}/male1/b1.ogg#")
    start, end = parse_spans(origin.split("#")[1])[0]
    assert cut["path"] == "audio/kajongg/male1/b1-one.wav"
    assert (cut["kind"], cut["label"], cut["text"], cut["use"]) == ("keyword", "one", "one", "dev")
    assert (cut["speaker"], cut["language"], cut["source"]) == ("kajongg:male1", "en", "kajongg")
    assert phrase["kind"] == "phrase"  # kept
    assert 0.4 * float(phrase["seconds"]) < start < end <= float(phrase["seconds"])
    assert float(cut["seconds"]) == pytest.approx(end - start, abs=2e-3)
    words = json.loads((built / "alignments/kajongg/male1/b1.json").read_text())
    assert [w[0] for w in words["words"]] == ["bamboo", "one"]
    assert start == pytest.approx(max(0.0, words["words"][1][1] - rec.CUT_PAD_S[0]), abs=1e-3)
    meta = json.loads((built / "recordings.json").read_text(encoding="utf-8"))
    cuts_meta = meta["kajongg_cuts"]
    assert cuts_meta["speakers"]["kajongg:male1"]["phrases"] == 3  # b1, s9, nochoice
    assert cuts_meta["speakers"]["kajongg:male1"]["cut"] == 1
    assert cuts_meta["speakers"]["kajongg:female2"] == {
        "phrases": 3,
        "cut": 0,
        "failed": 3,
        "failed_reasons": cuts_meta["speakers"]["kajongg:female2"]["failed_reasons"],
    }
    assert cuts_meta["total"] == {"phrases": 6, "cut": 1, "failed": 5}
    assert len(cuts_meta["failed"]) == 5 and cuts_meta["alignment"]["aligned_now"] == 6
    assert meta["counts"]["kajongg"]["keyword"]["dev"]["clips"] == 1


def test_tuxpaint_rows(built: Path) -> None:
    rows = _rows(built)
    digit = _row(rows, "math/1.ogg")
    assert (digit["kind"], digit["label"], digit["speaker"], digit["use"]) == (
        "keyword",
        "one",
        "tuxpaint:en",
        "dev",
    )
    assert _row(rows, "1_en_GB.ogg")["speaker"] == "tuxpaint:en_GB"
    assert not [o for o in rows if o.endswith(("1_zh_tw.ogg", "1_desc_fr.ogg"))]  # number words
    letter = _row(rows, "b_filled_en_GB.ogg")
    assert (letter["kind"], letter["label"], letter["text"], letter["use"]) == (
        "word",
        UNKNOWN,
        "b",
        "dev",
    )
    dog = _row(rows, "dog_desc.ogg")
    assert (dog["kind"], dog["label"], dog["text"], dog["use"]) == (
        "phrase",
        "dog",
        "A dog.",
        "dev",
    )
    frog = _row(rows, "frog_desc.ogg")
    assert (frog["kind"], frog["label"], frog["use"]) == ("phrase", UNKNOWN, "train")
    es = _row(rows, "dog_desc_es.ogg")
    assert (es["kind"], es["label"], es["language"], es["text"], es["use"]) == (
        "speech",
        UNKNOWN,
        "es",
        "Un perro.",
        "train",
    )
    assert es["speaker"] == "tuxpaint:es"
    assert _row(rows, "pear_desc_lt.ogg.ogg")["text"] == ""  # no transcript: kept
    croak = _row(rows, "frog.ogg")
    assert (croak["kind"], croak["label"], croak["use"]) == ("nonspeech", SILENCE, "train")
    assert not [o for o in rows if o.endswith(("mango_desc_es.ogg", "blackbird_desc.ogg"))]
    assert not [o for o in rows if o.endswith("animals/dog.ogg")]  # the stamp says "dog"
    copies = [o for o in rows if o.endswith(("frog_desc_ca.ogg", "frog2_desc_ca.ogg"))]
    assert copies == [f"{TUX}/animals/frog2_desc_ca.ogg"]  # one of two identical files


def test_hedgewars_rows(built: Path) -> None:
    rows = _rows(built)
    hw = {o.split("/")[-2] + "/" + o.split("/")[-1]: r for o, r in rows.items() if "hedgewars" in o}
    assert sorted(hw) == ["Default_es/Hello.ogg", "Pirate/Firepunch2.ogg", "Pirate/Hello.ogg"]
    assert hw["Default_es/Hello.ogg"]["language"] == "es"
    assert hw["Pirate/Hello.ogg"]["language"] == "en"
    assert {r["kind"] for r in hw.values()} == {"speech"}
    assert {r["use"] for r in hw.values()} == {"train"}
    meta = json.loads((built / "recordings.json").read_text(encoding="utf-8"))
    dropped = {Path(d["origin"]).name: d for d in meta["dropped"]["hedgewars"]}
    assert sorted(dropped) == ["Enemydown.ogg", "Nooo.ogg", "Yessir.ogg"]
    assert dropped["Nooo.ogg"]["keywords"] == "no"


def test_uqm_rows_and_summary(built: Path) -> None:
    rows = _rows(built)
    uqm = {o: r for o, r in rows.items() if r["source"] == "uqm"}
    assert sorted(uqm) == [
        "3dovoice/arilou/arilou-000.ogg",
        "3dovoice/commander/commander-000.ogg",
        "3dovoice/commander/commander-003.ogg",  # says "go" and "to": kept, the two excluded
    ]
    assert {(r["kind"], r["use"], r["label"]) for r in uqm.values()} == {
        ("speech", "eval", UNKNOWN)
    }
    # the addon transcript wins over the game's own text
    assert uqm["3dovoice/arilou/arilou-000.ogg"]["text"] == "Greetings, friend."
    assert uqm["3dovoice/commander/commander-000.ogg"]["speaker"] == "uqm:commander"
    meta = json.loads((built / "recordings.json").read_text(encoding="utf-8"))
    commander = meta["uqm_sets"]["commander"]
    assert (commander["lines"], commander["kept"], commander["missing_audio"]) == (3, 2, 1)
    # "5 units to your vessel": digits cannot be aligned, so the old rule drops the line whole
    assert commander["dropped_keyword"] == 1 and commander["dropped_seconds"] > 0
    assert commander["failed_reasons"]["digits in the transcript"] == 1
    assert commander["lines_with_excluded_spans"] == 1
    assert 0 < commander["excluded_seconds"] < commander["kept_seconds"]
    assert commander["keyword_free_seconds"] == pytest.approx(
        commander["kept_seconds"] - commander["excluded_seconds"], abs=0.11
    )
    assert not (built / "audio/uqm/commander/commander-001.wav").exists()  # dropped: removed
    assert set(meta["uqm_sets"]) == {*UQM_SETS, "total"}
    assert meta["uqm_sets"]["total"]["lines"] == 4
    assert meta["uqm_alignment"]["aligned_now"] == 4 and meta["uqm_alignment"]["cached"] == 0
    assert (built / "alignments/uqm/commander/commander-003.json").is_file()
    assert meta["notes"]["uqm"]["reserved_sets_present_not_read"] == ["starbase", "yehatrebels"]


def test_reserved_uqm_sets_are_never_opened(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(name if isinstance(name, str) else name.filename)  # type: ignore[attr-defined]
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    out = build_recordings(tmp_path / "r", root=packages, sources=["uqm"], jobs=1, progress=False)
    assert opened
    assert {rec.uqm_set_of(name) for name in opened} <= set(UQM_SETS)
    assert not [n for n in opened if rec.uqm_set_of(n) in UQM_RESERVED_SETS]
    assert {r["speaker"] for r in _rows(out).values()} == {"uqm:arilou", "uqm:commander"}
    with pytest.raises(RecordingsError, match="starbase"):
        rec._origin_bytes(packages, f"{UQM_VOICE}!3dovoice/starbase/starbase-000.ogg")
    reserved = rec.Item(
        path="audio/uqm/starbase/starbase-000.wav", source="uqm", speaker="uqm:starbase",
        language="en", kind="speech", label=UNKNOWN, text="Hello.", use="eval",
        origin=f"{UQM_VOICE}!3dovoice/starbase/starbase-000.ogg", align_text="Hello.",
    )  # fmt: skip
    with pytest.raises(RecordingsError, match="refusing to align"):
        rec.plan_alignments(packages, out, [reserved])


def test_recordings_json(built: Path, packages: Path) -> None:
    meta = json.loads((built / "recordings.json").read_text(encoding="utf-8"))
    assert meta["generator_version"] == rec.GENERATOR_VERSION
    assert set(meta["packages"]) == {
        "kajongg",
        "tuxpaint-stamps-default",
        "hedgewars-data",
        "uqm-voice",
        "uqm-content",
    }
    counts = meta["counts"]
    assert counts["kajongg"]["phrase"]["dev"]["clips"] == 6
    assert counts["uqm"]["speech"]["eval"]["clips"] == 3
    assert meta["totals"]["eval"]["clips"] == 3
    assert meta["failed"] == {}
    assert "de/male1" in meta["notes"]["kajongg"]["skipped_voices"]
    reasons = meta["dropped_reasons"]["tuxpaint"]
    assert reasons["duplicate"] == 1
    assert reasons["number word in another language (cognate of a keyword)"] == 2


# ----------------------------------------------------------------------------- reading


def test_read_recordings_eval_guard(built: Path) -> None:
    everything = read_recordings(built)
    assert everything and all(r.use != "eval" for r in everything)
    with pytest.raises(ValueError, match="allow_eval=True"):
        read_recordings(built, use="eval")
    with pytest.raises(ValueError, match="allow_eval=True"):
        read_recordings(built, use=["train", "eval"])
    evals = read_recordings(built, use="eval", allow_eval=True)
    assert {r.source for r in evals} == {"uqm"} and len(evals) == 3
    assert len(read_recordings(built, allow_eval=True)) == len(everything) + 3
    assert all(r.exclude == () for r in everything)  # spans only on (eval) uqm lines
    assert sum(bool(r.exclude) for r in evals) == 1
    dev_keywords = read_recordings(built, use="dev", kind="keyword")
    assert {r.label for r in dev_keywords} == {"one"} and len(dev_keywords) == 3  # 2 + a cut
    assert all(r.path.is_file() and r.seconds > 0 for r in dev_keywords)
    assert {r.language for r in read_recordings(built, source="hedgewars")} == {"en", "es"}
    with pytest.raises(ValueError, match="unknown use"):
        read_recordings(built, use="test")


def test_exclude_column_round_trip(built: Path, tmp_path: Path) -> None:
    rows = _rows(built)
    shop = _row(rows, "commander/commander-003.ogg")
    spans = parse_spans(shop["exclude"])
    assert len(spans) == 1 and 0 <= spans[0][0] < spans[0][1] <= float(shop["seconds"])
    assert all(r["exclude"] == "" for r in rows.values() if r is not shop)
    (line,) = [r for r in read_recordings(built, use="eval", allow_eval=True) if r.exclude]
    assert line.exclude == spans and line.text == "Please go to the shop."
    assert line.excluded_seconds == pytest.approx(spans[0][1] - spans[0][0])
    assert line.keyword_free_seconds == pytest.approx(line.seconds - line.excluded_seconds)
    words = json.loads((built / "alignments/uqm/commander/commander-003.json").read_text())
    assert [w[0] for w in words["words"]] == SENTENCE.split()
    # a manifest written before the column existed reads as "nothing excluded"
    old = tmp_path / "old"
    old.mkdir()
    with (built / "manifest.csv").open(newline="", encoding="utf-8") as f:
        table = [{k: v for k, v in r.items() if k != "exclude"} for r in csv.DictReader(f)]
    with (old / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS[:-1])
        writer.writeheader()
        writer.writerows(table)
    assert all(r.exclude == () for r in read_recordings(old, allow_eval=True))


def test_without_pocketsphinx_the_old_rule_holds(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails
    out = build_recordings(tmp_path / "r", root=packages, sources=["uqm"], jobs=1, progress=False)
    uqm = _rows(out)
    assert sorted(Path(o).name for o in uqm) == ["arilou-000.ogg", "commander-000.ogg"]
    assert all(r["exclude"] == "" for r in uqm.values())
    meta = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    assert meta["uqm_sets"]["total"]["failed_alignments"] == 4
    assert not (out / "alignments").exists()  # nothing cached


# ----------------------------------------------------------------------------- robustness


def test_deterministic_and_resumable(packages: Path, built: Path, tmp_path: Path) -> None:
    out = build_recordings(tmp_path / "again", root=packages, jobs=2, progress=False)
    assert (out / "manifest.csv").read_bytes() == (built / "manifest.csv").read_bytes()
    for row in _rows(out).values():
        assert (out / row["path"]).read_bytes() == (built / row["path"]).read_bytes()

    first = _row(_rows(out), "male1/b1.ogg")["path"]
    kept = _row(_rows(out), "male1/we.ogg")["path"]
    (out / first).unlink()
    (out / kept).touch()
    mtime = (out / kept).stat().st_mtime_ns
    corrupt = _row(_rows(out), "Pirate/Hello.ogg")["path"]
    (out / corrupt).write_bytes(b"RIFF")
    build_recordings(out, root=packages, jobs=1, progress=False)
    meta = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    assert (meta["uqm_alignment"]["aligned_now"], meta["uqm_alignment"]["cached"]) == (0, 4)
    cut_alignment = meta["kajongg_cuts"]["alignment"]
    assert (cut_alignment["aligned_now"], cut_alignment["cached"]) == (0, 6)
    assert (out / first).read_bytes() == (built / first).read_bytes()  # re-made
    assert (out / corrupt).read_bytes() == (built / corrupt).read_bytes()  # re-made
    assert (out / kept).stat().st_mtime_ns == mtime  # kept as it was
    assert (out / "manifest.csv").read_bytes() == (built / "manifest.csv").read_bytes()


def test_undecodable_file_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _put(root, f"{HW}/Default/Hello.ogg", _ogg_bytes(60))
    _put(root, f"{HW}/Default/Hurry.ogg", b"OggS this is not audio")
    out = build_recordings(tmp_path / "out", root=root, jobs=1, progress=False)
    meta = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    assert list(meta["failed"]) == ["audio/hedgewars/Default/Hurry.wav"]
    assert [r.text for r in read_recordings(out)] == ["hello"]


def test_missing_packages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    _fake_hedgewars(root)
    with pytest.raises(RecordingsError, match=r"uqm-content, uqm-voice are not installed.*install"):
        build_recordings(tmp_path / "a", root=root, sources=["hedgewars", "uqm"], progress=False)
    with caplog.at_level("WARNING"):
        out = build_recordings(tmp_path / "b", root=root, jobs=1, progress=False)
    assert "kajongg" in caplog.text and "uqm-voice" in caplog.text
    meta = json.loads((out / "recordings.json").read_text(encoding="utf-8"))
    assert set(meta["sources_missing"]) == {"kajongg", "tuxpaint", "uqm"}
    with pytest.raises(RecordingsError, match="none of the speech packages"):
        build_recordings(tmp_path / "c", root=tmp_path / "empty", progress=False)
    with pytest.raises(RecordingsError, match="unknown source"):
        build_recordings(tmp_path / "d", root=root, sources=["espeak"], progress=False)


def test_cli(packages: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "recordings", "--out", str(tmp_path / "x"), "--root",
                              str(packages), "--sources", "kajongg", "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    assert "kajongg" in capsys.readouterr().out
    args = parser.parse_args(["data", "recordings", "--out", str(tmp_path / "y"), "--root",
                              str(tmp_path / "none"), "--sources", "uqm"])  # fmt: skip
    assert args.func(args) == 2
    assert "scripts/install-speech-data.sh" in capsys.readouterr().err
    sub = argparse.ArgumentParser().add_subparsers()
    assert register_recordings_parser(sub).prog.endswith("recordings")
