"""The engine's compute: one batched step over many sessions, ``(states, audio) -> (states,
events)``, with no queue, lock or thread of its own.

``BatchStep.run(inputs)`` takes, per session, its ``SessionState``, the 16 kHz samples it
received since its last step (with their receipt times) and an optional ``Reset`` or ``Stop``
that follows them, and returns its new state and events. In between, for every session at once:
one front-end call for all their new frames; one ``stream_leaves`` call of the runtime per group
of sessions with the same number of new frames (sessions at different points of their streams
batch together: the model returns each output's frame position); the sliding mean of per-frame
logits (the clip head over ~1 s), the posteriors and the detector (``detect_batch``), then each
session's events. The network's state and the pooling window of every session live in one
preallocated ``StateSlab`` row (``slot``), gathered and scattered once per group.

Whoever calls ``run`` owns the step: one thread at a time (``streaming.scheduler.Scheduler``'s
worker, an engine process's loop, or a test). A step that raises is retried session by session,
so only the session whose own work fails gets a ``Failure``.

Shapes: B sessions in a step, n samples, T frames, F mel bins, K labels, m frames of one session.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from models import Fbank, LMUFormer, ModelState, StreamingFbank
from models.frontend import FbankState
from models.runtime import StepRuntime
from streaming.detector import DetectorConfig, DetectorSettings, DetectorState, detect_batch
from streaming.events import Detection, End, Event, Failure, Posteriors, Scores
from streaming.metrics import EngineMetrics
from streaming.served import ServedModel
from streaming.slab import StateSlab
from streaming.window import WindowStep

__all__ = [
    "BatchStep",
    "Reset",
    "SessionSpec",
    "SessionState",
    "StepInput",
    "StepOutput",
    "Stop",
    "posteriors_of",
]

log = logging.getLogger("lmukws.engine")


def posteriors_of(logits: np.ndarray, posterior: str) -> np.ndarray:
    """Pooled logits [..., K] -> posteriors, ``posterior`` "softmax" or "sigmoid" (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    if posterior == "softmax":
        z = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


@dataclass(frozen=True)
class Reset:
    """A total reset after the samples of the step: the session starts afresh."""


@dataclass(frozen=True)
class Stop:
    """The end of the stream after the samples of the step: the look-ahead is flushed and an
    ``End`` follows. ``received_at``: when the stop arrived; ``audio_ms``: input received."""

    received_at: float
    audio_ms: float


Marker = Reset | Stop


@dataclass(frozen=True)
class SessionSpec:
    """A session's fixed, validated options (``StreamingEngine.session_spec``).

    ``scores_every_frames``: emit ``Scores`` every that many frames (0: never);
    ``record_posteriors``: emit each step's pooled posteriors (``Posteriors``, offline
    evaluation).
    """

    sample_rate: int
    detector: DetectorConfig
    scores_every_frames: int = 0
    record_posteriors: bool = False


@dataclass(frozen=True)
class SessionState:
    """One session's state outside the slab; a fresh one after a reset.

    fbank: front-end remainder ([1, r], r < one window); detector: the detector's state;
    samples_in / frames_in / frames_out / detections: counters since start or reset;
    slot: the session's row of the step's ``StateSlab`` (network state and pooling window),
    None until its first step.
    """

    fbank: FbankState
    detector: DetectorState
    samples_in: int = 0
    frames_in: int = 0
    frames_out: int = 0
    detections: int = 0
    slot: int | None = None


@dataclass
class StepInput:
    """One session's share of a step: its spec and state, ``samples`` [n] float32 at 16 kHz,
    ``frame_received`` [m] the receipt time of the audio completing each new input frame,
    and the marker that follows the samples."""

    spec: SessionSpec
    state: SessionState
    samples: np.ndarray
    frame_received: np.ndarray
    marker: Marker | None = None


@dataclass
class StepOutput:
    """One session's result: its new state, its events (in frame order), and whether the step
    failed for it (its last event is then a ``Failure``)."""

    state: SessionState
    events: list[Event] = field(default_factory=list)
    failed: bool = False
    #: the model's output turned non-finite (e.g. on extreme input): those frames were
    #: dropped and ``run`` resets the session's state
    poisoned: bool = False


class BatchStep:
    """Front end, model, pooling and detector for a batch of sessions (module docstring).

    ``runtime`` runs the network's steps (``models.runtime.load_runtime``, or a window model's
    ``streaming.window.WindowStep``: its window replaces the pooling); ``settings`` are
    the engine's detector settings (pooling and posterior are read here, the rest is in each
    session's ``DetectorConfig``); ``capacity``: initial slab rows (it grows on demand).
    """

    def __init__(
        self,
        model: LMUFormer,
        runtime: StepRuntime,
        served: ServedModel,
        settings: DetectorSettings,
        device: torch.device,
        *,
        scores_top: int = 5,
        capacity: int = 64,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.model = model
        self.runtime = runtime
        self.served = served
        self.fbank = Fbank(served.features, normalize=True).to(device)
        self.streaming_fbank = StreamingFbank(served.features, normalize=True)
        self.settings = settings
        self.device = device
        self.scores_top = scores_top
        self.metrics = metrics or EngineMetrics()
        #: a window model (``streaming.window``): its window replaces the pooling, no tail
        self.window = isinstance(runtime, WindowStep)
        self.slab = StateSlab(
            model,
            capacity,
            device,
            pooling_frames=1 if self.window else settings.pooling_frames,
            initial=runtime.init_state(1) if isinstance(runtime, WindowStep) else None,
        )

    # -- states -----------------------------------------------------------------------------

    def initial_state(self, spec: SessionSpec) -> SessionState:
        """The state of a brand-new session (at creation and after every reset)."""
        return SessionState(
            fbank=self.streaming_fbank.init_state(1),
            detector=DetectorState.initial(spec.detector),
        )

    def model_state(self, state: SessionState) -> ModelState:
        """A copy of a session's network state (batch 1); call between steps."""
        if state.slot is None:
            return self.slab.initial()
        return self.slab.gather(torch.tensor([state.slot]))

    def release(self, slots: Sequence[int]) -> None:
        """Give closed sessions' slab rows back; between steps, by the step's owner."""
        for slot in slots:
            self.slab.release(slot)

    def posteriors(self, logits: np.ndarray) -> np.ndarray:
        """Pooled logits [..., K] -> posteriors (sigmoid or softmax, float64)."""
        return posteriors_of(logits, self.settings.posterior)

    # -- the step ---------------------------------------------------------------------------

    def run(self, inputs: list[StepInput]) -> list[StepOutput]:
        """Process every input; never raises for a session's failure (see the module)."""
        try:
            outputs = self._compute(inputs)
        except Exception as error:  # neither the caller nor the other sessions die of it
            log.exception("engine step failed for %d sessions", len(inputs))
            if len(inputs) == 1:
                outputs = [self._failed(inputs[0], error)]
            else:
                outputs = [self._compute_alone(x) for x in inputs]
        for x, out in zip(inputs, outputs, strict=True):
            if (isinstance(x.marker, Reset) or out.poisoned) and not out.failed:
                # this step's frames were pooled (or were not finite): start afresh on the
                # same slab row
                slot = out.state.slot
                fresh = DetectorState.initial(x.spec.detector)
                if isinstance(x.marker, Reset):
                    out.state = SessionState(
                        fbank=self.streaming_fbank.init_state(1), detector=fresh, slot=slot
                    )
                else:  # poisoned: keep counting, so that audio times stay right; the reset
                    # model's next output is input frame frames_in (the dropped frames and
                    # the look-ahead count as output)
                    old = out.state
                    # the pending samples are dropped: count the whole hops they held
                    frames = old.frames_in + old.fbank.pending.shape[-1] // self.fbank.frame_shift
                    out.state = SessionState(
                        fbank=self.streaming_fbank.init_state(1),
                        detector=replace(fresh, frames=frames),
                        samples_in=old.samples_in,
                        frames_in=frames,
                        frames_out=frames,
                        detections=old.detections,
                        slot=slot,
                    )
                if slot is not None:
                    self.slab.reset(torch.tensor([slot]))
        return outputs

    def _compute_alone(self, x: StepInput) -> StepOutput:
        """After a failed step, one session's input on its own. Safe because a failed step
        leaves every network state as it was (``_model_step``); only a failure after the model
        (pooling, detector) could have advanced some sessions' pooling windows."""
        try:
            return self._compute([x])[0]
        except Exception as error:
            log.exception("engine step failed for one session")
            return self._failed(x, error)

    @staticmethod
    def _failed(x: StepInput, error: Exception) -> StepOutput:
        return StepOutput(x.state, [Failure(f"engine step failed: {error}")], failed=True)

    def _front_end(
        self, inputs: list[StepInput]
    ) -> tuple[list[int], np.ndarray, torch.Tensor | None, list[np.ndarray]]:
        """Every session's new frames in one front-end call.

        Returns (frames per session, index of each session's first row in the features
        [B], features [total frames, F] or None, each session's remainder samples).
        """
        fb = self.fbank
        L, hop = fb.frame_length, fb.frame_shift
        bufs = [np.concatenate((x.state.fbank.pending[0].numpy(), x.samples)) for x in inputs]
        lengths = np.array([b.size for b in bufs])
        frames_per = np.where(lengths >= L, 1 + (lengths - L) // hop, 0)  # [B]
        counts: list[int] = frames_per.tolist()
        first_row = np.cumsum(frames_per) - frames_per
        total = int(frames_per.sum())
        feats = None
        if total:  # the windows of all sessions, cut from one concatenated buffer
            buf_start = np.cumsum(lengths) - lengths
            owner = np.repeat(np.arange(len(inputs)), frames_per)  # [total]
            window_start = buf_start[owner] + (np.arange(total) - first_row[owner]) * hop
            windows = np.concatenate(bufs)[window_start[:, None] + np.arange(L)]  # [total, L]
            feats = fb.frames_to_features(torch.from_numpy(windows)[None].to(self.device))[0]
        pendings = [b[m * hop :] for b, m in zip(bufs, counts, strict=True)]
        return counts, first_row, feats, pendings

    def _model_step(
        self,
        inputs: list[StepInput],
        counts: list[int],
        first_row: np.ndarray,
        feats: torch.Tensor | None,
    ) -> tuple[list[int], list[np.ndarray | None], list[np.ndarray | None]]:
        """One runtime call per group of sessions with the same number of new frames, on their
        rows of the slab (allocated here for new sessions). Returns (each session's slot, final
        logits [m, K] per session, the look-ahead tail [lookahead, K] of each one that stops).

        The slab is written only once every call has succeeded, so a step that raises leaves
        every session's network state as it was (``run`` then retries them one by one).
        """
        slab = self.slab
        slots: list[int] = [
            x.state.slot if x.state.slot is not None else slab.allocate() for x in inputs
        ]
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for i, m in enumerate(counts):
            if m:
                groups[m].append(i)
        outputs: list[np.ndarray | None] = [None] * len(inputs)
        tails: list[np.ndarray | None] = [None] * len(inputs)
        updates: list[tuple[torch.Tensor, list[torch.Tensor]]] = []  # (rows, new state leaves)
        for m, members in groups.items():
            rows = torch.tensor([slots[i] for i in members])
            pick = first_row[members][:, None] + np.arange(m)  # [b, m] rows of feats
            frames = feats[torch.from_numpy(pick).to(self.device)]  # type: ignore[index]
            logits, positions, leaves = self.runtime.stream_leaves(frames, slab.gather_leaves(rows))
            updates.append((rows, leaves))
            host = logits.float().cpu().numpy()
            keep = (positions >= 0).cpu().numpy()
            for j, i in enumerate(members):
                outputs[i] = host[j] if keep[j].all() else host[j][keep[j]]
                if isinstance(inputs[i].marker, Stop):
                    tails[i] = self._tail(
                        slab.layout.unflatten([leaf[j : j + 1] for leaf in leaves])
                    )
        for i, x in enumerate(inputs):
            if isinstance(x.marker, Stop) and not counts[i]:  # no new frames: the slab's state
                tails[i] = self._tail(slab.gather(torch.tensor([slots[i]])))
        for rows, leaves in updates:
            slab.scatter_leaves(rows, leaves)
        return slots, outputs, tails

    def _tail(self, state: ModelState) -> np.ndarray:
        """The look-ahead tail [lookahead, K] of one stopping session (state of batch 1); a
        window model has none (its frames' logits are final at once)."""
        if self.window:
            return np.zeros((0, len(self.served.labels)), np.float32)
        tail, _ = self.model.finish(state)
        return tail[0].float().cpu().numpy()

    def _compute(self, inputs: list[StepInput]) -> list[StepOutput]:
        """One step for several sessions: front end, model, post-processing."""
        step_start = time.perf_counter()
        with torch.inference_mode():
            counts, first_row, feats, pendings = self._front_end(inputs)
            slots, outputs, tails = self._model_step(inputs, counts, first_row, feats)
        compute_s = time.perf_counter() - step_start
        K = len(self.served.labels)
        states: list[SessionState] = []
        final: list[np.ndarray] = []  # [m, K] logits of the frames that became final
        received: list[np.ndarray] = []  # [m] when the audio that made each one final came
        waits: list[float] = []  # each session's wait from its oldest new frame to the step
        lookahead = self.served.lookahead_frames
        empty = np.zeros((0, K), np.float32)
        poisoned: set[int] = set()
        for i, x in enumerate(inputs):
            old = x.state
            m_in = counts[i]
            states.append(
                SessionState(
                    fbank=type(old.fbank)(torch.from_numpy(pendings[i].copy())[None]),
                    detector=old.detector,
                    samples_in=old.samples_in + x.samples.size,
                    frames_in=old.frames_in + m_in,
                    frames_out=old.frames_out,
                    detections=old.detections,
                    slot=slots[i],
                )
            )
            logits = outputs[i] if outputs[i] is not None else empty
            # output frame t became final with input frame t + lookahead (in this step)
            first = old.frames_out + lookahead - old.frames_in
            if m_in:
                idx = np.arange(first, first + logits.shape[0])
                np.maximum(idx, 0, out=idx)
                np.minimum(idx, m_in - 1, out=idx)
                when = x.frame_received[idx]
                waits.append(max(0.0, step_start - float(x.frame_received[0])))
            else:
                when = np.zeros(logits.shape[0])
            tail, stop = tails[i], x.marker
            if tail is not None and isinstance(stop, Stop):
                logits = np.concatenate((logits, tail))
                when = np.concatenate((when, np.full(tail.shape[0], stop.received_at)))
            if not np.isfinite(logits).all():  # never pool or report these frames
                log.warning("session state turned non-finite; resetting it")
                poisoned.add(i)
                logits, when = empty, np.zeros(0)
            final.append(logits)
            received.append(when)
        self.metrics.queue_seconds.observe_many(waits)
        results = self._post_process(inputs, states, final, received, step_start, compute_s * 1e3)
        for i in poisoned:
            results[i].poisoned = True
            self.metrics.state_resets_total.inc()
        frames_out = 0
        for x, out, logits in zip(inputs, results, final, strict=True):
            if isinstance(x.marker, Stop):
                out.events.append(
                    End(
                        audio_ms=x.marker.audio_ms,
                        frames=out.state.frames_out,
                        detections=out.state.detections,
                    )
                )
            frames_out += logits.shape[0]
        self.metrics.step_seconds.observe(compute_s)
        self.metrics.batch_size.observe(len(inputs))
        if frames_out:
            self.metrics.frame_seconds.observe(compute_s / frames_out)
            self.metrics.frames_total.inc(frames_out)
        return results

    def _post_process(
        self,
        inputs: list[StepInput],
        states: list[SessionState],
        final: list[np.ndarray],
        received: list[np.ndarray],
        step_start: float,
        compute_ms: float,
    ) -> list[StepOutput]:
        """Pooling, posteriors and the detector (``detect_batch``) for every session of the
        step at once (numpy over [B, m, K], sessions grouped by m), then each session's
        events."""
        outputs: list[StepOutput | None] = [None] * len(states)
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for i, logits in enumerate(final):
            if logits.shape[0]:
                groups[logits.shape[0]].append(i)
        for members in groups.values():
            logits = np.stack([final[i] for i in members]).astype(np.float64)  # [b, m, K]
            slots = np.array([states[i].slot for i in members])
            posteriors = self.posteriors(self.slab.pool(slots, logits))
            detectors, firings, smoothed = detect_batch(
                [inputs[i].spec.detector for i in members],
                [states[i].detector for i in members],
                posteriors,
            )
            for j, i in enumerate(members):
                outputs[i] = self._session_events(
                    inputs[i].spec,
                    states[i],
                    detectors[j],
                    firings[j],
                    posteriors[j],
                    smoothed[j],
                    received[i],
                    step_start,
                    compute_ms,
                )
        return [  # sessions without final frames keep their state
            StepOutput(states[i]) if out is None else out for i, out in enumerate(outputs)
        ]

    def _session_events(
        self,
        spec: SessionSpec,
        state: SessionState,
        detector: DetectorState,
        firings: list,
        posteriors: np.ndarray,
        smoothed: np.ndarray,
        received: np.ndarray,
        step_start: float,
        compute_ms: float,
    ) -> StepOutput:
        """One session's events for the final frames of the step, and its new state.

        posteriors / smoothed: [m, K] of frames ``state.frames_out ...``; received: [m] receipt
        time of the audio that made each frame final.
        """
        served = self.served
        m, K = posteriors.shape
        first = state.frames_out
        events: list[tuple[int, int, Event]] = []
        for f in firings:
            i = f.frame - state.detector.frames
            events.append(
                (
                    f.frame,
                    1,
                    Detection(
                        keyword=f.keyword,
                        score=f.score,
                        frame=first + i,
                        audio_ms=served.frame_end_ms(first + i),
                        received_at=float(received[i]),
                        queue_ms=max(0.0, (step_start - float(received[i])) * 1e3),
                        compute_ms=compute_ms,
                    ),
                )
            )
        if spec.record_posteriors:
            events.append((first, -1, Posteriors(frame=first, values=posteriors.copy())))
        N = spec.scores_every_frames
        if N > 0:
            labels = served.labels
            top_k = min(self.scores_top, K)
            for i in range(m):
                t = first + i
                if (t + 1) % N == 0:
                    order = np.argsort(-smoothed[i], kind="stable")[:top_k]
                    top = [(labels[j], round(float(smoothed[i, j]), 6)) for j in order]
                    events.append((t, 0, Scores(frame=t, audio_ms=served.frame_end_ms(t), top=top)))
        if len(events) > 1:
            events.sort(key=lambda e: (e[0], e[1]))
        new_state = SessionState(  # (the constructor: replace() is slower on this hot path)
            fbank=state.fbank,
            detector=detector,
            samples_in=state.samples_in,
            frames_in=state.frames_in,
            frames_out=state.frames_out + m,
            detections=state.detections + len(firings),
            slot=state.slot,
        )
        return StepOutput(new_state, [e[2] for e in events])
