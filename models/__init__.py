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

Shapes: B batch, T frames, F mel bins (128), K labels.
"""

from models.checkpoint import (
    DEFAULT_MODEL,
    CheckpointError,
    default_checkpoint,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from models.config import MODEL_NAMES, FeatureConfig, ModelConfig
from models.frontend import Fbank, FbankState, StreamingFbank
from models.lmuformer import LMUFormer, ModelState, build_model
from models.state import select_state, stack_states, unstack_state

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_NAMES",
    "CheckpointError",
    "Fbank",
    "FbankState",
    "FeatureConfig",
    "LMUFormer",
    "ModelConfig",
    "ModelState",
    "StreamingFbank",
    "build_model",
    "default_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "select_state",
    "stack_states",
    "unstack_state",
]
