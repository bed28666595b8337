"""The parts of ``server.ray_serve`` that need no Ray cluster: deployment options, replica
settings, the deployment-wide ``/readyz`` and ``/metrics``, the proxy middleware's websocket
answers, ``ready.replica``, and the command's refusals. (The cluster tests are in
test_ray_serve.py.)"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from server import protocol, ray_serve
from server.ray_serve import ProxyGuard, ReplicaReport
from server.settings import Settings
from streaming.metrics import EngineMetrics, merge_expositions

ROOT = Path(__file__).resolve().parents[2]


def test_deployment_options_cap_sessions_by_ongoing_requests() -> None:
    options = ray_serve.deployment_options(Settings(ray_replicas=3, max_sessions=40))
    assert options["num_replicas"] == 3 and options["max_ongoing_requests"] == 40
    assert options["ray_actor_options"] == {"num_cpus": 2.0}
    scaled = ray_serve.deployment_options(
        Settings(ray_replicas=2, ray_min_replicas=1, ray_max_replicas=4, max_sessions=10)
    )
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1,
        "initial_replicas": 2,
        "max_replicas": 4,
        "target_ongoing_requests": 7.0,
        "upscale_delay_s": ray_serve.UPSCALE_DELAY_S,
    }
    for bad in ({"ray_replicas": 0}, {"ray_replicas": 3, "ray_max_replicas": 2}):
        with pytest.raises(ValueError):
            ray_serve.deployment_options(Settings(**bad))


def test_replica_settings_follow_its_cpus_unless_set() -> None:
    two = ray_serve.replica_settings(Settings(ray_replica_cpus=2), "r1")
    assert (two.replica, two.engine_processes, two.torch_threads) == ("r1", 2, 1)
    one = ray_serve.replica_settings(Settings(ray_replica_cpus=1), "r2")
    assert (one.engine_processes, one.torch_threads) == (0, 1)
    mine = ray_serve.replica_settings(Settings(ray_replica_cpus=4, engine_processes=1), "r3")
    assert (mine.engine_processes, mine.torch_threads) == (1, 1)
    detector = ray_serve.replica_settings(Settings(threshold=0.3), "r4")
    assert "threshold" in detector.model_fields_set  # still overrides the checkpoint


def test_readiness_of_a_deployment_is_any_replica() -> None:
    ready = ReplicaReport(True, {"status": "ready", "sessions": 3, "pending": 1, "engines": 2,
                                 "engines_total": 2}, "")  # fmt: skip
    loading = ReplicaReport(False, {"status": "loading", "engines": 0, "engines_total": 2}, "")
    ok, body = ray_serve.readiness({"b": loading, "a": ready})
    assert ok and body["status"] == "ready" and list(body["replicas"]) == ["a", "b"]
    assert (body["sessions"], body["engines"], body["engines_total"]) == (3, 2, 4)
    assert ray_serve.readiness({"b": loading}) == (False, {**body, "status": "loading",
        "sessions": 0, "pending": 0, "engines": 0, "engines_total": 2,
        "replicas": {"b": loading.status}})  # fmt: skip
    assert ray_serve.readiness({})[0] is False


def test_merged_metrics_label_each_replica_once_per_family() -> None:
    a, b = EngineMetrics(), EngineMetrics()
    a.errors_total.inc(code="bad_json")
    b.active_sessions.set(3)
    b.batch_size.observe(4)
    text = merge_expositions({"r2": b.registry.render(), "r1": a.registry.render()}, "replica")
    assert text.count("# TYPE lmukws_active_sessions gauge") == 1
    assert 'lmukws_errors_total{replica="r1",code="bad_json"} 1' in text
    assert 'lmukws_active_sessions{replica="r2"} 3' in text
    assert 'lmukws_batch_size_bucket{replica="r2",le="4"} 1' in text
    lines = text.splitlines()
    family = [i for i, line in enumerate(lines) if line.startswith("lmukws_active_sessions")]
    assert family == list(range(family[0], family[0] + 2))  # the family's samples together


def test_ready_names_the_replica_only_when_there_is_one() -> None:
    fields = {"session_id": "s", "model": "m", "labels": ["a"], "sample_rate": 16000,
              "lookahead_frames": 3, "algorithmic_latency_ms": 55.0}  # fmt: skip
    plain = json.loads(protocol.dump_message(protocol.ReadyMessage(**fields)))
    assert "replica" not in plain
    named = json.loads(protocol.dump_message(protocol.ReadyMessage(**fields, replica="r1")))
    assert named["replica"] == "r1"
    assert protocol.parse_server_message(json.dumps(named)).replica == "r1"  # type: ignore[union-attr]


def run_guard(app: Any, scope_type: str = "websocket", timeout: float = 0.2) -> list[dict]:
    """What ProxyGuard sends to the client around ``app`` (an ASGI app of Ray's proxy)."""
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(3600)  # the client says nothing
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": scope_type, "path": "/v1/stream", "headers": []}
    asyncio.run(ProxyGuard(app, admission_timeout_s=timeout)(scope, receive, send))
    return sent


def error_of(sent: list[dict]) -> tuple[str, int]:
    text = [m["text"] for m in sent if m["type"] == "websocket.send"][-1]
    return json.loads(text)["code"], sent[-1]["code"]


def test_the_guard_closes_a_dead_replicas_session_with_1011() -> None:
    async def dies(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "{}"})  # then the replica is gone

    sent = run_guard(dies)
    assert error_of(sent) == ("internal_error", 1011)
    assert [m["type"] for m in sent].count("websocket.accept") == 1


def test_the_guard_answers_a_full_deployment_with_1013() -> None:
    async def queued(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)  # no replica has a free slot

    async def refused(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"queue full"})

    for app in (queued, refused):
        sent = run_guard(app)
        assert sent[0] == {"type": "websocket.accept"}
        assert error_of(sent) == ("server_full", 1013)


def test_the_guard_leaves_good_sessions_alone() -> None:
    async def fine(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.5)  # longer than the admission timeout, once accepted
        await send({"type": "websocket.close", "code": 1000})

    async def unknown(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no route"})

    assert run_guard(fine) == [{"type": "websocket.accept"},
                               {"type": "websocket.close", "code": 1000}]  # fmt: skip
    assert [m["type"] for m in run_guard(unknown)] == ["websocket.close"]  # HTTP 403


def test_the_guard_answers_health_for_every_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = EngineMetrics()
    metrics.active_sessions.set(2)
    status = {"status": "ready", "sessions": 2, "pending": 0, "engines": 1, "engines_total": 1}
    reports = {"r1": ReplicaReport(True, status, metrics.registry.render())}

    async def fake_reports(self: ProxyGuard) -> dict[str, ReplicaReport]:
        return reports

    monkeypatch.setattr(ProxyGuard, "_reports", fake_reports)

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("control paths are answered by the proxy")

    def get(path: str) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": []}
        asyncio.run(ProxyGuard(never)(scope, receive, send))
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    code, body = get("/readyz")
    assert code == 200 and json.loads(body)["replicas"]["r1"]["sessions"] == 2
    code, body = get("/metrics")
    assert code == 200 and b'lmukws_active_sessions{replica="r1"} 2' in body
    assert get("/healthz")[0] == 200
    reports = {}
    assert get("/readyz")[0] == 503 and get("/healthz")[0] == 503


def test_the_command_needs_ray_and_fitting_replica_counts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmukws.cli import main

    monkeypatch.setitem(sys.modules, "ray.serve", None)  # as if Ray were not installed
    assert main(["serve", "--ray-replicas", "2"]) == 2
    assert "pip install 'lmukws[ray]'" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["serve", "--ray-replicas", "2", "--ray-min-replicas", "3"]) == 2
    assert "ray_min_replicas (3) <= ray_replicas (2)" in capsys.readouterr().err


def test_the_kuberay_manifest_builds_the_application() -> None:
    """docs/kuberay.yaml: valid YAML, a RayService whose Serve config Ray accepts and whose
    application builder makes the lmukws deployment from its args."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("ray.serve")
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    manifest = yaml.safe_load((ROOT / "docs" / "kuberay.yaml").read_text())
    assert manifest["kind"] == "RayService"
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    app = config.applications[0]
    assert app.import_path == "server.ray_serve:app_builder" and app.route_prefix == "/"
    built = call_user_app_builder_with_args_if_necessary(ray_serve.app_builder, app.args)
    deployment = built._bound_deployment
    assert deployment.name == ray_serve.APP_NAME
    assert deployment._deployment_config.max_ongoing_requests == app.args["max_sessions"]
    spec = manifest["spec"]["rayClusterConfig"]
    for pod in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        container = pod["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env[ray_serve.PROXY_CALLBACK_ENV] == ray_serve.PROXY_CALLBACK
