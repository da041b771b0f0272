"""`servepath http`: phases, redirects, Server-Timing, proxies and failures, on real servers.

An ASGI app served by uvicorn on loopback (plain and with a trustme certificate), tinyproxy as
the forward proxy, and sockets that refuse or never answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from servepath.cli import app
from servepath.config import ProxyEnv
from servepath.netdiag.http import (
    Phases,
    ServerTimingEntry,
    TraceEvent,
    parse_server_timing,
    path_headers,
    phases_from_events,
    probe_http,
)
from tests.support import free_port, need_binary, need_root

pytestmark = pytest.mark.timeout(60)

SERVER_TIMING = 'cache;dur=0.04;desc="miss", model;dur=1.8, total;dur=2.1'
SEEN_HOSTS: list[str] = []  # the Host header of every request the test app received
SEEN_BODIES: list[bytes] = []


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    SEEN_BODIES.append(body)
    SEEN_HOSTS.extend(v.decode() for k, v in scope["headers"] if k == b"host")
    query = parse_qs(scope["query_string"].decode())
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    status, payload = 200, b"hello"
    if path == "/":
        headers += [(b"server-timing", SERVER_TIMING.encode()), (b"x-request-id", b"req-42")]
    elif path == "/redirect":
        status, payload = 302, b""
        headers.append((b"location", b"/final"))
    elif path == "/loop":
        status, payload = 302, b""
        headers.append((b"location", b"/loop"))
    elif path == "/final":
        payload = b"final"
    elif path == "/slow":
        await asyncio.sleep(int(query["ms"][0]) / 1000)
    elif path == "/big":
        payload = b"x" * 2_000_000
    elif path == "/echo":
        seen = {k.decode(): v.decode() for k, v in scope["headers"]}
        payload = json.dumps(
            {"method": scope["method"], "host": seen.get("host"), "body": body.decode()}
        ).encode()
    else:
        status, payload = 404, b"no route " + path.encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@dataclass
class Site:
    url: str  # http(s)://localhost:PORT
    port: int
    cafile: str | None = None


@contextlib.contextmanager
def run_site(**ssl: Any) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, lifespan="off", log_level="error", **ssl
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with run_site() as port:
        yield Site(f"http://localhost:{port}", port)


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")  # no IP in the certificate: only the name can match
    pem = tmp / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    cafile = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    with run_site(ssl_certfile=str(pem), ssl_keyfile=str(pem)) as port:
        yield Site(f"https://localhost:{port}", port, str(cafile))


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real forward proxy on loopback; it adds ``Via: 1.1 sp-test-proxy (tinyproxy/...)``."""
    binary = need_binary("tinyproxy")
    tmp = tmp_path_factory.mktemp("tinyproxy")
    port = free_port()
    conf = tmp / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\nMaxClients 20\n"
        f'LogLevel Info\nPidFile "{tmp}/tinyproxy.pid"\nViaProxyName "sp-test-proxy"\n'
    )
    log = (tmp / "tinyproxy.log").open("wb")
    proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(
                    f"tinyproxy did not start: {(tmp / 'tinyproxy.log').read_text()}"
                )
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


@contextlib.contextmanager
def never_answers() -> Iterator[int]:
    """A listening socket nobody accepts from: connects succeed, no byte ever comes back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    base = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "NO_PROXY": ""}
    base |= {k.lower(): "" for k in base}
    result = CliRunner().invoke(app, ["http", *args], env={**base, **(env or {})})
    return result.exit_code, result.output


# --- phases on real servers ------------------------------------------------------------


def _parts(p: Phases) -> list[float | None]:
    return [p.prepare_ms, p.dns_ms, p.connect_ms, p.proxy_tunnel_ms, p.tls_ms, p.send_ms,
            p.wait_ms, p.download_ms]  # fmt: skip


def test_wait_phase_is_the_server_time_and_phases_add_up_to_the_total(site: Site) -> None:
    report = probe_http(f"{site.url}/slow?ms=250")
    assert report.ok and report.status == 200
    p = report.final.phases
    assert p.dns_ms is not None and p.connect_ms is not None and p.prepare_ms is not None
    assert p.tls_ms is None and p.proxy_tunnel_ms is None
    # the server sleeps 250 ms once it has read the request: that lies within the sending
    # and the wait (it may start before the client marks the last byte as sent)
    assert 250 <= p.send_ms + p.wait_ms < 1000  # type: ignore[operator]
    assert p.wait_ms > 200  # type: ignore[operator]
    parts = _parts(p)
    assert all(v is None or v >= 0 for v in parts)
    # end to end on one clock: nothing unaccounted, nothing counted twice
    assert sum(v for v in parts if v is not None) == pytest.approx(p.total_ms, abs=1e-6)
    marks = p.cumulative()
    assert p.ttfb_ms == marks["time_starttransfer"]
    assert marks["time_starttransfer"] == pytest.approx(p.total_ms - p.download_ms, abs=0.002)  # type: ignore[operator]
    values = list(marks.values())
    assert values[:2] == sorted(values[:2]) and values[3:] == sorted(values[3:])
    assert marks["time_appconnect"] == 0.0  # no TLS, as curl reports it


def test_phases_add_up_to_the_total_on_every_outcome(site: Site, tls_site: Site) -> None:
    with never_answers() as silent:
        reports = [
            probe_http(f"{site.url}/final"),
            probe_http(f"{site.url}/redirect"),  # two hops, the second on a reused connection
            probe_http(f"{tls_site.url}/", cafile=tls_site.cafile),
            probe_http(f"{tls_site.url}/"),  # refused certificate
            probe_http(f"http://127.0.0.1:{free_port()}/"),  # refused connection
            probe_http(f"http://127.0.0.1:{silent}/", timeout=0.3),  # no answer
        ]
    for report in reports:
        for hop in report.hops:
            p = hop.phases
            total = sum(v for v in _parts(p) if v is not None)
            assert total == pytest.approx(p.total_ms, abs=1e-6), (hop.url, p)


def test_download_phase_grows_with_the_body(site: Site) -> None:
    small = probe_http(f"{site.url}/final").final
    big = probe_http(f"{site.url}/big").final
    assert big.body_bytes == 2_000_000
    assert big.phases.download_ms > small.phases.download_ms  # type: ignore[operator]


def test_the_name_is_resolved_first_and_kept_in_host_header(site: Site) -> None:
    SEEN_HOSTS.clear()
    hop = probe_http(f"{site.url}/echo").final
    assert hop.resolved == ("127.0.0.1",)
    assert hop.remote == f"127.0.0.1:{site.port}"
    assert hop.phases.dns_ms is not None
    assert [f"localhost:{site.port}"] == SEEN_HOSTS


def test_a_url_without_scheme_is_http_as_in_curl(site: Site) -> None:
    report = probe_http(f"localhost:{site.port}/final")
    assert report.ok and report.final.url == f"{site.url}/final"
    assert "http:// assumed" in report.notes[0]


def test_an_ip_literal_has_no_dns_phase(site: Site) -> None:
    hop = probe_http(f"http://127.0.0.1:{site.port}/").final
    assert hop.phases.dns_ms is None
    # nothing to look up: the name-lookup mark is the client's own preparation alone
    assert hop.phases.cumulative()["time_namelookup"] == round(hop.phases.prepare_ms or 0, 3)
    assert hop.resolved == ("127.0.0.1",)


def test_server_timing_and_request_id_are_reported(site: Site) -> None:
    hop = probe_http(f"{site.url}/").final
    assert hop.server_timing == (
        ServerTimingEntry("cache", 0.04, "miss"),
        ServerTimingEntry("model", 1.8, None),
        ServerTimingEntry("total", 2.1, None),
    )
    assert ("x-request-id", "req-42") in hop.headers
    assert ("server-timing", SERVER_TIMING) in hop.headers


def test_post_with_data_sends_the_body(site: Site, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"income": 5}')
    report = probe_http(f"{site.url}/echo", content=body.read_bytes())
    assert report.method == "POST" and report.ok
    code, output = run_cli(f"{site.url}/echo", "--data", str(body), "-X", "PUT", "--json")
    assert code == 0 and json.loads(output)["method"] == "PUT"


def test_data_from_stdin(site: Site) -> None:
    result = CliRunner().invoke(
        app, ["http", f"{site.url}/echo", "--data", "-", "--json"], input='{"a": 1}'
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["method"] == "POST"
    assert SEEN_BODIES[-1] == b'{"a": 1}'


# --- redirects -------------------------------------------------------------------------


def test_redirects_are_followed_and_listed_as_curl_follows_them(site: Site) -> None:
    report = probe_http(f"{site.url}/redirect")
    assert [h.status for h in report.hops] == [302, 200]
    assert report.redirects == ((302, f"{site.url}/redirect", f"{site.url}/final"),)
    curl = need_binary("curl")
    fmt = "%{num_redirects} %{http_code} %{url_effective}"
    out = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-L", "--noproxy", "*", "-w", fmt, f"{site.url}/redirect"],
        capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    assert out == f"{len(report.redirects)} {report.status} {report.final.url}"


def test_no_follow_stops_at_the_redirect_and_a_3xx_is_healthy(site: Site) -> None:
    code, output = run_cli(f"{site.url}/redirect", "--no-follow", "--json")
    assert code == 0
    data = json.loads(output)
    assert data["status"] == 302 and len(data["hops"]) == 1
    assert data["hops"][0]["location"] == "/final"
    assert any("not following" in n for n in data["notes"])


def test_a_redirect_loop_stops_with_too_many_redirects(site: Site) -> None:
    report = probe_http(f"{site.url}/loop")
    assert report.error is not None and report.error.kind == "too_many_redirects"
    assert len(report.hops) == 11
    assert not report.ok
    assert report.final.phases.reused_connection  # one connection for the whole loop


# --- TLS -------------------------------------------------------------------------------


def test_https_has_a_tls_phase_with_the_servers_ca(tls_site: Site) -> None:
    report = probe_http(f"{tls_site.url}/", cafile=tls_site.cafile)
    assert report.ok, report.error
    hop = report.final
    assert hop.tls_version in ("TLSv1.2", "TLSv1.3")
    assert hop.tls_cipher
    assert hop.phases.tls_ms is not None and hop.phases.tls_ms > 0


def test_untrusted_certificate_is_a_tls_error_and_insecure_skips_the_check(
    tls_site: Site,
) -> None:
    report = probe_http(f"{tls_site.url}/")
    assert report.error is not None and report.error.kind == "tls"
    assert "certificate" in report.error.message
    assert probe_http(f"{tls_site.url}/", verify=False).ok
    code, _ = run_cli(f"{tls_site.url}/", "--insecure")
    assert code == 0


def test_https_to_a_plain_http_port_is_named(site: Site) -> None:
    report = probe_http(f"https://localhost:{site.port}/", timeout=3)
    assert report.error is not None and report.error.kind == "tls"
    assert "does not speak TLS" in report.error.message


# --- proxies ---------------------------------------------------------------------------


def test_http_proxy_is_used_and_says_so_in_via(site: Site, tinyproxy: str) -> None:
    report = probe_http(f"{site.url}/", proxy_env=ProxyEnv(http=tinyproxy))
    hop = report.final
    assert report.ok
    assert hop.proxy.proxy == tinyproxy and hop.proxy.reason == "HTTP_PROXY"
    assert hop.remote == tinyproxy.removeprefix("http://")
    via = dict(hop.headers)["via"]
    assert "tinyproxy" in via
    # The proxy resolves the target's name; the client only resolves nothing (an IP proxy).
    assert hop.phases.dns_ms is None


def test_no_proxy_bypasses_the_proxy(site: Site, tinyproxy: str) -> None:
    env = ProxyEnv(http=tinyproxy, no_proxy="localhost")
    hop = probe_http(f"{site.url}/", proxy_env=env).final
    assert hop.proxy.proxy is None
    assert "NO_PROXY" in hop.proxy.reason
    assert "via" not in dict(hop.headers)
    assert hop.remote == f"127.0.0.1:{site.port}"


def test_cli_reads_the_proxy_variables(site: Site, tinyproxy: str) -> None:
    code, output = run_cli(f"{site.url}/", "--json", env={"http_proxy": tinyproxy})
    assert code == 0
    data = json.loads(output)
    assert data["proxy"]["proxy"] == tinyproxy
    assert any(k == "via" and "tinyproxy" in v for k, v in data["hops"][0]["headers"])
    code, output = run_cli(
        f"{site.url}/", "--json", env={"http_proxy": tinyproxy, "no_proxy": "localhost"}
    )
    assert json.loads(output)["proxy"]["proxy"] is None


def test_https_through_the_proxy_tunnels_with_connect(tls_site: Site, tinyproxy: str) -> None:
    report = probe_http(f"{tls_site.url}/", proxy_env=ProxyEnv(https=tinyproxy),
                        cafile=tls_site.cafile)  # fmt: skip
    assert report.ok, report.error
    p = report.final.phases
    assert p.proxy_tunnel_ms is not None and p.tls_ms is not None
    assert report.final.tls_version is not None


def test_a_proxy_that_is_down_is_a_proxy_error() -> None:
    closed = free_port()
    report = probe_http("http://localhost:1/", proxy=f"http://127.0.0.1:{closed}", timeout=2)
    assert report.error is not None and report.error.kind == "proxy"
    assert f"127.0.0.1:{closed}" in report.error.message


# --- failures --------------------------------------------------------------------------


def test_refused_port_exits_1_with_the_kind() -> None:
    port = free_port()
    code, output = run_cli(f"http://127.0.0.1:{port}/", "--json")
    assert code == 1
    data = json.loads(output)
    assert data["error"]["kind"] == "refused"
    assert data["status"] is None
    assert data["hops"][0]["remote"] == f"127.0.0.1:{port}"
    assert data["phases"]["connect_ms"] is not None  # the refused attempt, timed


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    with never_answers() as port:
        start = time.perf_counter()
        report = probe_http(f"http://127.0.0.1:{port}/", timeout=0.3)
        elapsed = time.perf_counter() - start
    assert report.error is not None and report.error.kind == "read_timeout"
    assert 0.3 <= elapsed < 1.5
    assert report.final.phases.connect_ms is not None  # the connection itself succeeded


def test_404_exits_1_and_shows_the_start_of_the_body(site: Site) -> None:
    code, output = run_cli(f"{site.url}/nothing-here")
    assert code == 1
    assert "404" in output and "no route /nothing-here" in output


def test_table_shows_phases_proxy_and_server_timing(site: Site) -> None:
    code, output = run_cli(f"{site.url}/")
    assert code == 0
    for text in ("DNS", "TCP connect", "wait (TTFB)", "direct", "Server-Timing", "miss"):
        assert text in output
    lines = output.splitlines()
    phases = lines[lines.index(next(x for x in lines if x.startswith("phase"))) + 1 :]
    phases = phases[: next(i for i, x in enumerate(phases) if x.startswith("total")) + 1]
    rows = {
        line.split("  ")[0]: float(line.split()[-2] if "█" in line else line.split()[-1])
        for line in phases
    }
    total = rows.pop("total")
    assert sum(rows.values()) == pytest.approx(total, abs=0.01 * len(rows))  # as printed
    code, output = run_cli(f"{site.url}/redirect")
    assert code == 0
    assert "1 redirect followed:" in output
    assert "connection reused" in output  # the redirect's second request


@pytest.mark.parametrize(
    "args",
    [["ftp://localhost/"], ["http://localhost/", "-H", "no-colon"], ["http://localhost/",
     "--data", "/nonexistent/file"], ["http://localhost/", "--proxy", "ftp://127.0.0.1:1"],
     ["http://localhost/", "--cafile", __file__]],
)  # fmt: skip
def test_bad_usage_exits_2(args: list[str]) -> None:
    code, _ = run_cli(*args)
    assert code == 2


@pytest.mark.net
def test_a_name_that_does_not_resolve_is_a_dns_error_unprivileged() -> None:
    need_binary("dnsmasq")
    from tests.topology.topology import Topology

    need_root()
    for tool in ("ip", "iptables", "ss", "setpriv", "unshare"):
        need_binary(tool)
    topo = Topology()
    topo.host("client", nameservers=["10.78.1.53"])
    topo.link("client", "10.78.1.2/24", "dns", "10.78.1.53/24")
    topo.dns("dns", "10.78.1.53", {"api.test": "10.78.1.2"}, extra_args=["--local=/test/"])
    with topo.build() as net:
        argv = [sys.executable, "-m", "servepath", "http", "--json", "--timeout", "2"]
        proc = net.run("client", [*argv, "http://nope.test:8080/"], check=False, user="nobody")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["error"]["kind"] == "dns", data["error"]
    assert data["hops"][0]["phases"]["dns_ms"] is not None


# --- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("miss, db;dur=53, app;dur=47.2", [("miss", None, None), ("db", 53.0, None),
                                           ("app", 47.2, None)]),
        ('cache;desc="Cache Read";dur=23.2', [("cache", 23.2, "Cache Read")]),
        ('total;dur=123.4;desc="a, b; c"', [("total", 123.4, "a, b; c")]),
        ('x;desc="say \\"hi\\""', [("x", None, 'say "hi"')]),
        ("x;dur=1;dur=2", [("x", 1.0, None)]),  # the first dur counts
        ("x;DUR=5", [("x", 5.0, None)]),
        ("x;dur=fast", [("x", None, None)]),
        ("x;dur", [("x", None, None)]),
        ("x;foo=bar;dur=3", [("x", 3.0, None)]),
        ("x;desc=plain", [("x", None, "plain")]),
        (" , ,x", [("x", None, None)]),
        ("", []),
    ],
)  # fmt: skip
def test_server_timing_parser(header: str, expected: list[tuple[Any, ...]]) -> None:
    assert [(e.name, e.dur, e.desc) for e in parse_server_timing(header)] == expected


def test_several_server_timing_headers_form_one_list() -> None:
    entries = parse_server_timing(["a;dur=1", "b;dur=2, c"])
    assert [e.name for e in entries] == ["a", "b", "c"]


def test_path_headers_keep_the_ones_that_tell_the_path_in_order() -> None:
    headers = [
        ("Content-Type", "text/plain"),
        ("Via", "1.1 lb"),
        ("X-Forwarded-For", "203.0.113.5"),
        ("X-Cache", "HIT"),
        ("Date", "today"),
        ("X-Forwarded-Proto", "https"),
        ("Server", "nginx"),
    ]
    assert [k for k, _ in path_headers(headers)] == [
        "Via", "X-Forwarded-For", "X-Cache", "X-Forwarded-Proto", "Server",
    ]  # fmt: skip


def _events(*pairs: tuple[str, float]) -> list[TraceEvent]:
    return [TraceEvent(name, at) for name, at in pairs]


def test_phases_of_a_direct_https_request() -> None:
    events = _events(
        ("connection.connect_tcp.started", 0.0),
        ("dns.started", 0.1),
        ("dns.complete", 5.1),
        ("tcp.started", 5.1),
        ("tcp.complete", 7.1),
        ("connection.connect_tcp.complete", 7.15),
        ("connection.start_tls.started", 7.2),
        ("connection.start_tls.complete", 17.2),
        ("http11.send_request_headers.started", 17.3),
        ("http11.send_request_headers.complete", 17.5),
        ("http11.send_request_body.started", 17.5),
        ("http11.send_request_body.complete", 17.6),
        ("http11.receive_response_headers.started", 17.6),
        ("http11.receive_response_headers.complete", 47.6),
        ("http11.receive_response_body.started", 47.7),
        ("http11.receive_response_body.complete", 49.7),
    )
    p = phases_from_events(events, 50.0)
    assert p.prepare_ms == pytest.approx(0.1)  # the client's own work before the lookup
    assert p.dns_ms == pytest.approx(5.0)
    assert p.connect_ms == pytest.approx(2.0)  # the connect call alone, as curl times it
    assert p.tls_ms == pytest.approx(10.1)  # from connected to the handshake's end
    assert p.send_ms == pytest.approx(0.4)
    assert p.wait_ms == pytest.approx(30.0)
    assert p.download_ms == pytest.approx(2.4)  # to the end of the exchange
    assert p.proxy_tunnel_ms is None and not p.reused_connection
    assert sum(v for v in _parts(p) if v is not None) == pytest.approx(50.0)
    marks = p.cumulative()
    assert marks["time_namelookup"] == pytest.approx(5.1)
    assert marks["time_connect"] == pytest.approx(7.1)
    assert marks["time_appconnect"] == pytest.approx(17.2)
    assert marks["time_pretransfer"] == pytest.approx(17.2)
    assert marks["time_starttransfer"] == pytest.approx(47.6)
    assert marks["time_total"] == 50.0


def test_phases_of_a_tunnel_through_a_proxy_separate_connect_from_tls() -> None:
    events = _events(
        ("connection.connect_tcp.started", 0.0),
        ("tcp.started", 0.05),
        ("tcp.complete", 1.0),
        # the CONNECT request to the proxy
        ("http11.send_request_headers.started", 1.1),
        ("http11.send_request_body.complete", 1.2),
        ("http11.receive_response_headers.complete", 9.0),
        ("proxy.start_tls.started", 9.5),
        ("proxy.start_tls.complete", 19.5),
        # the request itself
        ("http11.send_request_headers.started", 20.0),
        ("http11.send_request_body.complete", 20.5),
        ("http11.receive_response_headers.complete", 30.5),
        ("http11.receive_response_body.complete", 31.0),
    )
    p = phases_from_events(events, 31.5)
    assert p.connect_ms == pytest.approx(0.95)
    assert p.proxy_tunnel_ms == pytest.approx(8.5)
    assert p.tls_ms == pytest.approx(10.0)
    assert p.send_ms == pytest.approx(1.0)
    assert p.wait_ms == pytest.approx(10.0)
    assert p.download_ms == pytest.approx(1.0)
    assert sum(v for v in _parts(p) if v is not None) == pytest.approx(31.5)


def test_a_reused_connection_has_no_connect_phases() -> None:
    events = _events(
        ("http11.send_request_headers.started", 0.1),
        ("http11.send_request_body.complete", 0.2),
        ("http11.receive_response_headers.complete", 3.2),
        ("http11.receive_response_body.complete", 3.3),
    )
    p = phases_from_events(events, 3.5)
    assert p.reused_connection
    assert (p.dns_ms, p.connect_ms, p.tls_ms) == (None, None, None)
    assert p.prepare_ms == pytest.approx(0.1)
    assert p.wait_ms == pytest.approx(3.0)
    assert sum(v for v in _parts(p) if v is not None) == pytest.approx(3.5)


def test_a_failed_lookup_is_the_last_phase_and_runs_to_the_failure() -> None:
    events = _events(("connection.connect_tcp.started", 0.0), ("dns.started", 0.0),
                     ("dns.complete", 4.0))  # fmt: skip
    p = phases_from_events(events, 4.2)
    assert p.dns_ms == pytest.approx(4.2)
    assert p.connect_ms is None and p.wait_ms is None
    assert not p.reused_connection


def test_a_refused_connection_still_times_the_attempt() -> None:
    events = _events(("connection.connect_tcp.started", 0.0), ("dns.started", 0.0),
                     ("dns.complete", 4.0), ("tcp.started", 4.1), ("tcp.failed", 4.6),
                     ("connection.connect_tcp.failed", 4.7))  # fmt: skip
    p = phases_from_events(events, 5.0)
    assert p.dns_ms == 4.0
    assert p.connect_ms == pytest.approx(1.0)  # the attempt and what followed it
    assert sum(v for v in _parts(p) if v is not None) == pytest.approx(5.0)


def test_a_failed_tls_handshake_is_timed() -> None:
    events = _events(("connection.connect_tcp.started", 0.0), ("tcp.started", 0.1),
                     ("tcp.complete", 0.3), ("connection.start_tls.started", 0.4),
                     ("connection.start_tls.failed", 2.4))  # fmt: skip
    p = phases_from_events(events, 2.5)
    assert p.connect_ms == pytest.approx(0.2)
    assert p.tls_ms == pytest.approx(2.2)


_ORDER = (
    "dns.started", "dns.complete", "tcp.started", "tcp.complete",
    "connection.start_tls.started", "connection.start_tls.complete",
    "http11.send_request_headers.started", "http11.send_request_body.complete",
    "http11.receive_response_headers.complete", "http11.receive_response_body.complete",
)  # fmt: skip


@given(
    st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=len(_ORDER), max_size=len(_ORDER)),
    st.sets(st.sampled_from(_ORDER)),
    st.floats(0.0, 20.0, allow_nan=False),
)
def test_phases_always_add_up_to_the_total(
    gaps: list[float], missing: set[str], tail: float
) -> None:
    clock, events = 0.0, []
    for name, gap in zip(_ORDER, gaps, strict=True):
        clock += gap
        if name not in missing:
            events.append(TraceEvent(name, clock))
    total = clock + tail
    p = phases_from_events(events, total)
    assert all(v is None or v >= 0 for v in _parts(p))
    if events:
        assert sum(v for v in _parts(p) if v is not None) == pytest.approx(total, abs=1e-6)


def test_phases_serialise_rounded_with_curl_names() -> None:
    data = Phases(dns_ms=1.23456, connect_ms=2.0, total_ms=10.0, prepare_ms=0.1).to_json()
    assert data["dns_ms"] == 1.235 and data["prepare_ms"] == 0.1
    assert data["cumulative"]["time_connect"] == 3.335
    assert data["tls_ms"] is None and data["cumulative"]["time_appconnect"] == 0.0


# --- IPv6 spellings --------------------------------------------------------------------


def _ok(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.mark.parametrize(
    "host",
    [
        "[::1]",
        "[0:0:0:0:0:0:0:1]",  # the long form of the same address
        "[0000:0000:0000:0000:0000:0000:0000:0001]",
        "[::1%25lo]",  # a zone, as RFC 6874 writes it in a URL
    ],
)
def test_ipv6_spellings_reach_the_same_server(host: str) -> None:
    from tests.helpers.tcpserver import scripted_server

    with scripted_server(_ok, host="::1") as port:
        report = probe_http(f"http://{host}:{port}/", timeout=3)
        assert report.ok, report.error
        assert report.final.remote == f"[::1]:{port}"
        code, output = run_cli(f"http://{host}:{port}/")
    assert code == 0
    assert output.startswith(f"GET http://{host}:{port}/  200 OK")


def test_a_zone_that_names_no_interface_is_a_failure_not_a_crash() -> None:
    report = probe_http("http://[fe80::1%25nosuch0]:80/", timeout=1)
    assert report.error is not None and not report.ok
    code, output = run_cli("http://[fe80::1%25nosuch0]:80/")
    assert code == 1 and "could not connect to [fe80::1%nosuch0]:80" in output


def test_ssl_cert_file_is_trusted_as_cafile_is(tls_site: Site) -> None:
    code, _ = run_cli(f"{tls_site.url}/", env={"SSL_CERT_FILE": tls_site.cafile})
    assert code == 0
    code, output = run_cli(f"{tls_site.url}/", env={"SSL_CERT_FILE": ""})
    assert code == 1 and "error (tls)" in output
