"""Build the Docker image and run it for real: /readyz, the health check, websocket sessions, the
non-root user, LMUKWS_* configuration and a graceful stop. Skipped only when no Docker engine can
be started.

The engine is the ambient one when ``docker info`` works; otherwise a private one is started with
scripts/docker-test-env.sh (root, Debian docker.io; images cannot be pulled, so the base
python:3.11-slim is a debootstrap stand-in) and stopped again at the end. Build and run use the
host network (there is no bridge). torch comes from a local CPU wheel when one is found (PyTorch's
index is unreachable here), served to the build over 127.0.0.1; otherwise from the default index.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import glob
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import errors
from client.stream import connect, detect
from models.config import DEFAULT_MODEL
from tests.streaming.tone_model import sequence

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "docker-test-env.sh"
IMAGE = "lmukws:test"
BASE = "python:3.11-slim"
SHIPPED = ROOT / "models" / "checkpoints" / "spiking-lmuformer.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(args: list[str], env: dict[str, str], timeout: float, check: bool = True) -> str:
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    """Environment whose DOCKER_HOST reaches a running engine with the base image."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH")
    # one image test at a time on this machine: they share the engine, the tag and the cache
    lock_dir = Path(os.environ.get("LMUKWS_DOCKER_ROOT", "/var/tmp/lmukws-docker"))
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = (lock_dir / "test.lock").open("w")
    except OSError:
        lock = (Path(tempfile.gettempdir()) / "lmukws-docker-test.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = dict(os.environ)
    ambient = subprocess.run(["docker", "info"], env=env, capture_output=True, timeout=30)
    started = False
    if ambient.returncode != 0:
        already = subprocess.run([str(SCRIPT), "status"], capture_output=True, timeout=30)
        start = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
        if start.returncode != 0:
            pytest.skip(f"no Docker engine can be started: {start.stderr.strip()[-300:]}")
        started = already.returncode != 0
        env["DOCKER_HOST"] = start.stdout.strip().split("=", 1)[1]
    try:
        if subprocess.run(["docker", "image", "inspect", BASE], env=env,
                          capture_output=True).returncode != 0:  # fmt: skip
            pulled = subprocess.run(["docker", "pull", BASE], env=env, capture_output=True,
                                    timeout=300)  # fmt: skip
            if pulled.returncode != 0:
                sh([str(SCRIPT), "base"], env, timeout=1200)  # debootstrap stand-in
        yield env
    finally:
        if started:
            subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def local_torch_wheel() -> Path | None:
    """A CPU torch wheel for CPython 3.11 on this machine (LMUKWS_TEST_TORCH_WHEEL, or the
    pip find-links folders)."""
    if os.environ.get("LMUKWS_TEST_TORCH_WHEEL"):
        return Path(os.environ["LMUKWS_TEST_TORCH_WHEEL"])
    folders = [*os.environ.get("PIP_FIND_LINKS", "").split(), "/opt/wheels"]
    for folder in folders:
        found = sorted(glob.glob(os.path.join(folder, "torch-*+cpu-cp311-cp311-*x86_64.whl")))
        if found:
            return Path(found[-1])
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


WHEEL_PORT = 18765  # a fixed port keeps the build argument, and so the layer cache, stable


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """HTTP server for a folder on 127.0.0.1 (reachable from a --network=host build)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT), handler)
    except OSError:  # busy: any port (the torch layer is then rebuilt)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str]) -> str:
    command = ["docker", "build", "--network=host", "-t", IMAGE]
    wheel = local_torch_wheel()
    with contextlib.ExitStack() as stack:
        if wheel is not None:
            base_url = stack.enter_context(serve_folder(wheel.parent))
            command += [
                "--build-arg",
                f"TORCH_REQUIREMENT={base_url}/{wheel.name}",
                "--build-arg",
                f"TORCH_INDEX_URL={os.environ.get('LMUKWS_TEST_PIP_INDEX', 'https://pypi.org/simple')}",
            ]
        t0 = time.monotonic()
        sh([*command, str(ROOT)], docker_env, timeout=1500)
        print(f"docker build: {time.monotonic() - t0:.0f} s")
    return IMAGE


class Container:
    def __init__(self, env: dict[str, str], name: str, port: int) -> None:
        self.env, self.name, self.port = env, name, port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    def inspect(self, template: str) -> str:
        return sh(["docker", "inspect", "-f", template, self.name], self.env, timeout=30)

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.name], env=self.env, capture_output=True,
                                text=True, timeout=30)  # fmt: skip
        return (result.stdout + result.stderr)[-4000:]


@pytest.fixture(scope="module")
def container(
    image: str, docker_env: dict[str, str], tone_checkpoint: Path, tmp_path_factory
) -> Iterator[Container]:
    port = free_port()
    name = f"lmukws-test-{os.getpid()}"
    command = ["docker", "run", "-d", "--name", name, "--network=host",
               "--health-interval=2s", "--health-timeout=5s",
               "-e", "LMUKWS_HOST=127.0.0.1", "-e", f"LMUKWS_PORT={port}",
               "-e", "LMUKWS_TORCH_THREADS=1", "-e", "LMUKWS_MAX_SESSIONS=2"]  # fmt: skip
    if not SHIPPED.is_file():  # no shipped checkpoint yet: serve the tone model
        folder = tmp_path_factory.mktemp("ckpt")
        shutil.copy(tone_checkpoint, folder / "tone.safetensors")
        (folder / "tone.safetensors").chmod(0o644)
        folder.chmod(0o755)
        command += ["-v", f"{folder}:/checkpoints:ro",
                    "-e", "LMUKWS_CHECKPOINT=/checkpoints/tone.safetensors"]  # fmt: skip
    sh([*command, image], docker_env, timeout=120)
    box = Container(docker_env, name, port)
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{box.http}/readyz", timeout=2).status_code == 200:
                    break
            if box.inspect("{{.State.Running}}") != "true" or time.monotonic() > deadline:
                raise AssertionError(f"the container did not become ready:\n{box.logs()}")
            time.sleep(1)
        yield box
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=docker_env, capture_output=True,
                       timeout=60)  # fmt: skip


def test_container_serves(container: Container) -> None:
    info = httpx.get(f"{container.http}/v1/model", timeout=10).json()
    tone = not SHIPPED.is_file()
    assert info["name"] == ("lmuformer" if tone else DEFAULT_MODEL)
    x = sequence([("low", 0.5), ("high", 2.0)], 3.0, rate=22050)
    result = asyncio.run(detect(container.ws, x, 22050))
    assert result.end.audio_ms == pytest.approx(3000.0, abs=1.0)
    if tone:
        assert [d.keyword for d in result.detections] == ["low", "high"]
    page = httpx.get(f"{container.http}/", timeout=10)
    assert page.status_code == 200 and "AudioWorklet" in page.text


def test_container_config_user_and_health(container: Container) -> None:
    assert sh(["docker", "exec", container.name, "id", "-u"], container.env, 30) == "10001"
    deadline = time.monotonic() + 60
    while (status := container.inspect("{{.State.Health.Status}}")) != "healthy":
        assert status in ("starting", "healthy"), container.inspect("{{json .State.Health}}")
        assert time.monotonic() < deadline, container.inspect("{{json .State.Health}}")
        time.sleep(1)

    async def third_session_refused() -> None:  # LMUKWS_MAX_SESSIONS=2 from the environment
        first, second = await connect(container.ws), await connect(container.ws)
        try:
            with pytest.raises(errors.SessionRefusedError):
                await connect(container.ws)
        finally:
            await first.close()
            await second.close()

    asyncio.run(third_session_refused())


def test_container_stops_gracefully(container: Container) -> None:
    sh(["docker", "stop", "-t", "30", container.name], container.env, timeout=60)
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
