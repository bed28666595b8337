"""Offline English speech synthesisers: discover their voices and render words to 16 kHz WAV.

Engines (each a Debian package, kokoro PyPI packages; any subset may be installed):

- ``espeak-ng``: 8 English accents x ~100 voice variants, speed (-s) and pitch (-p);
- ``espeak-ng-mbrola``: the English MBROLA diphone voices (us1, us2, us3, en1) driven by espeak-ng;
- ``espeak-ng-mbrola-accented``: English spoken by espeak-ng through MBROLA databases recorded
  by speakers of other languages (``mb-de4-en``, ``mb-fr4-en``, ``mb-sw2-en``, ...): sixteen more
  real voices, each with its speaker's accent;
- ``flite``: kal, kal16, awb, awb_time, rms, slt, with duration stretch and target F0;
- ``festival``: every English voice under /usr/share/festival/voices (kal, ked, rab, don
  diphones, us1/us2/us3/en1 MBROLA, cmu_us_slt_arctic_hts, ...), duration and F0 scaling;
- ``rhvoice``: every English RHVoice voice (alan, bdl, clb, slt, evgeniy-eng, lyubov), rate and
  pitch;
- ``pico``: SVOX Pico's two English voices (en-US, en-GB), rate and pitch through its markup;
- ``kokoro``: the neural Kokoro-82M (PyPI, the ``voices`` extra) fed espeak-ng's IPA, speaking
  with pseudo-speakers blended from its five style tables, speed 0.8-1.2 (:mod:`training.kokoro`).

A :class:`Voice` is one engine voice with fixed prosody parameters; ``voice.speaker`` names the
recorded person behind it (``arctic:slt`` is flite's slt, festival's slt HTS and RHVoice's slt),
so that corpus splits can hold out whole speakers across engines. Every rendered file is trimmed
of leading and trailing silence, peak-normalised to -3 dBFS and written as 16 kHz mono PCM16.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.config import FeatureConfig
from training import kokoro

log = logging.getLogger(__name__)

#: every rendered file is written at the model's input rate
SAMPLE_RATE = FeatureConfig().sample_rate
ENGINES: tuple[str, ...] = (
    "espeak-ng",
    "espeak-ng-mbrola",
    "flite",
    "festival",
    "rhvoice",
    "espeak-ng-mbrola-accented",
    "pico",
    "kokoro",
)
#: what ``lmukws data synth`` renders unless ``--engines`` says otherwise: every engine but the
#: neural ``kokoro`` (about an hour of CPU, opt-in), as ``data/synth`` has been built since the
#: training-only engines (accented MBROLA, Pico) joined
DEFAULT_ENGINES: tuple[str, ...] = tuple(e for e in ENGINES if e != "kokoro")
PEAK_DBFS = -3.0
TRIM_CORE_DB = -25.0  # trimming: the speech core, relative to the loudest 10 ms frame
TRIM_DB = -45.0  # frames this far below the loudest are always silence ...
TRIM_MAX_DB = -35.0  # ... and frames above this always speech
TRIM_GAP_S = 0.12  # quiet gaps bridged inside a word (stop closures)
TRIM_PAD_S = 0.03  # kept on each side of the speech
MIN_SPEECH_S = 0.08
TIMEOUT_S = 120.0

_BINARIES = {
    "espeak-ng": "espeak-ng",
    "espeak-ng-mbrola": "mbrola",
    "flite": "flite",
    "festival": "festival",
    "rhvoice": "RHVoice-test",
    "espeak-ng-mbrola-accented": "mbrola",
    "pico": "pico2wave",
    "kokoro": "espeak-ng",  # its G2P; the model itself comes from Python packages
}
_MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/local/share/mbrola"))
_FESTIVAL_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/local/share/festival/voices"))
_FESTIVAL_LANGS = ("english", "us", "british", "uk")
_RHVOICE_DIRS = (Path("/usr/share/RHVoice/voices"), Path("/usr/local/share/RHVoice/voices"))
# espeak-ng driving MBROLA databases: the English ones, and other languages' speaking English
_MBROLA_ENGINES = ("espeak-ng-mbrola", "espeak-ng-mbrola-accented")
_PICO_DIRS = (Path("/usr/share/pico/lang"), Path("/usr/local/share/pico/lang"))
_PICO_LANGUAGES = ("en-US", "en-GB")

# The recorded person behind a voice name, where several engines share one.
_SPEAKERS = {
    "flite": {
        "kal": "kal",
        "kal16": "kal",
        "awb": "arctic:awb",
        "awb_time": "arctic:awb",
        "rms": "arctic:rms",
        "slt": "arctic:slt",
    },
    "festival": {
        "kal_diphone": "kal",
        "ked_diphone": "ked",
        "rab_diphone": "rab",
        "don_diphone": "don",
    },
    # RHVoice's English voices were trained on CMU ARCTIC (Alan: Alan W Black, "awb").
    "rhvoice": {
        "alan": "arctic:awb",
        "bdl": "arctic:bdl",
        "clb": "arctic:clb",
        "slt": "arctic:slt",
    },
}
_FLITE_F0 = {
    "kal": 105.0,
    "kal16": 105.0,
    "awb": 112.0,
    "awb_time": 112.0,
    "rms": 85.0,
    "slt": 160.0,
}
# espeak-ng variants (file names) that are effects rather than people: training only, and used
# after the natural ones.
EXOTIC_VARIANTS = frozenset(
    {
        "Demonic",
        "announcer",
        "robosoft",
        "robosoft2",
        "robosoft3",
        "robosoft4",
        "robosoft5",
        "robosoft6",
        "robosoft7",
        "robosoft8",
        "UniRobot",
        "anikaRobot",
        "croak",
        "fast",
        "whisper",
        "whisperf",
        "Storm",
        "Tweaky",
    }
)


class SynthesisError(RuntimeError):
    """An engine failed to produce usable speech."""


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice with fixed prosody; ``render`` speaks a text into a WAV file.

    ``base`` is the engine's own voice name (``en-us+m3``, ``kal16``, ``kal_diphone``, ``alan``);
    ``params`` the prosody: espeak ``speed``/``pitch``; flite ``stretch``/``f0``; festival
    ``stretch``/``pitch`` (multipliers); rhvoice ``rate``/``pitch`` (percent); kokoro
    ``speed`` (a multiplier; ``base`` names the blend, see :class:`training.kokoro.Blend`).
    """

    engine: str
    base: str
    speaker: str
    params: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def id(self) -> str:
        """Unique name, e.g. ``espeak-ng:en-us+m3:s160:p50``."""
        return ":".join([self.engine, self.base, *_param_tags(self.engine, self.params)])

    @property
    def slug(self) -> str:
        """``id`` made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9.+_-]", "_", self.id)

    def with_params(self, **params: float) -> Voice:
        """The same voice with other prosody parameters."""
        return replace(self, params=dict(params))

    def jitter(self, rng: random.Random) -> Voice:
        """The same voice with prosody drawn at random from the engine's natural range."""
        return self.with_params(**_draw_params(self, rng))

    def render(self, text: str, wav_path: str | os.PathLike[str]) -> float:
        """Speak ``text`` into ``wav_path`` (16 kHz mono PCM16, trimmed); returns seconds."""
        errors = self.render_many([(text, Path(wav_path))])
        if errors[0] is not None:
            raise SynthesisError(f"{self.id}: {errors[0]}")
        return _wav_seconds(Path(wav_path))

    def render_many(self, items: Sequence[tuple[str, Path]]) -> list[str | None]:
        """Render several ``(text, wav_path)``; returns one error message or None per item."""
        if self.engine == "kokoro":  # in process: no engine output file
            return [self._render_kokoro(text, Path(out)) for text, out in items]
        with tempfile.TemporaryDirectory(prefix="lmukws-tts-") as tmp:
            raw = [Path(tmp) / f"{i}.wav" for i in range(len(items))]
            texts = [text for text, _ in items]
            if self.engine == "festival":
                batch_error = _festival_batch(self, texts, raw)
                run_errors: list[str | None] = [batch_error] * len(items)
            else:
                run_errors = [self._run_one(t, r) for t, r in zip(texts, raw, strict=True)]
            errors: list[str | None] = []
            for (_, out), tmp_wav, error in zip(items, raw, run_errors, strict=True):
                if not tmp_wav.exists() or tmp_wav.stat().st_size <= 44:
                    errors.append(error or "no audio written")
                    continue
                try:
                    _finish(tmp_wav, Path(out))
                    errors.append(None)
                except (SynthesisError, RuntimeError, ValueError) as exc:
                    errors.append(str(exc))
            return errors

    def probe(self, text: str = "hello") -> str | None:
        """Render a test word; None if the voice works, else why not."""
        with tempfile.TemporaryDirectory(prefix="lmukws-probe-") as tmp:
            try:
                self.render(text, Path(tmp) / "probe.wav")
            except (SynthesisError, OSError) as exc:
                return str(exc)
        return None

    def _render_kokoro(self, text: str, out: Path) -> str | None:
        try:
            audio = kokoro.synthesize(text, self.base, self.params.get("speed", 1.0))
            finish_samples(audio, kokoro.SAMPLE_RATE, out)
        except (RuntimeError, ValueError, OSError) as exc:  # SynthesisError, KokoroError
            return str(exc)
        return None

    def _run_one(self, text: str, out: Path) -> str | None:
        p = self.params
        if self.engine == "espeak-ng" or self.engine in _MBROLA_ENGINES:
            cmd = ["espeak-ng", "-v", self.base, "-w", str(out)]
            if "speed" in p:
                cmd += ["-s", str(int(p["speed"]))]
            if "pitch" in p:
                cmd += ["-p", str(int(p["pitch"]))]
            return _run([*cmd, "--", text])
        if self.engine == "flite":
            cmd = ["flite", "-voice", self.base]
            if "stretch" in p:
                cmd += ["--setf", f"duration_stretch={p['stretch']:.3f}"]
            if "f0" in p:
                cmd += ["--setf", f"int_f0_target_mean={p['f0']:.1f}"]
            return _run([*cmd, "-t", text, "-o", str(out)])
        if self.engine == "rhvoice":
            cmd = ["RHVoice-test", "-p", self.base, "-o", str(out)]
            if "rate" in p:
                cmd += ["-r", str(int(p["rate"]))]
            if "pitch" in p:
                cmd += ["-t", str(int(p["pitch"]))]
            return _run(cmd, stdin=text + "\n")
        if self.engine == "pico":
            return _run(["pico2wave", "-l", self.base, "-w", str(out), "--", _pico_markup(text, p)])
        raise SynthesisError(f"unknown engine {self.engine!r}")


_PARAM_ORDER = ("speed", "rate", "stretch", "pitch", "f0")


def _pico_markup(text: str, params: dict[str, float]) -> str:
    """SVOX Pico's own markup for rate and pitch (percent of the voice's default)."""
    body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if "pitch" in params:
        body = f"<pitch level='{int(params['pitch'])}'>{body}</pitch>"
    if "rate" in params:
        body = f"<speed level='{int(params['rate'])}'>{body}</speed>"
    return body


def _param_tags(engine: str, params: dict[str, float]) -> list[str]:
    tags = []
    for key in sorted(params, key=lambda k: (*_PARAM_ORDER, k).index(k)):
        value = params[key]
        if engine == "kokoro" and key == "speed":  # a multiplier, not words per minute
            tags.append(f"s{value:.2f}")
        elif key in ("speed", "rate") or (engine != "festival" and key == "pitch"):
            tags.append(f"{key[0]}{int(value)}")
        elif key == "f0":
            tags.append(f"f{round(value)}")
        else:
            tags.append(f"{key[0]}{value:.2f}")
    return tags


def _draw_params(voice: Voice, rng: random.Random) -> dict[str, float]:
    if voice.engine == "espeak-ng":
        return {"speed": rng.randint(130, 200), "pitch": rng.randint(20, 80)}
    if voice.engine in _MBROLA_ENGINES:
        return {"speed": rng.randint(130, 190), "pitch": rng.randint(25, 75)}
    if voice.engine == "flite":
        f0 = _FLITE_F0.get(voice.base, 110.0) * rng.uniform(0.85, 1.2)
        return {"stretch": round(rng.uniform(0.85, 1.2), 2), "f0": round(f0)}
    if voice.engine == "festival":
        params = {"stretch": round(rng.uniform(0.85, 1.2), 2)}
        if "hts" not in voice.base:
            params["pitch"] = round(rng.uniform(0.85, 1.2), 2)
        return params
    if voice.engine in ("rhvoice", "pico"):  # percent of the voice's default
        return {"rate": rng.randint(80, 125), "pitch": rng.randint(85, 120)}
    if voice.engine == "kokoro":  # the blend (pseudo-speaker) stays; the pace changes
        return {"speed": round(rng.uniform(*kokoro.SPEED_RANGE), 2)}
    raise SynthesisError(f"unknown engine {voice.engine!r}")


def _run(cmd: list[str], stdin: str | None = None) -> str | None:
    try:
        proc = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]}: {exc}"
    if proc.returncode != 0:
        return f"{cmd[0]} exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
    return None


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_batch(voice: Voice, texts: Sequence[str], outs: Sequence[Path]) -> str | None:
    """Render every text with one festival process (loading a voice is slow)."""
    stretch = voice.params.get("stretch", 1.0)
    pitch = voice.params.get("pitch", 1.0)
    lines = [f"(voice_{voice.base})"]
    if "hts" in voice.base:
        lines.append(
            f'(set! hts_engine_params (cons (list "-r" {1.0 / stretch:.4f}) hts_engine_params))'
        )
    else:
        lines.append(
            "(Parameter.set 'Duration_Stretch (* "
            f"{stretch:.4f} (or (Parameter.get 'Duration_Stretch) 1.0)))"
        )
        lines.append(
            "(if (and (symbol-bound? 'int_lr_params) (assoc 'target_f0_mean int_lr_params))"
            " (set! int_lr_params (cons (list 'target_f0_mean (* "
            f"{pitch:.4f} (car (cdr (assoc 'target_f0_mean int_lr_params))))) int_lr_params)))"
        )
    for text, out in zip(texts, outs, strict=True):
        lines.append(f"(set! lmukws_utt (Utterance Text {_scheme_string(text)}))")
        lines.append("(utt.synth lmukws_utt)")
        lines.append(f"(utt.save.wave lmukws_utt {_scheme_string(str(out))} 'riff)")
    script = outs[0].parent / "render.scm" if outs else Path(tempfile.mkdtemp()) / "r.scm"
    script.write_text("\n".join(lines) + "\n")
    return _run(["festival", "--batch", str(script)])


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples as float32 mono in [-1, 1] and the sample rate (PCM16/24/32 or float WAV)."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1), int(rate)


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (deterministic, band-limited)."""
    if rate == target:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def highpass(x: np.ndarray, rate: int = SAMPLE_RATE, cutoff_hz: float = 50.0) -> np.ndarray:
    """Remove DC and rumble below ``cutoff_hz`` (some diphone voices carry a DC offset)."""
    if len(x) < 32:
        return x - x.mean() if len(x) else x
    from scipy.signal import sosfiltfilt

    return sosfiltfilt(_highpass_sos(rate, cutoff_hz), x - x.mean()).astype(np.float32)


@lru_cache(maxsize=8)
def _highpass_sos(rate: int, cutoff_hz: float) -> np.ndarray:
    from scipy.signal import butter

    return butter(2, cutoff_hz, btype="highpass", fs=rate, output="sos")


def trim(x: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Strip leading and trailing silence (and the faint noise some engines put there).

    On 10 ms frames: the speech core runs from the first to the last frame within TRIM_CORE_DB
    of the loudest; it grows outwards over frames louder than the side's noise floor + 10 dB
    (clamped to TRIM_DB..TRIM_MAX_DB of the loudest frame), bridging gaps up to TRIM_GAP_S (stop
    closures before a final burst); TRIM_PAD_S is kept on each side.
    """
    hop = rate // 100
    n = len(x) // hop
    if n == 0:
        return x[:0]
    frames = x[: n * hop].reshape(n, hop).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = rms.max()
    if loud <= 1e-5:
        return x[:0]
    core = np.flatnonzero(rms >= loud * 10 ** (TRIM_CORE_DB / 20))
    max_gap = int(TRIM_GAP_S * 100)

    def grow(edge: int, step: int, outside: np.ndarray) -> int:
        noise = float(np.median(outside)) if len(outside) else 0.0
        lo, hi = loud * 10 ** (TRIM_DB / 20), loud * 10 ** (TRIM_MAX_DB / 20)
        threshold = min(max(noise * 10 ** (10 / 20), lo, 3e-5), hi)
        last, gap, i = edge, 0, edge + step
        while 0 <= i < n and gap <= max_gap:
            if rms[i] >= threshold:
                last, gap = i, 0
            else:
                gap += 1
            i += step
        return last

    first = grow(int(core[0]), -1, rms[: core[0]])
    last = grow(int(core[-1]), 1, rms[core[-1] + 1 :])
    pad = int(TRIM_PAD_S * rate)
    return x[max(0, first * hop - pad) : min(len(x), (last + 1) * hop + pad)]


def normalize_peak(x: np.ndarray, dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Scale so the largest absolute sample sits at ``dbfs``."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak <= 0:
        return x
    return (x * (10 ** (dbfs / 20) / peak)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono PCM16 atomically (a temporary file, then a rename)."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def _finish(raw: Path, out: Path) -> None:
    finish_samples(*read_wav(raw), out)


def finish_samples(x: np.ndarray, rate: int, out: Path) -> None:
    """An engine's raw output [N] at ``rate`` -> ``out``: 16 kHz, high-passed, trimmed,
    peak-normalised PCM16 (raises SynthesisError if no speech is left)."""
    x = trim(highpass(resample(x, rate)))
    if len(x) < MIN_SPEECH_S * SAMPLE_RATE:
        raise SynthesisError("no speech in the engine's output")
    write_wav(out, normalize_peak(x))


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def is_valid_clip(path: Path) -> bool:
    """True if ``path`` is a 16 kHz mono PCM16 WAV with at least MIN_SPEECH_S of audio."""
    try:
        with wave.open(str(path), "rb") as w:
            return (
                w.getframerate() == SAMPLE_RATE
                and w.getnchannels() == 1
                and w.getsampwidth() == 2
                and w.getnframes() >= MIN_SPEECH_S * SAMPLE_RATE
            )
    except (OSError, EOFError, wave.Error):
        return False


# ----------------------------------------------------------------------------- discovery


def engine_available(engine: str) -> bool:
    """Whether the engine's program is on PATH."""
    binary = _BINARIES.get(engine)
    if binary is None:
        return False
    if engine in _MBROLA_ENGINES:
        return shutil.which("espeak-ng") is not None and shutil.which("mbrola") is not None
    if engine == "kokoro":
        return shutil.which(binary) is not None and kokoro.installed()
    return shutil.which(binary) is not None


def _lines(cmd: list[str]) -> list[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return proc.stdout.splitlines()


@lru_cache(maxsize=1)
def espeak_accents() -> tuple[str, ...]:
    """espeak-ng's English accents (``en-gb``, ``en-us``, ``en-gb-scotland``, ...)."""
    accents = []
    for line in _lines(["espeak-ng", "--voices=en"])[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("gmw/"):
            accents.append(cols[1])
    return tuple(dict.fromkeys(accents))


@lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    """espeak-ng's voice variants (``m3``, ``f2``, ``klatt``, ``Andy``, ...)."""
    variants = []
    for line in _lines(["espeak-ng", "--voices=variant"])[1:]:
        cols = line.split()
        files = [c for c in cols if c.startswith("!v/")]
        if files:
            variants.append(files[0][3:])
    return tuple(dict.fromkeys(variants))


def _mbrola_installed(database: str) -> bool:
    return any(
        (d / database / database).exists()
        or (d / database).is_file()
        or (d / "voices" / database).exists()
        for d in _MBROLA_DIRS
    )


@lru_cache(maxsize=2)
def espeak_mbrola_voices(accented: bool = False) -> tuple[str, ...]:
    """espeak-ng's English MBROLA voices whose database is installed: the English databases
    (``mb-us1``, ``mb-en1``, ...) or, ``accented``, the other languages' databases that
    espeak-ng drives with English text (``mb-de4-en``, ...)."""
    engine = "espeak-ng-mbrola-accented" if accented else "espeak-ng-mbrola"
    voices, missing = [], []
    for line in _lines(["espeak-ng", "--voices=mb"])[1:]:
        cols = line.split()
        if len(cols) < 5 or not cols[1].startswith("en") or not cols[4].startswith("mb/"):
            continue
        name = cols[4][3:]
        if name.endswith("-en") != accented:
            continue
        database = name.split("-")[1]
        (voices if _mbrola_installed(database) else missing).append(name)
    if missing:
        log.warning(
            "%s: skipping %d voices whose MBROLA database is not installed: %s",
            engine,
            len(missing),
            " ".join(missing),
        )
    return tuple(dict.fromkeys(voices))


@lru_cache(maxsize=1)
def pico_voices() -> tuple[str, ...]:
    """SVOX Pico's installed English languages (``en-US``, ``en-GB``): both of its files."""
    return tuple(
        lang
        for lang in _PICO_LANGUAGES
        if any(
            (d / f"{lang}_ta.bin").exists() and any(d.glob(f"{lang}_*_sg.bin")) for d in _PICO_DIRS
        )
    )


@lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """flite's built-in voices (``flite -lv``)."""
    for line in _lines(["flite", "-lv"]):
        if line.startswith("Voices available:"):
            return tuple(line.split(":", 1)[1].split())
    return ()


@lru_cache(maxsize=1)
def festival_voices() -> tuple[str, ...]:
    """Installed English festival voices (directory names under the voice folders)."""
    names = []
    for root in _FESTIVAL_DIRS:
        for lang in _FESTIVAL_LANGS:
            folder = root / lang
            if folder.is_dir():
                names += sorted(
                    p.name for p in folder.iterdir() if (p / "festvox" / f"{p.name}.scm").exists()
                )
    return tuple(dict.fromkeys(names))


@lru_cache(maxsize=1)
def rhvoice_voices() -> tuple[str, ...]:
    """Installed English RHVoice voices (profile names for ``RHVoice-test -p``)."""
    names = []
    for root in _RHVOICE_DIRS:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            info = folder / "voice.info"
            if info.exists() and "language=English" in info.read_text(errors="replace"):
                names.append(folder.name)
    return tuple(dict.fromkeys(names))


def _festival_speaker(name: str) -> str:
    if name in _SPEAKERS["festival"]:
        return _SPEAKERS["festival"][name]
    m = re.fullmatch(r"(\w+?)_mbrola", name)
    if m:
        return f"mbrola:{m.group(1)}"
    m = re.fullmatch(r"cmu_us_(\w+?)_arctic(_\w+)?", name)
    if m:
        return f"arctic:{m.group(1)}"
    return f"festival:{name}"


def espeak_voice(accent: str, variant: str | None = None) -> Voice:
    """An espeak-ng voice: accent plus variant (``en-us``, ``m3`` -> ``en-us+m3``)."""
    base = f"{accent}+{variant}" if variant else accent
    return Voice("espeak-ng", base, f"espeak-ng:{variant or 'default'}")


def kokoro_voice(blend: kokoro.Blend, **params: float) -> Voice:
    """The Kokoro pseudo-speaker ``blend`` (its speaker: the dominant style), e.g.
    ``kokoro:alp55+gon30+kum15+p8042:s0.93`` with ``speed=0.93``."""
    return Voice("kokoro", blend.name, blend.speaker, dict(params))


def base_voices(engine: str) -> list[Voice]:
    """The engine's voices with default prosody (espeak-ng: its default variant per accent;
    kokoro: its five style tables unblended).

    espeak-ng's accent x variant grid is built by the corpus from :func:`espeak_accents` and
    :func:`espeak_variants`; nothing here has been probed yet (see :meth:`Voice.probe`).
    """
    if not engine_available(engine):
        return []
    if engine == "espeak-ng":
        return [espeak_voice(a) for a in espeak_accents()]
    if engine in _MBROLA_ENGINES:
        names = espeak_mbrola_voices(accented=engine == "espeak-ng-mbrola-accented")
        return [Voice(engine, n, f"mbrola:{n.split('-')[1]}") for n in names]
    if engine == "pico":
        return [Voice(engine, lang, f"pico:{lang}") for lang in pico_voices()]
    if engine == "kokoro":
        return [kokoro_voice(kokoro.Blend.pure(style)) for style in kokoro.STYLES]
    if engine == "flite":
        return [Voice(engine, n, _SPEAKERS["flite"].get(n, f"flite:{n}")) for n in flite_voices()]
    if engine == "festival":
        return [Voice(engine, n, _festival_speaker(n)) for n in festival_voices()]
    if engine == "rhvoice":
        return [
            Voice(engine, n, _SPEAKERS["rhvoice"].get(n, f"rhvoice:{n}")) for n in rhvoice_voices()
        ]
    raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def engine_version(engine: str) -> str:
    """The installed Debian package version of the engine (kokoro: its PyPI package's), or ''
    if unknown."""
    if engine == "kokoro":
        return kokoro.version()
    package = {
        "espeak-ng": "espeak-ng",
        "espeak-ng-mbrola": "mbrola",
        "flite": "flite",
        "festival": "festival",
        "rhvoice": "rhvoice",
        "espeak-ng-mbrola-accented": "mbrola",
        "pico": "libttspico-utils",
    }.get(engine, engine)
    out = _lines(["dpkg-query", "-W", "-f=${Version}", package])
    return out[0].strip() if out else ""
