"""Evaluate a checkpoint on one split of a corpus, through the parallel and the streaming form.

For every clip (features [T, F], no augmentation) it computes

- the clip logits of the parallel form, ``model(feats)`` (the paper's accuracy), and
- the per-frame logits of the streaming form: all clips of a batch are fed in lockstep with
  ``model.stream_frames`` (``chunk_frames`` frames per call), keeping the frames that became
  final, then ``model.finish``. After k input frames only the frames emitted so far (k -
  lookahead_frames with one frame per call) are known, so the accuracy-vs-frames-seen curve
  (argmax of the cumulative mean of the final per-frame logits, as in the paper's figure) pays
  the look-ahead delay for real. The authors' curve (cumulative mean of the parallel form's
  per-frame logits, whose convolutions see the future) is reported next to it.

With ``recordings`` (an ``lmukws data recordings`` folder) it also scores the **real-speech dev
set** (:func:`evaluate_recordings`): every ``use=dev`` clip of kind ``keyword`` or ``word``
(real people saying digits and "no", and non-keyword words labelled ``_unknown_``), each put in
the window exactly as the corpus's held-out clips are (window mode: centred in the 128-frame
window; clip mode: from the start, padded) and scored by the parallel form's clip mean, so its
accuracy compares with the synthetic test accuracy. ``use=eval`` rows are never read.

``evaluate_checkpoint`` returns an :class:`Evaluation`; ``training.report.write_report`` turns
it into a report folder. Shapes: B batch, T frames, F mel bins, K labels, N clips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models import FeatureConfig, LMUFormer
from models.config import DEFAULT_WINDOW_HOP_MS, window_hop_frames
from streaming.window import WindowStep
from training.labels import UNKNOWN

#: a window model's recompute period in frames, as served by default (``lmukws serve``)
DEFAULT_WINDOW_HOP_FRAMES = window_hop_frames(DEFAULT_WINDOW_HOP_MS, FeatureConfig().frame_shift_ms)

if TYPE_CHECKING:
    from training.dataset import ManifestDataset

#: the paper: 99 % of the final accuracy after 87 of 128 frames ("32.03 % shorter sequences")
PAPER_FRAMES_TO_99 = 87
TARGET_FRACTION = 0.99
#: the real-speech dev set: the ``use=dev`` recordings of these kinds (isolated words)
DEV_KINDS = ("keyword", "word")


@dataclass
class DevEvaluation:
    """The real-speech dev set, clip by clip (numpy arrays on the CPU).

    root: the recordings folder; paths, speakers, kinds: [N] manifest path (relative to root),
    speaker and kind (``keyword`` or ``word``) of each clip; targets, predictions: [N] class
    indices into labels (a label the checkpoint lacks counts as ``_unknown_``); scores: [N]
    softmax probability of the prediction; mode: how clips were put in the window (the
    evaluated corpus's: ``window`` centred, ``clip`` from the start); packages: the Debian
    package versions the recordings came from.
    """

    root: str
    labels: list[str]
    paths: list[str]
    speakers: list[str]
    kinds: list[str]
    targets: np.ndarray
    predictions: np.ndarray
    scores: np.ndarray
    mode: str
    window_frames: int
    packages: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clips(self) -> int:
        return int(self.targets.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """[N] bool: the prediction is the label."""
        return self.predictions == self.targets

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.num_clips else 0.0


@dataclass
class Evaluation:
    """Everything a report needs (numpy arrays on the CPU).

    labels: [K]; targets, predictions: [N] class indices (parallel form); scores: [N] softmax
    probability of the prediction; stream_predictions: [N] (streaming form, after finish);
    streaming_correct / parallel_correct: [T] clips right after k = 1..T input frames;
    ready_frames: [T] final frames known after k input frames; max_abs_diff: largest
    |streamed - parallel| per-frame logit; paths, voices: [N] manifest path and voice of each
    clip ("" where unknown); real_speech_dev: the real-speech dev set, when evaluated.
    """

    labels: list[str]
    targets: np.ndarray
    predictions: np.ndarray
    scores: np.ndarray
    stream_predictions: np.ndarray
    streaming_correct: np.ndarray
    parallel_correct: np.ndarray
    ready_frames: np.ndarray
    lookahead_frames: int
    chunk_frames: int
    max_abs_diff: float
    num_parameters: int = 0
    #: a window model's hop (frames) when its curve is the served recompute, else 0
    window_hop_frames: int = 0
    paths: list[str] = field(default_factory=list)
    voices: list[str] = field(default_factory=list)
    #: the real-speech dev set's results (``--recordings``), reported separately
    real_speech_dev: DevEvaluation | None = None
    #: keyword-clip accuracy under backgrounds (``--backgrounds``,
    #: ``training.backgrounds.evaluate_backgrounds``)
    backgrounds: dict[str, Any] | None = None

    @property
    def num_clips(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.streaming_correct.shape[0])

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.targets).mean()) if self.num_clips else 0.0

    @property
    def streaming_accuracy(self) -> float:
        """Accuracy of the streamed clip (all frames, after finish)."""
        return float((self.stream_predictions == self.targets).mean()) if self.num_clips else 0.0

    def confusion(self) -> np.ndarray:
        """[K, K] counts: row = true label, column = prediction."""
        k = len(self.labels)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (self.targets, self.predictions), 1)
        return matrix

    def curve(self, streaming: bool = True) -> np.ndarray:
        """Accuracy [T] after k = 1..T input frames."""
        correct = self.streaming_correct if streaming else self.parallel_correct
        return correct / max(self.num_clips, 1)


def frames_to_fraction(
    curve: np.ndarray, final: float, fraction: float = TARGET_FRACTION
) -> int | None:
    """Smallest k (1-based) with curve[k-1] >= fraction * final, or None if never."""
    hits = np.nonzero(curve >= fraction * final - 1e-12)[0]
    return int(hits[0]) + 1 if hits.size else None


def stream_lockstep(
    model: LMUFormer, feats: torch.Tensor, chunk_frames: int = 1
) -> tuple[torch.Tensor, np.ndarray]:
    """Stream a batch of clips in lockstep through the model's streaming form.

    feats: [B, T, F] -> (logits [B, T, K] of every frame in order, streamed then finished;
    ready [T] int: how many leading frames were final after k = 1..T input frames).
    """
    batch, total, _ = feats.shape
    state = model.init_state(batch)
    pieces: list[torch.Tensor] = []
    emitted = 0
    ready = np.zeros(total, dtype=np.int64)
    for start in range(0, total, chunk_frames):
        chunk = feats[:, start : start + chunk_frames]
        logits, positions, state = model.stream_frames(chunk, state)
        keep = positions[0] >= 0  # lockstep: every clip is at the same position
        if bool(keep.any()):
            got = positions[0][keep]
            if int(got[0]) != emitted:
                raise RuntimeError(f"stream emitted frame {int(got[0])}, expected {emitted}")
            pieces.append(logits[:, keep])
            emitted += int(keep.sum())
        ready[start : start + chunk.shape[1]] = 0 if start == 0 else ready[start - 1]
        ready[start + chunk.shape[1] - 1] = emitted
    tail, _ = model.finish(state)
    pieces.append(tail)
    out = torch.cat(pieces, dim=1)
    if out.shape[1] != total:
        raise RuntimeError(f"streaming gave {out.shape[1]} frames for {total} inputs")
    return out, ready


def window_lockstep(
    model: LMUFormer, feats: torch.Tensor, hop_frames: int, pad_value: float
) -> torch.Tensor:
    """What a window model (no streaming form) serves while a batch of clips streams in: the
    server's own :class:`streaming.window.WindowStep` (at every hop the parallel form scores the
    window ending there, left-padded with ``pad_value``; frames between hops hold the latest
    hop's logits), fed one hop per call so each forward holds one window per clip.
    feats: [B, T, F] -> clip logits after k = 1..T input frames, [B, T, K]."""
    step = WindowStep(model, hop_frames, pad_value)
    state = step.init_state(feats.shape[0])
    leaves = [state.ring, state.seen, state.last]
    held = []
    for start in range(0, feats.shape[1], hop_frames):
        logits, _, leaves = step.stream_leaves(feats[:, start : start + hop_frames], leaves)
        held.append(logits)
    return torch.cat(held, dim=1)


def _correct_by_count(frame_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B, T, K] -> [T]: clips whose argmax of the mean of the first n frames is right."""
    cumulative = frame_logits.cumsum(dim=1)  # the mean has the same argmax as the sum
    return (cumulative.argmax(dim=-1) == targets[:, None]).sum(dim=0)


def evaluate_batches(
    model: LMUFormer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    labels: list[str],
    chunk_frames: int = 1,
    device: str | torch.device = "cpu",
    progress: Any = None,
    pad_value: float = 0.0,
    hop_frames: int = DEFAULT_WINDOW_HOP_FRAMES,
) -> Evaluation:
    """Run the parallel and the streaming form over ``batches`` of (feats [B, T, F], y [B]).

    A window model (no streaming form) is streamed as it is served instead: its window
    recomputed every ``hop_frames`` (:func:`window_lockstep`, padded with ``pad_value``)."""
    windowed = not model.streaming
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    model = model.to(device).eval()
    targets, predictions, scores, stream_predictions = [], [], [], []
    streaming_correct: torch.Tensor | None = None
    parallel_correct: torch.Tensor | None = None
    ready: np.ndarray | None = None
    max_diff = 0.0
    with torch.inference_mode():
        for feats, y in batches:
            feats, y = feats.to(device), y.to(device)
            parallel = model.frame_logits(feats)  # [B, T, K], sees the future
            clip = parallel.mean(dim=1)
            if windowed:  # what the server holds after k frames; no frame-by-frame stream
                held = window_lockstep(model, feats, hop_frames, pad_value)
                s_correct = (held.argmax(dim=-1) == y[:, None]).sum(dim=0).cpu()
                batch_ready = np.arange(1, feats.shape[1] + 1)
                stream_predictions.append(held[:, -1].argmax(dim=-1).cpu())
            else:
                streamed, batch_ready = stream_lockstep(model, feats, chunk_frames)
                max_diff = max(max_diff, float((streamed - parallel).abs().max()))
                stream_predictions.append(streamed.mean(dim=1).argmax(dim=-1).cpu())
                by_count = _correct_by_count(streamed, y).cpu()  # [T], n final frames
                counts = torch.from_numpy(batch_ready)
                s_correct = torch.where(counts > 0, by_count[(counts - 1).clamp(min=0)], 0)
            probs = clip.softmax(dim=-1)
            targets.append(y.cpu())
            predictions.append(clip.argmax(dim=-1).cpu())
            scores.append(probs.max(dim=-1).values.cpu())
            p_correct = _correct_by_count(parallel, y).cpu()
            if streaming_correct is None:
                streaming_correct, parallel_correct, ready = s_correct, p_correct, batch_ready
            else:
                if s_correct.shape != streaming_correct.shape:
                    raise ValueError("all clips must have the same number of frames")
                streaming_correct = streaming_correct + s_correct
                parallel_correct = parallel_correct + p_correct  # type: ignore[operator]
            if progress is not None:
                progress.update(int(y.shape[0]))
    if streaming_correct is None or parallel_correct is None or ready is None:
        raise ValueError("no clips to evaluate")
    return Evaluation(
        labels=list(labels),
        targets=torch.cat(targets).numpy(),
        predictions=torch.cat(predictions).numpy(),
        scores=torch.cat(scores).numpy(),
        stream_predictions=torch.cat(stream_predictions).numpy(),
        streaming_correct=streaming_correct.numpy(),
        parallel_correct=parallel_correct.numpy(),
        ready_frames=ready,
        lookahead_frames=0 if windowed else model.lookahead_frames,
        chunk_frames=chunk_frames,
        max_abs_diff=max_diff,
        num_parameters=sum(p.numel() for p in model.parameters()),
        window_hop_frames=hop_frames if windowed else 0,
    )


def _dev_windows(clips: list[np.ndarray], like: ManifestDataset) -> np.ndarray:
    """Windows [B, S] of float clips, placed as ``like`` places its held-out clips."""
    from training.dataset import _centre, _fit

    place = _fit if like.mode == "clip" else _centre
    return np.stack([place(clip, like.window) for clip in clips])


def evaluate_recordings(
    model: LMUFormer,
    recordings: str | Path,
    like: ManifestDataset,
    labels: list[str],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> DevEvaluation:
    """Score the real-speech dev set of the ``lmukws data recordings`` folder ``recordings``.

    Every ``use=dev`` row of kind ``keyword`` or ``word`` is read (``use=eval`` rows never
    are), windowed and featurised by ``like`` (the evaluated split's dataset) exactly as its
    held-out clips, and scored by the parallel form's clip mean (argmax; score = softmax
    probability), the paper's accuracy.
    """
    import soundfile as sf

    from training.recordings import read_recordings

    root = Path(recordings)
    rows = read_recordings(root, use="dev", kind=DEV_KINDS)
    if not rows:
        raise ValueError(f"{root}: no use=dev clips of kind {' or '.join(DEV_KINDS)}")
    index = {label: i for i, label in enumerate(labels)}
    targets = []
    for row in rows:
        label = row.label if row.label in index else UNKNOWN
        if label not in index:
            raise ValueError(f"label {row.label!r} of {row.path} is not in the labels")
        targets.append(index[label])
    rate = like.feature_config.sample_rate
    model = model.to(device).eval()
    predictions, scores = [], []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            clips = []
            for row in rows[start : start + batch_size]:
                x, clip_rate = sf.read(str(row.path), dtype="float32", always_2d=True)
                if clip_rate != rate:
                    raise ValueError(f"{row.path}: sample rate {clip_rate}, expected {rate}")
                clips.append(x[:, 0])
            feats = like.features(_dev_windows(clips, like)).to(device)
            probs = model.frame_logits(feats).mean(dim=1).softmax(dim=-1)
            best = probs.max(dim=-1)
            predictions.append(best.indices.cpu())
            scores.append(best.values.cpu())
    packages: dict[str, Any] = {}
    meta = root / "recordings.json"
    if meta.is_file():
        packages = json.loads(meta.read_text(encoding="utf-8")).get("packages") or {}
    return DevEvaluation(
        root=str(root),
        labels=list(labels),
        paths=[row.path.relative_to(root).as_posix() for row in rows],
        speakers=[row.speaker for row in rows],
        kinds=[row.kind for row in rows],
        targets=np.asarray(targets, dtype=np.int64),
        predictions=torch.cat(predictions).numpy(),
        scores=torch.cat(scores).numpy(),
        mode=like.mode,
        window_frames=like.window_frames,
        packages=packages,
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    batch_size: int = 256,
    chunk_frames: int = 1,
    device: str | None = None,
    limit: int | None = None,
    show_progress: bool = True,
    recordings: str | Path | None = None,
    backgrounds: Sequence[tuple[str, float]] | None = None,
) -> tuple[Evaluation, dict[str, Any], dict[str, Any]]:
    """Load ``checkpoint`` and evaluate it on ``split`` of the corpus at ``data`` (clean), on
    the real-speech dev set of ``recordings`` when given (:func:`evaluate_recordings`), and
    its keyword clips under ``backgrounds`` (kind, SNR dB) when given.

    Returns (evaluation, checkpoint metadata, dataset provenance).
    """
    from tqdm import tqdm

    from models import load_checkpoint
    from training.dataset import ManifestDataset

    device = device or default_device()
    model, meta = load_checkpoint(checkpoint, device=device)
    labels = meta.get("labels")
    if labels is None:
        raise ValueError(f"{checkpoint}: the checkpoint metadata has no labels")
    target_length = int(meta.get("features", {}).get("target_length", 128))
    dataset = ManifestDataset(
        data, split, labels=labels, augment=False, window_frames=target_length, max_items=limit
    )
    bar = tqdm(
        total=len(dataset),
        desc=f"evaluate {split}",
        unit="clip",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    with bar:
        evaluation = evaluate_batches(
            model,
            dataset.batches(batch_size, shuffle=False),
            list(labels),
            chunk_frames=chunk_frames,
            device=device,
            progress=bar,
            pad_value=dataset.pad_value,
        )
    evaluation.paths = [row["path"] for row in dataset.rows]
    evaluation.voices = [row.get("voice") or "" for row in dataset.rows]
    if recordings is not None:
        evaluation.real_speech_dev = evaluate_recordings(
            model, recordings, dataset, list(labels), batch_size=batch_size, device=device
        )
    if backgrounds:
        from training.backgrounds import evaluate_backgrounds

        evaluation.backgrounds = evaluate_backgrounds(
            model,
            dataset,
            backgrounds,
            batch_size=batch_size,
            device=device,
            progress=show_progress,
        )
    return evaluation, meta, dataset.provenance()
