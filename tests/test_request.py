"""`servepath request`: the example request, proxies honoured, failures named."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from typer.testing import CliRunner

from servepath.cli import app
from servepath.client import Trust
from tests.helpers.tcpserver import scripted_server
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
    # the path works: the body is what to fix, and the doctor would not help
    assert "servepath doctor" not in result.output
    assert "fix the fields it names" in result.output


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


# --- failures named, on every outcome ---------------------------------------------------


def test_json_is_printed_when_the_connection_fails_with_the_named_failure() -> None:
    port = free_port()
    result = runner.invoke(app, ["request", f"http://127.0.0.1:{port}/decisions", "--json"],
                           env=NO_PROXY_ENV)  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["failure"] == "refused"
    assert data["stage"] == "openapi" and data["status"] is None
    assert "connection refused" in data["message"]
    assert data["hints"] == [
        f"to see where the path breaks: servepath doctor http://127.0.0.1:{port}/decisions"
    ]


def test_a_dead_proxy_from_the_environment_is_named_not_the_server(server) -> None:
    dead = free_port()
    env = {**NO_PROXY_ENV, "HTTP_PROXY": f"http://127.0.0.1:{dead}"}
    result = runner.invoke(app, ["request", server.url + "/decisions", "--json"], env=env)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["failure"] == "proxy"
    assert f"forward proxy http://127.0.0.1:{dead}" in data["message"]
    assert any("comes from HTTP_PROXY" in h and "NO_PROXY" in h for h in data["hints"])
    text = runner.invoke(app, ["request", server.url + "/decisions"], env=env).output
    assert "proxy:" in text and "nothing listens" in text  # the proxy's port, as named


def test_an_ipv6_url_prints_literally_and_its_doctor_command_can_be_pasted() -> None:
    port = free_port("::1")
    result = runner.invoke(app, ["request", f"http://[::1]:{port}/decisions"], env=NO_PROXY_ENV)
    assert result.exit_code == 1
    assert f"GET http://[::1]:{port}/openapi.json -> failed" in result.output
    # brackets are a glob to zsh: the suggested command is quoted
    assert f"servepath doctor 'http://[::1]:{port}/decisions'" in result.output


def test_a_usage_error_under_json_is_json_too() -> None:
    result = runner.invoke(app, ["request", "127.0.0.1:8080", "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 2
    data = json.loads(_json_head(result.stdout))
    assert data == {"ok": False, "failure": "usage", "message": data["message"]}
    assert "not an http:// or https:// URL" in data["message"]


def _json_head(text: str) -> str:
    """The JSON document at the start of ``text`` (usage text may follow on the same stream
    under CliRunner, which merges it)."""
    decoder = json.JSONDecoder()
    _, end = decoder.raw_decode(text)
    return text[:end]


def test_a_404_names_the_routes_the_server_has(server) -> None:
    result = runner.invoke(app, ["request", server.url + "/predict", "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == 404 and data["failure"] == "http_status"
    assert any("/decisions" in h for h in data["hints"])


# --- redirects, trust and time --------------------------------------------------------


def _redirecting(location: str) -> Any:
    def handle(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: " + location.encode()
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )  # fmt: skip

    return handle


def test_a_redirect_says_where_to_send_the_request_not_to_pass_data() -> None:
    with scripted_server(_redirecting("https://api.example.test/openapi.json")) as port:
        result = runner.invoke(app, ["request", f"http://127.0.0.1:{port}/decisions", "--json"],
                               env=NO_PROXY_ENV)  # fmt: skip
        assert result.exit_code == 1
        data = json.loads(result.stdout)
        assert data["failure"] == "redirect" and data["status"] == 301
        assert "redirects to https://api.example.test/openapi.json" in data["message"]
        assert data["hints"] == [
            "send the request there: servepath request https://api.example.test/decisions"
        ]
        assert "--data" not in result.stdout
        # a redirected POST says the same
        posted = runner.invoke(
            app, ["request", f"http://127.0.0.1:{port}/decisions", "-d", "-", "--json"],
            input='{"a": 1}', env=NO_PROXY_ENV,
        )  # fmt: skip
        data = json.loads(posted.stdout)
        assert data["failure"] == "redirect" and data["location"].startswith("https://")
        assert "servepath request https://api.example.test/openapi.json" in data["hints"][0]


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A small JSON API over TLS (a trustme CA's certificate): its URL and the CA file."""
    tmp = tmp_path_factory.mktemp("tls-api")
    ca = trustme.CA()
    pem = tmp / "server.pem"
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(pem))
    cafile = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    port = free_port()
    config = uvicorn.Config(
        _json_api,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="error",
        ssl_certfile=str(pem),
        ssl_keyfile=str(pem),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TLS API did not start"
        time.sleep(0.01)
    try:
        yield f"https://localhost:{port}", str(cafile)
    finally:
        server.should_exit = True
        thread.join(5)


_SPEC = {
    "paths": {
        "/decisions": {
            "post": {"requestBody": {"content": {"application/json": {"example": {"x": 1.5}}}}}
        }
    }
}


async def _json_api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    body = json.dumps(_SPEC if scope["path"] == "/openapi.json" else {"decision": "ok"}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_tls_trust_comes_from_cafile_ssl_cert_file_or_insecure(tls_api) -> None:
    url, cafile = tls_api
    env = {**NO_PROXY_ENV, "SSL_CERT_FILE": ""}
    refused = runner.invoke(app, ["request", url, "--json"], env=env)
    assert refused.exit_code == 1
    data = json.loads(refused.stdout)
    assert data["failure"] == "tls" and "certificate" in data["message"]
    assert any("--cafile" in h and "--insecure" in h for h in data["hints"])
    for args, extra in (
        (["--cafile", cafile], {}),
        (["--insecure"], {}),
        ([], {"SSL_CERT_FILE": cafile}),
    ):
        result = runner.invoke(app, ["request", url, "--json", *args], env={**env, **extra})
        assert result.exit_code == 0, (args, extra, result.output)
        assert json.loads(result.stdout)["body"] == {"decision": "ok"}
    bad = runner.invoke(app, ["request", url, "--cafile", __file__], env=env)
    assert bad.exit_code == 2


def test_doctor_trusts_ssl_cert_file_and_looks_past_an_untrusted_certificate_with_k(
    tls_api,
) -> None:
    url, cafile = tls_api
    env = {**NO_PROXY_ENV, "SSL_CERT_FILE": ""}
    args = ["doctor", f"{url}/decisions", "--json", "--large-kb", "0", "--timeout", "1"]

    def stages(extra_env: dict[str, str], *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
        result = runner.invoke(app, [*args, *extra], env={**env, **extra_env})
        report = json.loads(result.stdout)
        return report, {s["name"]: s for s in report["stages"]}

    untrusted, by_name = stages({})
    assert (untrusted["failed_stage"], untrusted["cause"]) == ("tls", "tls_untrusted")
    assert by_name["http"]["status"] == "skip"

    looked_past, by_name = stages({}, "-k")
    assert by_name["tls"]["status"] == "warn" and "--insecure" in by_name["tls"]["summary"]
    assert looked_past["failed_stage"] != "tls" and looked_past["cause"] != "tls_untrusted"
    assert by_name["http"]["status"] == "ok", by_name["http"]

    _, by_name = stages({"SSL_CERT_FILE": cafile})
    assert by_name["tls"]["status"] == "ok" and by_name["http"]["status"] == "ok"


def test_the_time_reported_is_the_request_not_building_the_client(tls_api, tmp_path: Path) -> None:
    # A trust store that takes long to load (the server's CA among thousands of others):
    # loading it is not the request's time.
    url, cafile = tls_api
    big = tmp_path / "big-bundle.pem"
    big.write_bytes(trustme.CA().cert_pem.bytes() * 4000 + Path(cafile).read_bytes())
    started = time.perf_counter()
    Trust(cafile=str(big)).context()
    loading_ms = (time.perf_counter() - started) * 1000
    result = runner.invoke(
        app,
        ["request", url + "/decisions", "--cafile", str(big), "--json", "-d", "-"],
        input='{"x": 1}',
        env={**NO_PROXY_ENV, "SSL_CERT_FILE": ""},
    )
    assert result.exit_code == 0, result.output
    elapsed = json.loads(result.stdout)["elapsed_ms"]
    assert elapsed < loading_ms / 2, (elapsed, loading_ms)


# --- a proxy that answers instead of the app ---------------------------------------------


def _answering(head: bytes, body: bytes = b"<html><head><title>oops</title></head></html>") -> Any:
    """A server that answers every request with ``head`` (status line and headers)."""

    def handle(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(
            head + b"\r\nContent-Type: text/html\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )  # fmt: skip

    return handle


@pytest.mark.parametrize(
    ("head", "cause", "answerer"),
    [
        (b"HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.24.0", "upstream_error", "nginx/1.24.0"),
        (b"HTTP/1.1 503 Service Unavailable\r\nServer: envoy", "upstream_error", "envoy"),
        (b"HTTP/1.1 502 Bad Gateway", "upstream_error", "a proxy"),
        (b"HTTP/1.1 504 Gateway Time-out\r\nServer: haproxy", "upstream_timeout", "haproxy"),
    ],
)
@pytest.mark.parametrize("data", [False, True])
def test_a_reverse_proxys_own_answer_names_the_proxy_and_never_advises_data(
    head: bytes, cause: str, answerer: str, data: bool
) -> None:
    with scripted_server(_answering(head)) as port:
        url = f"http://127.0.0.1:{port}/decisions"
        extra = ["--data", "-"] if data else []
        result = runner.invoke(
            app, ["request", url, "--json", *extra], input='{"a": 1}', env=NO_PROXY_ENV
        )
        assert result.exit_code == 1
        document = json.loads(result.stdout)
        assert document["failure"] == cause
        assert f"reverse proxy in front of the app ({answerer})" in document["message"]
        assert "--data" not in result.stdout
        assert any(f"servepath doctor {url}" in h for h in document["hints"])
        text = runner.invoke(app, ["request", url, *extra], input='{"a": 1}', env=NO_PROXY_ENV)
        assert f"{cause}: the reverse proxy" in text.output and "--data" not in text.output


def test_servepaths_own_503_is_not_blamed_on_a_proxy() -> None:
    head = (b"HTTP/1.1 503 Service Unavailable\r\nX-Request-ID: abc\r\n"
            b"Server-Timing: total;dur=0.1\r\nRetry-After: 1")  # fmt: skip
    with scripted_server(_answering(head, b'{"error": "not ready"}')) as port:
        url = f"http://127.0.0.1:{port}/decisions"
        result = runner.invoke(app, ["request", url, "--json", "-d", "-"], input="{}",
                               env=NO_PROXY_ENV)  # fmt: skip
        assert json.loads(result.stdout)["failure"] == "http_status"


def test_a_forward_proxys_refusal_is_named_with_no_proxy_not_a_missing_example(
    server, tmp_path: Path
) -> None:
    with tinyproxy(tmp_path, allow="127.0.0.2") as (proxy_url, _):
        env = {**NO_PROXY_ENV, "HTTP_PROXY": proxy_url}
        result = runner.invoke(app, ["request", server.url + "/decisions", "--json"], env=env)
        assert result.exit_code == 1
        document = json.loads(result.stdout)
        assert document["failure"] == "proxy_denied"
        assert f"the forward proxy {proxy_url} refused" in document["message"]
        assert "Access denied" in document["message"]
        assert any("NO_PROXY=127.0.0.1" in h for h in document["hints"])
        assert "--data" not in result.stdout


def test_a_body_the_forward_proxy_refuses_is_the_proxy_refusing_not_a_reset(
    server, tmp_path: Path
) -> None:
    # A body larger than the socket buffers: the proxy answers 403 and closes before reading
    # it, and the unread bytes turn its close into a reset.
    body = json.dumps({"income": "x" * 400_000})
    with tinyproxy(tmp_path, allow="127.0.0.2") as (proxy_url, _):
        env = {**NO_PROXY_ENV, "HTTP_PROXY": proxy_url}
        args = ["request", server.url + "/decisions", "--data", "-"]
        result = runner.invoke(app, [*args, "--json"], input=body, env=env)
        assert result.exit_code == 1
        document = json.loads(result.stdout)
        assert document["failure"] == "proxy_denied", document["message"]
        assert f"the forward proxy {proxy_url} refused" in document["message"]
        assert any("NO_PROXY=127.0.0.1" in h for h in document["hints"])
        text = runner.invoke(app, args, input=body, env=env).output
        assert "proxy_denied: the forward proxy" in text and "reset:" not in text


# --- the V2 route ---------------------------------------------------------------------


def _v2_model_name(base: str) -> str:
    """The model the server serves, as its OpenAPI document names it for the V2 routes."""
    import httpx

    spec = httpx.get(base + "/openapi.json", trust_env=False).json()
    (param,) = spec["paths"]["/v2/models/{model_name}/infer"]["post"]["parameters"]
    return str(param["schema"]["enum"][0])


def test_a_v2_infer_url_gets_the_tensors_its_models_metadata_lists(server) -> None:
    import httpx

    name = _v2_model_name(server.url)
    url = f"{server.url}/v2/models/{name}/infer"
    result = runner.invoke(app, ["request", url, "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == 200
    sent = document["request"]["inputs"]
    metadata = httpx.get(f"{server.url}/v2/models/{name}", trust_env=False).json()
    assert [(t["name"], t["datatype"]) for t in sent] == [
        (i["name"], i["datatype"]) for i in metadata["inputs"]
    ]
    assert all(t["shape"] == [1] and len(t["data"]) == 1 for t in sent)
    assert {o["name"] for o in document["body"]["outputs"]} >= {"decision"}


def test_a_v2_url_for_another_model_shows_which_model_the_server_serves(server) -> None:
    url = f"{server.url}/v2/models/nosuch/infer"
    result = runner.invoke(app, ["request", url, "--json"], env=NO_PROXY_ENV)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["status"] == 404 and "this server serves" in document["message"]


def test_a_plain_body_on_the_v2_route_is_told_the_v2_form(server) -> None:
    url = f"{server.url}/v2/models/{_v2_model_name(server.url)}/infer"
    result = runner.invoke(
        app, ["request", url, "--json", "-d", "-"], input='{"income": 1}', env=NO_PROXY_ENV
    )
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["status"] in (400, 422)
    assert any("this is the V2 (Open Inference Protocol) route" in h for h in document["hints"])
