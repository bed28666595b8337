"""The sections that need only the models: ``model``, ``window``, ``runtime`` and ``train``.

- ``model``: parameters; the streaming step ``model.stream_frames(frames [B, 1, F], state)``
  (one hop for B sessions) per step and per frame, at each batch size; the parallel form's
  one-second clips/s at one batch size.
- ``window``: the naive windowed alternative (re-run ``frame_logits`` on the last second of
  frames every hop) against the streaming step, same model, same batch, interleaved rounds;
  the cost ratio per hop.
- ``runtime``: the streaming step run by torch against its ONNX Runtime export
  (``models.onnx_step``), same model, same state, interleaved rounds, for B sessions x n frames;
  the speed-up per (B, n). CPU only; needs onnxruntime.
- ``train``: one training step (forward, BCE-with-logits on one-hot targets, backward, Adam as
  in the paper's recipe) at one batch size for each model, interleaved; spiking / non-spiking.
  With ``train_data`` (a corpus), also the trainer's real data path (``train_data_bench``).

Window models (``models.config.WINDOW_MODELS``: global self-attention, no streaming form) get
no streaming-step or runtime rows (``None`` / ``[]``); their cost per session per hop is the
parallel forward over one window (``window_frames``) every hop, measured in ``window``. Each
``window`` row's ``hop`` is the model's own per-hop cost (the streaming step, else the window
forward) and ``vs_lmuformer_step`` its ratio to ``lmuformer``'s streaming step at that batch.

Weights are random (costs do not depend on them: every layer is dense). Shapes: B batch,
T frames, F mel bins (128), K labels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.config import BenchConfig, SectionUnavailableError
from benchmarks.timing import Timing, device_sync, interleaved, median_ratio
from models.config import MODEL_NAMES, FeatureConfig

#: Frames per second of audio (one per hop): a session is real time at this many frames/s.
FRAMES_PER_SECOND = 1000.0 / FeatureConfig().frame_shift_ms


def build(name: str, config: BenchConfig, device: torch.device) -> nn.Module:
    """A seeded model of the benchmark's size on ``device``, in eval mode (an ensemble name
    builds its members, equally weighted)."""
    from models.ensemble import build_named

    torch.manual_seed(config.seed)
    return build_named(name, **config.model_overrides).to(device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def stream_case(
    model: Any, batch: int, device: torch.device, frames: int = 1
) -> Callable[[], None]:
    """One streaming hop for ``batch`` sessions: ``stream_frames`` on ``frames`` new frames
    each (one by default; an engine step may carry several)."""
    features = model.config.in_features
    generator = torch.Generator().manual_seed(batch)
    new = torch.randn(batch, frames, features, generator=generator).to(device)
    holder = {"state": model.init_state(batch)}

    def step() -> None:
        with torch.inference_mode():
            _, _, holder["state"] = model.stream_frames(new, holder["state"])

    return step


def window_case(model: Any, batch: int, window: int, device: torch.device) -> Callable[[], None]:
    """One naive hop: shift a one-second window of frames by one frame, re-run the network on
    all of it (``frame_logits``) and keep the last frame's logits; a window model (no streaming
    form) runs its parallel form (clip logits of the window) instead."""
    features = model.config.in_features
    generator = torch.Generator().manual_seed(batch)
    frame = torch.randn(batch, 1, features, generator=generator).to(device)
    holder = {"window": torch.randn(batch, window, features, generator=generator).to(device)}
    streaming = model.config.streaming

    def hop() -> None:
        with torch.inference_mode():
            holder["window"] = torch.cat((holder["window"][:, 1:], frame), dim=1)
            if streaming:
                model.frame_logits(holder["window"])[:, -1]
            else:
                model(holder["window"])

    return hop


def parallel_case(model: Any, batch: int, frames: int, device: torch.device) -> Callable[[], None]:
    """Clip logits of ``batch`` clips of ``frames`` frames (the REST path's network call)."""
    generator = torch.Generator().manual_seed(frames)
    feats = torch.randn(batch, frames, model.config.in_features, generator=generator).to(device)

    def run() -> None:
        with torch.inference_mode():
            model(feats)

    return run


def train_case(
    name: str, config: BenchConfig, device: torch.device
) -> tuple[Callable[[], None], nn.Module]:
    """One training step of the paper's recipe on random data (batch ``train_batch``)."""
    model = build(name, config, device).train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=2.5e-3, betas=(0.95, 0.999), weight_decay=5e-7
    )
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(config.seed)
    k = model.config.num_classes
    feats = torch.randn(
        config.train_batch, config.train_frames, model.config.in_features, generator=generator
    ).to(device)
    targets = nn.functional.one_hot(
        torch.randint(0, k, (config.train_batch,), generator=generator), k
    ).float()
    targets = targets.to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(feats), targets)
        loss.backward()
        optimizer.step()

    return step, model


def _per_frame(timing: Timing, batch: int) -> dict[str, Any]:
    step = timing.median
    return {
        "batch": batch,
        "step": timing.to_dict(),
        "us_per_frame": round(step / batch * 1e6, 2),
        "frames_per_s": round(batch / step, 1),
        # the model alone: sessions one core-set could keep in real time at this batch
        "realtime_sessions": round(batch / step / FRAMES_PER_SECOND, 1),
    }


def bench_models(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict:
    """Section ``model``: parameters, streaming cost per frame, parallel clips/s."""
    sync = device_sync(device)
    models = {name: build(name, config, device) for name in config.models}
    streaming = {name: model for name, model in models.items() if model.config.streaming}
    results: dict[str, Any] = {
        name: {
            "parameters": count_parameters(model),
            "lookahead_frames": model.lookahead_frames if model.config.streaming else None,
            "streaming": model.config.streaming,
            "config": model.config.to_dict(),
        }
        for name, model in models.items()
    }
    for name in models.keys() - streaming.keys():
        results[name]["stream"] = None  # no streaming form
    for batch in config.stream_batches if streaming else ():
        log(f"streaming step, batch {batch}")
        cases = {name: stream_case(model, batch, device) for name, model in streaming.items()}
        timings = interleaved(
            cases, rounds=config.rounds, round_seconds=config.round_seconds, warmup=3, sync=sync
        )
        for name, timing in timings.items():
            results[name].setdefault("stream", []).append(_per_frame(timing, batch))
    log(f"parallel form, batch {config.parallel_batch} x {config.clip_frames} frames")
    cases = {
        name: parallel_case(model, config.parallel_batch, config.clip_frames, device)
        for name, model in models.items()
    }
    timings = interleaved(
        cases, rounds=config.rounds, round_seconds=config.round_seconds, warmup=1, sync=sync
    )
    for name, timing in timings.items():
        results[name]["parallel"] = {
            "batch": config.parallel_batch,
            "frames": config.clip_frames,
            "call": timing.to_dict(),
            "clips_per_s": round(config.parallel_batch / timing.median, 1),
        }
    return results


def count_flops(fn: Callable[[], None]) -> int:
    """Floating-point operations of one steady-state call of ``fn``, as torch's flop counter
    counts them (matrix products and convolutions; element-wise ops are not counted). One call
    runs first, uncounted: the streaming step folds weights once (``models.fold``)."""
    from torch.utils.flop_counter import FlopCounterMode

    fn()
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_window(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict:
    """Section ``window``: naive windowed recompute vs the streaming step, per hop.

    Beside the measured ratio, ``flop_ratio`` is the ratio of the two hops' counted FLOPs
    (batch 1; both scale with the batch): the ratio a machine running both at the same FLOP
    rate would measure. A measured ratio above it means the window runs less efficiently per
    FLOP than the step, below it the reverse. A window model has only the window forward
    (stream fields ``None``); see the module docstring for ``hop`` and ``vs_lmuformer_step``.
    """
    sync = device_sync(device)
    results: dict[str, Any] = {}
    for name in config.models:
        model = build(name, config, device)
        streaming = model.config.streaming
        window_flops = count_flops(window_case(model, 1, config.window_frames, device))
        stream_flops = count_flops(stream_case(model, 1, device)) if streaming else None
        rows = []
        for batch in config.window_batches:
            log(f"{name}: window of {config.window_frames} frames vs streaming, batch {batch}")
            cases = {"window": window_case(model, batch, config.window_frames, device)}
            if streaming:
                cases["stream"] = stream_case(model, batch, device)
            timings = interleaved(
                cases,
                rounds=config.rounds,
                round_seconds=config.round_seconds,
                warmup=2,
                sync=sync,
            )
            rows.append(
                _window_row(timings, batch, config.window_frames, window_flops, stream_flops)
            )
        results[name] = rows
    _compare_to_lmuformer(results)
    return results


def _window_row(
    timings: dict[str, Timing], batch: int, frames: int, window_flops: int, stream_flops: int | None
) -> dict[str, Any]:
    """One ``window`` row; ``hop`` is the streaming step when there is one, else the window."""
    stream = timings.get("stream")
    hop = (stream or timings["window"]).median
    return {
        "batch": batch,
        "window_frames": frames,
        "window_hop": timings["window"].to_dict(),
        "stream_hop": stream.to_dict() if stream else None,
        "ratio": round(median_ratio(timings["window"], stream), 1) if stream else None,
        "window_mflop": round(window_flops / 1e6, 2),
        "stream_mflop": round(stream_flops / 1e6, 3) if stream_flops else None,
        "flop_ratio": round(window_flops / stream_flops, 1) if stream_flops else None,
        "hop": "stream" if stream else "window",
        "hop_ms": round(hop * 1e3, 4),
        "us_per_session_hop": round(hop / batch * 1e6, 2),
        "realtime_sessions": round(batch / hop / FRAMES_PER_SECOND, 1),
    }


def _compare_to_lmuformer(results: dict[str, Any]) -> None:
    """Add ``vs_lmuformer_step`` to each row: its per-hop cost over ``lmuformer``'s streaming
    step at the same batch (medians of separate interleaved groups), when lmuformer ran."""
    base = {row["batch"]: row["hop_ms"] for row in results.get("lmuformer", ())}
    for rows in results.values():
        for row in rows:
            ref = base.get(row["batch"])
            row["vs_lmuformer_step"] = round(row["hop_ms"] / ref, 2) if ref else None


def runtime_case(
    runtime: Any, model: Any, batch: int, frames: int, device: torch.device
) -> Callable[[], None]:
    """One streaming step of ``frames`` new frames for ``batch`` sessions past the start-up
    delay, through ``runtime.stream_leaves`` (``models.runtime.StreamRuntime``)."""
    from models.state import flatten_state

    generator = torch.Generator().manual_seed(batch * 100 + frames)
    features = model.config.in_features
    state = model.init_state(batch)
    with torch.inference_mode():
        warm = torch.randn(batch, model.lookahead_frames + 1, features, generator=generator)
        _, _, state = model.stream_frames(warm.to(device), state)
    holder = {"leaves": flatten_state(state)[0]}
    new = torch.randn(batch, frames, features, generator=generator).to(device)

    def step() -> None:
        with torch.inference_mode():
            _, _, holder["leaves"] = runtime.stream_leaves(new, holder["leaves"])

    return step


def bench_runtime(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict:
    """Section ``runtime``: the streaming step in torch vs its ONNX Runtime export, per
    (B, n), interleaved; µs per session-frame and the speed-up."""
    from models.onnx_step import OnnxStreamStep, onnxruntime_available
    from models.runtime import TorchStreamStep

    if device.type != "cpu":
        raise SectionUnavailableError("the ONNX runtime runs on the CPU only")
    if not onnxruntime_available():
        raise SectionUnavailableError("onnxruntime, onnx or onnxscript is not installed")
    sync = device_sync(device)
    results: dict[str, Any] = {}
    for name in config.models:
        model = build(name, config, device)
        if not model.config.streaming:
            results[name] = []  # no streaming step to export
            continue
        log(f"{name}: exporting the streaming step to ONNX (cached after the first run)")
        onnx = OnnxStreamStep(
            model, threads=torch.get_num_threads(), max_static_frames=max(config.runtime_frames)
        )
        runtimes = {"torch": TorchStreamStep(model), "onnx": onnx}
        rows = []
        for batch in config.runtime_batches:
            for frames in config.runtime_frames:
                log(f"{name}: streaming step in torch vs ONNX Runtime, B={batch} x {frames}")
                cases = {
                    key: runtime_case(runtime, model, batch, frames, device)
                    for key, runtime in runtimes.items()
                }
                timings = interleaved(
                    cases,
                    rounds=config.rounds,
                    round_seconds=config.round_seconds,
                    warmup=3,
                    sync=sync,
                )
                per_frame = {k: t.median / (batch * frames) * 1e6 for k, t in timings.items()}
                rows.append(
                    {
                        "batch": batch,
                        "frames": frames,
                        "torch": timings["torch"].to_dict(),
                        "onnx": timings["onnx"].to_dict(),
                        "torch_us_per_frame": round(per_frame["torch"], 2),
                        "onnx_us_per_frame": round(per_frame["onnx"], 2),
                        "speedup": round(median_ratio(timings["torch"], timings["onnx"]), 2),
                    }
                )
        results[name] = rows
    return results


def bench_train(
    config: BenchConfig, device: torch.device, log: Callable[[str], None], out: Path
) -> dict:
    """Section ``train``: training-step time of each model, interleaved; the ratio."""
    log(f"training step, batch {config.train_batch} x {config.train_frames} frames")
    cases = {}
    for name in config.models:
        step, _ = train_case(name, config, device)
        cases[name] = step
    timings = interleaved(
        # warmup=0: the calibration call (untimed) is the warm-up step
        cases,
        rounds=config.train_rounds,
        round_seconds=0.0,
        warmup=0,
        sync=device_sync(device),
    )
    results: dict[str, Any] = {
        name: {
            "batch": config.train_batch,
            "frames": config.train_frames,
            "step": t.to_dict(),
        }
        for name, t in timings.items()
    }
    if config.train_data:
        from benchmarks.train_data_bench import data_path_run

        for name, t in timings.items():
            if name not in MODEL_NAMES:  # an ensemble: the trainer trains its members one by one
                log(f"{name}: no data-path run (an ensemble's members are trained alone)")
                continue
            run = data_path_run(name, config, device, log)
            if run["frames"] == config.train_frames:  # the same shape: the ratio means something
                run["vs_compute_alone"] = round(run["step_ms"] / (t.median * 1000.0), 2)
            results[name]["data_path"] = run
    if "lmuformer" in timings and "spiking-lmuformer" in timings:
        results["spiking_ratio"] = round(
            median_ratio(timings["spiking-lmuformer"], timings["lmuformer"]), 2
        )
    if "lmuformer" in timings:
        results["vs_lmuformer"] = {
            name: round(median_ratio(t, timings["lmuformer"]), 2) for name, t in timings.items()
        }
    return results
