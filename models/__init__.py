"""LMUFormer and Spiking LMUFormer in plain PyTorch, with an exact streaming form.

Streaming a clip frame by frame gives exactly the parallel form's per-frame logits::

    import torch
    from models import Fbank, build_model

    model = build_model("spiking-lmuformer").eval()    # or load_checkpoint(path)[0]
    feats = Fbank()(torch.randn(16000) * 0.1)          # [1, 98, 128], normalised
    state = model.init_state(batch_size=1)
    outputs = []
    for chunk in feats.split(4, dim=1):                # any chunking
        logits, state = model.stream(chunk, state)     # [1, m, K] for frames now final
        outputs.append(logits)
    tail, state = model.finish(state)                  # the last lookahead_frames frames
    streamed = torch.cat(outputs + [tail], dim=1)      # == model.frame_logits(feats)

The window models (``WINDOW_MODELS``: ``spiking-attention``, global self-attention over the
window) have the parallel form only: ``model(feats)`` over a window; their streaming entry
points raise ``NoStreamingFormError``.

Shapes: B batch, T frames, F mel bins (128), K labels.
"""

import importlib
from typing import Any

from models.config import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    STREAMING_MODELS,
    WINDOW_MODELS,
    FeatureConfig,
    ModelConfig,
)

# Everything else is imported on first use (PEP 562), so that reading the configs (the CLI,
# the settings) does not import torch.
_LAZY = {
    "CheckpointError": "models.checkpoint",
    "default_checkpoint": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "read_metadata": "models.checkpoint",
    "save_checkpoint": "models.checkpoint",
    "weights_digest": "models.checkpoint",
    "Fbank": "models.frontend",
    "FbankState": "models.frontend",
    "StreamingFbank": "models.frontend",
    "LMUFormer": "models.lmuformer",
    "LogitEnsemble": "models.ensemble",
    "ensemble_models": "models.ensemble",
    "ModelState": "models.lmuformer",
    "NoStreamingFormError": "models.attention",
    "build_model": "models.lmuformer",
    "select_state": "models.state",
    "stack_states": "models.state",
    "unstack_state": "models.state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MODEL",
    "MODEL_NAMES",
    "STREAMING_MODELS",
    "WINDOW_MODELS",
    "CheckpointError",
    "Fbank",
    "FbankState",
    "FeatureConfig",
    "LMUFormer",
    "LogitEnsemble",
    "ModelConfig",
    "ModelState",
    "NoStreamingFormError",
    "StreamingFbank",
    "build_model",
    "default_checkpoint",
    "ensemble_models",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "select_state",
    "stack_states",
    "unstack_state",
    "weights_digest",
]
