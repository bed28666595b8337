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

from streaming.detector import (
    Detector,
    DetectorConfig,
    DetectorSettings,
    DetectorState,
    detect,
    detect_batch,
)
from streaming.engine import EngineConfig, StreamingEngine
from streaming.errors import EngineClosedError, EngineFullError, SessionClosedError
from streaming.events import Detection, End, Event, Failure, Posteriors, Scores
from streaming.process import EnginePool, EngineProcess, RemoteSession
from streaming.served import ServedModel
from streaming.session import Session, SessionHandle

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
    "SessionClosedError",
    "SessionHandle",
    "StreamingEngine",
    "detect",
    "detect_batch",
]
