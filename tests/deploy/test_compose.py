"""deploy/compose.yaml: nginx before the replicas, Redis, PostgreSQL, health checks, start order."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from servepath.config import DEFAULT_GRACE_PERIOD, DEFAULT_HEALTH_ROUTE, DEFAULT_PORT, Settings
from tests.deploy.artifacts import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    NGINX_CONF,
    InterpolationError,
    NginxConfig,
    compose_env,
    config_env_names,
    duration_seconds,
    interpolate,
    load_compose,
)

PASSWORD_ENV = {"POSTGRES_PASSWORD": "s3cret-for-the-test"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def replicas(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from deploy/Dockerfile."""
    found = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            context = (COMPOSE.parent / build.get("context", ".")).resolve()
            if (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE:
                found[name] = service
    return found


def test_at_least_two_servepath_replicas_are_built_from_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    assert len(replicas(compose)) >= 2


def test_only_nginx_publishes_a_port_and_it_is_80(compose: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert list(published) == ["nginx"]
    assert [str(p).split(":")[-2:] for p in published["nginx"]] == [["80", "80"]]


def test_replicas_listen_on_the_service_port(compose: dict[str, Any]) -> None:
    for name, service in replicas(compose).items():
        assert [str(p) for p in service["expose"]] == [str(DEFAULT_PORT)], name


def test_nginx_upstream_names_exactly_the_replicas(compose: dict[str, Any]) -> None:
    upstream = NginxConfig.read().upstream_servers
    assert sorted((host, port) for host, port, _ in upstream) == sorted(
        (name, DEFAULT_PORT) for name in replicas(compose)
    )
    mounts = compose["services"]["nginx"]["volumes"]
    sources = [str(m).split(":")[0] for m in mounts]
    assert any((DEPLOY / s).resolve() == NGINX_CONF for s in sources), mounts


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        duration_seconds(check.get("interval", "30s"))


def test_replica_healthcheck_requests_the_health_route_on_the_service_port(
    compose: dict[str, Any],
) -> None:
    for name, service in replicas(compose).items():
        code = " ".join(service["healthcheck"]["test"])
        url = code.split("'http://", 1)[1].split("'", 1)[0]
        parts = urlsplit("http://" + url)
        assert parts.hostname == "127.0.0.1", name
        assert parts.port == DEFAULT_PORT, name
        assert parts.path == DEFAULT_HEALTH_ROUTE, name


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule == {"condition": "service_healthy"} or rule.get("condition") == (
                "service_healthy"
            ), f"{name} -> {dependency}: {rule}"
            assert services[dependency].get("healthcheck"), dependency
    for name in replicas(compose):
        assert set(services[name]["depends_on"]) >= {"redis", "postgres"}
    assert set(services["nginx"]["depends_on"]) == set(replicas(compose))


def test_stop_grace_outlasts_the_servers_drain(compose: dict[str, Any]) -> None:
    for name, service in replicas(compose).items():
        env = compose_env(service)
        drain = float(env.get("SERVEPATH_GRACE_PERIOD", DEFAULT_GRACE_PERIOD))
        stop = duration_seconds(str(service.get("stop_grace_period", "10s")))
        assert stop > drain, f"{name}: stop_grace_period {stop}s <= drain {drain}s"


def test_replica_environment_is_settings_servepath_reads(compose: dict[str, Any]) -> None:
    known = config_env_names()
    for name, service in replicas(compose).items():
        env = {k: interpolate(v, PASSWORD_ENV) for k, v in compose_env(service).items()}
        assert set(env) <= known, f"{name}: unknown {sorted(set(env) - known)}"
        settings = Settings.from_env(env)
        assert settings.port == DEFAULT_PORT


def test_cache_and_store_urls_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres_env = {
        k: interpolate(v, PASSWORD_ENV) for k, v in compose_env(services["postgres"]).items()
    }
    for name, service in replicas(compose).items():
        env = {k: interpolate(v, PASSWORD_ENV) for k, v in compose_env(service).items()}
        cache = urlsplit(env["SERVEPATH_CACHE_URL"])
        assert cache.scheme == "redis" and cache.hostname in services, name
        assert "redis-server" in " ".join(services[cache.hostname].get("command", ["redis-server"]))
        store = urlsplit(env["SERVEPATH_STORE_URL"])
        assert store.scheme == "postgresql" and store.hostname == "postgres", name
        assert store.username == postgres_env["POSTGRES_USER"]
        assert (
            store.password == postgres_env["POSTGRES_PASSWORD"] == PASSWORD_ENV["POSTGRES_PASSWORD"]
        )
        assert store.path.lstrip("/") == postgres_env["POSTGRES_DB"]


def test_the_replicas_believe_forwarded_headers_from_nginx_alone(compose: dict[str, Any]) -> None:
    import ipaddress

    services = compose["services"]
    nginx_address = services["nginx"]["networks"]["app"]["ipv4_address"]
    subnet = compose["networks"]["app"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_address) in ipaddress.ip_network(subnet)
    for name, service in services.items():
        assert "app" in service.get("networks", {}), f"{name} is not on the app network"
    for name, service in replicas(compose).items():
        settings = Settings.from_env(compose_env(service) | PASSWORD_ENV)
        trusted = settings.trusted_proxies
        assert trusted.trusts(nginx_address), name
        assert not trusted.trusts(str(ipaddress.ip_address(nginx_address) + 1)), name


def test_no_password_is_shipped_in_the_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        interpolate(compose_env(services["postgres"])["POSTGRES_PASSWORD"], {})
    for service in replicas(compose).values():
        with pytest.raises(InterpolationError):
            interpolate(compose_env(service)["SERVEPATH_STORE_URL"], {})


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("a${B}c", {"B": "b"}) == "abc"
    with pytest.raises(InterpolationError, match="needed"):
        interpolate("${A:?needed}", {"A": ""})
