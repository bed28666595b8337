"""Evaluation report folder: metrics, per-class table, confusion matrix, streaming curve, README.

``write_report(out, evaluation, checkpoint, metadata, data)`` writes into ``out``:

- ``metrics.json``: accuracy, macro accuracy, per-class accuracy and counts, the confusion
  matrix, the streaming summary and a summary of the checkpoint's metadata;
- ``per_class.md``: the per-class table (Markdown);
- ``confusion.png``: the confusion matrix (rows: true label, normalised per row; counts inside);
- ``accuracy_vs_frames.json`` / ``.png``: accuracy after k = 1..T input frames through the
  streaming form (the look-ahead delay is real), the authors' parallel curve for comparison,
  and the frames needed to reach 99 % of the final accuracy (the paper: 87 of 128);
- ``per_voice.md`` / ``per_voice.png`` (when the manifest names voices): accuracy per voice,
  weakest first, since held-out voices are what a keyword spotter has to generalise to;
- ``predictions.csv``: path, label, voice, prediction, score per clip;
- ``real_speech_dev.md`` / ``.csv`` (``lmukws evaluate --recordings``): the real-speech dev set,
  reported apart from the split: accuracy overall, keyword clips vs non-keyword words, per
  speaker, and every error (also ``real_speech_dev`` in metrics.json);
- ``README.md``: the numbers with the plots embedded.

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.config import FeatureConfig
from training.evaluate import (
    DEV_KINDS,
    PAPER_FRAMES_TO_99,
    TARGET_FRACTION,
    DevEvaluation,
    Evaluation,
    frames_to_fraction,
)

#: window (ms) and hop (ms) of a frame: k frames cover WINDOW_MS + HOP_MS (k - 1) ms of audio
WINDOW_MS = FeatureConfig().frame_length_ms
HOP_MS = FeatureConfig().frame_shift_ms


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_stats(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
    """label -> count, correct, accuracy (None without clips), most frequent confusion."""
    matrix = evaluation.confusion()
    stats: dict[str, dict[str, Any]] = {}
    for i, label in enumerate(evaluation.labels):
        count = int(matrix[i].sum())
        correct = int(matrix[i, i])
        off = matrix[i].copy()
        off[i] = 0
        j = int(off.argmax())
        stats[label] = {
            "count": count,
            "correct": correct,
            "accuracy": correct / count if count else None,
            "confused_with": evaluation.labels[j] if off[j] > 0 else None,
            "confused_count": int(off[j]),
        }
    return stats


def streaming_summary(evaluation: Evaluation) -> dict[str, Any]:
    """The accuracy-vs-frames curves and their 99 % points."""
    final = evaluation.streaming_accuracy
    stream = evaluation.curve(streaming=True)
    parallel = evaluation.curve(streaming=False)
    frames = evaluation.num_frames
    k99 = frames_to_fraction(stream, final)
    k99_parallel = frames_to_fraction(parallel, evaluation.accuracy)
    return {
        "frames": list(range(1, frames + 1)),
        "audio_ms": [WINDOW_MS + HOP_MS * (k - 1) for k in range(1, frames + 1)],
        "final_frames_known": evaluation.ready_frames.tolist(),
        "accuracy_streaming": stream.tolist(),
        "accuracy_parallel_authors": parallel.tolist(),
        "final_accuracy": final,
        "parallel_accuracy": evaluation.accuracy,
        "target_fraction": TARGET_FRACTION,
        "frames_to_99": k99,
        "frames_to_99_parallel_authors": k99_parallel,
        "saving_percent": 100.0 * (1 - k99 / frames) if k99 else None,
        "paper_frames_to_99": PAPER_FRAMES_TO_99,
        "num_frames": frames,
        "lookahead_frames": evaluation.lookahead_frames,
        "chunk_frames": evaluation.chunk_frames,
        "max_abs_logit_diff_stream_vs_parallel": evaluation.max_abs_diff,
        "prediction_agreement_stream_vs_parallel": float(
            (evaluation.stream_predictions == evaluation.predictions).mean()
        )
        if evaluation.num_clips
        else 1.0,
        "method": _curve_method(evaluation),
    }


def _curve_method(evaluation: Evaluation) -> str:
    """How the accuracy-vs-frames curve was measured, for metrics and the report."""
    authors = (
        "accuracy_parallel_authors is the authors' method: cumulative mean of the parallel "
        "form's per-frame logits (sees the future)."
    )
    if evaluation.window_hop_frames:
        return (
            f"a window model, served by recompute: every {evaluation.window_hop_frames} frames "
            "the parallel form scores the window ending at the latest frame (left-padded), and "
            "frames between hops hold the latest hop's score (streaming.window). " + authors
        )
    return (
        "features fed in lockstep through model.stream_frames (chunk_frames per call); after "
        "k input frames the clip score is the argmax of the cumulative mean of the per-frame "
        "logits of the frames already final (k - lookahead_frames with one frame per call); "
        "final_accuracy includes model.finish. " + authors
    )


#: voices drawn in per_voice.png (the weakest; per_voice.md and metrics.json have them all)
PLOT_VOICES = 40


def voice_group(voice: str) -> str:
    """The voice a clip was spoken in, without the per-clip prosody jitter of synthetic voices.

    "espeak-ng:en-us+shelby:s137:p42" -> "espeak-ng:en-us+shelby"; a Speech Commands speaker
    id (no colon) is returned as it is.
    """
    return ":".join(voice.split(":")[:2])


def voice_engine(voice: str) -> str | None:
    """The synthesiser engine of a synthetic voice id ("kokoro:alp20+gon10:s1" -> "kokoro"),
    or None for an id without one (a Speech Commands speaker)."""
    return voice.split(":", 1)[0] if ":" in voice else None


def per_voice_stats(evaluation: Evaluation) -> dict[str, dict[str, Any]]:
    """voice -> count, correct, accuracy, most frequent wrong prediction; weakest first.

    Clips without a voice (``_silence_``, manifests without the column) are left out; empty if
    no clip has one.
    """
    groups: dict[str, list[int]] = {}
    for i, voice in enumerate(evaluation.voices):
        if voice:
            groups.setdefault(voice_group(voice), []).append(i)
    stats: dict[str, dict[str, Any]] = {}
    for voice, members in groups.items():
        index = np.asarray(members)
        right = evaluation.predictions[index] == evaluation.targets[index]
        wrong = evaluation.predictions[index][~right]
        common = np.bincount(wrong, minlength=len(evaluation.labels)) if wrong.size else None
        stats[voice] = {
            "count": int(index.size),
            "correct": int(right.sum()),
            "accuracy": float(right.mean()),
            "predicted_instead": (
                evaluation.labels[int(common.argmax())] if common is not None else None
            ),
        }
    return dict(sorted(stats.items(), key=lambda item: (item[1]["accuracy"], item[0])))


def per_source_stats(voices: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """voice source -> count, correct, accuracy, voices, from ``per_voice_stats``: the engine
    of each voice ("kokoro:alp20+gon10" -> "kokoro"), so a corpus that adds an engine shows how
    the model meets its voices beside the others'; weakest first. Empty for voices without an
    engine prefix (Speech Commands speaker ids)."""
    sources: dict[str, dict[str, Any]] = {}
    for voice, s in voices.items():
        engine = voice_engine(voice)
        if engine is None:
            continue
        source = sources.setdefault(engine, {"count": 0, "correct": 0, "voices": 0})
        source["count"] += s["count"]
        source["correct"] += s["correct"]
        source["voices"] += 1
    for source in sources.values():
        source["accuracy"] = source["correct"] / source["count"]
    return dict(sorted(sources.items(), key=lambda item: (item[1]["accuracy"], item[0])))


def per_voice_markdown(evaluation: Evaluation, stats: dict[str, dict[str, Any]]) -> str:
    """The per-voice table in Markdown, weakest voice first."""
    lines = [
        f"# Accuracy per voice ({len(stats)} voices; overall {100 * evaluation.accuracy:.2f} %)",
        "",
        "Clips without a voice (`_silence_`) are not counted here.",
        "",
        "| voice | clips | correct | accuracy | wrong answers are most often |",
        "|:--|--:|--:|--:|:--|",
    ]
    for voice, s in stats.items():
        instead = s["predicted_instead"] or ""
        lines.append(
            f"| {voice} | {s['count']} | {s['correct']} | {100 * s['accuracy']:.2f} % | {instead} |"
        )
    return "\n".join(lines) + "\n"


def plot_per_voice(
    stats: dict[str, dict[str, Any]], overall: float, path: Path, title: str
) -> Path:
    """Horizontal bars of accuracy per voice, weakest at the top (at most ``PLOT_VOICES``)."""
    plt = _pyplot()
    shown = list(stats.items())[:PLOT_VOICES]
    names = [voice for voice, _ in shown]
    accuracy = [100 * s["accuracy"] for _, s in shown]
    fig, ax = plt.subplots(figsize=(8.5, max(2.6, 1.2 + 0.26 * len(shown))))
    rows = np.arange(len(shown))
    colors = ["#c0392b" if a < 100 * overall else "#1f5fbf" for a in accuracy]
    ax.barh(rows, accuracy, color=colors, height=0.7)
    for row, (_, s) in zip(rows, shown, strict=True):
        ax.text(1.0, row, f"{s['correct']}/{s['count']}", va="center", fontsize=7, color="white")
    ax.axvline(100 * overall, color="#333333", linestyle="--", linewidth=1.0)
    ax.text(100 * overall, -0.9, f" overall {100 * overall:.2f} %", fontsize=8)
    ax.set_yticks(rows)
    ax.set_yticklabels(names, fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    more = f", the {len(shown)} weakest of {len(stats)}" if len(stats) > len(shown) else ""
    ax.set_title(f"{title}{more}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # long voice names stay readable
    plt.close(fig)
    return path


def _tally(correct: np.ndarray) -> dict[str, Any]:
    """count, correct, accuracy (None without clips) of a [n] bool array."""
    n = int(correct.size)
    return {
        "count": n,
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if n else None,
    }


def _dev_method(dev: DevEvaluation) -> str:
    placed = (
        "from the start of a 1 s window, features padded or cut to"
        if dev.mode == "clip"
        else "centred in the zero-padded waveform window of"
    )
    return (
        f"each clip {placed} {dev.window_frames} frames, exactly as the corpus's held-out clips; "
        "prediction = argmax of the parallel form's mean of the per-frame logits (the paper's "
        "clip score), score = its softmax probability"
    )


def real_speech_dev_stats(dev: DevEvaluation) -> dict[str, Any]:
    """metrics.json's ``real_speech_dev``: accuracy overall, keyword clips vs non-keyword words
    (``by_kind``), per speaker (with its kinds), and every error (speaker, path, label,
    prediction, score)."""
    correct = dev.correct
    kinds = np.asarray(dev.kinds)
    speakers = np.asarray(dev.speakers)
    per_speaker: dict[str, dict[str, Any]] = {}
    for speaker in sorted(set(dev.speakers)):
        mine = speakers == speaker
        per_speaker[speaker] = {
            **_tally(correct[mine]),
            **{kind: _tally(correct[mine & (kinds == kind)]) for kind in DEV_KINDS},
        }
    errors = [
        {
            "speaker": dev.speakers[i],
            "path": dev.paths[i],
            "kind": dev.kinds[i],
            "label": dev.labels[dev.targets[i]],
            "prediction": dev.labels[dev.predictions[i]],
            "score": round(float(dev.scores[i]), 4),
        }
        for i in np.flatnonzero(~correct)
    ]
    errors.sort(key=lambda e: (e["speaker"], e["path"]))
    return {
        "recordings": dev.root,
        "selection": "manifest.csv rows with use=dev and kind keyword (label: the keyword) or "
        "word (a non-keyword word, label _unknown_); use=eval rows are never read",
        "method": _dev_method(dev),
        "clips": dev.num_clips,
        "correct": int(correct.sum()),
        "accuracy": dev.accuracy,
        "speakers": len(per_speaker),
        "by_kind": {kind: _tally(correct[kinds == kind]) for kind in DEV_KINDS},
        "per_speaker": per_speaker,
        "errors": errors,
        "packages": dev.packages,
    }


def _share(s: dict[str, Any]) -> str:
    """A share as "9/10 (90.0 %)", or "-" without clips."""
    if not s["count"]:
        return "-"
    return f"{s['correct']}/{s['count']} ({100 * s['accuracy']:.1f} %)"


def real_speech_dev_markdown(stats: dict[str, Any]) -> str:
    """real_speech_dev.md: the per-speaker table, keywords vs words, and the errors."""
    kinds = stats["by_kind"]
    lines = [
        f"# Real-speech dev set ({stats['clips']} clips, {stats['speakers']} speakers; accuracy "
        f"{100 * stats['accuracy']:.2f} %)",
        "",
        f"Recordings: `{stats['recordings']}` ({stats['selection']}). Scoring: {stats['method']}.",
        "",
        f"Keyword clips: {_share(kinds['keyword'])}; non-keyword words (`_unknown_`): "
        f"{_share(kinds['word'])}.",
        "",
        "| speaker | clips | correct | accuracy | keyword clips | non-keyword words |",
        "|:--|--:|--:|--:|--:|--:|",
    ]
    for speaker, s in stats["per_speaker"].items():
        lines.append(
            f"| {speaker} | {s['count']} | {s['correct']} | {100 * s['accuracy']:.2f} % | "
            f"{_share(s['keyword'])} | {_share(s['word'])} |"
        )
    lines.append(
        f"| **all** | {stats['clips']} | {stats['correct']} | {100 * stats['accuracy']:.2f} % | "
        f"{_share(kinds['keyword'])} | {_share(kinds['word'])} |"
    )
    errors = stats["errors"]
    lines += ["", f"## Errors ({len(errors)})", ""]
    if errors:
        lines += [
            "| speaker | path | label | prediction | score |",
            "|:--|:--|:--|:--|--:|",
            *(
                f"| {e['speaker']} | {e['path']} | {e['label']} | {e['prediction']} | "
                f"{e['score']:.3f} |"
                for e in errors
            ),
        ]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"


def write_real_speech_dev(out: Path, dev: DevEvaluation, stats: dict[str, Any]) -> None:
    """real_speech_dev.md (the tables) and real_speech_dev.csv (every clip)."""
    (out / "real_speech_dev.md").write_text(real_speech_dev_markdown(stats), encoding="utf-8")
    with (out / "real_speech_dev.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "speaker", "kind", "label", "prediction", "score", "correct"])
        for i in range(dev.num_clips):
            t, p = int(dev.targets[i]), int(dev.predictions[i])
            writer.writerow([dev.paths[i], dev.speakers[i], dev.kinds[i], dev.labels[t],
                             dev.labels[p], f"{dev.scores[i]:.4f}", int(t == p)])  # fmt: skip


def _dev_readme(dev: dict[str, Any]) -> list[str]:
    """The README's section on the real-speech dev set."""
    kinds = dev["by_kind"]
    speakers = ", ".join(
        f"{speaker} {100 * s['accuracy']:.1f} % ({s['count']})"
        for speaker, s in dev["per_speaker"].items()
    )
    return [
        "## Real-speech dev set",
        "",
        f"Recorded people (`{dev['recordings']}`, from Debian packages), reported apart from the "
        f"split: **accuracy {100 * dev['accuracy']:.2f} %** ({dev['correct']} / {dev['clips']} "
        f"clips of {dev['speakers']} speakers); keyword clips {_share(kinds['keyword'])}, "
        f"non-keyword words (`_unknown_`) {_share(kinds['word'])}.",
        "",
        f"Per speaker (clips): {speakers}.",
        "",
        f"Scoring: {dev['method']}. Table and the {len(dev['errors'])} errors: "
        "[real_speech_dev.md](real_speech_dev.md); every clip: "
        "[real_speech_dev.csv](real_speech_dev.csv).",
        "",
    ]


def plot_confusion(
    matrix: np.ndarray, labels: list[str], path: Path, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised confusion matrix with counts; readable up to ~40 labels."""
    plt = _pyplot()
    k = len(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(6.0, 0.3 * k + 3.0)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    tick_size = 9 if k <= 20 else 7.5
    ax.set_xticklabels(labels, rotation=90, fontsize=tick_size)
    ax.set_yticklabels(labels, fontsize=tick_size)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    font = 8 if k <= 20 else 5.5
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if norm[i, j] > 0.55 else ("black" if i == j else "#b00020"),
                )
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="#dddddd", linewidth=0.4)
    ax.tick_params(which="minor", length=0)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("fraction of the true label's clips")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accuracy_vs_frames(summary: dict[str, Any], path: Path) -> Path:
    """Accuracy after k input frames: streaming form (real delay) and the authors' curve."""
    plt = _pyplot()
    frames = np.asarray(summary["frames"])
    stream = 100 * np.asarray(summary["accuracy_streaming"])
    parallel = 100 * np.asarray(summary["accuracy_parallel_authors"])
    final = 100 * summary["final_accuracy"]
    lookahead = summary["lookahead_frames"]
    k99 = summary["frames_to_99"]
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    if lookahead:
        ax.axvspan(0.5, lookahead + 0.5, color="#eeeeee", label=f"look-ahead ({lookahead} frames)")
    ax.plot(frames, stream, color="#1f5fbf", linewidth=2.0, label="streaming form (real delay)")
    ax.plot(
        frames,
        parallel,
        color="#888888",
        linestyle="--",
        linewidth=1.3,
        label="parallel form, cumulative mean (authors' method, sees the future)",
    )
    level = TARGET_FRACTION * final
    ax.axhline(level, color="#c0392b", linestyle=":", linewidth=1.2)
    ax.text(
        frames[0] + 1,
        level - 4.5 if level > 90 else level + 1.0,
        f"99 % of final ({level:.1f} %)",
        color="#c0392b",
    )
    if k99:
        ax.axvline(k99, color="#c0392b", linewidth=1.0)
        right = k99 < 0.6 * frames[-1]
        ax.annotate(
            f"{k99} frames ({WINDOW_MS + HOP_MS * (k99 - 1):.0f} ms of audio)",
            xy=(k99, level),
            xytext=(k99 + 4 if right else k99 - 4, max(level - 25, 8)),
            ha="left" if right else "right",
            arrowprops={"arrowstyle": "->", "color": "#c0392b"},
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#c0392b", "lw": 0.6},
            color="#c0392b",
        )
    paper = summary["paper_frames_to_99"]
    if paper <= frames[-1]:
        ax.axvline(paper, color="#999999", linewidth=0.8, linestyle="-.")
        ax.text(paper + 0.8, 96, f"paper: {paper}", color="#777777", fontsize=8)
    ax.set_xlim(0.5, frames[-1] + 0.5)
    ax.set_ylim(0, 101)
    ax.set_xlabel("input frames seen (10 ms each)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy vs frames seen (final {final:.2f} %)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    top = ax.secondary_xaxis(
        "top",
        functions=(
            lambda k: WINDOW_MS + HOP_MS * (k - 1),
            lambda ms: (ms - WINDOW_MS) / HOP_MS + 1,
        ),
    )
    top.set_xlabel("audio heard (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def per_class_markdown(evaluation: Evaluation, stats: dict[str, dict[str, Any]]) -> str:
    """The per-class table in Markdown (label order of the checkpoint)."""
    lines = [
        f"# Per-class accuracy ({evaluation.num_clips} clips, accuracy "
        f"{100 * evaluation.accuracy:.2f} %)",
        "",
        "| # | label | clips | correct | accuracy | most often predicted instead |",
        "|--:|:--|--:|--:|--:|:--|",
    ]
    for i, label in enumerate(evaluation.labels):
        s = stats[label]
        acc = f"{100 * s['accuracy']:.2f} %" if s["accuracy"] is not None else "n/a"
        confused = f"{s['confused_with']} ({s['confused_count']})" if s["confused_with"] else ""
        lines.append(f"| {i} | {label} | {s['count']} | {s['correct']} | {acc} | {confused} |")
    return "\n".join(lines) + "\n"


def checkpoint_summary(
    checkpoint: Path | None, metadata: dict[str, Any], evaluation: Evaluation
) -> dict[str, Any]:
    """The checkpoint's metadata without its label list (which metrics.json has anyway)."""
    summary = {k: v for k, v in metadata.items() if k != "labels"}
    summary["path"] = str(checkpoint) if checkpoint else None
    summary["num_labels"] = len(evaluation.labels)
    summary["parameters"] = evaluation.num_parameters
    summary["lookahead_frames"] = evaluation.lookahead_frames
    summary["algorithmic_latency_ms"] = WINDOW_MS + HOP_MS * evaluation.lookahead_frames
    return summary


def _readme(metrics: dict[str, Any], evaluation: Evaluation) -> str:
    s = metrics["streaming"]
    ck = metrics["checkpoint"]
    model = ck.get("model", {})
    name = model.get("name", "?")
    frames = s["num_frames"]
    k99 = s["frames_to_99"]
    reached = (
        f"**{k99} of {frames}** input frames ({s['saving_percent']:.2f} % shorter)"
        if k99
        else "only after the clip ended (finish)"
    )
    k99p = s["frames_to_99_parallel_authors"]
    worst = sorted(
        (st["accuracy"], label)
        for label, st in metrics["per_class"].items()
        if st["count"] and st["accuracy"] < 1.0
    )[:5]
    data = metrics.get("data", {})
    corpus = data.get("corpus", {}) if isinstance(data, dict) else {}
    lines = [
        f"# Evaluation: {Path(ck['path']).name if ck.get('path') else name} on {metrics['split']}",
        "",
        f"- model: `{name}` (dim {model.get('dim')}, depth {model.get('depth')}, "
        f"{ck['parameters']:,} parameters), {ck['num_labels']} labels",
        f"- data: `{data.get('root', '?')}` ({corpus.get('source', 'corpus')}), split "
        f"`{metrics['split']}`, {metrics['num_clips']} clips, {data.get('voices', '?')} voices",
        f"- **accuracy {100 * metrics['accuracy']:.2f} %** "
        f"({metrics['correct']} / {metrics['num_clips']}); macro (mean per-class) "
        f"{100 * metrics['macro_accuracy']:.2f} %",
        f"- streaming form after the whole clip: {100 * s['final_accuracy']:.2f} % "
        f"(agrees with the parallel form on "
        f"{100 * s['prediction_agreement_stream_vs_parallel']:.2f} % of clips; largest logit "
        f"difference {s['max_abs_logit_diff_stream_vs_parallel']:.2e})",
        f"- look-ahead {s['lookahead_frames']} frames: algorithmic latency "
        f"{ck['algorithmic_latency_ms']:.0f} ms (25 ms window + {s['lookahead_frames']} x 10 ms)",
        f"- 99 % of the final accuracy is reached through the streaming form after {reached}; "
        f"the authors' parallel curve: {k99p if k99p else 'never'} (paper: "
        f"{s['paper_frames_to_99']} of 128)",
        "",
        "## Accuracy vs frames seen",
        "",
        "![accuracy vs frames](accuracy_vs_frames.png)",
        "",
        "Streaming curve: all clips fed through `model.stream_frames` in lockstep "
        f"({s['chunk_frames']} frame(s) per call); after k input frames the prediction is the "
        "argmax of the cumulative mean of the per-frame logits that are already final "
        f"(k - {s['lookahead_frames']}), so the look-ahead delay is paid. Data: "
        "[accuracy_vs_frames.json](accuracy_vs_frames.json).",
        "",
        "## Confusion matrix",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Per class",
        "",
        (
            "Weakest classes: " + ", ".join(f"{label} {100 * acc:.1f} %" for acc, label in worst)
            if worst
            else "Every class is at 100 %"
        )
        + ". Full table: [per_class.md](per_class.md); every clip: "
        "[predictions.csv](predictions.csv); all numbers: [metrics.json](metrics.json).",
        "",
    ]
    dev = metrics.get("real_speech_dev")
    if dev:
        lines.insert(
            lines.index("## Accuracy vs frames seen") - 1,
            f"- real-speech dev set (recorded people, apart from the split): **accuracy "
            f"{100 * dev['accuracy']:.2f} %** on {dev['clips']} clips of {dev['speakers']} "
            "speakers ([below](#real-speech-dev-set))",
        )
        lines += _dev_readme(dev)
    backgrounds = metrics.get("backgrounds")
    if backgrounds:
        lines += backgrounds_readme(backgrounds)
    voices = metrics.get("per_voice") or {}
    if voices:
        weakest = list(voices.items())[:5]
        lines += [
            "## Per voice",
            "",
            "![accuracy per voice](per_voice.png)",
            "",
            f"{len(voices)} voices; weakest: "
            + ", ".join(f"{voice} {100 * s['accuracy']:.1f} %" for voice, s in weakest)
            + ". Full table: [per_voice.md](per_voice.md).",
            "",
        ]
    sources = metrics.get("per_voice_source") or {}
    if len(sources) > 1:
        lines += [
            "By voice source (synthesiser engine): "
            + ", ".join(
                f"{source} {100 * s['accuracy']:.2f} % ({s['correct']} / {s['count']})"
                for source, s in sources.items()
            )
            + ".",
            "",
        ]
    return "\n".join(lines)


def backgrounds_readme(backgrounds: dict[str, Any]) -> list[str]:
    """README lines: keyword-clip accuracy clean and under each background."""
    clean = backgrounds["clean"]["accuracy"]
    lines = [
        "## Under backgrounds",
        "",
        f"The split's {backgrounds['clips']} keyword clips with the test streams' backgrounds "
        "mixed in (babble: three talkers saying other voices' non-keyword words; SNR against "
        "the speech's active level), classified by the clip path "
        "(`lmukws evaluate --backgrounds`):",
        "",
        "| background | keyword clips right | change |",
        "|---|---|---|",
        f"| none | {100 * clean:.2f} % | |",
    ]
    for name, b in backgrounds["backgrounds"].items():
        delta = 100 * (b["accuracy"] - clean)
        lines.append(f"| {name} | {100 * b['accuracy']:.2f} % | {delta:+.2f} points |")
    return [*lines, ""]


def write_report(
    out: str | Path,
    evaluation: Evaluation,
    checkpoint: Path | None = None,
    metadata: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """Write the report folder; returns the metrics.json content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metadata = metadata or {}
    data = data or {}
    stats = per_class_stats(evaluation)
    with_clips = [s["accuracy"] for s in stats.values() if s["accuracy"] is not None]
    summary = streaming_summary(evaluation)
    voices = per_voice_stats(evaluation)
    metrics: dict[str, Any] = {
        "split": split or data.get("split", "?"),
        "num_clips": evaluation.num_clips,
        "correct": int((evaluation.predictions == evaluation.targets).sum()),
        "accuracy": evaluation.accuracy,
        "macro_accuracy": float(np.mean(with_clips)) if with_clips else 0.0,
        "labels": evaluation.labels,
        "per_class": stats,
        "counts": {label: s["count"] for label, s in stats.items()},
        "confusion": evaluation.confusion().tolist(),
        "per_voice": voices,
        "per_voice_source": per_source_stats(voices),
        "streaming": {k: v for k, v in summary.items() if not isinstance(v, list)},
        "checkpoint": checkpoint_summary(checkpoint, metadata, evaluation),
        "data": data,
    }
    dev = evaluation.real_speech_dev
    if dev is not None:
        metrics["real_speech_dev"] = real_speech_dev_stats(dev)
        write_real_speech_dev(out, dev, metrics["real_speech_dev"])
    if evaluation.backgrounds is not None:
        metrics["backgrounds"] = evaluation.backgrounds
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "accuracy_vs_frames.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    (out / "per_class.md").write_text(per_class_markdown(evaluation, stats), encoding="utf-8")
    name = metadata.get("model", {}).get("name", "model")
    plot_confusion(
        evaluation.confusion(),
        evaluation.labels,
        out / "confusion.png",
        title=f"{name}: confusion on {metrics['split']} "
        f"({100 * evaluation.accuracy:.2f} %, {evaluation.num_clips} clips)",
    )
    plot_accuracy_vs_frames(summary, out / "accuracy_vs_frames.png")
    if voices:
        (out / "per_voice.md").write_text(per_voice_markdown(evaluation, voices), encoding="utf-8")
        plot_per_voice(
            voices,
            evaluation.accuracy,
            out / "per_voice.png",
            title=f"{name}: accuracy per voice on {metrics['split']}",
        )
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "voice", "prediction", "score", "correct"])
        paths = evaluation.paths or [""] * evaluation.num_clips
        clip_voices = evaluation.voices or [""] * evaluation.num_clips
        for path, voice, t, p, score in zip(
            paths,
            clip_voices,
            evaluation.targets,
            evaluation.predictions,
            evaluation.scores,
            strict=True,
        ):
            label, predicted = evaluation.labels[t], evaluation.labels[p]
            writer.writerow([path, label, voice, predicted, f"{score:.4f}", int(t == p)])
    (out / "README.md").write_text(_readme(metrics, evaluation), encoding="utf-8")
    return metrics
