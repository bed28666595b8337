"""The streaming engine: a pure batched step, one scheduler, sessions as handles.

::

    from streaming import StreamingEngine

    engine = StreamingEngine.from_checkpoint("models/checkpoints/spiking-lmuformer.safetensors")
    engine.start()                                   # one worker thread batches all sessions
    session = engine.create_session(sample_rate=16000)
    for chunk in chunks:                             # float32 [n] in [-1, 1], any length
        for event in session.accept(chunk):          # Detection(keyword, score, audio_ms, ...)
            print(event)
    end = session.finish()[-1]                       # End(audio_ms, frames, detections)
    session.close()
    engine.close()

The pieces, bottom up:

- ``streaming.served.ServedModel``: what the checkpoint is (labels, features, look-ahead,
  detector defaults, calibration), read once from its metadata;
- ``streaming.step.BatchStep``: ``(states, audio) -> (states, events)`` for many sessions at
  once (front end, network, pooling, ``streaming.detector.detect_batch``), no locks or queues;
- ``streaming.scheduler.Scheduler``: the sessions' queues, the lock and batching into steps
  (a worker thread, or steps driven by the caller with ``step_ready``);
- ``streaming.session.SessionHandle``: what a session does, whatever runs it; ``Session``
  (in this process) and ``streaming.process.RemoteSession`` (an engine in a child process,
  ``EnginePool``, which ``lmukws serve`` uses so its event loop never waits for a step).
"""

import importlib
from typing import Any

# Imported on first use (PEP 562): reading the detector settings (``server.settings``, the CLI)
# does not import torch.
_HOMES = {
    "streaming.detector": (
        "Detector",
        "DetectorConfig",
        "DetectorSettings",
        "DetectorState",
        "detect",
        "detect_batch",
    ),
    "streaming.engine": ("EngineConfig", "StreamingEngine"),
    "streaming.errors": ("EngineClosedError", "EngineFullError", "SessionClosedError"),
    "streaming.events": ("Detection", "End", "Event", "Failure", "Posteriors", "Scores"),
    "streaming.process": ("EnginePool", "EngineProcess", "RemoteSession"),
    "streaming.served": ("ServedModel",),
    "streaming.session": ("Session", "SessionBackend", "SessionHandle"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """The export ``name``, imported from its module on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'streaming' has no attribute {name!r}")
    return globals().setdefault(name, getattr(importlib.import_module(_HOME[name]), name))


__all__ = [
    "Detection",
    "Detector",
    "DetectorConfig",
    "DetectorSettings",
    "DetectorState",
    "End",
    "EngineClosedError",
    "EngineConfig",
    "EngineFullError",
    "EnginePool",
    "EngineProcess",
    "Event",
    "Failure",
    "Posteriors",
    "RemoteSession",
    "Scores",
    "ServedModel",
    "Session",
    "SessionBackend",
    "SessionClosedError",
    "SessionHandle",
    "StreamingEngine",
    "detect",
    "detect_batch",
]
