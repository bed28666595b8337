"""How long one full garbage collection stalls a serving process, with and without the startup
heap frozen (``streaming.process.freeze_startup_heap``, called by the server and by every
engine process after loading).

    python -m benchmarks.gc_pause [--checkpoint PATH]

Starts the app in process (engine in the server process, so one heap holds torch, the model
and the web stack), then times ``gc.collect()`` (median of 5) frozen and unfrozen.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence

from benchmarks.timing import interleaved


def full_collection_ms(repeats: int = 5) -> float:
    """Median wall time of ``gc.collect()`` in milliseconds."""
    timing = interleaved({"collect": gc.collect}, rounds=repeats, round_seconds=0.0)["collect"]
    return timing.median * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gc_pause", description=__doc__)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped default model")
    args = parser.parse_args(argv)
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    settings = Settings(checkpoint=args.checkpoint, engine_processes=0, torch_threads=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        frozen_objects = gc.get_freeze_count()
        frozen = full_collection_ms()
        gc.unfreeze()
        tracked = len(gc.get_objects())
        unfrozen = full_collection_ms()
        gc.freeze()  # as the server left it, so its shutdown unfreezes as usual
    print(
        f"full collection in a serving process ({tracked:,} tracked objects): "
        f"{unfrozen:.1f} ms with nothing frozen, {frozen:.2f} ms with the startup heap "
        f"({frozen_objects:,} objects) frozen"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
