"""`servepath doctor`: walk the path from this machine to a model API, stage by stage, and name
the first broken link, who broke it, and the fix.

Two halves, as everywhere in netdiag: :func:`observe` runs the probes (DNS first, then the
trace and the port scan at once, so a filtered port costs one timeout, then the HTTP requests)
and collects what they saw in :class:`Observations`; :func:`diagnose` is pure and turns the
observations into stages and a verdict.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from servepath.config import ProxyEnv
from servepath.errors import ServepathError
from servepath.netdiag.addresses import AddressInfo, classify_address, host_port, is_ip_literal
from servepath.netdiag.causes import Cause, Explanation, explain
from servepath.netdiag.dns import DnsReport, Nameserver, probe_dns, system_nameservers
from servepath.netdiag.http import HttpReport, probe_http
from servepath.netdiag.ports import PortResult, PortScan, resolve_host, scan_ports
from servepath.netdiag.proxy import ProxyChoice, choose_proxy
from servepath.netdiag.routes import Route, RouteLookup, default_gateway, lookup, read_routes
from servepath.netdiag.tls import TlsReport, probe_tls
from servepath.netdiag.trace import Trace, trace

StageStatus = Literal["ok", "warn", "fail", "skip"]
STAGE_NAMES = (
    "local",
    "dns",
    "address",
    "route",
    "transport",
    "tls",
    "http",
    "app",
    "server view",
    "latency",
)
#: Ports this field's services usually listen on; probed beside the URL's own.
NEIGHBOUR_PORTS = (80, 443, 8080, 8000, 8443)
_FORWARD_PROXIES = ("tinyproxy", "squid", "privoxy")
_REVERSE_PROXIES = ("nginx", "envoy", "haproxy", "traefik", "caddy", "apache", "gfe", "istio")


class DoctorUsageError(ServepathError):
    """The URL or an option cannot be used."""


@dataclass(frozen=True)
class Stage:
    name: str
    status: StageStatus
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "data": self.data,
        }


@dataclass(frozen=True)
class DoctorReport:
    url: str
    stages: tuple[Stage, ...]
    failed_stage: str | None
    cause: Cause
    explanation: Explanation
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "stages": [s.to_json() for s in self.stages],
            "failed_stage": self.failed_stage,
            "cause": self.cause,
            "explanation": self.explanation.meaning,
            "owner": self.explanation.owner,
            "fix": list(self.explanation.fix),
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(frozen=True)
class DoctorOptions:
    proxy_env: ProxyEnv = field(default_factory=ProxyEnv)
    proxy: str | None = None
    resolvers: tuple[Nameserver, ...] = ()
    data: bytes | None = None
    cafile: str | None = None
    timeout: float = 2.0  # per network probe (DNS, connect, trace hop)
    http_timeout: float = 10.0
    slow_ms: float = 1000.0
    neighbours: tuple[int, ...] = NEIGHBOUR_PORTS
    max_hops: int = 16
    resolv_conf: Path = Path("/etc/resolv.conf")


@dataclass
class Observations:
    """Everything the probes saw. Filled by :func:`observe`; tests may build one by hand."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    proxy: ProxyChoice
    slow_ms: float = 1000.0
    nameservers: list[str] = field(default_factory=list)
    gateway: Route | None = None
    dns: DnsReport | None = None
    address: str | None = None
    route: RouteLookup | None = None
    probe_target: tuple[str, int] | None = None  # the target, or the forward proxy
    trace: Trace | None = None
    trace_error: str | None = None
    ports: PortScan | None = None
    ports_error: str | None = None
    other_services: dict[int, str] = field(default_factory=dict)  # port -> URL that answered
    tls: TlsReport | None = None
    tls_on_plain: TlsReport | None = None
    health: HttpReport | None = None
    spec: dict[str, Any] | None = None
    predict_route: str = "/decisions"
    payload_source: str = ""
    app: HttpReport | None = None
    echo: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# --- I/O: observe ----------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DoctorUsageError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DoctorUsageError(f"{url!r} has an invalid port: {exc}") from None
    return parts.scheme, parts.hostname, port, parts.path or "/"


def observe(url: str, options: DoctorOptions) -> Observations:
    """Run every probe of the path to ``url``; never raises for what the network does."""
    started = time.perf_counter()
    scheme, host, port, path = parse_url(url)
    obs = Observations(
        url, scheme, host, port, path, choose_proxy(url, options.proxy_env, options.proxy)
    )
    obs.slow_ms = options.slow_ms
    routes = read_routes()
    obs.gateway = default_gateway(routes)
    servers, _, _ = system_nameservers(options.resolv_conf)
    obs.nameservers = [s.label for s in servers]

    if is_ip_literal(host):
        obs.address = host.strip("[]")
    else:
        obs.dns = probe_dns(host, "A", resolvers=options.resolvers, timeout=options.timeout)
        obs.address = _chosen_address(obs.dns)
    if obs.address is not None:
        obs.route = lookup(obs.address, routes)

    if obs.proxy.proxy is not None:
        parsed = urlsplit(obs.proxy.proxy)
        proxy_host = parsed.hostname or ""
        proxy_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            obs.probe_target = (resolve_host(proxy_host)[0], proxy_port)
        except ServepathError as exc:
            obs.ports_error = str(exc)
    elif obs.address is not None:
        obs.probe_target = (obs.address, port)

    if obs.probe_target is not None:
        _probe_transport(obs, options)
    reachable = _target_open(obs)
    if obs.proxy.proxy is None and obs.ports is not None and not reachable:
        obs.other_services = _services_on_other_ports(obs, options)
    if reachable or obs.proxy.proxy is not None:
        _probe_http_stages(obs, options)
    obs.elapsed_s = time.perf_counter() - started
    return obs


def _chosen_address(report: DnsReport) -> str | None:
    for source in ("getaddrinfo", "resolv.conf", "given"):
        for answer in report.answers:
            if answer.source == source and answer.outcome == "ok" and answer.values:
                return answer.values[0]
    return None


def _probe_transport(obs: Observations, options: DoctorOptions) -> None:
    assert obs.probe_target is not None
    address, port = obs.probe_target
    ports = [port]
    if obs.proxy.proxy is None:
        ports += [p for p in options.neighbours if p != port]

    def run_trace() -> None:
        try:
            obs.trace = trace(
                address,
                protocol="tcp",
                port=port,
                max_hops=options.max_hops,
                queries=1,
                timeout=options.timeout,
                resolve_names=False,
            )
        except (ServepathError, OSError, ValueError) as exc:
            obs.trace_error = str(exc)

    def run_ports() -> None:
        try:
            obs.ports = scan_ports(address, ports, timeout=options.timeout)
        except (ServepathError, OSError) as exc:
            obs.ports_error = str(exc)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run_trace), pool.submit(run_ports)]:
            future.result()


def _target_open(obs: Observations) -> bool:
    asked = _asked_port(obs)
    return asked is not None and asked.state == "open"


def _asked_port(obs: Observations) -> PortResult | None:
    if obs.ports is None or obs.probe_target is None:
        return None
    for result in obs.ports.results:
        if result.port == obs.probe_target[1]:
            return result
    return None


def _services_on_other_ports(obs: Observations, options: DoctorOptions) -> dict[int, str]:
    """Open neighbour ports where a model service answers its health route."""
    assert obs.ports is not None and obs.address is not None
    found: dict[int, str] = {}
    host = f"[{obs.address}]" if ":" in obs.address else obs.address
    for result in obs.ports.results:
        if result.port == obs.port or result.state != "open":
            continue
        for scheme in ("https", "http") if result.port in (443, 8443) else ("http",):
            url = f"{scheme}://{host}:{result.port}/"
            try:
                with httpx.Client(timeout=options.timeout, trust_env=False, verify=False) as c:
                    response = c.get(url)
            except httpx.HTTPError:
                continue
            if response.status_code < 500 and _looks_like_model_service(response):
                found[result.port] = url
                break
    return found


def _looks_like_model_service(response: httpx.Response) -> bool:
    if "x-request-id" in response.headers and "server-timing" in response.headers:
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and ("model" in body or "status" in body)


def _probe_http_stages(obs: Observations, options: DoctorOptions) -> None:
    env, explicit = options.proxy_env, options.proxy
    if obs.scheme == "https" and obs.proxy.proxy is None:
        obs.tls = probe_tls(obs.host, obs.port, cafile=options.cafile, timeout=options.timeout)
    common: dict[str, Any] = {
        "timeout": options.http_timeout,
        "proxy_env": env,
        "proxy": explicit,
        "cafile": options.cafile,
    }
    obs.health = probe_http(obs.origin + "/", **common)
    if (
        obs.scheme == "http"
        and obs.health.error is not None
        and obs.health.error.kind
        in (
            "protocol",
            "reset",
        )
    ):
        tls = probe_tls(
            obs.address or obs.host, obs.port, servername=obs.host, timeout=options.timeout
        )
        if tls.protocol is not None or tls.certificate is not None:
            obs.tls_on_plain = tls
        return
    if obs.health.error is not None or obs.health.status is None:
        return
    obs.spec = _fetch_json(obs.origin + "/openapi.json", options)
    x_servepath = (obs.spec or {}).get("x-servepath", {})
    if obs.path not in ("", "/"):
        obs.predict_route = obs.path
    elif isinstance(x_servepath.get("predict_route"), str):
        obs.predict_route = x_servepath["predict_route"]
    payload = options.data
    obs.payload_source = "--data"
    if payload is None:
        example = _example_for(obs.spec, obs.predict_route)
        if example is None and isinstance(x_servepath.get("predict_route"), str):
            # the URL names a route the server does not document: send its example anyway,
            # so that the answer (a 404 listing the routes, most likely) is seen
            example = _example_for(obs.spec, x_servepath["predict_route"])
        if example is not None:
            payload = orjson.dumps(example)
            obs.payload_source = "the server's OpenAPI example"
    if payload is not None:
        obs.app = probe_http(
            obs.origin + obs.predict_route,
            method="POST",
            content=payload,
            headers=[("content-type", "application/json")],
            follow=False,
            **common,
        )
    echo_route = x_servepath.get("path_echo_route") or "/_path"
    obs.echo = _fetch_json(obs.origin + echo_route, options)


def _fetch_json(url: str, options: DoctorOptions) -> dict[str, Any] | None:
    choice = choose_proxy(url, options.proxy_env, options.proxy)
    verify: Any = options.cafile or True
    try:
        with httpx.Client(
            proxy=choice.proxy, timeout=options.http_timeout, trust_env=False, verify=verify
        ) as client:
            response = client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _example_for(spec: dict[str, Any] | None, route: str) -> Any:
    if spec is None:
        return None
    try:
        content = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        return content["example"]
    except (KeyError, TypeError):
        return None


# --- pure: diagnose ------------------------------------------------------------------------


@dataclass
class _Verdict:
    stages: list[Stage] = field(default_factory=list)
    failed: tuple[str, Cause, dict[str, Any]] | None = None

    def add(self, stage: Stage, cause: Cause | None = None, **context: Any) -> None:
        self.stages.append(stage)
        if stage.status == "fail" and self.failed is None and cause is not None:
            self.failed = (stage.name, cause, context)


def diagnose(obs: Observations) -> DoctorReport:
    """Stages and the verdict from what the probes saw: no I/O."""
    v = _Verdict()
    base = _context(obs)
    for step in (
        _stage_local,
        _stage_dns,
        _stage_address,
        _stage_route,
        _stage_transport,
        _stage_tls,
        _stage_http,
        _stage_app,
        _stage_server_view,
        _stage_latency,
    ):
        step(obs, v, base)
    name: str | None = None
    cause: Cause = "ok"
    extra: dict[str, Any] = {}
    if v.failed is not None:
        name, cause, extra = v.failed
    explanation = explain(cause, {**base, **extra})
    return DoctorReport(obs.url, tuple(v.stages), name, cause, explanation, obs.elapsed_s)


def _context(obs: Observations) -> dict[str, Any]:
    return {
        "url": obs.url,
        "host": obs.host,
        "port": obs.port,
        "path": obs.path,
        "origin": obs.origin,
        "address": obs.address or obs.host,
        "gateway": obs.gateway.gateway if obs.gateway else "none",
        "resolvers": ", ".join(obs.nameservers) or "none configured",
        "proxy": obs.proxy.proxy or "none",
        "route": obs.predict_route,
        "method": "POST",
    }


def _stage_local(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    via = (
        f"via forward proxy {obs.proxy.proxy} ({obs.proxy.reason})"
        if obs.proxy.proxy
        else f"direct ({obs.proxy.reason})"
    )
    gateway = obs.gateway.gateway if obs.gateway and obs.gateway.gateway else "none"
    summary = f"{via}; resolvers {ctx['resolvers']}; default gateway {gateway}"
    data = {
        "proxy": obs.proxy.to_json(),
        "resolvers": obs.nameservers,
        "default_gateway": obs.gateway.to_json() if obs.gateway else None,
    }
    v.add(Stage("local", "ok", summary, data))


def _stage_dns(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    if obs.dns is None:
        v.add(Stage("dns", "skip", f"{obs.host} is an IP address: nothing to resolve"))
        return
    report = obs.dns
    data = report.to_json()
    if obs.address is not None and report.agree:
        v.add(Stage("dns", "ok", f"{obs.host} -> {obs.address}", data))
        return
    if obs.address is not None:
        v.add(
            Stage("dns", "fail", f"resolvers disagree on {obs.host}: {report.verdict}", data),
            "dns_disagree",
            disagreement=report.verdict,
        )
        return
    outcomes = {a.outcome for a in report.answers}
    cause: Cause = "dns_timeout"
    if "nxdomain" in outcomes:
        cause = "dns_nxdomain"
    elif "no_answer" in outcomes:
        cause = "dns_no_answer"
    status: StageStatus = "fail"
    summary = f"{obs.host} did not resolve: {report.verdict}"
    if obs.proxy.proxy is not None:
        status, summary = "warn", summary + " (the forward proxy resolves it instead)"
    v.add(Stage("dns", status, summary, data), cause)


def _is_outside_private(obs: Observations) -> bool:
    if obs.address is None or obs.route is None:
        return False
    kind = classify_address(obs.address).kind
    return kind in ("private", "cgnat") and obs.route.kind in ("via-default", "none")


def _stage_address(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    if obs.address is None:
        v.add(Stage("address", "skip", "no address to classify"))
        return
    info: AddressInfo = classify_address(obs.address)
    data: dict[str, Any] = {**info.to_json(), "route": obs.route.to_json() if obs.route else None}
    if _is_outside_private(obs):
        v.add(
            Stage(
                "address",
                "warn",
                f"{obs.address} is {info.kind} ({info.meaning}), and this machine reaches it "
                "only through its default gateway",
                data,
            )
        )
        return
    v.add(Stage("address", "ok", f"{obs.address} is {info.kind}: {info.meaning}", data))


def _stage_route(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    if obs.probe_target is None:
        v.add(Stage("route", "skip", "no address to trace"))
        return
    if obs.trace is None:
        v.add(Stage("route", "skip", f"trace not possible: {obs.trace_error}"))
        return
    t = obs.trace
    answered = [h for h in t.hops if h.address is not None]
    data = t.to_json()
    if t.reached:
        v.add(Stage("route", "ok", f"{t.detail} ({t.method})", data))
        return
    last = f"; last answering hop {answered[-1].ttl}: {answered[-1].address}" if answered else ""
    v.add(Stage("route", "warn", f"{t.detail}{last}", data))


def _stage_transport(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    asked = _asked_port(obs)
    if asked is None:
        reason = obs.ports_error or "no address to probe"
        if obs.proxy.proxy is not None:
            v.add(
                Stage("transport", "fail", f"forward proxy unusable: {reason}"),
                "proxy_failed",
                detail=reason,
            )
            return
        v.add(Stage("transport", "skip", reason))
        return
    assert obs.ports is not None and obs.probe_target is not None
    data = {"ports": obs.ports.to_json(), "services_elsewhere": obs.other_services}
    where = host_port(*obs.probe_target)
    if obs.proxy.proxy is not None:
        if asked.state == "open":
            v.add(Stage("transport", "ok", f"forward proxy {where} accepts connections", data))
        else:
            v.add(
                Stage("transport", "fail", f"forward proxy {where} is {asked.state}", data),
                "proxy_failed",
                detail=f"{where} is {asked.state}: {asked.detail}",
            )
        return
    others = ", ".join(f"{r.port} {r.state}" for r in obs.ports.results if r.port != asked.port)
    if asked.state == "open":
        rtt = f" in {asked.rtt_ms:.2f} ms" if asked.rtt_ms is not None else ""
        v.add(Stage("transport", "ok", f"{where} open{rtt} (others: {others})", data))
        return
    summary = f"{where} {asked.state}: {asked.detail} (others: {others})"
    stage = Stage("transport", "fail", summary, data)
    if obs.other_services:
        other_port, other_url = sorted(obs.other_services.items())[0]
        v.add(
            stage,
            "service_on_other_port",
            other_port=other_port,
            other_url=other_url.rstrip("/") + obs.path,
            port_state=asked.state,
        )
    elif _is_outside_private(obs) and asked.state in ("filtered", "unreachable"):
        v.add(stage, "private_address")
    elif asked.state == "closed":
        v.add(stage, "port_closed")
    elif asked.state == "filtered":
        v.add(stage, "port_filtered")
    else:
        kind = asked.icmp.kind if asked.icmp is not None else None
        offender = asked.offender or "a router"
        if kind in ("port-unreachable", "admin-prohibited", "protocol-unreachable") or (
            kind == "host-unreachable" and asked.offender == obs.address
        ):
            role = "the target" if asked.offender == obs.address else "the router/firewall"
            v.add(
                stage,
                "port_rejected",
                offender=offender,
                offender_role=role,
                detail=kind or asked.detail,
            )
        else:
            v.add(stage, "no_route", offender=offender, detail=asked.detail)


_TLS_CAUSE: dict[str, Cause] = {
    "expired": "tls_expired",
    "not_yet_valid": "tls_expired",
    "hostname_mismatch": "tls_hostname_mismatch",
    "self_signed": "tls_untrusted",
    "unknown_issuer": "tls_untrusted",
    "plain_http": "plain_http_on_tls_port",
}


def _stage_tls(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    if obs.tls_on_plain is not None:
        t = obs.tls_on_plain
        v.add(
            Stage(
                "tls",
                "fail",
                f"port {obs.port} answered a TLS handshake ({t.protocol})",
                t.to_json(),
            ),
            "tls_on_plain_port",
        )
        return
    if obs.scheme != "https":
        v.add(Stage("tls", "skip", "plain http: no TLS"))
        return
    if obs.tls is None:
        reason = "through the forward proxy's tunnel" if obs.proxy.proxy else "port not open"
        v.add(Stage("tls", "skip", f"not checked: {reason}"))
        return
    t = obs.tls
    if t.ok:
        days = f", {t.days_to_expiry:.0f} days to expiry" if t.days_to_expiry is not None else ""
        v.add(Stage("tls", "ok", f"{t.protocol} {t.cipher}, trusted{days}", t.to_json()))
        return
    failure = t.failure or (t.problems[0] if t.problems else "handshake_failed")
    cause = _TLS_CAUSE.get(failure, "tls_handshake_failed")
    v.add(Stage("tls", "fail", f"{failure}: {t.detail}", t.to_json()), cause, detail=t.detail)


def _header(report: HttpReport, name: str) -> str | None:
    if not report.hops:
        return None
    for key, value in report.final.headers:
        if key.lower() == name:
            return value
    return None


def _reverse_proxy_seen(report: HttpReport) -> str | None:
    server = (_header(report, "server") or "").lower()
    for name in _REVERSE_PROXIES:
        if name in server:
            return server
    via = _header(report, "via")
    if via and not any(f in via.lower() for f in _FORWARD_PROXIES):
        return via
    return None


def _from_servepath(report: HttpReport) -> bool:
    return (
        _header(report, "x-request-id") is not None and _header(report, "server-timing") is not None
    )


def _http_failure(
    obs: Observations,
    report: HttpReport,
    route: str,
    v: _Verdict,
    stage_name: str,
    on_4xx: Cause,
) -> None:
    """Add a failed stage for an HTTP exchange that did not return 2xx."""
    data = report.to_json()
    if report.error is not None:
        kind, message = report.error
        if kind == "proxy":
            cause: Cause = "proxy_failed"
        elif kind == "read_timeout":
            cause = "slow_server"
        elif kind in ("refused", "connect_timeout", "unreachable"):
            cause = "port_closed" if kind == "refused" else "port_filtered"
        elif kind == "tls":
            cause = "tls_handshake_failed"
        else:
            cause = "http_error"
        v.add(
            Stage(stage_name, "fail", f"{route}: {message}", data),
            cause,
            detail=message,
            status=kind,
            route=route,
            total_ms=round(_http_total(report), 1),
            server_ms="?",
            server_share="?",
        )
        return
    status = report.status
    body = _body_json(report)
    detail = (body or {}).get("error") if isinstance(body, dict) else None
    detail = detail or (report.final.body_preview or "").strip()[:200] or f"HTTP {status}"
    ctx: dict[str, Any] = {
        "status": status,
        "detail": detail,
        "route": route,
        "request_id": _header(report, "x-request-id") or "?",
    }
    summary = f"{route} answered {status}: {detail}"
    if status == 404:
        routes = (body or {}).get("routes") if isinstance(body, dict) else None
        ctx["routes"] = ", ".join(routes) if routes else "see the server's documentation"
        v.add(Stage(stage_name, "fail", summary, data), "route_not_found", **ctx)
        return
    if status in (502, 503, 504) and not _from_servepath(report):
        proxied = obs.proxy.proxy is not None and not _reverse_proxy_seen(report)
        cause = "proxy_failed" if proxied else "upstream_error"
        ctx["detail"] = f"{status} from {obs.proxy.proxy}" if proxied else detail
        v.add(Stage(stage_name, "fail", summary, data), cause, **ctx)
        return
    if status is not None and 400 <= status < 500:
        v.add(Stage(stage_name, "fail", summary, data), on_4xx, **ctx)
        return
    v.add(Stage(stage_name, "fail", summary, data), "http_error", **ctx)


def _http_total(report: HttpReport) -> float:
    return report.final.phases.total_ms if report.hops else 0.0


def _body_json(report: HttpReport) -> Any:
    preview = report.final.body_preview if report.hops else None
    if not preview:
        return None
    try:
        return orjson.loads(preview)
    except orjson.JSONDecodeError:
        return None


def _stage_http(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    report = obs.health
    if report is None:
        v.add(Stage("http", "skip", "not tried: the port is not open"))
        return
    if report.ok:
        phases = report.final.phases
        proxy = _reverse_proxy_seen(report)
        seen = f"; reverse proxy: {proxy}" if proxy else ""
        summary = f"GET / -> {report.status} in {phases.total_ms:.1f} ms{seen}"
        v.add(Stage("http", "ok", summary, report.to_json()))
        return
    _http_failure(obs, report, "/", v, "http", "http_error")


def _stage_app(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    report = obs.app
    if report is None:
        why = "the health route failed" if obs.health is not None else "the port is not open"
        if obs.health is not None and obs.health.ok:
            why = "no example instance in the server's OpenAPI; pass --data FILE"
        v.add(Stage("app", "skip", f"not tried: {why}"))
        return
    if report.ok:
        cache = _header(report, "x-cache")
        body = _body_json(report)
        answer = ""
        if isinstance(body, dict) and "decision" in body:
            answer = f": {body['decision']} ({body.get('probability')})"
        summary = (
            f"POST {obs.predict_route} -> {report.status}{answer}"
            f"{f', cache {cache}' if cache else ''} ({obs.payload_source})"
        )
        v.add(Stage("app", "ok", summary, report.to_json()))
        return
    _http_failure(obs, report, obs.predict_route, v, "app", "bad_payload")


def _stage_server_view(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    echo = obs.echo
    if echo is None:
        v.add(Stage("server view", "skip", "no path echo (GET /_path) from the server"))
        return
    server = echo.get("server") or {}
    peer = echo.get("peer") or {}
    chain = echo.get("chain") or []
    via = echo.get("via") or []
    dialled = host_port(obs.address or obs.host, obs.port)
    seen_at = host_port(str(server.get("address")), server.get("port"))
    notes: list[str] = []
    between: dict[str, Any] = {"reverse_proxies": 0, "nat": False, "forward_proxy": None}
    reverse_via = [x for x in via if not any(f in x.lower() for f in _FORWARD_PROXIES)]
    forwarded = len(chain)
    if obs.proxy.proxy:
        between["forward_proxy"] = obs.proxy.proxy
        notes.append(f"forward proxy {obs.proxy.proxy}")
        # a forward proxy may add its caller to X-Forwarded-For too
        forwarded = max(0, forwarded - 1)
    reverse = max(forwarded, len(reverse_via))
    between["reverse_proxies"] = reverse
    if reverse:
        plural = "ies" if reverse > 1 else "y"
        notes.append(
            f"{reverse} reverse prox{plural} (forwarded chain: {', '.join(chain) or 'none'})"
        )
    elif seen_at != dialled and obs.proxy.proxy is None:
        between["nat"] = True
        notes.append(f"NAT / port mapping: dialled {dialled}, the server socket is {seen_at}")
    where = "in a container" if (echo.get("container") or {}).get("in_container") else "on a host"
    summary = (
        f"server {echo.get('hostname')} ({where}) saw the caller as "
        f"{host_port(str(peer.get('address')), peer.get('port'))} on {seen_at}"
    )
    if notes:
        summary += "; between: " + "; ".join(notes)
    v.add(
        Stage("server view", "ok", summary, {"echo": echo, "between": between, "dialled": dialled})
    )


def _server_ms(report: HttpReport) -> float | None:
    if not report.hops:
        return None
    for entry in report.final.server_timing:
        if entry.name == "total" and entry.dur is not None:
            return float(entry.dur)
    return None


def _stage_latency(obs: Observations, v: _Verdict, ctx: dict[str, Any]) -> None:
    report = obs.app if obs.app is not None and obs.app.ok else obs.health
    if report is None or not report.ok:
        v.add(Stage("latency", "skip", "no successful request to split"))
        return
    p = report.final.phases
    total = p.total_ms
    server = _server_ms(report) or 0.0
    dns_ms, connect, tls = p.dns_ms or 0.0, p.connect_ms or 0.0, p.tls_ms or 0.0
    rest = max(0.0, total - dns_ms - connect - tls - server)
    network = connect + rest
    parts = {
        "dns_ms": dns_ms,
        "connect_ms": connect,
        "tls_ms": tls,
        "server_ms": server,
        "network_and_proxies_ms": rest,
        "total_ms": total,
    }
    dominant = max(
        ("dns", dns_ms),
        ("connect", connect),
        ("tls", tls),
        ("server", server),
        ("network and proxies", rest),
        key=lambda kv: kv[1],
    )[0]
    data = {
        "parts": {k: round(val, 3) for k, val in parts.items()},
        "dominant": dominant,
        "timing": list(e.to_json() for e in report.final.server_timing),
    }
    summary = (
        f"total {total:.1f} ms = dns {dns_ms:.1f} + connect {connect:.1f} + tls {tls:.1f} + "
        f"server {server:.1f} + rest {rest:.1f}; {dominant} dominates"
    )
    ctx_extra = {
        "total_ms": round(total, 1),
        "server_ms": round(server, 1),
        "server_share": round(100 * server / total) if total else 0,
        "network_ms": round(network, 1),
        "connect_ms": round(connect, 1),
    }
    if total > obs.slow_ms:
        cause: Cause = "slow_server" if server >= 0.5 * total else "slow_network"
        v.add(Stage("latency", "fail", summary, data), cause, **ctx_extra)
    elif total > obs.slow_ms / 2:
        v.add(Stage("latency", "warn", summary, data))
    else:
        v.add(Stage("latency", "ok", summary, data))


def run_doctor(url: str, options: DoctorOptions) -> DoctorReport:
    return diagnose(observe(url, options))
