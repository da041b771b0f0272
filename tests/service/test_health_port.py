"""``--health-port``: health, readiness and metrics on a port of their own, on real servers.

Probes (a kubelet's, a load balancer's) open a connection per check: on the serving port they
would wait in the same accept queue and under the same connection bound as the callers, so
a flood of callers fails the probes exactly when the orchestrator should keep the replica.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.service.protocol import HEALTH_CONNECTIONS
from tests.support import free_port, serve


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``port`` that send nothing (each answered or held)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield held
    finally:
        for sock in held:
            sock.close()


def refused(port: int) -> bytes:
    """What a new connection to ``port`` is answered before it sends anything ("" if held)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(2)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return b""


def test_the_health_port_answers_health_and_metrics_and_points_elsewhere_for_the_rest(
    tmp_path: Path, example_model_path: Path
) -> None:
    port = free_port()
    with serve(tmp_path, model=example_model_path, args=["--health-port", str(port)]) as server:
        health = health_url(port)
        with httpx.Client(trust_env=False, timeout=10) as client:
            ready = client.get(health + "/")
            assert ready.status_code == 200 and ready.json()["status"] == "ok"
            assert ready.json()["model"] == client.get(server.url + "/").json()["model"]
            assert client.get(health + "/v2/health/live").json() == {"live": True}
            assert client.get(health + "/v2/health/ready").status_code == 200
            assert "servepath_http_requests_total" in client.get(health + "/metrics").text
            for method, path in (("POST", "/decisions"), ("GET", "/docs"), ("GET", "/_ui")):
                answer = client.request(method, health + path, json={})
                assert answer.status_code == 404, (method, path)
                body = answer.json()
                assert body["reason"] == "health_port"
                assert f"port {server.port}" in body["error"] and path in body["error"]
            # The serving port is the server it always was.
            assert client.post(server.url + "/decisions", json={}).status_code in (200, 422)
        banner = server.log_path.read_text()
        assert f"health port: 127.0.0.1:{port} (plain HTTP)" in banner


def test_a_flood_of_the_serving_port_never_refuses_a_probe(
    tmp_path: Path, example_model_path: Path
) -> None:
    port = free_port()
    args = ["--health-port", str(port), "--max-connections", "4"]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        with idle_connections(server.port, 4):
            # The serving port is full: a fifth caller is refused at once...
            assert b'"reason":"connections"' in refused(server.port)
            # ...and a probe on the health port is answered all the same.
            assert httpx.get(health_url(port) + "/", trust_env=False, timeout=5).status_code == 200
        # The health port's own bound: probers, not a crowd; the serving port is not touched.
        with idle_connections(port, HEALTH_CONNECTIONS):
            assert b'"reason":"connections"' in refused(port)
            answer = httpx.post(server.url + "/decisions", json={}, trust_env=False, timeout=5)
            assert answer.status_code in (200, 422)


def test_with_workers_the_health_port_answers_every_probe(
    tmp_path: Path, example_model_path: Path
) -> None:
    port = free_port()
    args = ["--health-port", str(port), "--workers", "2"]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        for _ in range(40):  # a new connection each, as a prober opens
            with httpx.Client(trust_env=False, timeout=10) as client:
                assert client.get(health_url(port) + "/").status_code == 200
                assert client.post(health_url(port) + "/decisions", json={}).status_code == 404
        assert server.process.poll() is None


@pytest.mark.parametrize("health_port", [0, 70000, 8080])
def test_the_health_port_is_a_port_of_its_own(health_port: int) -> None:
    with pytest.raises(ConfigError, match="--health-port"):
        Settings(port=8080, health_port=health_port)
    assert Settings(port=8080, health_port=8081).health_port == 8081
    env = Settings.from_env({"SERVEPATH_HEALTH_PORT": "9090"})
    assert env.health_port == 9090
