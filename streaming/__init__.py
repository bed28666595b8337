"""The streaming engine: sessions with per-stream state, a batching worker, the detector.

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

``streaming.process.EnginePool`` runs the same engine in child processes behind the same session
surface (``lmukws serve`` uses it by default, so its event loop never waits for a model step).
"""

from streaming.detector import Detector, DetectorConfig, DetectorState, detect
from streaming.engine import EngineConfig, EngineFullError, StreamingEngine
from streaming.process import EnginePool, EngineProcess, RemoteSession
from streaming.session import (
    Detection,
    End,
    Event,
    Failure,
    Scores,
    Session,
    SessionClosedError,
)

__all__ = [
    "Detection",
    "Detector",
    "DetectorConfig",
    "DetectorState",
    "End",
    "EngineConfig",
    "EngineFullError",
    "EnginePool",
    "EngineProcess",
    "Event",
    "Failure",
    "RemoteSession",
    "Scores",
    "Session",
    "SessionClosedError",
    "StreamingEngine",
    "detect",
]
