"""Hand-built observations: a healthy path by default, and one small change per failure."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import orjson

from servepath.config import ProxyEnv
from servepath.net.addresses import classify_address
from servepath.net.http_errors import HttpErrorClass
from servepath.net.icmp import IcmpReport
from servepath.net.proxy import choose_proxy
from servepath.net.routes import KernelRoute, RouteLookup
from servepath.netdiag.dns import DnsReport, ResolverAnswer
from servepath.netdiag.doctor import DoctorOptions, Observations, make_plan
from servepath.netdiag.doctor.plan import plan_app
from servepath.netdiag.http import HttpHop, HttpReport, Phases, parse_server_timing
from servepath.netdiag.ports import PortResult, PortScan
from servepath.netdiag.services import port_range

VM = "10.20.2.2"
ROUTER = "10.20.1.1"
EXAMPLE = {"income": 52000.0, "age": 38}
SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "x-servepath": {
        "predict_route": "/decisions",
        "health_route": "/",
        "path_echo_route": "/_path",
    },
    "paths": {
        "/": {"get": {}},
        "/decisions": {
            "post": {"requestBody": {"content": {"application/json": {"example": EXAMPLE}}}}
        },
    },
}
SERVEPATH_HEADERS = (
    ("x-request-id", "0190b2c4-7d1e-7abc-8def-0123456789ab"),
    ("server-timing", 'cache;dur=0.02;desc="miss", model;dur=0.3, total;dur=0.4'),
)


def port(number: int, state: str = "open", *, offender: str | None = None,
         icmp: tuple[int, int] | None = None, detail: str = "") -> PortResult:  # fmt: skip
    error = None
    if icmp is not None:
        error = IcmpReport("icmp", icmp[0], icmp[1], 113, offender)
    rtt = 0.3 if state in ("open", "closed") else None
    return PortResult(number, state, rtt, offender, detail or state, None,  # type: ignore[arg-type]
                      port_range(number), error)  # fmt: skip


def scan(address: str, *results: PortResult) -> PortScan:
    return PortScan(address, address, classify_address(address), 1.0, 0.01, tuple(results))


def reply(status: int | None = 200, *, headers: tuple[tuple[str, str], ...] = SERVEPATH_HEADERS,
          body: Any = None, error: tuple[str, str] | None = None, url: str = f"http://{VM}:8080/",
          method: str = "GET", total_ms: float = 2.0, server_ms: float | None = None,
          proxy: str | None = None) -> HttpReport:  # fmt: skip
    raw: bytes | None
    if body is None:
        raw = b'{"status": "ok", "model": "decision"}' if status == 200 else None
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = orjson.dumps(body)
    timing = [v for k, v in headers if k == "server-timing"]
    if server_ms is not None:
        timing = [f"total;dur={server_ms}"]
    choice = choose_proxy(url, ProxyEnv(), proxy)
    phases = Phases(dns_ms=None, connect_ms=0.3, wait_ms=total_ms - 0.3, total_ms=total_ms)
    if error is not None:
        err = HttpErrorClass(error[0], error[1])  # type: ignore[arg-type]
        hop = HttpHop(method, url, choice, phases, error=err)
        return HttpReport(url, method, (hop,), False, err)
    preview = (
        raw[:300].decode() if raw is not None and status is not None and status >= 400 else None
    )
    hop = HttpHop(
        method,
        url,
        choice,
        phases,
        status=status,
        reason="",
        headers=headers,
        server_timing=parse_server_timing(timing),
        body_bytes=len(raw or b""),
        body_preview=preview,
        body=raw,
    )
    return HttpReport(url, method, (hop,), False)


def nginx(status: int, title: str, **extra: str) -> HttpReport:
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    headers = (("server", "nginx/1.22.1"), *extra.items())
    return reply(status, headers=headers, body=page)


def healthy(url: str = f"http://{VM}:8080/decisions", *, address: str | None = VM,
            options: DoctorOptions | None = None, **changes: Any) -> Observations:  # fmt: skip
    """A path where everything answered; ``changes`` replace fields of the observations."""
    options = options or DoctorOptions()
    plan = make_plan(url, options)
    obs = Observations(plan, slow_ms=1000.0, timeout=1.0, http_timeout=10.0)
    obs.nameservers = ["10.20.3.53"]
    obs.gateway = KernelRoute("eth0", ipaddress.ip_network("0.0.0.0/0"), ROUTER)
    obs.address = address
    if address is not None:
        obs.route = RouteLookup(
            address, "via-route", KernelRoute("eth0", ipaddress.ip_network("10.20.2.0/24"), ROUTER)
        )
        obs.probe_target = (address, plan.target.port)
        obs.ports = scan(
            address, port(plan.target.port), *(port(p, "closed") for p in plan.neighbours)
        )
    obs.trace_error = "not traced in a unit test"
    obs.health = reply(200, url=plan.target.origin + "/")
    obs.spec = SPEC
    obs.app_plan = plan_app(plan.target, SPEC, options.data, large_bytes=options.large_bytes)
    obs.app = reply(200, body={"decision": "approve", "probability": 0.92}, method="POST",
                    url=plan.target.origin + "/decisions")  # fmt: skip
    obs.large = reply(
        200, body={"predictions": []}, method="POST", url=plan.target.origin + "/decisions"
    )
    obs.echo = {
        "peer": {"address": "10.20.1.2", "port": 50000},
        "server": {"address": VM, "port": plan.target.port},
        "chain": [],
        "via": [],
        "hostname": "vm",
        "container": {"in_container": False},
    }
    for key, value in changes.items():
        setattr(obs, key, value)
    return obs


def nothing_after_transport(obs: Observations) -> Observations:
    """What observe leaves when the asked port is not open: no HTTP at all."""
    obs.health = obs.app = obs.large = None
    obs.spec = obs.echo = None
    obs.app_plan = None
    return obs


def dns_report(name: str, *answers: tuple[str, str, tuple[str, ...]]) -> DnsReport:
    from servepath.netdiag.dns import agreement

    built = tuple(
        ResolverAnswer(
            who, "resolv.conf" if who != "system (getaddrinfo)" else "getaddrinfo", outcome, values
        )  # type: ignore[arg-type]
        for who, outcome, values in answers
    )
    agree, verdict = agreement(built)
    return DnsReport(name, "A", False, built, agree, verdict)


NOW = datetime(2026, 12, 1, tzinfo=UTC)


def redirect(status: int, to: str, *, url: str = f"http://{VM}:8080/decisions",
             method: str = "POST") -> HttpReport:  # fmt: skip
    """A redirect answer (nginx's ``return 301 ...``) naming ``to``."""
    from dataclasses import replace

    report = nginx(status, f"{status} Moved")
    hop = replace(report.final, method=method, url=url, location=to)
    return replace(report, url=url, method=method, hops=(hop,))


def chain(*hops: tuple[str, int | None], error: tuple[str, str] | None = None) -> HttpReport:
    """A followed chain: each (url, status), the last one final."""
    from dataclasses import replace

    built = []
    for url, status in hops:
        hop = reply(status, url=url, method="GET").final
        built.append(replace(hop, status=status))
    err = HttpErrorClass(error[0], error[1]) if error else None  # type: ignore[arg-type]
    return HttpReport(hops[0][0], "POST", tuple(built), True, err)
