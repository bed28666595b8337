"""A headless microphone: a private PulseAudio server whose default source is the monitor of a
null sink, so ``paplay FILE`` into the sink is what any PortAudio/ALSA program records.

PortAudio reaches it through ALSA's ``pulse`` plugin (Debian's libasound2-plugins, pulled in by
pulseaudio). Everything lives in a temporary HOME and XDG_RUNTIME_DIR; ``env`` is the
environment a recording process needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.client.live_server import LiveServer

SINK = "lmukws_sink"
SOURCE = "lmukws_mic"


class VirtualMic:
    """Start with ``VirtualMic(tmp_path)``; ``play(path)`` feeds it; ``close()`` stops it."""

    def __init__(self, root: Path, rate: int = 16000) -> None:
        if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
            raise RuntimeError("pulseaudio and paplay are needed (Debian pulseaudio-utils)")
        self.root = root
        home, runtime = root / "home", root / "run"
        home.mkdir(parents=True, exist_ok=True)
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_SERVER": f"unix:{runtime}/pulse/native",
        }
        self.env.pop("DISPLAY", None)
        self.log = root / "pulseaudio.log"
        self.process = subprocess.Popen(
            [
                "pulseaudio",
                "-n",  # no default.pa: only the modules below
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--load=module-native-protocol-unix",
                f"--load=module-null-sink sink_name={SINK} rate={rate} channels=1",
                f"--load=module-remap-source source_name={SOURCE} master={SINK}.monitor",
                "--load=module-always-sink",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {self.log.read_text()[-500:]}")
            ok = subprocess.run(
                ["pactl", "info"], env=self.env, capture_output=True, text=True, check=False
            )
            if ok.returncode == 0 and SOURCE in ok.stdout:
                break
            time.sleep(0.2)
        else:
            self.close()
            raise RuntimeError(f"pulseaudio did not start: {self.log.read_text()[-500:]}")

    def room_noise(self, seconds: float = 60.0, level: float = 0.003) -> subprocess.Popen:
        """Play faint white noise into the microphone in the background, as a room would (a real
        microphone never gives exact digital silence); the caller terminates the process."""
        import numpy as np
        import soundfile as sf

        path = self.root / f"room-noise-{seconds:g}s.wav"
        if not path.is_file():
            rng = np.random.default_rng(1)
            noise = (level * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
            sf.write(path, noise, 16000, subtype="PCM_16")
        return subprocess.Popen(
            ["paplay", f"--device={SINK}", str(path)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def play(self, path: Path) -> None:
        """Play a WAV into the virtual microphone and wait until it has been played."""
        subprocess.run(
            ["paplay", f"--device={SINK}", str(path)], env=self.env, check=True, timeout=60
        )

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def keywords_of(records: list[dict]) -> list[str]:
    """Keywords of the detection records, in order."""
    return [r["keyword"] for r in records if r.get("type") == "detection"]


def run_mic(
    mic: VirtualMic, wav: Path, *options: str, server: LiveServer | None = None
) -> tuple[list[dict], subprocess.Popen]:
    """``lmukws mic --json``: wait for ready and for the capture to run, play the WAV into the mic,
    Ctrl-C, parse. With the ``server`` the client talks to, "running" is audio reaching it."""
    noise = mic.room_noise()
    since = server.audio_seconds() if server is not None else 0.0
    process = subprocess.Popen(
        [sys.executable, "-m", "lmukws", "mic", "--json", *options],
        env={**mic.env, "LMUKWS_TORCH_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first, process.communicate(timeout=30)[1]
        ready = json.loads(first)
        assert ready["type"] == "ready", first
        # a person starts speaking once the microphone runs; the capture stream may still be
        # opening at "ready" (seconds on a loaded machine). Over a server, wait for its audio to
        # arrive; the in-process --local engine has no such signal, so give it a moment
        if server is not None:
            server.wait_for_audio(since)
        else:
            time.sleep(1.0)
        mic.play(wav)
        time.sleep(0.8)  # the tail: look-ahead and network
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        noise.terminate()
        noise.wait()
        if process.poll() is None:
            process.kill()
            process.wait()
    records = [ready] + [json.loads(line) for line in out.splitlines()]
    assert process.returncode == 0, err
    return records, process
