"""HTTPS from `servepath serve --tls-cert/--tls-key`: real processes, a private CA made here,
the client tools against it, SIGHUP reloading the certificate, the redirect port."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from typer.testing import CliRunner

from servepath.cli import app
from servepath.service.tls import harden, redirect_location
from tests.helpers.waiting import wait_until_answers
from tests.support import free_port, serve

runner = CliRunner()
NO_PROXY_ENV = {
    name: ""
    for base in ("http", "https", "all", "no")
    for name in (f"{base}_proxy", f"{base.upper()}_PROXY")
}


def _issue(ca: trustme.CA, tmp: Path, *names: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*names)
    chain, key = tmp / "cert.pem", tmp / "key.pem"
    chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


def _trusting(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def _served_names(port: int, cafile: Path) -> list[str]:
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cert = tls.getpeercert()
    return sorted(v for k, v in cert.get("subjectAltName", ()) if k == "DNS")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def https_server(
    tmp_path: Path, ca: trustme.CA, example_model_path: Path
) -> Iterator[tuple[str, Path, Path, int, object]]:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    cert, key = _issue(ca, tmp_path, "localhost", "127.0.0.1")
    redirect = free_port()
    args = ["--tls-cert", str(cert), "--tls-key", str(key), "--http-redirect-port", str(redirect)]
    with serve(tmp_path, model=example_model_path, args=args, wait=False) as server:
        url = f"https://localhost:{server.port}"
        wait_until_answers(url + "/", timeout=60, verify=_trusting(cafile), interval=0.1)
        yield url, cafile, tmp_path, redirect, server


def test_https_answers_the_client_tools_that_trust_the_ca(https_server) -> None:
    url, cafile, _, _, _ = https_server
    env = {**NO_PROXY_ENV, "SSL_CERT_FILE": ""}
    ok = runner.invoke(
        app, ["request", f"{url}/decisions", "--cafile", str(cafile), "--json"], env=env
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == 200
    refused = runner.invoke(app, ["request", f"{url}/decisions", "--json"], env=env)
    assert refused.exit_code == 1 and json.loads(refused.stdout)["failure"] == "tls"

    doctor = runner.invoke(
        app,
        # (a timeout a machine busy with other work cannot make the doctor's repetition miss)
        ["doctor", f"{url}/decisions", "--json", "--large-kb", "0", "--timeout", "3"],
        env={**env, "SSL_CERT_FILE": str(cafile)},
    )
    report = json.loads(doctor.stdout)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["tls"]["status"] == "ok" and "TLSv1." in stages["tls"]["summary"]
    assert stages["http"]["status"] == "ok"
    assert report["ok"] and report["cause"] == "ok", report["cause"]


def test_the_served_context_refuses_tls_below_1_2() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    harden(context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION


def test_sighup_serves_the_new_certificate_and_keeps_the_old_one_when_the_new_is_bad(
    https_server, ca: trustme.CA
) -> None:
    url, cafile, tmp, _, server = https_server
    assert _served_names(server.port, cafile) == ["localhost"]
    _issue(ca, tmp, "localhost", "renewed.test")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while _served_names(server.port, cafile) != ["localhost", "renewed.test"]:
        assert time.monotonic() < deadline, "SIGHUP did not load the new certificate"
        time.sleep(0.05)

    (tmp / "cert.pem").write_text("not a certificate\n")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "kept the old certificate" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert _served_names(server.port, cafile) == ["localhost", "renewed.test"]
    assert server.process.poll() is None
    response = httpx.get(url + "/", verify=_trusting(cafile), trust_env=False)
    assert response.status_code == 200


def test_the_redirect_port_sends_plain_http_callers_to_https(https_server) -> None:
    _, cafile, _, redirect, server = https_server
    response = httpx.post(
        f"http://127.0.0.1:{redirect}/decisions?explain=1",
        headers={"Host": "localhost:9999"},
        json={},
        trust_env=False,
    )
    assert response.status_code == 308
    assert response.headers["location"] == f"https://localhost:{server.port}/decisions?explain=1"
    followed = httpx.post(
        f"http://localhost:{redirect}/decisions",
        content=b'{"age": 30}',
        follow_redirects=True,
        verify=_trusting(cafile),
        trust_env=False,
    )
    assert followed.url.scheme == "https" and followed.status_code in (200, 422)
    with socket.create_connection(("127.0.0.1", redirect), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01junk that is no request\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    ("head", "location"),
    [
        (b"GET /a?b=1 HTTP/1.1\r\nHost: api.test\r\n", "https://api.test:8443/a?b=1"),
        (b"GET / HTTP/1.1\r\nHost: api.test:80\r\n", "https://api.test:8443/"),
        (b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n", "https://[2001:db8::1]:8443/"),
        (b"GET / HTTP/1.1\r\nHost: 2001:db8::1\r\n", "https://[2001:db8::1]:8443/"),
        (b"GET / HTTP/1.0\r\n", "https://fallback.test:8443/"),
        (b"GET http://evil.test/x HTTP/1.1\r\nHost: api.test\r\n", "https://api.test:8443/"),
        (b"GET / HTTP/1.1\r\nHost: evil.test/@x\r\n", "https://fallback.test:8443/"),
    ],
)
def test_the_redirect_keeps_host_and_target_and_never_a_foreign_origin(
    head: bytes, location: str
) -> None:
    assert redirect_location(head, 8443, "fallback.test") == location


def test_the_redirect_to_port_443_names_no_port() -> None:
    assert redirect_location(b"GET /x HTTP/1.1\r\nHost: a.test\r\n", 443, "f") == "https://a.test/x"
    assert redirect_location(b"\x16\x03\x01", 443, "f") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "{cert}"], "both --tls-cert and --tls-key"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "no such file"),
        (["--tls-cert", "{key}", "--tls-key", "{key}"], "PEM certificate chain"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "does not belong"),
        (["--http-redirect-port", "9080"], "give --tls-cert too"),
    ],
)
def test_bad_tls_settings_are_usage_errors_before_anything_binds(
    tmp_path: Path, ca: trustme.CA, args: list[str], message: str
) -> None:
    cert, key = _issue(ca, tmp_path, "localhost")
    other = ca.issue_cert("other.test")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    files = {"cert": cert, "key": key, "other_key": other_key, "missing": tmp_path / "nope.pem"}
    result = runner.invoke(
        app,
        ["serve", "--port", str(free_port()), *[a.format(**files) for a in args], "--json"],
        env={"SERVEPATH_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 2, result.output
    assert message in json.loads(result.stdout)["message"]
