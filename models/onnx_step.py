"""LMUFormer's streaming step exported to ONNX and run by ONNX Runtime.

Why: the engine's steps at real-time latency are small (a few sessions x a few frames), where
torch's per-operator dispatch costs more than the arithmetic; ONNX Runtime runs the same graph
faster there (``lmukws bench --sections runtime``; numbers in benchmarks/README.md).

Exported is ``LMUFormer.stream_frames_masked``: the streaming step with every layer masking its
inputs by frame position, so one graph serves sessions anywhere in their streams, start-up delay
included, with no data-dependent branch.

``OnnxStreamStep`` keeps ``LMUFormer.stream_frames``' contract and is used in its place: a step
whose frame count a graph covers runs the graph; any other (or on a non-CPU device) runs the
torch model. Ending a stream (``finish``) stays in torch. Outputs equal the torch step's to float
rounding: a self-check against torch, on sessions inside and past the start-up delay,
runs on every load. The non-spiking model exports with a symbolic frame count (one graph for any n);
the spiking models' LIF scans unroll over n, so they get one graph per power of two up to
``max_static_frames``.

Graphs are cached on disk, keyed by the weights, the config, the model code and the exporter's
versions: ``$LMUKWS_CACHE_DIR/onnx`` (default ``~/.cache/lmukws/onnx``), so a checkpoint is
exported once; writes are atomic, so processes may share the cache. An architecture (config
and code, any weights) found to export with fixed frame counts only is marked in the cache, so
other weights of it skip the symbolic attempt.

Shapes: B sessions, n frames, F mel bins, K labels; the state is ``flatten_state``'s leaves,
each [B, ...].
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import weights_digest
from models.lmuformer import LMUFormer, ModelState
from models.state import StateLayout, flatten_state, map_tensors
from models.torch_step import TorchStreamStep

__all__ = [
    "OnnxStreamStep", "default_cache_dir", "exported", "onnxruntime_available",
    "writable_cache_dir",
]  # fmt: skip

log = logging.getLogger("lmukws.onnx")

#: bump when the exported graph's inputs or outputs change
EXPORT_FORMAT = 2
#: the graph's outputs may differ from torch's by float rounding, never more than this
SELF_CHECK_TOLERANCE = 1e-3
_MODEL_SOURCES = (
    "layers.py", "lif.py", "lmu.py", "lmuformer.py", "ensemble.py", "state.py", "onnx_step.py",
)  # fmt: skip


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime and the exporter's packages (onnx, onnxscript) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    """``$LMUKWS_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/lmukws/onnx`` (default
    ``~/.cache/lmukws/onnx``)."""
    root = os.environ.get("LMUKWS_CACHE_DIR")
    if root:
        return Path(root) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lmukws" / "onnx"


class _MaskedStep(nn.Module):
    """``stream_frames_masked`` over flat tensors:
    (frames, [leaves]) -> (logits, positions, *leaves)."""

    def __init__(self, model: LMUFormer, layout: StateLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout

    def forward(self, frames: torch.Tensor, leaves: list[torch.Tensor]) -> tuple:
        logits, positions, state = self.model.stream_frames_masked(
            frames, self.layout.unflatten(leaves)
        )
        new_leaves, _ = flatten_state(state)
        return (logits, positions, *new_leaves)


class OnnxStreamStep:
    """``model.stream_frames`` through ONNX Runtime where it can, the torch model elsewhere
    (a ``models.runtime.StepRuntime``).

    ``threads``: ONNX Runtime intra-op threads (0: torch's current count). Loading exports the
    graphs (or finds them in ``cache_dir``) and checks them against the torch model.
    """

    name = "onnx"

    def __init__(
        self,
        model: LMUFormer,
        threads: int = 0,
        cache_dir: str | Path | None = None,
        max_static_frames: int = 8,
    ) -> None:
        if not onnxruntime_available():
            raise RuntimeError(
                "the onnx runtime needs the onnxruntime, onnx and onnxscript packages "
                "(pip install onnxruntime onnx onnxscript), or use the torch runtime"
            )
        if max_static_frames < 1:
            raise ValueError(f"max_static_frames must be >= 1, got {max_static_frames}")
        self.model = model.eval()
        self._torch = TorchStreamStep(self.model)
        self.threads = threads or torch.get_num_threads()
        self.cache_dir = _writable(Path(cache_dir) if cache_dir else default_cache_dir())
        leaves, self.layout = flatten_state(model.init_state(1))
        self._state_names = [f"state{i}" for i in range(len(leaves))]
        self.key = _model_key(model)
        #: graphs by frame count; None: one graph for every frame count
        self.graphs: dict[int | None, Any] = {}
        self._load(max_static_frames)

    # -- stepping -----------------------------------------------------------------------------

    def stream_frames(
        self, frames: torch.Tensor, state: ModelState
    ) -> tuple[torch.Tensor, torch.Tensor, ModelState]:
        """``LMUFormer.stream_frames``: frames [B, n, F] -> (logits [B, n, K], positions [B, n],
        state)."""
        logits, positions, leaves = self.stream_leaves(frames, flatten_state(state)[0])
        return logits, positions, self.layout.unflatten(leaves)

    def stream_leaves(
        self, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``stream_frames`` over flat state tensors (``models.runtime.StepRuntime``)."""
        graph = self.graphs.get(None) or self.graphs.get(frames.shape[1])
        if graph is None or frames.device.type != "cpu":
            return self._torch.stream_leaves(frames, leaves)
        return self._run(graph, frames, leaves)

    def _run(
        self, graph: Any, frames: torch.Tensor, leaves: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        feed = {"frames": _host(frames)}
        for name, leaf in zip(self._state_names, leaves, strict=True):
            feed[name] = _host(leaf)
        outputs = [torch.from_numpy(o) for o in graph.run(None, feed)]
        return outputs[0], outputs[1], outputs[2:]

    # -- export and load ----------------------------------------------------------------------

    def _load(self, max_static_frames: int) -> None:
        # one process exports a model at a time; the others wait, then load its files
        with _exclusive(self.cache_dir / f"{self.key}.lock"):
            self._load_or_export(max_static_frames)

    def _load_or_export(self, max_static_frames: int) -> None:
        for stale in self.cache_dir.glob(f"{self.key}-*.onnx.tmp"):  # an export killed midway
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        dynamic = self.cache_dir / f"{self.key}-any.onnx"
        static_marker = self.cache_dir / f"{self.key}.static"
        # whether a symbolic frame count exports is the architecture's, not the weights':
        # once known for it, other weights skip the failing attempt (seconds on a small CPU)
        architecture_marker = self.cache_dir / f"{_model_key(self.model, weights=False)}.static"
        if not static_marker.exists():
            if dynamic.exists() or (
                not architecture_marker.exists() and self._export(dynamic, frames=None)
            ):
                self.graphs[None] = self._session(dynamic, frames=None)
                return
            _touch(static_marker)
            _touch(architecture_marker)
        for n in static_frame_counts(max_static_frames):
            path = self.cache_dir / f"{self.key}-n{n}.onnx"
            if not path.exists():
                self._export(path, frames=n)
            self.graphs[n] = self._session(path, frames=n)

    def _example(self, batch: int, frames: int) -> tuple[torch.Tensor, ModelState]:
        """Random frames and a state whose sessions are at different points of their streams:
        session i has been fed 2 i frames (new, inside and past the start-up delay)."""
        from models.state import stack_states

        generator = torch.Generator().manual_seed(batch * 1000 + frames)
        features = self.model.config.in_features
        states = []
        with torch.inference_mode():
            for i in range(batch):
                state = self.model.init_state(1)
                if i:
                    warm = torch.randn(1, 2 * i, features, generator=generator)
                    _, _, state = self.model.stream_frames(warm, state)
                states.append(state)
            state = stack_states(states)
        # clones made outside inference mode are normal tensors, which the exporter can trace
        return torch.randn(batch, frames, features, generator=generator), map_tensors(
            torch.Tensor.clone, state
        )

    def _export(self, path: Path, frames: int | None) -> bool:
        """Write the graph to ``path`` atomically. ``frames`` None asks for a symbolic frame
        count; returns False (writing nothing) when the model only exports with a fixed one."""
        from torch.export import Dim

        example_frames, state = self._example(3, frames or 3)
        leaves, _ = flatten_state(state)
        batch = Dim("batch", min=1, max=1 << 16)
        frame_dims = {0: batch} if frames else {0: batch, 1: Dim("frames", min=1, max=4096)}
        dynamic_shapes = (frame_dims, [{0: batch} for _ in leaves])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{self.key}-", suffix=".onnx.tmp", dir=path.parent)
        os.close(fd)
        what = "any frame count" if frames is None else f"{frames} frames"
        log.info("exporting the %s streaming step to ONNX (%s): %s", self.model.config.name,
                 what, path)  # fmt: skip
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(
                    _MaskedStep(self.model, self.layout),
                    (example_frames, leaves),
                    tmp,
                    input_names=["frames", *self._state_names],
                    output_names=["logits", "positions", *(f"new_{n}" for n in self._state_names)],
                    dynamic_shapes=dynamic_shapes,
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
            if frames is None and not _symbolic_frames(tmp):
                return False
            os.replace(tmp, path)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _session(self, path: Path, frames: int | None) -> Any:
        """An ONNX Runtime session for ``path``, checked against the torch model."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads > 1:  # spinning threads would take the event loop's core
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in graph.get_inputs()]
        outputs = len(graph.get_outputs())
        if names != ["frames", *self._state_names] or outputs != 2 + len(self._state_names):
            raise RuntimeError(f"{path}: not this model's streaming step (inputs {names})")
        self._self_check(graph, path, frames or 3)
        return graph

    def _self_check(self, graph: Any, path: Path, frames: int) -> None:
        frames_in, state = self._example(5, frames)
        with torch.inference_mode():
            expected = self.model.stream_frames(frames_in, state)
            got = self._run(graph, frames_in, flatten_state(state)[0])
        want_leaves, _ = flatten_state(expected[2])
        for want, have in zip([expected[0], *want_leaves], [got[0], *got[2]], strict=True):
            if want.shape != have.shape or float((want - have).abs().max()) > SELF_CHECK_TOLERANCE:
                raise RuntimeError(f"{path}: the ONNX step disagrees with the torch model")
        if not torch.equal(expected[1], got[1]):
            raise RuntimeError(f"{path}: the ONNX step's frame positions are wrong")


def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


def _symbolic_frames(path: str) -> bool:
    """Whether the graph's ``frames`` input has a symbolic frame axis."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    frames = next(i for i in graph.input if i.name == "frames")
    return bool(frames.type.tensor_type.shape.dim[1].dim_param)


def exported(
    model: LMUFormer, cache_dir: str | Path | None = None, max_static_frames: int = 8
) -> bool:
    """Whether ``model``'s graphs are in the cache (``OnnxStreamStep`` then only loads them:
    seconds, where exporting a spiking model takes minutes on a small CPU)."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _model_key(model)
    if (folder / f"{key}-any.onnx").exists():
        return True
    if not (folder / f"{key}.static").exists():
        return False
    counts = static_frame_counts(max_static_frames)
    return all((folder / f"{key}-n{n}.onnx").exists() for n in counts)


def static_frame_counts(max_static_frames: int) -> list[int]:
    """The frame counts a model without a symbolic frame count gets a graph for: the powers
    of two up to ``max_static_frames``."""
    return [1 << k for k in range(max_static_frames.bit_length())]


@contextlib.contextmanager
def _exclusive(path: Path) -> Any:
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def writable_cache_dir() -> Path:
    """``default_cache_dir()`` if it can be written, else the temporary folder that replaces
    it for this process (``OnnxStreamStep`` falls back the same way)."""
    return _writable(default_cache_dir())


def _writable(folder: Path) -> Path:
    """``folder`` when it can be created and written, else a fresh temporary folder (exports
    then last as long as the process: a read-only home, a container's read-only layer)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return folder
    except OSError as error:
        fallback = Path(tempfile.mkdtemp(prefix="lmukws-onnx-"))
        log.warning("ONNX cache %s is not writable (%s): exporting into %s", folder, error,
                    fallback)  # fmt: skip
        return fallback


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("exports with a fixed frame count only\n")


def _model_key(model: LMUFormer, weights: bool = True) -> str:
    """Hash of everything the exported graph depends on (``weights`` False: all but the
    weights, the architecture's key)."""
    import onnx
    import onnxscript

    digest = hashlib.sha256()
    versions = [EXPORT_FORMAT, torch.__version__, onnx.__version__, onnxscript.__version__]
    digest.update(json.dumps(versions).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    source_dir = Path(__file__).resolve().parent
    for name in _MODEL_SOURCES:
        digest.update((source_dir / name).read_bytes())
    if weights:
        digest.update(weights_digest(model).encode())
    return f"{model.config.name}-{'' if weights else 'architecture-'}{digest.hexdigest()[:20]}"


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporter prints progress and warnings; keep them out of the service's output."""
    names = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
