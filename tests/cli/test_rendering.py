"""Every command's table, rendered for IPv6 and bracketed data, compared as text.

IPv6 addresses hold what a terminal renderer reads as emoji codes (``2001:db8:a:b::1``
holds ``:a:`` and ``:b:``, ``fdab:cd::1`` holds ``:cd:``) and their bracketed forms what it
reads as markup (``[fd00::1]``); servers' pages, headers and command lines hold brackets of
their own. All of it must print as it is, in a pipe (plain columns) and on a terminal (a
boxed table).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from servepath.net.addresses import classify_address
from servepath.net.http_errors import HttpErrorClass
from servepath.net.listeners import Listener
from servepath.net.proxy import ProxyChoice
from servepath.netdiag.dns import DnsReport, ResolverAnswer
from servepath.netdiag.http import HttpHop, HttpReport, Phases, ServerTimingEntry
from servepath.netdiag.ports import PortResult, PortScan
from servepath.netdiag.tls import Certificate, TlsReport
from servepath.netdiag.trace import Hop, Trace
from servepath.output import Output, TableFormat

V6 = "2001:db8:a:b::1"  # ":a:" and ":b:" are emoji codes
ULA = "fdab:cd::1"  # ":cd:" is one too
TRICKY = (V6, ULA, "[fd00::1]", "[bold]", ":smile:")
EMOJI = ("🅰", "🅱", "💿", "😄")


def render(fn: Callable[..., None], *args: Any, fmt: TableFormat = "plain", **kw: Any) -> str:
    buffer = io.StringIO()
    fn(Output(stdout=buffer, format=fmt, width=140), *args, **kw)
    return buffer.getvalue()


def both(fn: Callable[..., None], *args: Any, **kw: Any) -> tuple[str, str]:
    plain = render(fn, *args, fmt="plain", **kw)
    boxed = render(fn, *args, fmt="table", **kw)
    for text in (plain, boxed):
        assert not any(e in text for e in EMOJI), text
    return plain, boxed


# --- ports --------------------------------------------------------------------------


def test_ports_prints_ipv6_and_its_offender_literally() -> None:
    from servepath.render.text_ports import render_scan

    scan = PortScan(
        host=V6,
        address=V6,
        target=classify_address(V6),
        timeout=1.0,
        elapsed_s=0.25,
        results=(
            PortResult(
                8080, "open", 0.31, None, "accepted the connection", "http-alt", "registered"
            ),
            PortResult(
                80,
                "unreachable",
                1.2,
                ULA,
                f"{ULA} answered: administratively prohibited [REJECT]",
                "http",
                "well-known",
            ),
        ),
        other_addresses=("[fd00::1]",),
    )
    plain, boxed = both(render_scan, scan)
    assert plain == (
        f"{V6} (also [fd00::1]): {scan.target.kind} — {scan.target.meaning}\n"
        "PORT  SERVICE   RANGE       STATE        RTT ms  OFFENDER    WHY\n"
        "8080  http-alt  registered  open           0.31              [1]\n"
        f"  80  http      well-known  unreachable    1.20  {ULA}  [2]\n"
        "[1] accepted the connection\n"
        f"[2] {ULA} answered: administratively prohibited [REJECT]\n"
        "1 open, 1 unreachable — 2 ports in 0.25s\n"
    )
    assert ULA in boxed and "[REJECT]" in boxed and V6 in boxed


def test_one_port_is_one_port() -> None:
    from servepath.render.text_ports import render_scan

    results = tuple(
        PortResult(p, "closed" if p != 40 else "filtered", None, None, "x", None, "dynamic")
        for p in range(1, 41)
    )
    scan = PortScan("::1", "::1", classify_address("::1"), 1.0, 1.0, results)
    plain = render(render_scan, scan)
    assert "40  1 port" in plain.replace("   ", "  ") or " 1 port " in plain
    assert "1 ports" not in plain and "39 ports" in plain and "40 ports in" in plain


# --- trace --------------------------------------------------------------------------


def test_trace_prints_ipv6_hops_literally() -> None:
    from servepath.render.text_trace import render_trace

    result = Trace(
        target="api.example.test",
        address=V6,
        port=443,
        protocol="tcp",
        method="tcp-connect",
        reached=True,
        hops=(
            Hop(1, ULA, (0.4, 0.5), 1, name="[gw]"),
            Hop(2, V6, (1.25,), 0, addresses=(V6, "fd00::2"), note="reached"),
        ),
        detail=f"reached {V6} port 443",
        elapsed_s=0.5,
        max_hops=30,
        queries=1,
    )
    plain, boxed = both(render_trace, result)
    assert plain == (
        f"trace to api.example.test → {V6} port 443 over tcp (tcp-connect), 30 hops max, "
        "1 probe each\n"
        "TTL  ADDRESS                     NAME  RTT ms           NOTE\n"
        f"  1  {ULA}                  [gw]  0.400  0.500  *\n"
        f"  2  {V6} (+fd00::2)        1.250            reached\n"
        f"reached {V6} port 443 (0.50s)\n"
    )
    assert "[gw]" in boxed and f"{V6} (+fd00::2)" in boxed


# --- dns ----------------------------------------------------------------------------


def test_dns_prints_aaaa_answers_and_resolvers_literally() -> None:
    from servepath.render.text_dns import render_dns as render

    report = DnsReport(
        name="api.example.test",
        rrtype="AAAA",
        literal=False,
        answers=(
            ResolverAnswer(f"[{ULA}]:53", "resolv.conf", "ok", (V6, ULA), elapsed_ms=1.5, ttl=60),
            ResolverAnswer("getaddrinfo", "system", "ok", (V6, ULA), elapsed_ms=0.7),
        ),
        agree=True,
        verdict="every resolver gave the same answer",
    )
    plain, boxed = both(render, report)
    assert plain == (
        "api.example.test AAAA\n"
        "resolver                       outcome  answer           ttl   ms\n"
        f"[{ULA}]:53 (resolv.conf)  ok       {V6}   60  1.5\n"
        f"                                        {ULA}\n"
        f"getaddrinfo                    ok       {V6}    -  0.7\n"
        f"                                        {ULA}\n"
        "agree: every resolver gave the same answer\n"
    )
    assert f"[{ULA}]:53" in boxed and V6 in boxed


# --- listen -------------------------------------------------------------------------


def _listeners() -> tuple[Listener, ...]:
    return (
        Listener("tcp", V6, 8080, "global", 4121, "svc", "python3",
                 ("python", "-m", "servepath", "serve", "--host", V6, "--tag", "[prod]")),
        Listener("tcp", "fd00::1", 80, "private", 51, "root", "docker-proxy",
                 ("docker-proxy", "-host-ip", "::", "-host-port", "80"), forwarder="docker"),
        Listener("udp", "::1", 53, "loopback", None, None, "[kworker/0:1]", ()),
    )  # fmt: skip


def test_listen_prints_bracketed_endpoints_and_commands_literally() -> None:
    from servepath.render.text_listen import render_listen as render

    plain, boxed = both(render, _listeners(), (), (), ())
    assert plain == (
        "proto  address:port            reach      pid  user  process                command\n"
        f"tcp    [{V6}]:8080  global    4121  svc   python3                python -m "
        f"servepath serve --host {V6} --tag [prod]\n"
        "tcp    [fd00::1]:80            private     51  root  docker-proxy (docker)  "
        "docker-proxy -host-ip :: -host-port 80\n"
        "udp    [::1]:53                loopback     -  -     [kworker/0:1]          -\n"
    )
    assert f"[{V6}]:8080" in boxed and "[fd00::1]:80" in boxed and "[kworker/0:1]" in boxed


@pytest.mark.parametrize("width", [40, 60, 79])
def test_listen_on_a_narrow_terminal_never_wraps_a_command_a_character_a_line(
    width: int,
) -> None:
    from servepath.render.text_listen import render_listen as render

    buffer = io.StringIO()
    render(Output(stdout=buffer, width=width, terminal=True), _listeners(), (), (), ())
    lines = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue()).splitlines()
    assert any("python -m servepath serve --host" in line for line in lines)
    assert not any(len(line.strip(" │┃")) == 1 for line in lines)
    assert any(f"[{V6}]:8080" in line for line in lines)


def test_listen_on_a_wide_terminal_is_a_boxed_table_that_folds_long_commands() -> None:
    from servepath.render.text_listen import render_listen as render

    buffer = io.StringIO()
    render(Output(stdout=buffer, width=110, terminal=True), _listeners(), (), (), ())
    text = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())
    assert text.startswith("┏") and all(len(line) <= 110 for line in text.splitlines())
    assert "python -m" in text and "[prod]" in text  # folded over lines, whole


# --- http ---------------------------------------------------------------------------


def test_http_prints_urls_addresses_headers_and_bodies_literally() -> None:
    from servepath.render.text_http import render_http as render

    url = f"http://[{V6}]:8081/"
    choice = ProxyChoice(url, None, "no proxy variable applies")
    phases = Phases(prepare_ms=0.25, connect_ms=0.5, send_ms=0.25, wait_ms=2.0,
                    download_ms=0.5, total_ms=3.5)  # fmt: skip
    hop = HttpHop(
        "GET", url, choice, phases, status=404, reason="Not Found", http_version="HTTP/1.1",
        resolved=(V6,), remote=f"[{V6}]:8081",
        headers=(("via", "1.1 [edge] :smile:"), ("server-timing", 'app;desc="[miss]"')),
        server_timing=(ServerTimingEntry("app", 1.5, "[miss]"),),
        body_preview='{"error": "no route [bold]/x[/]"}',
    )  # fmt: skip
    report = HttpReport(url, "GET", (hop,), True)
    plain, boxed = both(render, report)
    assert plain == (
        f"GET {url}  404 Not Found  HTTP/1.1\n"
        f"connected to [{V6}]:8081, direct (no proxy variable applies)  resolved: {V6}\n"
        "phase               ms\n"
        "prepare (client)  0.25  ██\n"
        "TCP connect       0.50    ████\n"
        "request sent      0.25        ███\n"
        "wait (TTFB)       2.00           █████████████████\n"
        "download          0.50                            ████\n"
        "total             3.50\n"
        "headers that tell the path:\n"
        "  via: 1.1 [edge] :smile:\n"
        '  server-timing: app;desc="[miss]"\n'
        "Server-Timing\n"
        "name  dur ms  desc\n"
        "app      1.5  [miss]\n"
        'body: {"error": "no route [bold]/x[/]"}\n'
    )
    assert url in boxed and "[miss]" in boxed and ":smile:" in boxed


def test_an_http_failure_prints_the_address_it_could_not_reach() -> None:
    from servepath.render.text_http import render_http as render

    url = f"http://[{ULA}]:9/"
    hop = HttpHop("GET", url, ProxyChoice(url, None, "no proxy variable applies"),
                  Phases(prepare_ms=0.1, connect_ms=0.2, total_ms=0.3), remote=f"[{ULA}]:9",
                  error=HttpErrorClass("refused", "connection refused"))  # fmt: skip
    report = HttpReport(url, "GET", (hop,), True, HttpErrorClass("refused", "connection refused"))
    plain, _ = both(render, report)
    assert plain.startswith(f"GET {url}  failed\ncould not connect to [{ULA}]:9, direct")
    assert plain.endswith("error (refused): connection refused\n")


# --- tls ----------------------------------------------------------------------------


def test_tls_prints_ipv6_targets_and_names_literally() -> None:
    from servepath.render.text_tls import render_tls as render

    cert = Certificate(
        subject="CN=[api]", common_name="[api]", dns_names=("api.example.test",),
        ip_addresses=(V6,), issuer="CN=Example CA :a:", serial="1",
        not_before=datetime(2026, 1, 1, tzinfo=UTC), not_after=datetime(2026, 12, 30, tzinfo=UTC),
        self_signed=False, is_ca=False, key="EC secp256r1", signature_algorithm="ecdsa-with-SHA256",
        sha256="ab:cd",
    )  # fmt: skip
    report = TlsReport(
        host=V6, port=443, servername=V6, trust_store="/etc/ca [test].pem",
        checked_at=datetime(2026, 12, 1, tzinfo=UTC), address=V6, protocol="TLSv1.3",
        cipher="TLS_AES_128_GCM_SHA256", certificate=cert, trusted=True, name_matches=True,
        connect_ms=0.5, handshake_ms=2.5,
    )  # fmt: skip
    plain, boxed = both(render, report, store_source="--cafile")
    assert plain == (
        f"[{V6}]:443  servername {V6}  trusted and valid\n"
        "protocol      TLSv1.3  TLS_AES_128_GCM_SHA256\n"
        "subject       CN=[api]\n"
        f"names (SAN)   api.example.test, {V6}\n"
        f"matches name  yes ({V6})\n"
        "issuer        CN=Example CA :a:\n"
        "valid         2026-01-01 00:00 → 2026-12-30 00:00 UTC\n"
        "expires       in 29 days\n"
        "key           EC secp256r1, ecdsa-with-SHA256\n"
        "sha256        ab:cd\n"
        "trusted       yes (by /etc/ca [test].pem, --cafile)\n"
        "time          connect 0.5 ms, handshake 2.5 ms\n"
    )
    assert f"[{V6}]:443" in boxed and "CN=[api]" in boxed and "[test]" in boxed


@pytest.mark.parametrize(("days", "warned"), [(10, True), (13.5, True), (14, False), (29, False)])
def test_tls_warns_of_expiry_where_serve_does(days: float, warned: bool) -> None:
    from datetime import timedelta

    from servepath.render.text_tls import render_tls as render
    from servepath.service.tls import Certificate as ServedCertificate
    from servepath.service.tls import certificate_age_note

    now = datetime(2026, 12, 1, tzinfo=UTC)
    not_after = now + timedelta(days=days)
    cert = Certificate(
        subject="CN=api", common_name="api", dns_names=("api",), ip_addresses=(), issuer="CN=CA",
        serial="1", not_before=datetime(2026, 1, 1, tzinfo=UTC), not_after=not_after,
        self_signed=False, is_ca=False, key="EC", signature_algorithm="ecdsa", sha256="ab",
    )  # fmt: skip
    report = TlsReport(
        host="api", port=443, servername="api", trust_store="system", checked_at=now,
        certificate=cert, trusted=True, name_matches=True,
    )  # fmt: skip
    first_line = both(render, report)[0].splitlines()[0]
    served = certificate_age_note(ServedCertificate("CN=api", ("api",), not_after), now)
    assert (served is not None) is warned
    assert ("but expires in" in first_line) is warned, first_line
    assert report.to_json()["expires_soon"] is warned


# --- request ------------------------------------------------------------------------


def test_request_prints_the_url_and_the_answer_literally() -> None:
    from servepath.client import RequestResult
    from servepath.render.text_request import render_request as render

    url = f"http://[{V6}]:8080/decisions"
    result = RequestResult(
        url, False, 422, 1.25, ProxyChoice(url, None, "no proxy variable applies"),
        body={"error": "invalid input: [purpose]: :x: is not a category"},
        headers={"server-timing": "total;dur=0.3"}, failure="http_status",
        message="HTTP 422: invalid input", hints=("fix [purpose]",),
    )  # fmt: skip
    buffer, errors = io.StringIO(), io.StringIO()
    render(Output(stdout=buffer, stderr=errors, format="plain"), result)
    assert buffer.getvalue() == (
        f"POST {url} -> 422 in 1.2 ms\n"
        "server-timing: total;dur=0.3\n"
        "{\n"
        '  "error": "invalid input: [purpose]: :x: is not a category"\n'
        "}\n"
    )
    assert errors.getvalue() == "error: http_status: HTTP 422: invalid input\n  fix [purpose]\n"


# --- regions measure ----------------------------------------------------------------


def test_regions_measure_prints_bracketed_targets_literally() -> None:
    from servepath.regions.measure import MeasureReport, MeasureTarget, RTTStats, TargetResult
    from servepath.regions.model import DEFAULT_MODEL
    from servepath.render.text_regions import render_measurement as _print_measurement

    stats = RTTStats(sent=3, ok=3, lost=0, failed=0, min_ms=1.0, median_ms=2.0, p90_ms=2.8,
                     max_ms=3.0)  # fmt: skip
    result = TargetResult(MeasureTarget(V6, 443), ULA, "ok", stats, ())
    report = MeasureReport(None, 3, 1.0, 0.1, (result,), DEFAULT_MODEL)
    plain, boxed = both(_print_measurement, report)
    assert plain == (
        "TCP connect RTT in ms: 3 samples each, timeout 1s\n"
        "target                 status   ok  loss   min   p50   p90\n"
        f"[{V6}]:443  ok      3/3    0%  1.00  2.00  2.80\n"
        f"[{V6}]:443: connected to {ULA}\n"
    )
    assert f"[{V6}]:443" in boxed


# --- errors -------------------------------------------------------------------------


def test_error_messages_print_literally() -> None:
    errors = io.StringIO()
    Output(stderr=errors).error(f"cannot reach http://[{V6}]:1/ [bold]:a:")
    assert errors.getvalue() == f"error: cannot reach http://[{V6}]:1/ [bold]:a:\n"


# --- the serve banner ---------------------------------------------------------------


def test_the_serve_banner_prints_ipv6_urls_literally(
    tmp_path: Any, example_model_path: Any
) -> None:
    from tests.support import serve

    with serve(tmp_path, model=example_model_path, host="::", args=["--store", "off"]) as server:
        banner = server.log()
    assert f"http://[::1]:{server.port}" in banner
    assert "http://:" not in banner  # what markup made of http://[fd00::…]:PORT
