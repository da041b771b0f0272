"""Every proxy the project ships or deploys behind closes an idle connection to the server
before the server does: the server's keep-alive is the longer. Otherwise the proxy sends a
request down a connection the server is closing, and answers 502 for a request the server
never logged."""

from __future__ import annotations

import re

import yaml

from servepath.config import Settings
from tests.deploy.artifacts import K8S, compose_env, load_compose, load_manifests
from tests.deploy.test_k8s import pod_env

NGINX_CONF = K8S.parent / "nginx" / "servepath.conf"


def test_the_compose_nginx_closes_its_idle_upstream_connections_before_the_replicas() -> None:
    upstream = re.search(r"upstream\s+servepath\s*\{(.*?)\n\}", NGINX_CONF.read_text(), re.S)
    assert upstream is not None
    found = re.search(r"^\s*keepalive_timeout\s+(\d+)s;", upstream.group(1), re.M)
    assert found is not None, "nginx's default (60 s) would outlast the replicas"
    services = load_compose()["services"]
    replicas = [name for name in services if name.startswith("servepath-")]
    assert replicas
    for name in replicas:
        replica = Settings.from_env(compose_env(services[name]))
        assert replica.keepalive_timeout > float(found.group(1)), name


def test_the_server_keeps_idle_connections_longer_than_the_ingress_controller() -> None:
    controller = yaml.safe_load((K8S / "ingress-nginx" / "controller-configmap.yaml").read_text())[
        "data"
    ]
    upstream = float(controller["upstream-keepalive-timeout"])
    settings = Settings.from_env(pod_env(load_manifests()))
    assert settings.keepalive_timeout > upstream


def test_on_vertex_ai_the_server_outlasts_googles_load_balancers() -> None:
    google = 600.0
    assert Settings.from_env({}).keepalive_timeout < google  # elsewhere: the 5 s default
    vertex = {"AIP_HTTP_PORT": "8080", "AIP_HEALTH_ROUTE": "/health", "AIP_MODE": "PREDICTION"}
    assert Settings.from_env(vertex).keepalive_timeout > google
    # An explicit setting wins, as everywhere.
    chosen = {**vertex, "SERVEPATH_KEEPALIVE_TIMEOUT": "700"}
    assert Settings.from_env(chosen).keepalive_timeout == 700.0
