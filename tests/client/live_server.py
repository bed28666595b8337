"""A real ``lmukws serve`` on 127.0.0.1 (port 0) in a subprocess, for end-to-end client tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
