"""What one benchmark run measures: a frozen config with three presets (full, quick, smoke).

- ``full``: every section at every size;
- ``quick``: every section with fewer sizes, smaller batches and shorter rounds (a first look);
- ``smoke``: a tiny model and tiny sizes, for the test suite (seconds; the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.config import RUNTIMES, FeatureConfig, check_model_name

#: The models a run measures unless ``--models`` names others (any of ``MODEL_NAMES``, or an
#: ensemble of streaming models such as ``lmuformer+spiking-lmuformer``): the two shipped
#: ones. Window models (``WINDOW_MODELS``) have no streaming step: the model sections cost
#: their window forward per hop (model_bench), the service sections serve them as ``lmukws
#: serve`` does, recomputing the window every ``window_hop_ms``.
DEFAULT_MODELS = ("lmuformer", "spiking-lmuformer")
#: Sections that need only the models; the engine and server sections are added when present.
MODEL_SECTIONS = ("model", "window", "runtime", "train")
SERVICE_SECTIONS = ("engine", "rest", "load", "soak")
SECTIONS = MODEL_SECTIONS + SERVICE_SECTIONS
PRESETS = ("full", "quick", "smoke")

_FEATURES = FeatureConfig()
#: Frames of one second of audio (Kaldi snip_edges: 1 + (rate - window) // hop).
ONE_SECOND_FRAMES = 1 + (_FEATURES.sample_rate - _FEATURES.frame_length) // _FEATURES.frame_shift


T = TypeVar("T")


class SectionUnavailableError(RuntimeError):
    """A section cannot run here (a package it measures is missing, or a tool is)."""


def comma_list(cast: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """An argparse ``type`` for the tuple fields: ``"1,64,256"`` -> ``(1, 64, 256)``."""

    def parse(text: str) -> tuple[T, ...]:
        try:
            return tuple(cast(item) for item in text.split(",") if item.strip())
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list: {error}") from None

    return parse


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and repeat counts of a run. ``model_overrides`` go to ``build_model`` (tiny
    models for tests); ``threads`` 0 keeps torch's default intra-op thread count."""

    preset: str = "full"
    models: tuple[str, ...] = DEFAULT_MODELS
    sections: tuple[str, ...] = SECTIONS
    model_overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 0
    seed: int = 0
    # timing
    rounds: int = 5
    round_seconds: float = 1.0
    # section model: parameters, streaming step, parallel clips/s
    stream_batches: tuple[int, ...] = (1, 64, 256)
    parallel_batch: int = 128
    clip_frames: int = ONE_SECOND_FRAMES
    # section train: one training step
    train_batch: int = 128
    train_frames: int = 128
    train_rounds: int = 3
    # section train, with a corpus: the trainer's real data path beside compute alone
    train_data: str = ""  # corpus folder ("": compute alone only)
    train_recipe: str = ""  # recipe file of the data-path run ("": the defaults)
    train_data_steps: int = 30  # steps per epoch of the data-path run (the second one counts)
    # section window: naive windowed recompute vs the streaming step
    window_frames: int = ONE_SECOND_FRAMES
    window_batches: tuple[int, ...] = (1, 64, 256)
    # section runtime: the streaming step in torch vs its ONNX Runtime export
    runtime_batches: tuple[int, ...] = (1, 8, 25, 100, 256)
    runtime_frames: tuple[int, ...] = (1, 4)
    # section engine: engine throughput
    engine_sessions: tuple[int, ...] = (1, 16, 64, 256, 512)
    engine_seconds: float = 10.0
    # section rest: REST batch classification
    rest_batches: tuple[int, ...] = (1, 8, 32, 128)
    rest_requests: int = 4
    # section load: websocket load on a real server
    load_clients: tuple[int, ...] = (10, 50, 100, 200)
    load_seconds: float = 60.0
    load_chunk_ms: float = 40.0
    load_force_detections: bool = True  # thresholds 0 and a reset every load_reset_s
    load_reset_s: float = 2.0
    # section soak: normal clients (streaming as the load section's) beside slow readers, heavy
    # REST requests, connection churn and one engine process killed, for a bounded time
    soak_seconds: float = 60.0
    soak_clients: int = 8  # normal real-time clients, each streaming sessions back to back
    soak_session_s: float = 10.0  # length of a normal client's session
    soak_slow_readers: int = 4  # clients that ask for scores every 10 ms and never read them
    soak_rest_files: int = 10  # files per POST /v1/classify, requests sent back to back
    soak_rest_file_s: float = 60.0  # seconds of audio per file (serve's max_upload_seconds)
    soak_churn_per_s: float = 5.0  # connections opened and dropped per second
    soak_kill_at: float = 1 / 3  # when one engine process is SIGKILLed, as a fraction of the run
    soak_slow_consumer_timeout_s: float = 3.0  # the soak server's slow_consumer_timeout_s
    # engine and server: checkpoints to serve (else shipped ones, else random weights)
    checkpoints: tuple[str, ...] = ()
    engine_max_batch: int = 0  # 0: the service's default (server.settings.Settings.max_batch)
    engine_chunk_ms: float = 20.0
    engine_processes: int = -1  # serve's engine processes (-1: its default; 0: in-process)
    runtime: str = ""  # engine and server: "torch", "onnx" or "auto" ("": serve's default)
    window_hop_ms: float = 0.0  # engine and server: a window model's recompute period (0: serve's)
    engine_refine: int = 2  # bisection steps between the largest N that kept up and the next

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {PRESETS}")
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)}; expected some of {SECTIONS}")
        for name in ("load_chunk_ms", "engine_chunk_ms"):
            if not 1.0 <= getattr(self, name) <= 1000.0:
                raise ValueError(f"{name} must be 1..1000 ms, got {getattr(self, name)}")
        if not 0.0 < self.soak_kill_at < 1.0:
            raise ValueError(f"soak_kill_at must be within (0, 1), got {self.soak_kill_at}")
        if self.soak_seconds <= 0 or self.soak_session_s <= 0 or self.soak_churn_per_s <= 0:
            raise ValueError("soak_seconds, soak_session_s and soak_churn_per_s must be > 0")
        if self.train_batch < 1:
            raise ValueError(f"train_batch must be >= 1, got {self.train_batch}")
        if self.train_data_steps < 1:
            raise ValueError(f"train_data_steps must be >= 1, got {self.train_data_steps}")
        if self.train_recipe and not self.train_data:
            raise ValueError("train_recipe needs train_data (the corpus the trainer reads)")
        if self.runtime and self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        for name in self.models:
            check_model_name(name)
        if self.window_hop_ms < 0:
            raise ValueError(f"window_hop_ms must be >= 0 (0: serve's), got {self.window_hop_ms}")

    @classmethod
    def preset_config(cls, preset: str, **changes: Any) -> BenchConfig:
        """The ``full``, ``quick`` or ``smoke`` preset with ``changes`` applied."""
        if preset == "full":
            base = cls()
        elif preset == "quick":
            base = cls(
                preset="quick",
                rounds=3,
                round_seconds=0.3,
                stream_batches=(1, 64),
                parallel_batch=32,
                train_batch=32,
                train_rounds=2,
                train_data_steps=10,
                window_batches=(1,),
                runtime_batches=(8, 64),
                runtime_frames=(4,),
                engine_sessions=(16, 64),
                engine_seconds=4.0,
                engine_refine=0,
                rest_batches=(16,),
                rest_requests=2,
                load_clients=(10,),
                load_seconds=8.0,
                soak_seconds=15.0,
                soak_clients=4,
                soak_session_s=5.0,
                soak_slow_readers=2,
                soak_rest_files=2,
                soak_churn_per_s=2.0,
            )
        elif preset == "smoke":
            base = cls(
                preset="smoke",
                model_overrides={"dim": 16, "num_classes": 5, "num_embed_convs": 2},
                rounds=1,
                round_seconds=0.01,
                stream_batches=(1, 4),
                parallel_batch=4,
                clip_frames=20,
                train_batch=4,
                train_frames=20,
                train_rounds=1,
                train_data_steps=2,
                window_frames=20,
                window_batches=(1,),
                runtime_batches=(2,),
                runtime_frames=(1,),
                engine_sessions=(2,),
                engine_seconds=0.5,
                engine_refine=0,
                rest_batches=(2,),
                rest_requests=1,
                load_clients=(2,),
                load_seconds=2.0,
                soak_seconds=6.0,
                soak_clients=2,
                soak_session_s=2.5,
                soak_slow_readers=1,
                soak_rest_files=1,
                soak_rest_file_s=1.0,
                soak_churn_per_s=2.0,
            )
        else:
            raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
