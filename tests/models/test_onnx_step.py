"""The streaming step exported to ONNX Runtime: same outputs as the torch step and the parallel
form, graphs cached on disk and reused, torch wherever no graph applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import onnx_step
from models.config import SPIKING_MODELS
from models.onnx_step import OnnxStreamStep
from tests.models.conftest import make_model, streaming_params

TOLERANCE = 1e-4  # as tests/models/test_streaming.py


def stream_clip(step: OnnxStreamStep, feats: torch.Tensor, chunk: int) -> torch.Tensor:
    """Stream feats [B, T, F] through ``step`` in chunks, then finish: [B, T, K]."""
    model = step.model
    state = model.init_state(feats.shape[0])
    outputs = []
    for piece in feats.split(chunk, dim=1):
        logits, positions, state = step.stream_frames(piece, state)
        outputs.append(logits[:, positions[0] >= 0])
    tail, _ = model.finish(state)
    return torch.cat([*outputs, tail], dim=1)


class CountingGraphs:
    """Counts the steps that ran an exported graph."""

    def __init__(self, step: OnnxStreamStep, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: list[int] = []
        run = step._run

        def counted(graph, frames, state):
            self.frames.append(frames.shape[1])
            return run(graph, frames, state)

        monkeypatch.setattr(step, "_run", counted)

    def stream(self, step: OnnxStreamStep, feats: torch.Tensor, chunk: int) -> list[int]:
        """Stream ``feats`` in chunks, check it against the parallel form, and return the
        frame counts of the steps that ran a graph."""
        self.frames.clear()
        streamed = stream_clip(step, feats, chunk)
        assert (streamed - step.model.frame_logits(feats)).abs().max().item() <= TOLERANCE
        return list(self.frames)


@torch.inference_mode()
def test_lmuformer_exports_one_graph_for_any_frame_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model("lmuformer", "tiny")
    step = OnnxStreamStep(model, threads=1, cache_dir=tmp_path)
    assert list(step.graphs) == [None]
    counting = CountingGraphs(step, monkeypatch)
    feats = torch.randn(3, 70, 128, generator=torch.Generator().manual_seed(3))
    for chunk in (1, 4, 13):
        # every step ran the graph, those of the start-up delay included
        assert len(counting.stream(step, feats, chunk)) == -(-70 // chunk)


@pytest.mark.parametrize("name", streaming_params(SPIKING_MODELS))
@torch.inference_mode()
def test_spiking_exports_a_graph_per_frame_count_and_falls_back_to_torch(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(name, "tiny")
    step = OnnxStreamStep(model, threads=1, cache_dir=tmp_path, max_static_frames=2)
    assert sorted(step.graphs) == [1, 2]  # the LIF scan unrolls over frames
    assert any(p.suffix == ".static" for p in tmp_path.iterdir())
    counting = CountingGraphs(step, monkeypatch)
    feats = torch.randn(2, 61, 128, generator=torch.Generator().manual_seed(4))
    for chunk in (1, 2, 3):
        frames = counting.stream(step, feats, chunk)
        # 3 frames have no graph: only the clip's last piece (61 = 20 x 3 + 1) ran one
        if chunk == 3:
            assert frames == [1]
        else:
            assert set(frames) <= {1, 2} and len(frames) >= 61 // chunk - 5


def test_new_weights_of_a_fixed_frame_architecture_skip_the_symbolic_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a symbolic frame count exports is the architecture's: once a spiking model has
    failed it, a model of the same architecture with other weights exports fixed counts only."""
    model = make_model("spiking-lmu", "tiny")
    first = OnnxStreamStep(model, threads=1, cache_dir=tmp_path, max_static_frames=1)
    asked: list[int | None] = []
    export = OnnxStreamStep._export

    def recorded(self, path, frames):
        asked.append(frames)
        return export(self, path, frames)

    monkeypatch.setattr(OnnxStreamStep, "_export", recorded)
    with torch.no_grad():
        model.network.head.linear.bias.add_(1.0)
    second = OnnxStreamStep(model, threads=1, cache_dir=tmp_path, max_static_frames=1)
    assert second.key != first.key and asked == [1] and list(second.graphs) == [1]
    assert onnx_step.exported(model, tmp_path, max_static_frames=1)


@torch.inference_mode()
def test_one_graph_serves_sessions_inside_and_past_the_start_up_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that mixes streams past the look-ahead delay with new (or reset) ones runs as
    one graph call and equals the torch step for all of them."""
    from models import stack_states
    from models.state import flatten_state

    model = make_model("lmuformer", "tiny")
    step = OnnxStreamStep(model, threads=1, cache_dir=tmp_path)
    generator = torch.Generator().manual_seed(5)
    states = [model.init_state(1) for _ in range(4)]
    for i, fed in ((0, 12), (2, 3), (3, 40)):  # session 1 is new, session 2 in its delay
        warm = torch.randn(1, fed, 128, generator=generator)
        _, _, states[i] = model.stream_frames(warm, states[i])
    state = stack_states(states)
    frames = torch.randn(4, 4, 128, generator=generator)
    counting = CountingGraphs(step, monkeypatch)
    logits, positions, new = step.stream_frames(frames, state)
    want_logits, want_positions, want = model.stream_frames(frames, state)
    assert counting.frames == [4]
    assert torch.equal(positions, want_positions)
    assert (logits - want_logits).abs().max().item() <= TOLERANCE
    for got, expected in zip(flatten_state(new)[0], flatten_state(want)[0], strict=True):
        assert got.shape == expected.shape
        assert (got.double() - expected.double()).abs().max().item() <= TOLERANCE


def test_graphs_are_cached_and_keyed_by_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model("lmuformer", "tiny")
    first = OnnxStreamStep(model, threads=1, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    # the graph, and the empty lock file that lets one process export it at a time
    assert [p.name for p in files] == [f"{first.key}-any.onnx", f"{first.key}.lock"]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(OnnxStreamStep, "_export", no_export)
    again = OnnxStreamStep(model, threads=1, cache_dir=tmp_path)
    assert again.key == first.key and list(again.graphs) == [None]
    with torch.no_grad():
        model.network.head.linear.bias.add_(1.0)
    assert onnx_step._model_key(model) != first.key  # new weights: a new graph


def test_a_wrong_graph_in_the_cache_is_refused(tmp_path: Path) -> None:
    model = make_model("lmuformer", "tiny")
    step = OnnxStreamStep(model, threads=1, cache_dir=tmp_path)
    with torch.no_grad():
        model.network.head.linear.bias.add_(1.0)
    # the old graph under the new weights' name: the self-check against torch catches it
    (tmp_path / f"{step.key}-any.onnx").rename(tmp_path / f"{onnx_step._model_key(model)}-any.onnx")
    with pytest.raises(RuntimeError, match="disagrees with the torch model"):
        OnnxStreamStep(model, threads=1, cache_dir=tmp_path)


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    step = OnnxStreamStep(make_model("lmuformer", "tiny"), threads=1, cache_dir=blocked / "onnx")
    assert step.cache_dir != blocked / "onnx" and list(step.graphs) == [None]


def test_folded_weights_are_constants_once_onnx_runtime_loads_the_graph(tmp_path: Path) -> None:
    """The streaming step's folded weights (models.fold) are traced as products of weights;
    ONNX Runtime folds them when it loads the graph, so no step recomputes them: the optimised
    graph has no node whose inputs all come from the weights alone, and no float64 cast. At the
    paper's size: the exporter itself folds only small constants, so a tiny model proves
    nothing."""
    import onnx
    import onnxruntime as ort

    with torch.inference_mode():
        OnnxStreamStep(make_model("lmuformer", "paper"), threads=1, cache_dir=tmp_path)
    (exported,) = list(tmp_path.rglob("*.onnx"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimised.onnx")).graph
    weights = {initializer.name for initializer in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}

    def constant(name: str) -> bool:
        if name in weights or not name:
            return True
        node = producers.get(name)
        return node is not None and all(constant(i) for i in node.input)

    assert [n.op_type for n in graph.node if n.input and all(map(constant, n.input))] == []
    to_double = onnx.TensorProto.DOUBLE
    casts = [n for n in graph.node if n.op_type == "Cast"]
    assert not [n for n in casts if any(a.name == "to" and a.i == to_double for a in n.attribute)]
