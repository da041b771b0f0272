"""The doctor's I/O: run the steps the plan calls for and keep what they saw.

:func:`observe` asks :func:`~servepath.netdiag.doctor.plan.next_step` for a probe, runs it,
records the answer in the :class:`~servepath.netdiag.doctor.evidence.Observations`, and asks
again until the plan has nothing left (dnspython's resolution loop). Every packet goes
through a probe module (dns, ports, trace, tls, http, protocols, mtu, listen, netns);
nothing here decides which probe comes next — that is the plan — or what the answers mean —
that is :mod:`~servepath.netdiag.doctor.diagnose`.
"""

from __future__ import annotations

import ipaddress
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import dns.reversename
import orjson

from servepath.errors import ServepathError
from servepath.net.endpoints import host_port, is_ip_literal
from servepath.net.interfaces import local_addresses
from servepath.net.routes import KernelRoute as Route
from servepath.net.routes import default_gateway, lookup, read_routes
from servepath.net.sockets import resolve_host
from servepath.netdiag.dns import probe_dns, system_nameservers
from servepath.netdiag.doctor.evidence import (
    Attempt,
    Observations,
    Repetition,
    VhostTrial,
    attempt_of,
)
from servepath.netdiag.doctor.plan import (
    Plan,
    answers_tls,
    candidate_names,
    chosen_address,
    chosen_addresses,
    next_step,
)
from servepath.netdiag.doctor.signs import from_servepath
from servepath.netdiag.doctor.steps import (
    DialEvery,
    FindServices,
    HttpStep,
    InspectAddress,
    LocateMtuHop,
    LookInside,
    NarrowMtu,
    PlanApp,
    ProbeTls,
    Repeat,
    Resolve,
    ResolveProxy,
    Sniff,
    Step,
    Transport,
    TryNames,
)
from servepath.netdiag.http import HttpReport, probe_http, probe_http_series
from servepath.netdiag.ports import PortResult, scan_ports
from servepath.netdiag.quality import QUERIES_PER_HOP, probe_burst
from servepath.netdiag.tls import probe_tls
from servepath.netdiag.trace import trace
from servepath.traffic import header_for

#: Every request of the walk says it is the doctor's, so that the server leaves it out of
#: the numbers of real traffic (its prediction log's statistics, the live page).
DOCTOR_MARK: tuple[tuple[str, str], ...] = tuple(header_for("doctor").items())

_BODY_LIMIT = 2_000_000  # the OpenAPI document and the path echo are read whole, to this


def observe(plan: Plan) -> Observations:
    """Run every probe of the path the plan calls for; never raises for what the network does."""
    started = time.perf_counter()
    options = plan.options
    obs = Observations(
        plan,
        slow_ms=options.slow_ms,
        timeout=options.timeout,
        http_timeout=options.http_timeout,
        insecure=options.insecure,
        api_key_sent=bool(options.api_key),
        address=plan.pinned,
    )
    routes = read_routes()
    obs.gateway = default_gateway(routes)
    servers, _, _ = system_nameservers(options.resolv_conf)
    obs.nameservers = [s.label for s in servers]
    while (step := next_step(obs)) is not None:
        _run(step, obs, routes)
        obs.done.add(step.kind)
    obs.elapsed_s = time.perf_counter() - started
    return obs


def _run(step: Step, obs: Observations, routes: list[Route]) -> None:
    """Run one step and record what it saw."""
    options = obs.plan.options
    match step:
        case Resolve(name, "A"):
            obs.dns = probe_dns(name, "A", resolvers=options.resolvers, timeout=options.timeout)
            obs.address = chosen_address(obs.dns)
            obs.name_addresses = chosen_addresses(obs.dns)
        case Resolve(name, "AAAA"):
            aaaa = probe_dns(name, "AAAA", timeout=options.timeout)
            if aaaa.ok and chosen_address(aaaa):
                if obs.address is None:  # an IPv6-only name
                    obs.dns, obs.address = aaaa, chosen_address(aaaa)
                obs.name_addresses = tuple(
                    dict.fromkeys((*obs.name_addresses, *chosen_addresses(aaaa)))
                )
        case DialEvery(addresses, port):
            obs.dialled = _dial_every(addresses, port, options.timeout)
        case InspectAddress(address):
            obs.own_address = _is_own_address(address)
            obs.route = lookup(address, routes)
        case ResolveProxy(host, port):
            try:
                obs.probe_target = (resolve_host(host)[0], port)
            except ServepathError as exc:
                obs.ports_error = str(exc)
        case Transport():
            obs.probe_target = (step.address, step.port)
            _probe_transport(obs, step)
        case LookInside(port, reachable):
            _look_inside_containers(obs, port, reachable)
        case FindServices(address, ports):
            obs.other_services = _services_on_other_ports(address, ports, options.timeout)
        case ProbeTls():
            report = probe_tls(step.address, step.port, servername=step.servername,
                               cafile=step.cafile, timeout=options.timeout)  # fmt: skip
            if not step.on_plain:
                obs.tls = report
            elif answers_tls(report):
                obs.tls_on_plain = report
        case Sniff(address, port, server_name):
            from servepath.netdiag.protocols import sniff_protocol

            obs.protocol = sniff_protocol(
                address, port, timeout=options.timeout, server_name=server_name
            )
        case HttpStep():
            _record_http(obs, step, _http(obs, step))
        case PlanApp(app):
            obs.app_plan = app
        case TryNames():
            _try_names(obs, step)
        case NarrowMtu(address, port, request, wait, tls_name):
            from servepath.netdiag.mtu import narrow_mtu

            obs.mtu = narrow_mtu(address, port, request, timeout=wait, tls_server_name=tls_name)
        case Repeat():
            obs.repeats = _repeat(obs, step)
        case LocateMtuHop(address, size):
            from servepath.netdiag.mtu import locate_mtu_hop

            obs.mtu_hop = locate_mtu_hop(
                address, size=size, max_hops=options.max_hops, timeout=options.timeout
            )


def _record_http(obs: Observations, step: HttpStep, report: HttpReport) -> None:
    match step.what:
        case "health" | "health route":
            obs.health = report
        case "openapi":
            spec = _json_body(report) if report.status == 200 else None
            obs.spec = spec if isinstance(spec, dict) else None
            failed = report.error is not None or report.status in (401, 429)
            if failed or (report.status or 0) >= 500:
                # a key wanted, a proxy's 502, no answer: the app stage says so; only a 404
                # means the server publishes no document
                obs.spec_refused = report
        case "predict":
            obs.app = report
        case "redirect":
            obs.redirect = report
        case "large":
            obs.large = report
        case "echo":
            echo = _json_body(report)
            obs.echo = echo if isinstance(echo, dict) else None
        case "clock":
            date = report.final.date if report.hops else None
            if date is not None:
                try:
                    server = parsedate_to_datetime(date)
                except (TypeError, ValueError):
                    return
                # Date has a resolution of one second; the request took a few milliseconds
                obs.server_date = date
                obs.clock_skew_s = (datetime.now(UTC) - server).total_seconds()


def _is_own_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    return any(a.address.split("%", 1)[0] == str(ip) for a in local_addresses())


def _probe_transport(obs: Observations, step: Transport) -> None:
    options = obs.plan.options

    def run_trace() -> None:
        try:
            obs.trace = trace(
                step.address,
                protocol="tcp",
                port=step.port,
                max_hops=options.max_hops,
                queries=QUERIES_PER_HOP,  # a hop's loss and round trips, as mtr shows them
                timeout=options.timeout,
                resolve_names=False,
            )
        except (ServepathError, OSError, ValueError) as exc:
            obs.trace_error = str(exc)

    def run_ports() -> None:
        try:
            obs.ports = scan_ports(step.address, list(step.ports), timeout=options.timeout)
        except (ServepathError, OSError) as exc:
            obs.ports_error = str(exc)

    def run_trace_then_burst() -> None:
        run_trace()
        # many connections: a lost SYN is not a filter, and the share lost is the path's
        # loss (netdiag/quality.py). After the trace, whose probes past the target's hop
        # all reach its accept queue in the same instant.
        try:
            obs.burst = probe_burst(step.address, step.port, timeout=options.timeout)
        except (ServepathError, OSError, ValueError):
            obs.burst = None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run_trace_then_burst), pool.submit(run_ports)]:
            future.result()


def _dial_every(addresses: tuple[str, ...], port: int, timeout: float) -> dict[str, PortResult]:
    """The port on each address at once: a silent one costs one timeout for all."""

    def dial(address: str) -> PortResult | None:
        try:
            return scan_ports(address, [port], timeout=timeout).results[0]
        except (ServepathError, OSError, IndexError):
            return None

    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        found = dict(zip(addresses, pool.map(dial, addresses), strict=True))
    return {a: r for a, r in found.items() if r is not None}


def _look_inside_containers(obs: Observations, port: int, reachable: bool) -> None:
    """Which mapping carries an open port into a container, and what listens in that
    container's namespace; for a closed port, which containers listen with nothing published."""
    from servepath.net.listeners import inspect_port
    from servepath.netdiag.netns import find_namespace, namespaces

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


def _services_on_other_ports(
    address: str, ports: tuple[int, ...], timeout: float
) -> dict[int, str]:
    """Open neighbour ports where servepath (or a model API like it) answers its health route."""

    def check(port: int) -> tuple[int, str] | None:
        for scheme in ("https", "http") if port in (443, 8443) else ("http",):
            url = f"{scheme}://{host_port(address, port)}/"
            report = probe_http(
                url, timeout=timeout, verify=False, keep_body=4096, headers=DOCTOR_MARK
            )
            answered = report.error is None and report.status is not None and report.status < 500
            if answered and (from_servepath(report) or _health_body(report)):
                return port, url
        return None

    found: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        for result in pool.map(check, ports):
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


def _request_settings(obs: Observations, step: HttpStep) -> dict[str, Any]:
    """What every request of the walk shares: the proxy that applies, --resolve and
    --host-header, the key, trusting --cafile."""
    plan, options = obs.plan, obs.plan.options
    pins = {(plan.pin.name, plan.pin.port): plan.pin.address} if plan.pin else None
    target = plan.target
    if pins is None and plan.direct and obs.address and not is_ip_literal(target.host):
        # the address the transport probed, not whichever family the resolver lists first:
        # a silent AAAA would cost every request its timeout (the dial-every step names it)
        pins = {(target.host.lower(), target.port): obs.address}
    headers = [*plan.headers(), *DOCTOR_MARK]
    if step.content is not None:
        headers.append(("content-type", "application/json"))
    if options.api_key:
        headers.append(("Authorization", f"Bearer {options.api_key}"))
    return {
        "timeout": step.timeout if step.timeout is not None else options.http_timeout,
        "proxy_env": options.proxy_env,
        "proxy": options.proxy,
        "cafile": options.cafile,
        "verify": not (options.insecure or step.unverified),
        "pins": pins,
        "headers": headers,
        "content": step.content,
    }


def _http(obs: Observations, step: HttpStep) -> HttpReport:
    """One request as the plan has it."""
    return probe_http(
        step.url,
        **_request_settings(obs, step),
        keep_body=step.keep_body if step.keep_body is not None else _BODY_LIMIT,
        method=None if step.method == "GET" else step.method,
        follow=step.follow,
    )


def _first_answer(obs: Observations, step: HttpStep) -> HttpReport | None:
    """The walk's own request of the kind a repetition repeats."""
    match step.what:
        case "health":
            return obs.health
        case "predict":
            return obs.app
        case "openapi":
            return obs.spec_refused
    return None


def _repeat(obs: Observations, step: Repeat) -> list[Repetition]:
    """Each request again: half over fresh connections, all at once (a stall costs one
    timeout), half one after another over one kept-alive connection, within the budget."""
    deadline = time.monotonic() + step.budget_s
    reused_count = step.count // 2
    fresh_count = step.count - reused_count

    def fresh(request: HttpStep) -> HttpReport:
        return _http(obs, replace(request, keep_body=0))

    def reused(request: HttpStep) -> tuple[HttpReport, ...]:
        return probe_http_series(
            request.url,
            count=reused_count,
            deadline=deadline,
            method=request.method,
            **_request_settings(obs, request),
        )

    workers = len(step.requests) * (fresh_count + 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        fresh_runs = [[pool.submit(fresh, r) for _ in range(fresh_count)] for r in step.requests]
        series = [pool.submit(reused, r) for r in step.requests]
        results: list[Repetition] = []
        for request, runs, run in zip(step.requests, fresh_runs, series, strict=True):
            attempts: list[Attempt] = []
            first = _first_answer(obs, request)
            if first is not None:
                attempts.append(attempt_of(first, "first"))
            attempts += [attempt_of(f.result(), "fresh") for f in runs]
            # the series' first request opens the connection the others reuse, unless the
            # peer closed it after its answer: then the client opened another
            for i, report in enumerate(run.result()):
                attempts.append(attempt_of(report, "reused" if i and _reused(report) else "fresh"))
            route = request.url.split(obs.origin, 1)[-1] or "/"
            results.append(Repetition(request.method, route, tuple(attempts)))
    return results


def _reused(report: HttpReport) -> bool:
    """The request went over a connection an earlier one opened (as far as its trace says)."""
    return not report.hops or report.final.phases.reused_connection


def _try_names(obs: Observations, step: TryNames) -> None:
    """Ask the same address for the health route under each candidate name."""
    options = obs.plan.options
    reverse: list[str] = []
    if obs.address is not None:
        try:
            ptr = probe_dns(
                dns.reversename.from_address(obs.address.split("%", 1)[0]).to_text(),
                "PTR",
                timeout=options.timeout,
            )
            reverse = [value for answer in ptr.answers for value in answer.values]
        except (ServepathError, ValueError, OSError):
            pass
    candidates = candidate_names(obs, reverse)
    if not candidates:
        return

    def trial(item: tuple[str, str]) -> VhostTrial:
        name, source = item
        report = probe_http(
            step.url,
            timeout=options.timeout,
            headers=[("host", host_port(name, step.port)), *DOCTOR_MARK],
            verify=False,
            keep_body=4096,
        )
        return VhostTrial(name, source, report.status, from_servepath(report))

    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        obs.vhost_trials = list(pool.map(trial, candidates))
