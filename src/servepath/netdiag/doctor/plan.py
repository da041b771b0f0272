"""What the doctor will do: direct or through the forward proxy, which ports beside the
asked one, TLS or plain, which name goes in the Host header and which address is dialled —
decided before any packet is sent — and then, from what the probes saw so far, the next
probe to run (:func:`next_step`): the follow-ups such as the AAAA query, a protocol sniff,
the names tried on a web server's default site, the predict route and example from the
server's OpenAPI document, and the large request that looks for an MTU black hole.

Pure: the environment comes in as values (:class:`~servepath.config.ProxyEnv`), the OpenAPI
document as a mapping, the probes' results as :class:`~servepath.netdiag.doctor.evidence.
Observations`; :mod:`~servepath.netdiag.doctor.observe` runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import orjson

from servepath.config import ProxyEnv
from servepath.contract import (
    DEFAULT_HEALTH_ROUTE,
    OPENAPI_ROUTE,
    ServerContract,
    batch_limit,
    instances_of,
    is_servepath_spec,
    request_example,
)
from servepath.errors import UsageError
from servepath.net.endpoints import host_port, is_ip_literal, parse_host_port, url_host
from servepath.net.proxy import ProxyChoice, choose_proxy
from servepath.netdiag.dns import DnsReport, Nameserver
from servepath.netdiag.doctor.evidence import untrusted_only
from servepath.netdiag.doctor.signs import from_servepath, looks_like_web_server
from servepath.netdiag.doctor.steps import (
    METHOD_CHANGING_REDIRECTS,
    METHOD_KEEPING_REDIRECTS,
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
from servepath.netdiag.http import HttpReport
from servepath.netdiag.quality import assess, settle_port
from servepath.netdiag.tls import TlsReport

if TYPE_CHECKING:
    from servepath.netdiag.doctor.evidence import Observations

__all__ = [
    "LARGE_REQUEST_BYTES",
    "NEIGHBOUR_PORTS",
    "AppPlan",
    "DialEvery",
    "DoctorOptions",
    "DoctorUsageError",
    "FindServices",
    "HttpStep",
    "LocateMtuHop",
    "LookInside",
    "NarrowMtu",
    "Pin",
    "Plan",
    "PlanApp",
    "ProbeTls",
    "Repeat",
    "Resolve",
    "ResolveProxy",
    "Sniff",
    "Step",
    "Target",
    "Transport",
    "TryNames",
    "answers_tls",
    "asked_port_open",
    "candidate_names",
    "chosen_address",
    "chosen_addresses",
    "is_redirect",
    "large_wait",
    "make_plan",
    "next_step",
    "parse_pin",
    "parse_url",
    "path_lossy",
    "plan_app",
    "raw_request",
    "serves_someone_else",
]

#: Ports this field's services usually listen on; probed beside the URL's own.
NEIGHBOUR_PORTS = (80, 443, 8080, 8000, 8443)
#: The large request: tens of KB, dozens of full-size packets, far past any path MTU.
LARGE_REQUEST_BYTES = 48_000
#: How often the repetition sends each request by default, and the time it may take.
DEFAULT_REPEAT = 10
#: The request the MTU narrowing repeats at each segment size: a few packets at the largest.
NARROWING_REQUEST_BYTES = 4_000


class DoctorUsageError(UsageError):
    """The URL or an option cannot be used."""


@dataclass(frozen=True)
class Pin:
    """``--resolve NAME:PORT:ADDR``, as curl has it: dial ADDR for NAME on PORT, no DNS."""

    name: str
    port: int
    address: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "address": self.address}


def parse_pin(text: str) -> Pin:
    name, sep, rest = text.partition(":")
    port_text, sep2, address = rest.partition(":")
    if not (sep and sep2 and name and port_text and address):
        raise DoctorUsageError(f"--resolve {text!r}: write it as NAME:PORT:ADDRESS, as curl does")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise DoctorUsageError(f"--resolve {text!r}: port {port_text!r} is not 1-65535")
    address = address.strip("[]")
    if not is_ip_literal(address):
        raise DoctorUsageError(f"--resolve {text!r}: {address!r} is not an IP address")
    return Pin(name.lower(), int(port_text), address)


@dataclass(frozen=True)
class DoctorOptions:
    proxy_env: ProxyEnv = field(default_factory=ProxyEnv)
    proxy: str | None = None
    resolvers: tuple[Nameserver, ...] = ()
    data: bytes | None = None
    cafile: str | None = None
    #: Look past an untrusted certificate (curl's -k): the TLS stage warns, HTTP goes on.
    insecure: bool = False
    #: Sent as ``Authorization: Bearer`` to the target (never to a forward proxy's page).
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 2.0  # per network probe (DNS, connect, trace hop, the large request)
    http_timeout: float = 10.0
    slow_ms: float = 1000.0
    neighbours: tuple[int, ...] = NEIGHBOUR_PORTS
    max_hops: int = 16
    resolv_conf: Path = Path("/etc/resolv.conf")
    pins: tuple[Pin, ...] = ()
    host_header: str | None = None
    large_bytes: int = LARGE_REQUEST_BYTES  # 0: do not send the large request
    #: Each request repeated this often (half over fresh connections, half over one reused
    #: one) to see a failure that comes and goes; 0: off.
    repeat: int = DEFAULT_REPEAT


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written, without brackets
    port: int
    path: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{host_port(self.host, self.port)}"

    @property
    def host_endpoint(self) -> str:
        return host_port(self.host, self.port)


def parse_url(url: str) -> Target:
    """An http(s) URL with a host; a bare ``host[:port][/path]`` is taken as http://, as
    curl does."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DoctorUsageError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DoctorUsageError(f"{url!r} has an invalid port: {exc}") from None
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(text, parts.scheme, parts.hostname, port, path)


@dataclass(frozen=True)
class Plan:
    target: Target
    proxy: ProxyChoice
    pinned: str | None  # the address to dial without asking DNS (a literal, or --resolve)
    pin: Pin | None
    neighbours: tuple[int, ...]  # probed beside the asked port (none through a proxy)
    tls: bool
    host_header: str | None  # sent instead of the URL's host
    # the rest of what the user asked (timeouts, trust, data, key): the probes' settings
    options: DoctorOptions = field(default_factory=lambda: DoctorOptions())

    @property
    def direct(self) -> bool:
        return self.proxy.proxy is None

    @property
    def name_in_host_header(self) -> str:
        return self.host_header or self.target.host

    def headers(self) -> list[tuple[str, str]]:
        if self.host_header is None:
            return []
        return [("host", host_port(self.host_header, self.target.port))]

    def proxy_endpoint(self) -> tuple[str, int] | None:
        if self.proxy.proxy is None:
            return None
        try:
            host, port = parse_host_port(self.proxy.proxy, allow_url=True)
        except UsageError:
            return None
        return host, port or 80


def make_plan(url: str, options: DoctorOptions) -> Plan:
    target = parse_url(url)
    pin = next(
        (p for p in options.pins if p.name == target.host.lower() and p.port == target.port),
        None,
    )
    for p in options.pins:
        if pin is None and p.name == target.host.lower():
            raise DoctorUsageError(
                f"--resolve {p.name}:{p.port}:{p.address} does not apply: the URL's port is "
                f"{target.port}"
            )
    pinned = pin.address if pin else (target.host if is_ip_literal(target.host) else None)
    proxy = choose_proxy(target.url, options.proxy_env, options.proxy)
    neighbours = (
        tuple(p for p in options.neighbours if p != target.port) if proxy.proxy is None else ()
    )
    return Plan(
        target=target,
        proxy=proxy,
        pinned=pinned,
        pin=pin,
        neighbours=neighbours,
        tls=target.scheme == "https",
        host_header=options.host_header,
        options=options,
    )


@dataclass(frozen=True)
class AppPlan:
    """The requests of the app stage, from the server's own contract."""

    contract: ServerContract
    servepath: bool  # the OpenAPI document is servepath's
    route: str
    payload: bytes | None
    payload_source: str
    large: bytes | None = None  # the large request's body
    large_instances: int = 0
    narrowing: bytes | None = None  # the MTU narrowing's (smaller) body
    health_route: str = DEFAULT_HEALTH_ROUTE
    echo_route: str | None = None
    large_off: bool = False  # --large-kb 0


def plan_app(
    target: Target,
    spec: dict[str, Any] | None,
    data: bytes | None,
    *,
    large_bytes: int = LARGE_REQUEST_BYTES,
) -> AppPlan:
    contract = ServerContract.from_spec(spec)
    route = contract.route_for(target.path.split("?", 1)[0])
    if target.path not in ("", "/") and "?" in target.path:
        route = target.path
    payload, source = data, "--data"
    instances: list[dict[str, Any]] | None = None
    if data is not None:
        try:
            instances = instances_of(orjson.loads(data))
        except orjson.JSONDecodeError:
            instances = None
    else:
        example = request_example(spec, route)
        if example.body is not None:
            payload, source = orjson.dumps(example.body), "the server's OpenAPI example"
            instances = example.instances
    large = narrowing = None
    count = 0
    servepath = is_servepath_spec(spec)
    # Only a server known to take the Vertex form gets the batch; another API might answer a
    # body it does not understand with an error that says nothing about the path.
    if servepath and instances and large_bytes > 0:
        limit = batch_limit(spec)
        large, count = _batch(instances[0], large_bytes, limit)
        narrowing, _ = _batch(instances[0], NARROWING_REQUEST_BYTES, limit)
    return AppPlan(
        contract=contract,
        servepath=servepath,
        route=route,
        payload=payload,
        payload_source=source,
        large=large,
        large_instances=count,
        narrowing=narrowing,
        health_route=contract.health_route,
        echo_route=contract.path_echo_route,
        large_off=large_bytes <= 0,
    )


def _batch(instance: dict[str, Any], target_bytes: int, limit: int) -> tuple[bytes, int]:
    one = len(orjson.dumps(instance)) + 1
    count = max(1, min(limit, -(-target_bytes // one)))
    return orjson.dumps({"instances": [instance] * count}), count


# --- the next probe, from what was seen so far ------------------------------------------------
#
# observe() asks next_step() for a probe, runs it, records what it saw and the step's kind in
# ``obs.done``, and asks again until the answer is None. Each rule below is guarded by
# ``done``, so the rules read top to bottom in the order the probes run, and a rule whose
# facts a later probe cannot change is never asked twice.


def next_step(obs: Observations) -> Step | None:
    """The next probe the doctor runs, given what it has seen so far; None: the walk is over."""
    return _locate(obs) or _reach(obs) or _ask_http(obs)


def _locate(obs: Observations) -> Step | None:
    plan, done = obs.plan, obs.done
    if plan.pinned is None:
        if "dns A" not in done:
            return Resolve(plan.target.host, "A")
        if "dns AAAA" not in done:  # both families: many callers try IPv6 first
            return Resolve(plan.target.host, "AAAA")
    if obs.address is not None and "address" not in done:
        return InspectAddress(obs.address)
    return None


def _reach(obs: Observations) -> Step | None:
    plan, done = obs.plan, obs.done
    proxy_at = plan.proxy_endpoint()
    if proxy_at is not None and "proxy address" not in done:
        return ResolveProxy(*proxy_at)
    target = obs.probe_target if proxy_at is not None else None
    if proxy_at is None and obs.address is not None:
        target = (obs.address, plan.target.port)
    if target is not None and "transport" not in done:
        return Transport(target[0], target[1], (target[1], *plan.neighbours))
    others = tuple(a for a in obs.name_addresses if a != obs.address)
    if plan.direct and obs.ports is not None and others and "every address" not in done:
        return DialEvery(others, plan.target.port)
    reachable = asked_port_open(obs)
    if obs.own_address and plan.direct and "containers" not in done:
        return LookInside(plan.target.port, reachable)
    if plan.direct and obs.ports is not None and not reachable and "other services" not in done:
        candidates = tuple(
            r.port for r in obs.ports.results if r.port != plan.target.port and r.state == "open"
        )
        if candidates and obs.address is not None:
            return FindServices(obs.address, candidates)
    return None


def _ask_http(obs: Observations) -> Step | None:
    plan = obs.plan
    if not (asked_port_open(obs) or not plan.direct):
        return None
    if plan.tls and plan.direct:
        step = _tls_first(obs)
        if step is not None or not _tls_lets_http_through(obs):
            return step
    health = obs.health
    if health is None:
        return HttpStep("health", plan.target.origin + "/")
    if plan.direct and health.error is not None and health.error.kind in ("protocol", "reset"):
        return _what_speaks_there(obs)
    if health.error is not None or health.status is None:
        return None
    if path_lossy(obs):
        # the transport names the loss, and the health request shows the service answers
        # through it; every further request would only wait out more retransmissions
        return None
    return _ask_app(obs)


def _tls_first(obs: Observations) -> Step | None:
    target = obs.plan.target
    if obs.tls is None:
        address = obs.address or target.host
        return ProbeTls(address, target.port, target.host, obs.plan.options.cafile)
    tls = obs.tls
    silent = tls.protocol is None and tls.certificate is None and tls.failure
    if (tls.failure == "handshake_failed" or silent) and "sniff" not in obs.done:
        return _sniff(obs)
    dated = {tls.failure, *tls.problems} & {"expired", "not_yet_valid"}
    if dated and tls.protocol is not None and "clock" not in obs.done:
        # whose clock is wrong: this machine's, or the certificate's dates
        return HttpStep("clock", target.origin + "/", follow=False, keep_body=0, unverified=True)
    return None


def _tls_lets_http_through(obs: Observations) -> bool:
    # every https request would fail as the handshake did (or hang on another protocol),
    # unless --insecure looks past a certificate that is only untrusted
    tls = obs.tls
    assert tls is not None
    return tls.ok or (obs.plan.options.insecure and untrusted_only(tls))


def _what_speaks_there(obs: Observations) -> Step | None:
    """The health request failed below HTTP: TLS on a plain port, or another protocol."""
    target = obs.plan.target
    if target.scheme == "http":
        if "tls on plain" not in obs.done:
            address = obs.address or target.host
            return ProbeTls(address, target.port, target.host, None, on_plain=True)
        if obs.tls_on_plain is not None:
            return None
    return _sniff(obs) if "sniff" not in obs.done else None


def _sniff(obs: Observations) -> Step | None:
    if obs.address is None:
        return None
    return Sniff(obs.address, obs.plan.target.port, obs.host)


def _ask_app(obs: Observations) -> Step | None:
    plan, done = obs.plan, obs.done
    origin = plan.target.origin
    health = obs.health
    assert health is not None
    if "openapi" not in done:
        return HttpStep("openapi", origin + OPENAPI_ROUTE)
    app = obs.app_plan
    if app is None:
        options = plan.options
        return PlanApp(
            plan_app(plan.target, obs.spec, options.data, large_bytes=options.large_bytes)
        )
    moved_health = app.health_route != "/" and app.contract.documented
    if (
        health.status == 404
        and from_servepath(health)
        and moved_health
        and "health route" not in done
    ):  # a server with AIP_HEALTH_ROUTE: its health is elsewhere
        return HttpStep("health route", origin + app.health_route)
    if serves_someone_else(health) and "names after health" not in done:
        names = _try_names(obs, "health")
        if names is not None:
            return names
    if app.payload is not None:
        step = _predict(obs, app)
        if step is not None:
            return step
    else:
        step = _repeat(obs, app)
        if step is not None:
            return step
    if app.echo_route is not None and app.servepath and "echo" not in done:
        return HttpStep("echo", origin + app.echo_route)
    return None


def _try_names(obs: Observations, after: Literal["health", "predict"]) -> TryNames | None:
    if obs.address is None or not obs.plan.direct:
        return None
    target = obs.plan.target
    url = f"{target.scheme}://{url_host(obs.address)}:{target.port}/"
    return TryNames(url, target.port, after)


def _predict(obs: Observations, app: AppPlan) -> Step | None:
    """The example prediction, then (when it passed) the large request and its narrowing."""
    plan, done = obs.plan, obs.done
    url = plan.target.origin + app.route
    if obs.app is None:
        return HttpStep("predict", url, "POST", app.payload, follow=False, keep_body=64_000)
    if serves_someone_else(obs.app) and not obs.vhost_trials and "names after predict" not in done:
        names = _try_names(obs, "predict")
        if names is not None:
            return names
    if is_redirect(obs.app):
        # as a client that follows would: the chain names the target, a loop, another host
        if "redirect" not in done:
            return HttpStep("redirect", url, "POST", app.payload, keep_body=4096)
        return None
    step = _repeat(obs, app)
    if step is not None:
        return step
    if not obs.app.ok or app.large is None:
        return None
    if obs.large is None:
        wait = large_wait(obs)
        return HttpStep("large", url, "POST", app.large, follow=False, timeout=wait, keep_body=0)
    return _narrow(obs, app)


def _repeat(obs: Observations, app: AppPlan) -> Repeat | None:
    """The health request, the prediction (or the OpenAPI document, when its fetch failed)
    again and again: one bad replica of two, or a keep-alive race, fails 1 in N."""
    plan = obs.plan
    count = plan.options.repeat
    if count <= 0 or "repeat" in obs.done:
        return None
    origin = plan.target.origin
    health_url = obs.health.url if obs.health is not None else origin + "/"
    requests = [HttpStep("health", health_url, follow=False)]
    if app.payload is not None and obs.app is not None:
        requests.append(HttpStep("predict", origin + app.route, "POST", app.payload, False))
    elif obs.spec_refused is not None and obs.spec_refused.status != 401:
        requests.append(HttpStep("openapi", origin + OPENAPI_ROUTE, follow=False))
    return Repeat(tuple(requests), count)


def _narrow(obs: Observations, app: AppPlan) -> Step | None:
    """After a large request that stalled where the small one passed: where packets die."""
    plan, done = obs.plan, obs.done
    assert obs.large is not None
    error = obs.large.error
    stalled = error is not None and error.kind in ("read_timeout", "write_timeout")
    # the narrowing speaks HTTP/1.1 on its own sockets, straight to the address: over TLS on
    # an https:// URL (nothing on a TLS port answers plain HTTP)
    narrowable = plan.direct and obs.address is not None
    if not stalled or not narrowable or app.narrowing is None or obs.address is None:
        return None
    if "mtu narrowing" not in done:
        request = raw_request(plan, app.route, app.narrowing)
        tls_name = plan.target.host if plan.tls else None
        return NarrowMtu(obs.address, plan.target.port, request, large_wait(obs), tls_name)
    mtu = obs.mtu
    if mtu is None or mtu.largest_passing_mss is None or mtu.smallest_stalling_mss is None:
        return None
    if "mtu hop" in done:
        return None
    header = 60 if ":" in obs.address else 40  # IPv6's header, else IPv4's with TCP's
    return LocateMtuHop(obs.address, mtu.smallest_stalling_mss + header)


# --- the pure parts of the probes' follow-ups -------------------------------------------------


def chosen_address(report: DnsReport) -> str | None:
    """The address a client would dial, by source: RFC 6761, getaddrinfo, resolv.conf, named."""
    for source in ("rfc6761", "getaddrinfo", "resolv.conf", "named"):
        for answer in report.answers:
            if answer.source == source and answer.outcome == "ok" and answer.values:
                return answer.values[0]
    return None


def chosen_addresses(report: DnsReport) -> tuple[str, ...]:
    """Every address of the answer a client would use (the source :func:`chosen_address`
    picks): a client may dial any of them."""
    first = chosen_address(report)
    for answer in report.answers:
        if answer.outcome == "ok" and answer.values and answer.values[0] == first:
            return tuple(answer.values)
    return ()


def asked_port_open(obs: Observations) -> bool:
    """The port scan found the asked port (or the forward proxy's) open."""
    if obs.ports is None or obs.probe_target is None:
        return False
    port = obs.probe_target[1]
    # a lost SYN is not a filter: the burst's answers count (netdiag/quality.py)
    return any(
        r.port == port and settle_port(r, obs.burst).state == "open" for r in obs.ports.results
    )


def path_lossy(obs: Observations) -> bool:
    """The burst lost enough of its first tries to matter (netdiag/quality.py)."""
    quality = assess(obs.trace, obs.burst)
    return quality is not None and quality.lossy


def answers_tls(report: TlsReport) -> bool:
    """The port answered a TLS handshake far enough to name a protocol or a certificate."""
    return report.protocol is not None or report.certificate is not None


def is_redirect(report: HttpReport) -> bool:
    """The answer is a redirect that names where to go."""
    return (
        report.error is None
        and report.status in (*METHOD_CHANGING_REDIRECTS, *METHOD_KEEPING_REDIRECTS)
        and bool(report.final.location)
    )


def serves_someone_else(report: HttpReport) -> bool:
    """A web server that is not servepath answered with its default site's refusal."""
    return (
        report.error is None
        and report.status is not None
        and report.status in (400, 403, 404, 405, 421)
        and not from_servepath(report)
        and looks_like_web_server(report)
    )


def candidate_names(obs: Observations, reverse: list[str]) -> list[tuple[str, str]]:
    """Names that may select the service's site on this address, and where each came from.

    :param reverse: the names reverse DNS gave for the address.
    """
    names: list[tuple[str, str]] = []
    target = obs.plan.target
    if obs.plan.host_header and not is_ip_literal(target.host):
        names.append((target.host, "the URL"))  # --host-header replaced the URL's name
    if obs.tls is not None and obs.tls.certificate is not None:
        for name in obs.tls.certificate.dns_names:
            if not name.startswith("*."):
                names.append((name, "the certificate"))
    names.extend((name.rstrip("."), "reverse DNS") for name in reverse)
    asked = (obs.plan.host_header or target.host).lower()
    seen: dict[str, str] = {}
    for name, source in names:
        if name.lower() != asked and name.lower() not in seen:
            seen[name.lower()] = source
    return list(seen.items())[:4]


def large_wait(obs: Observations) -> float:
    """How long the large request may take: long enough for the model to answer a batch (ten
    times the lone request), short enough that a stall costs about one probe timeout."""
    options = obs.plan.options
    small_s = obs.app.final.phases.total_ms / 1000 if obs.app and obs.app.hops else 0.0
    return min(options.http_timeout, max(options.timeout, 10 * small_s))


def raw_request(plan: Plan, route: str, body: bytes) -> bytes:
    """The MTU narrowing's request, as bytes for a raw socket."""
    host = plan.headers()[0][1] if plan.host_header else plan.target.host_endpoint
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        "User-Agent: servepath-doctor (mtu)\r\n\r\n"
    )
    return head.encode("latin-1") + body
