"""Simulated rooms: shoebox room impulse responses (RIRs) from image sources and a diffuse tail.

A room is drawn from a ``numpy.random.Generator`` (:func:`draw_room`): its size, a reverberation
time RT60, a microphone and a talker at a source-mic distance. :func:`room_rir` renders its RIR:

- the direct path and every image source (Allen & Berkley's method, one frequency-independent
  reflection coefficient for all six walls) that arrives within ``early_s`` of the direct path,
  each at its fractional delay (a Hann-windowed sinc) with amplitude ``beta^k / r``;
- after ``early_s``, a diffuse tail: Gaussian noise under an exponential envelope that falls
  60 dB in RT60, with the total reverberant energy of Sabine's diffuse-field theory, so the
  direct-to-reverberant ratio (DRR) is ``20 log10(r_c / r)`` for the critical distance ``r_c``.

Wall absorption follows RT60 through Eyring's formula, ``RT60 = 0.161 V / (-S ln(1 - a))``.
The distance sets both the DRR and the level: the direct path falls 6 dB per doubling of
distance over a reverberant level that does not depend on it, and a talker at the reference
distance ``ref`` (the range's geometric mean) keeps the dry clip's energy (direct plus
reverberant), so rooms neither raise nor lower the corpus's level on average.

The RIR keeps ``lead`` samples before the direct path (the left half of the sinc kernels of
reflections that arrive within a few samples of it); :func:`reverberate` and
:func:`rir_spectrum` advance by ``lead``, so the direct path is at sample 0 and a keyword keeps
its place in the window. :class:`RirPool` caches RIRs by index, each drawn from its own seeded
generator, so a worker renders each room once and any worker gets the same room for an index.
Shapes: S samples of a clip, L samples of a RIR (``lead`` included), N FFT size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

__all__ = [
    "SOUND_SPEED",
    "RirPool",
    "Room",
    "RoomConfig",
    "critical_distance",
    "draw_room",
    "eyring_absorption",
    "reverberate",
    "rir_spectrum",
    "room_rir",
    "schroeder_rt60",
]

SOUND_SPEED = 343.0  # m/s
SABINE = 24.0 * math.log(10.0) / SOUND_SPEED  # 0.161 s/m: RT60 = SABINE * V / A
SINC_HALF = 8  # half-width (samples) of the fractional-delay kernel; also the RIR's lead
EPS = 1e-12


@dataclass(frozen=True)
class RoomConfig:
    """Ranges rooms are drawn from (uniform, distance log-uniform) and the RIR's extent."""

    length_m: tuple[float, float] = (3.0, 10.0)
    width_m: tuple[float, float] = (3.0, 8.0)
    height_m: tuple[float, float] = (2.4, 4.0)
    rt60_s: tuple[float, float] = (0.15, 0.9)
    distance_m: tuple[float, float] = (0.3, 5.0)
    #: talker and microphone stay this far from every wall
    margin_m: float = 0.3
    #: image sources up to this delay after the direct path; the diffuse tail after it
    early_s: float = 0.05
    #: RIRs end at min(RT60, max_s) after the direct path (the tail is then 60 dB down)
    max_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("length_m", "width_m", "height_m", "rt60_s", "distance_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"room {name} must be 0 < low <= high, got {(lo, hi)}")
        if 2 * self.margin_m >= min(self.length_m[0], self.width_m[0], self.height_m[0]):
            raise ValueError(f"room margin_m {self.margin_m} leaves no space in the smallest room")

    @property
    def reference_m(self) -> float:
        """The distance at which the direct path keeps the dry level (the range's geometric
        mean: levels spread evenly in dB around the dry clip)."""
        lo, hi = self.distance_m
        return math.sqrt(lo * hi)


@dataclass(frozen=True)
class Room:
    """One drawn shoebox: size, positions (metres, a corner at the origin), RT60."""

    size: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60_s: float

    @property
    def distance_m(self) -> float:
        return math.dist(self.source, self.mic)

    @property
    def absorption(self) -> float:
        return eyring_absorption(self.size, self.rt60_s)

    @property
    def critical_distance_m(self) -> float:
        return critical_distance(self.size, self.rt60_s)


def _volume_surface(size: tuple[float, float, float]) -> tuple[float, float]:
    lx, ly, lz = size
    return lx * ly * lz, 2.0 * (lx * ly + lx * lz + ly * lz)


def eyring_absorption(size: tuple[float, float, float], rt60_s: float) -> float:
    """The wall absorption coefficient in (0, 1) that gives ``rt60_s`` by Eyring's formula."""
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be > 0, got {rt60_s}")
    volume, surface = _volume_surface(size)
    return 1.0 - math.exp(-SABINE * volume / (surface * rt60_s))


def critical_distance(size: tuple[float, float, float], rt60_s: float) -> float:
    """The distance (m) at which direct and diffuse reverberant energy are equal:
    sqrt(A / 16 pi) for the equivalent absorption area A = 0.161 V / RT60."""
    volume, _ = _volume_surface(size)
    return math.sqrt(SABINE * volume / rt60_s / (16.0 * math.pi))


def draw_room(rng: np.random.Generator, config: RoomConfig = RoomConfig()) -> Room:
    """A random room: size and RT60 uniform, distance log-uniform (DRR uniform in dB).

    The microphone is uniform inside the room (``margin_m`` from the walls), the talker at the
    drawn distance in a random direction; where no direction fits, the distance shrinks.
    """
    size = tuple(float(rng.uniform(*r)) for r in (config.length_m, config.width_m, config.height_m))
    rt60 = float(rng.uniform(*config.rt60_s))
    lo_d, hi_d = config.distance_m
    distance = float(math.exp(rng.uniform(math.log(lo_d), math.log(hi_d))))
    m = config.margin_m
    low, high = np.full(3, m), np.asarray(size) - m
    mic = rng.uniform(low, high)
    while True:
        for _ in range(32):
            direction = rng.standard_normal(3)
            source = mic + distance * direction / (np.linalg.norm(direction) + EPS)
            if np.all(source >= low) and np.all(source <= high):
                return Room(
                    size=size,  # type: ignore[arg-type]
                    source=tuple(float(v) for v in source),  # type: ignore[arg-type]
                    mic=tuple(float(v) for v in mic),  # type: ignore[arg-type]
                    rt60_s=rt60,
                )
        distance *= 0.8


def _images(room: Room, max_path: float) -> tuple[np.ndarray, np.ndarray]:
    """Path lengths [I] (m) and reflection counts [I] of the images within ``max_path``."""
    per_axis = []
    for length, s, r in zip(room.size, room.source, room.mic, strict=True):
        n_max = math.ceil(max_path / (2.0 * length)) + 1
        n = np.arange(-n_max, n_max + 1)
        coord = np.concatenate([s + 2.0 * n * length, -s + 2.0 * n * length])  # p = 0, then 1
        hits = np.concatenate([2 * np.abs(n), np.abs(n - 1) + np.abs(n)])
        keep = np.abs(coord - r) <= max_path
        per_axis.append(((coord - r)[keep], hits[keep]))
    (dx, hx), (dy, hy), (dz, hz) = per_axis
    dist = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2)
    hits = hx[:, None, None] + hy[None, :, None] + hz[None, None, :]
    keep = dist <= max_path
    return dist[keep], hits[keep]


def room_rir(
    room: Room,
    rng: np.random.Generator,
    sample_rate: int = 16000,
    config: RoomConfig = RoomConfig(),
) -> tuple[np.ndarray, int]:
    """(rir [L] float32, lead): the room's impulse response, the direct path at index ``lead``.

    ``rng`` draws the diffuse tail's noise.
    """
    fs = float(sample_rate)
    r0 = room.distance_m
    beta = math.sqrt(1.0 - room.absorption)  # pressure reflection coefficient of every wall
    length_s = max(min(room.rt60_s, config.max_s), config.early_s)
    lead = SINC_HALF
    n = lead + math.ceil(length_s * fs) + SINC_HALF + 1
    rir = np.zeros(n, dtype=np.float64)
    ref, r_c = config.reference_m, room.critical_distance_m
    amp_ref = ref / math.sqrt(1.0 + (ref / r_c) ** 2)  # energy 1 at ref: (ref/r)^2 + (ref/r_c)^2

    # early part: the direct path and the image sources (fractional delays, windowed sinc)
    dist, hits = _images(room, r0 + SOUND_SPEED * config.early_s)
    delay = (dist - r0) / SOUND_SPEED * fs + lead  # [I] samples, the direct path at ``lead``
    amp = amp_ref * beta**hits / np.maximum(dist, EPS)
    taps = np.arange(-SINC_HALF, SINC_HALF + 1)
    base = np.floor(delay).astype(np.int64)
    frac = delay - base
    offsets = taps[None, :] - frac[:, None]  # [I, K] time of each tap relative to the arrival
    kernel = np.sinc(offsets) * (0.5 + 0.5 * np.cos(np.pi * offsets / (SINC_HALF + 1)))
    index = base[:, None] + taps[None, :]
    valid = (index >= 0) & (index < n)
    np.add.at(rir, index[valid], (amp[:, None] * kernel)[valid])

    # diffuse tail after early_s: energy of the diffuse field (direct 1/r^2 at r_c) beyond it
    decay = 6.0 * math.log(10.0) / room.rt60_s  # energy decays exp(-decay t): -60 dB at RT60
    start = lead + round(config.early_s * fs)
    if start < n:
        t = (np.arange(start, n) - lead) / fs
        tail = rng.standard_normal(t.size) * np.exp(-0.5 * decay * t)
        e_rev = (amp_ref / r_c) ** 2
        t0, t1 = t[0], t[-1] + 1.0 / fs
        target = e_rev * (math.exp(-decay * t0) - math.exp(-decay * t1))
        rir[start:] += tail * math.sqrt(target / (np.sum(tail**2) + EPS))
    return rir.astype(np.float32), lead


def rir_spectrum(rir: np.ndarray, lead: int, n_fft: int) -> np.ndarray:
    """The RIR's spectrum [N // 2 + 1] (complex64), advanced by ``lead`` samples.

    The ``lead`` samples before the direct path wrap to the end of the N-sample frame (taps
    that read ``lead`` samples ahead): exact for a clip zero-padded to N >= S + L.
    """
    if rir.size > n_fft:
        raise ValueError(f"rir of {rir.size} samples does not fit an FFT of {n_fft}")
    frame = np.zeros(n_fft, dtype=np.float32)
    frame[: rir.size - lead] = rir[lead:]
    if lead:
        frame[n_fft - lead :] = rir[:lead]
    return np.fft.rfft(frame).astype(np.complex64)


def reverberate(x: np.ndarray, rir: np.ndarray, lead: int) -> np.ndarray:
    """``x`` [S] through the room: [S], the direct path aligned with the input (FFT convolution,
    the tail beyond S cut)."""
    y = fftconvolve(x.astype(np.float64), rir.astype(np.float64))
    return y[lead : lead + x.size].astype(np.float32)


def schroeder_rt60(
    rir: np.ndarray, sample_rate: int, fit_db: tuple[float, float] = (-5.0, -25.0)
) -> float:
    """RT60 (s) measured from the Schroeder backward-integrated energy decay of ``rir`` [L]:
    a line fit between ``fit_db`` (T20 by default) extrapolated to -60 dB."""
    energy = np.cumsum((rir.astype(np.float64) ** 2)[::-1])[::-1]
    edc = 10.0 * np.log10(energy / energy[0] + EPS)
    hi, lo = fit_db
    i0 = int(np.argmax(edc <= hi))
    i1 = int(np.argmax(edc <= lo))
    if i1 <= i0:
        raise ValueError(f"the decay never falls from {hi} to {lo} dB")
    t = np.arange(i0, i1) / sample_rate
    slope = np.polyfit(t, edc[i0:i1], 1)[0]  # dB per second
    return -60.0 / slope


class RirPool:
    """RIRs by index in [0, size), each rendered once from its own generator and cached.

    Index ``k`` always gives the same room, whichever process asks: draw ``k`` from an item's
    generator and the item augments the same way in any worker.
    """

    def __init__(
        self,
        size: int,
        sample_rate: int = 16000,
        config: RoomConfig = RoomConfig(),
        seed: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError(f"room pool size must be >= 1, got {size}")
        self.size = size
        self.sample_rate = sample_rate
        self.config = config
        self.seed = seed
        self._cache: dict[int, tuple[np.ndarray, int, Room]] = {}

    @property
    def max_len(self) -> int:
        """An upper bound on L for this config (FFT sizing)."""
        c = self.config
        length_s = max(min(c.rt60_s[1], c.max_s), c.early_s)
        return 2 * SINC_HALF + 1 + math.ceil(length_s * self.sample_rate)

    def get(self, index: int) -> tuple[np.ndarray, int, Room]:
        """(rir [L], lead, room) of pool entry ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(f"room pool index {index} outside [0, {self.size})")
        if index not in self._cache:
            rng = np.random.default_rng([0x524F4F4D, self.seed, index])
            room = draw_room(rng, self.config)
            rir, lead = room_rir(room, rng, self.sample_rate, self.config)
            self._cache[index] = (rir, lead, room)
        return self._cache[index]
