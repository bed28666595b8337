"""A real ``lmukws serve`` on 127.0.0.1 (port 0) in a subprocess, for end-to-end client tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class LiveServer:
    """Started by the constructor (``LMUKWS_*`` overrides as keywords); ``stop()`` ends it."""

    def __init__(self, checkpoint: Path, folder: Path, **env: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "serve.log"
        environ = {**os.environ, "LMUKWS_TORCH_THREADS": "1", "LMUKWS_LOG_LEVEL": "info", **env}
        command = [sys.executable, "-m", "lmukws", "serve", "--checkpoint", str(checkpoint)]
        command += ["--host", "127.0.0.1", "--port", "0"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=environ
            )
        deadline = time.monotonic() + 120
        while True:
            text = self.log.read_text(errors="replace")
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", text)
            if found:
                self.port = int(found.group(1))
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lmukws serve did not start:\n{text[-3000:]}")
            time.sleep(0.1)
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"

    def audio_seconds(self) -> float:
        """``lmukws_audio_seconds_total`` from ``GET /metrics``: audio received by all sessions."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=10) as response:
            text = response.read().decode()
        found = re.search(r"^lmukws_audio_seconds_total(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def wait_for_audio(self, since: float, seconds: float = 0.5, timeout: float = 30.0) -> None:
        """Block until sessions have sent ``seconds`` of audio more than ``since`` (an earlier
        ``audio_seconds()``): a microphone client is capturing once its audio reaches the server.
        A capture stream can take seconds to start delivering on a loaded machine."""
        deadline = time.monotonic() + timeout
        while self.audio_seconds() < since + seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {seconds} s of audio reached the server in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
