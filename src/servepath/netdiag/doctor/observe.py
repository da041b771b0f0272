"""The doctor's I/O: run the probes the plan calls for and keep what they saw.

DNS first, then the trace and the port scan at once (so a filtered port costs one timeout),
then the HTTP requests: health, the OpenAPI document, the example prediction, the large
request, the path echo. Every packet goes through a probe module (dns, ports, trace, tls,
http, protocols, mtu); nothing here decides what the answers mean — that is
:mod:`~servepath.netdiag.doctor.diagnose`.
"""

from __future__ import annotations

import ipaddress
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dns.reversename
import orjson

from servepath.contract import OPENAPI_ROUTE
from servepath.errors import ServepathError
from servepath.net.endpoints import host_port, is_ip_literal, url_host
from servepath.net.interfaces import local_addresses
from servepath.net.routes import default_gateway, lookup, read_routes
from servepath.net.sockets import resolve_host
from servepath.netdiag.dns import DnsReport, probe_dns, system_nameservers
from servepath.netdiag.doctor.evidence import Observations, VhostTrial, untrusted_only
from servepath.netdiag.doctor.plan import DoctorOptions, Plan, plan_app
from servepath.netdiag.doctor.signs import from_servepath, looks_like_web_server
from servepath.netdiag.http import HttpReport, probe_http
from servepath.netdiag.ports import scan_ports
from servepath.netdiag.tls import probe_tls
from servepath.netdiag.trace import trace

_BODY_LIMIT = 2_000_000  # the OpenAPI document and the path echo are read whole, to this


def observe(plan: Plan, options: DoctorOptions) -> Observations:
    """Run every probe of the path the plan describes; never raises for what the network does."""
    started = time.perf_counter()
    obs = Observations(
        plan,
        slow_ms=options.slow_ms,
        timeout=options.timeout,
        http_timeout=options.http_timeout,
        insecure=options.insecure,
        api_key_sent=bool(options.api_key),
    )
    routes = read_routes()
    obs.gateway = default_gateway(routes)
    servers, _, _ = system_nameservers(options.resolv_conf)
    obs.nameservers = [s.label for s in servers]

    if plan.pinned is not None:
        obs.address = plan.pinned
    else:
        obs.dns = probe_dns(
            plan.target.host, "A", resolvers=options.resolvers, timeout=options.timeout
        )
        obs.address = _chosen_address(obs.dns)
        if obs.address is None:  # an IPv6-only name
            aaaa = probe_dns(plan.target.host, "AAAA", timeout=options.timeout)
            if aaaa.ok and _chosen_address(aaaa):
                obs.dns, obs.address = aaaa, _chosen_address(aaaa)
    if obs.address is not None:
        obs.own_address = _is_own_address(obs.address)
        obs.route = lookup(obs.address, routes)

    proxy_at = plan.proxy_endpoint()
    if proxy_at is not None:
        try:
            obs.probe_target = (resolve_host(proxy_at[0])[0], proxy_at[1])
        except ServepathError as exc:
            obs.ports_error = str(exc)
    elif obs.address is not None:
        obs.probe_target = (obs.address, plan.target.port)

    if obs.probe_target is not None:
        _probe_transport(obs, options)
    reachable = _asked_port_open(obs)
    if obs.own_address and plan.direct:
        _look_inside_containers(obs, reachable)
    if plan.direct and obs.ports is not None and not reachable:
        obs.other_services = _services_on_other_ports(obs, options)
    if reachable or not plan.direct:
        _probe_http_stages(obs, options)
    obs.elapsed_s = time.perf_counter() - started
    return obs


def _chosen_address(report: DnsReport) -> str | None:
    for source in ("rfc6761", "getaddrinfo", "resolv.conf", "named"):
        for answer in report.answers:
            if answer.source == source and answer.outcome == "ok" and answer.values:
                return answer.values[0]
    return None


def _is_own_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    return any(a.address.split("%", 1)[0] == str(ip) for a in local_addresses())


def _probe_transport(obs: Observations, options: DoctorOptions) -> None:
    assert obs.probe_target is not None
    address, port = obs.probe_target
    ports = [port, *obs.plan.neighbours]

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


def _asked_port_open(obs: Observations) -> bool:
    if obs.ports is None or obs.probe_target is None:
        return False
    return any(r.port == obs.probe_target[1] and r.state == "open" for r in obs.ports.results)


def _look_inside_containers(obs: Observations, reachable: bool) -> None:
    """On this machine's own address: which mapping carries the port into a container, and
    what listens in that container's namespace (or, for a closed port, which containers
    listen with nothing published)."""
    from servepath.net.listeners import inspect_port
    from servepath.netdiag.netns import find_namespace, namespaces

    port = obs.plan.target.port
    try:
        spaces = namespaces()
        own = os.readlink("/proc/self/ns/net")
    except OSError:
        return
    if reachable:
        listen = inspect_port(port, udp=False)
        mapping = next(
            (m for m in listen.mappings if m.covers(port) and m.target_ip is not None), None
        )
        if mapping is not None and mapping.target_ip is not None:
            obs.mapping = mapping
            obs.container = find_namespace(mapping.target_ip, spaces)
        return
    wanted = (port, 8080, 8000, 80)
    listening = [
        s
        for s in spaces
        if s.inode != own
        and any(not x.loopback and x.port in wanted for x in s.listeners)
        and any(not ipaddress.ip_address(a).is_loopback for a in s.addresses)
    ]
    # containers first: a bare network namespace (a test's, a VPN's) is a weaker guess
    listening.sort(key=lambda s: (s.runtime is None, s.pid))
    obs.unpublished = listening[:3]


def _services_on_other_ports(obs: Observations, options: DoctorOptions) -> dict[int, str]:
    """Open neighbour ports where servepath (or a model API like it) answers its health route."""
    assert obs.ports is not None and obs.address is not None
    candidates = [
        r.port for r in obs.ports.results if r.port != obs.plan.target.port and r.state == "open"
    ]

    def check(port: int) -> tuple[int, str] | None:
        for scheme in ("https", "http") if port in (443, 8443) else ("http",):
            url = f"{scheme}://{host_port(obs.address or '', port)}/"
            report = probe_http(url, timeout=options.timeout, verify=False, keep_body=4096)
            answered = report.error is None and report.status is not None and report.status < 500
            if answered and (from_servepath(report) or _health_body(report)):
                return port, url
        return None

    found: dict[int, str] = {}
    if candidates:
        with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
            for result in pool.map(check, candidates):
                if result is not None:
                    found[result[0]] = result[1]
    return found


def _health_body(report: HttpReport) -> bool:
    body = _json_body(report)
    return isinstance(body, dict) and ("model" in body or "status" in body)


def _json_body(report: HttpReport) -> Any:
    if not report.hops or report.final.body is None:
        return None
    try:
        return orjson.loads(report.final.body)
    except orjson.JSONDecodeError:
        return None


def _http(obs: Observations, options: DoctorOptions, url: str, **kwargs: Any) -> HttpReport:
    """One request as the plan has it: through the proxy that applies, with --resolve and
    --host-header, trusting --cafile."""
    plan = obs.plan
    pins = {(plan.pin.name, plan.pin.port): plan.pin.address} if plan.pin else None
    headers = [*plan.headers(), *kwargs.pop("headers", [])]
    if options.api_key:
        headers.append(("Authorization", f"Bearer {options.api_key}"))
    return probe_http(
        url,
        timeout=kwargs.pop("timeout", options.http_timeout),
        proxy_env=options.proxy_env,
        proxy=options.proxy,
        cafile=options.cafile,
        verify=not options.insecure,
        pins=pins,
        headers=headers,
        keep_body=kwargs.pop("keep_body", _BODY_LIMIT),
        **kwargs,
    )


def _probe_http_stages(obs: Observations, options: DoctorOptions) -> None:
    plan = obs.plan
    target = plan.target
    if plan.tls and plan.direct:
        obs.tls = probe_tls(
            obs.address or target.host,
            target.port,
            servername=target.host,
            cafile=options.cafile,
            timeout=options.timeout,
        )
        if obs.tls.failure == "handshake_failed" or (
            obs.tls.protocol is None and obs.tls.certificate is None and obs.tls.failure
        ):
            _sniff(obs, options)
        if not obs.tls.ok and not (options.insecure and untrusted_only(obs.tls)):
            return  # every https request would fail the same way (or hang on another protocol)
    obs.health = _http(obs, options, target.origin + "/")
    health_error = obs.health.error
    if plan.direct and health_error is not None and health_error.kind in ("protocol", "reset"):
        if target.scheme == "http":
            tls = probe_tls(
                obs.address or target.host,
                target.port,
                servername=target.host,
                timeout=options.timeout,
            )
            if tls.protocol is not None or tls.certificate is not None:
                obs.tls_on_plain = tls
                return
        _sniff(obs, options)
        return
    if health_error is not None or obs.health.status is None:
        return
    spec_report = _http(obs, options, target.origin + OPENAPI_ROUTE)
    spec = _json_body(spec_report) if spec_report.status == 200 else None
    obs.spec = spec if isinstance(spec, dict) else None
    if spec_report.status == 401:
        obs.spec_refused = spec_report  # the server wants a key: the app stage says so
    obs.app_plan = app = plan_app(target, obs.spec, options.data, large_bytes=options.large_bytes)
    if (
        obs.health.status == 404
        and from_servepath(obs.health)
        and app.health_route != "/"
        and app.contract.documented
    ):  # a server with AIP_HEALTH_ROUTE: its health is elsewhere
        obs.health = _http(obs, options, target.origin + app.health_route)
    if _serves_someone_else(obs.health):
        _try_names(obs, options)
    if app.payload is not None:
        obs.app = _http(
            obs,
            options,
            target.origin + app.route,
            method="POST",
            content=app.payload,
            headers=[("content-type", "application/json")],
            follow=False,
            keep_body=64_000,
        )
        if _serves_someone_else(obs.app) and not obs.vhost_trials:
            _try_names(obs, options)
        if obs.app.ok and app.large is not None:
            _probe_large(obs, options)
    if app.echo_route is not None and app.servepath:
        echo = _json_body(_http(obs, options, target.origin + app.echo_route))
        obs.echo = echo if isinstance(echo, dict) else None


def _serves_someone_else(report: HttpReport) -> bool:
    return (
        report.error is None
        and report.status is not None
        and report.status in (400, 403, 404, 405, 421)
        and not from_servepath(report)
        and looks_like_web_server(report)
    )


def _sniff(obs: Observations, options: DoctorOptions) -> None:
    from servepath.netdiag.protocols import sniff_protocol

    if obs.address is None:
        return
    obs.protocol = sniff_protocol(
        obs.address, obs.plan.target.port, timeout=options.timeout, server_name=obs.host
    )


def _candidate_names(obs: Observations, options: DoctorOptions) -> list[tuple[str, str]]:
    """Names that may select the service's site on this address, and where each came from."""
    names: list[tuple[str, str]] = []
    target = obs.plan.target
    if obs.plan.host_header and not is_ip_literal(target.host):
        names.append((target.host, "the URL"))  # --host-header replaced the URL's name
    if obs.tls is not None and obs.tls.certificate is not None:
        for name in obs.tls.certificate.dns_names:
            if not name.startswith("*."):
                names.append((name, "the certificate"))
    if obs.address is not None:
        try:
            ptr = probe_dns(
                dns.reversename.from_address(obs.address.split("%", 1)[0]).to_text(),
                "PTR",
                timeout=options.timeout,
            )
            for answer in ptr.answers:
                for value in answer.values:
                    names.append((value.rstrip("."), "reverse DNS"))
        except (ServepathError, ValueError, OSError):
            pass
    asked = (obs.plan.host_header or target.host).lower()
    seen: dict[str, str] = {}
    for name, source in names:
        if name.lower() != asked and name.lower() not in seen:
            seen[name.lower()] = source
    return list(seen.items())[:4]


def _try_names(obs: Observations, options: DoctorOptions) -> None:
    """Ask the same address for the health route under each candidate name."""
    if obs.address is None or not obs.plan.direct:
        return
    candidates = _candidate_names(obs, options)
    if not candidates:
        return
    target = obs.plan.target
    url = f"{target.scheme}://{url_host(obs.address)}:{target.port}/"

    def trial(item: tuple[str, str]) -> VhostTrial:
        name, source = item
        report = probe_http(
            url,
            timeout=options.timeout,
            headers=[("host", host_port(name, target.port))],
            verify=False,
            keep_body=4096,
        )
        return VhostTrial(name, source, report.status, from_servepath(report))

    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        obs.vhost_trials = list(pool.map(trial, candidates))


def _probe_large(obs: Observations, options: DoctorOptions) -> None:
    """The large request, and when it stalls where the small one passed, the narrowing."""
    app = obs.app_plan
    assert app is not None and app.large is not None and obs.app is not None
    small_s = obs.app.final.phases.total_ms / 1000 if obs.app.hops else 0.0
    # Long enough for the model to answer a batch (ten times the lone request), short enough
    # that a stall costs about one probe timeout.
    wait = min(options.http_timeout, max(options.timeout, 10 * small_s))
    obs.large = _http(
        obs,
        options,
        obs.plan.target.origin + app.route,
        method="POST",
        content=app.large,
        headers=[("content-type", "application/json")],
        follow=False,
        timeout=wait,
        keep_body=0,
    )
    error = obs.large.error
    stalled = error is not None and error.kind in ("read_timeout", "write_timeout")
    if not stalled or not obs.plan.direct or obs.address is None or app.narrowing is None:
        return
    if obs.plan.target.scheme != "http":  # the narrowing speaks plain HTTP on raw sockets
        return
    from servepath.netdiag.mtu import locate_mtu_hop, narrow_mtu

    request = _raw_request(obs, app.route, app.narrowing)
    obs.mtu = narrow_mtu(obs.address, obs.plan.target.port, request, timeout=wait)
    if obs.mtu.largest_passing_mss is not None and obs.mtu.smallest_stalling_mss is not None:
        obs.mtu_hop = locate_mtu_hop(
            obs.address,
            size=obs.mtu.smallest_stalling_mss + (60 if ":" in obs.address else 40),
            max_hops=options.max_hops,
            timeout=options.timeout,
        )


def _raw_request(obs: Observations, route: str, body: bytes) -> bytes:
    host = obs.plan.headers()[0][1] if obs.plan.host_header else obs.plan.target.host_endpoint
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        "User-Agent: servepath-doctor (mtu)\r\n\r\n"
    )
    return head.encode("latin-1") + body
