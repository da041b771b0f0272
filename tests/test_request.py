"""`servepath request`: the example request, proxies honoured, failures named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servepath.cli import app
from tests.support import free_port, serve, silent_listener, tinyproxy

runner = CliRunner()
NO_PROXY_ENV = {
    "HTTP_PROXY": "",
    "http_proxy": "",
    "NO_PROXY": "",
    "no_proxy": "",
    "HTTPS_PROXY": "",
    "https_proxy": "",
    "ALL_PROXY": "",
    "all_proxy": "",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, example_model_path: Path):
    tmp = tmp_path_factory.mktemp("request")
    with serve(tmp, model=example_model_path, args=["--store", "off"]) as s:
        yield s


def test_request_posts_the_servers_example_and_prints_the_decision(server) -> None:
    result = runner.invoke(app, ["request", server.url + "/decisions"], env=NO_PROXY_ENV)
    assert result.exit_code == 0, result.output
    assert "-> 200 in" in result.output
    assert '"decision"' in result.output
    assert "server-timing: cache;dur=" in result.output


def test_request_json_output_carries_request_response_and_time(server) -> None:
    result = runner.invoke(app, ["request", server.url + "/decisions", "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["status"] == 200 and data["ok"] is True
    assert data["body"]["decision"] in ("approve", "decline")
    assert data["request"]["purpose"] == "car"
    assert data["elapsed_ms"] > 0
    assert data["proxy"]["proxy"] is None


@pytest.mark.parametrize("path", ["", "/"])
def test_a_bare_origin_posts_the_example_to_the_servers_predict_route(server, path: str) -> None:
    result = runner.invoke(app, ["request", server.url + path, "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["url"] == server.url + "/decisions"
    assert data["body"]["decision"] in ("approve", "decline")


def test_a_bare_origin_with_data_posts_to_the_predict_route_too(server) -> None:
    result = runner.invoke(
        app, ["request", server.url, "--json", "--data", "-"], input="{}", env=NO_PROXY_ENV
    )
    data = json.loads(result.stdout)
    assert data["url"] == server.url + "/decisions"
    assert data["status"] == 422  # the predict route, which names the missing fields


def test_request_sends_data_from_a_file(server, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"income": "lots"}))
    result = runner.invoke(
        app, ["request", server.url + "/decisions", "--data", str(body)], env=NO_PROXY_ENV
    )
    assert result.exit_code == 1
    assert "422" in result.output
    assert "income" in result.output
    assert "servepath doctor" in result.output


def test_request_goes_through_the_forward_proxy_from_http_proxy(server, tmp_path: Path) -> None:
    with tinyproxy(tmp_path) as (proxy_url, proxy_log):
        env = {**NO_PROXY_ENV, "HTTP_PROXY": proxy_url}
        result = runner.invoke(app, ["request", server.url + "/decisions", "--json"], env=env)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["proxy"] == {
            "url": server.url + "/decisions",
            "proxy": proxy_url,
            "reason": "HTTP_PROXY",
        }
        assert data["headers"]["via"].startswith("1.1 tinyproxy")
        assert "Established connection" in proxy_log.read_text()


def test_no_proxy_bypasses_the_proxy(server, tmp_path: Path) -> None:
    with tinyproxy(tmp_path) as (proxy_url, proxy_log):
        env = {**NO_PROXY_ENV, "HTTP_PROXY": proxy_url, "NO_PROXY": "localhost,127.0.0.1"}
        result = runner.invoke(app, ["request", server.url + "/decisions", "--json"], env=env)
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["proxy"]["proxy"] is None
        assert "NO_PROXY" in data["proxy"]["reason"]
        assert "via" not in data["headers"]
        assert "Established connection" not in proxy_log.read_text()


def test_explicit_proxy_that_is_down_is_named(server) -> None:
    dead = free_port()
    result = runner.invoke(
        app,
        [
            "request",
            server.url + "/decisions",
            "--proxy",
            f"http://127.0.0.1:{dead}",
            "--data",
            "-",
        ],
        input='{"income": 1}',
        env=NO_PROXY_ENV,
    )
    assert result.exit_code == 1
    assert "proxy" in result.output.lower()


def test_refused_port_is_named_and_points_to_doctor() -> None:
    port = free_port()
    result = runner.invoke(app, ["request", f"http://127.0.0.1:{port}/decisions"], env=NO_PROXY_ENV)
    assert result.exit_code == 1
    assert "refused" in result.output
    assert f"servepath doctor http://127.0.0.1:{port}/decisions" in result.output


def test_a_server_that_never_answers_is_a_timeout() -> None:
    with silent_listener() as port:
        result = runner.invoke(
            app,
            ["request", f"http://127.0.0.1:{port}/decisions", "--timeout", "0.5", "--data", "-"],
            input="{}",
            env=NO_PROXY_ENV,
        )
    assert result.exit_code == 1
    assert "read_timeout" in result.output


def test_bad_url_is_usage_error() -> None:
    result = runner.invoke(app, ["request", "127.0.0.1:8080"], env=NO_PROXY_ENV)
    assert result.exit_code == 2
