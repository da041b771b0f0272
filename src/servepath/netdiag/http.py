"""One HTTP request, timed phase by phase as ``curl -w`` and httpstat show it.

The phases come from httpx's request trace extension (httpcore's ``connection.connect_tcp``,
``connection.start_tls``, ``http11.send_request_headers`` ... events). httpcore resolves the
name inside its connect step, so a network backend resolves first, on its own clock, and then
connects to the address it found; the URL, the Host header and the TLS server name stay the
name. The pure part turns the recorded events into phases, parses ``Server-Timing`` and picks
the headers that tell the path.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from servepath.config import ProxyEnv
from servepath.errors import UsageError
from servepath.net.endpoints import host_port, is_ip_literal
from servepath.net.http_errors import HttpErrorClass, classify_http_error
from servepath.net.proxy import ProxyChoice, choose_proxy
from servepath.net.quoted import split_outside_quotes, unquote

__all__ = [
    "HttpHop",
    "HttpReport",
    "Phases",
    "ServerTimingEntry",
    "TraceEvent",
    "parse_server_timing",
    "path_headers",
    "phases_from_events",
    "probe_http",
    "probe_http_series",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
_PREVIEW_CHARS = 300

# Headers that say what the request passed through on its way (proxies, caches, load
# balancers, the app's own timing).
_PATH_HEADERS = (
    "server",
    "via",
    "x-cache",
    "x-cache-status",
    "x-cache-hits",
    "age",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-correlation-id",
    "server-timing",
    "x-served-by",
    "x-envoy-upstream-service-time",
    "cf-ray",
    "x-amz-cf-pop",
    "alt-svc",
    "location",
    "retry-after",
    "proxy-authenticate",
    "www-authenticate",
    "x-squid-error",
)


# --- Server-Timing -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerTimingEntry:
    name: str
    dur: float | None = None  # milliseconds
    desc: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dur": self.dur, "desc": self.desc}


def parse_server_timing(values: str | Iterable[str]) -> tuple[ServerTimingEntry, ...]:
    """Parse ``Server-Timing`` header values (W3C Server Timing) into entries.

    Several headers are one list. Unknown parameters are ignored; the first ``dur`` and the
    first ``desc`` of an entry count, as the specification says; a ``dur`` that is not a
    number is dropped rather than failing the whole header.
    """
    texts = [values] if isinstance(values, str) else list(values)
    entries: list[ServerTimingEntry] = []
    for text in texts:
        for metric in split_outside_quotes(text, ","):
            pieces = split_outside_quotes(metric, ";")
            name = pieces[0].strip()
            if not name or '"' in name or "=" in name:
                continue
            dur: float | None = None
            desc: str | None = None
            seen: set[str] = set()
            for param in pieces[1:]:
                key, sep, raw = param.partition("=")
                key = key.strip().lower()
                if key in seen or not key:
                    continue
                seen.add(key)
                if key == "dur" and sep:
                    try:
                        dur = float(unquote(raw))
                    except ValueError:
                        dur = None
                elif key == "desc" and sep:
                    desc = unquote(raw)
            entries.append(ServerTimingEntry(name, dur, desc))
    return tuple(entries)


def path_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The response headers that tell the path, in the order received."""
    return tuple(
        (k, v)
        for k, v in headers
        if (lk := k.lower()) in _PATH_HEADERS or lk.startswith("x-forwarded-")
    )


# --- phases --------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEvent:
    name: str  # httpcore's "connection.connect_tcp.started", or our "dns.started"
    at_ms: float  # since the request started


@dataclass(frozen=True)
class Phases:
    """How long each step of one request took, in milliseconds; None where it did not happen
    (a reused connection has no DNS, connect or TLS; plain HTTP has no TLS).

    The phases lie end to end on one clock, so they add up to ``total_ms`` exactly: each
    starts where the one before it ended, and a phase a failure interrupted runs to the
    failure. ``prepare_ms`` is the client's own work before its first packet (building the
    request, taking a connection from the pool); ``send_ms`` runs from the connection being
    ready to the last byte of the request written.
    """

    dns_ms: float | None = None
    connect_ms: float | None = None
    proxy_tunnel_ms: float | None = None  # CONNECT through a forward proxy
    tls_ms: float | None = None
    send_ms: float | None = None
    wait_ms: float | None = None  # request sent until the response headers arrived
    download_ms: float | None = None
    total_ms: float = 0.0
    reused_connection: bool = False
    prepare_ms: float | None = None

    def cumulative(self) -> dict[str, float]:
        """The same times as ``curl -w`` states them, each from the start of the request
        (``time_appconnect`` is 0 without TLS, as curl has it)."""

        def add(*values: float | None) -> float:
            return sum(v for v in values if v is not None)

        lookup = add(self.prepare_ms, self.dns_ms)
        connect = lookup + add(self.connect_ms)
        ready = connect + add(self.proxy_tunnel_ms, self.tls_ms)
        first_byte = ready + add(self.send_ms, self.wait_ms)
        return {
            "time_namelookup": round(lookup, 3),
            "time_connect": round(connect, 3),
            "time_appconnect": round(ready, 3) if self.tls_ms is not None else 0.0,
            "time_pretransfer": round(ready, 3),
            "time_starttransfer": round(first_byte, 3),
            "time_total": round(self.total_ms, 3),
        }

    @property
    def ttfb_ms(self) -> float | None:
        return self.cumulative()["time_starttransfer"] if self.wait_ms is not None else None

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "prepare_ms": r(self.prepare_ms),
            "dns_ms": r(self.dns_ms),
            "connect_ms": r(self.connect_ms),
            "proxy_tunnel_ms": r(self.proxy_tunnel_ms),
            "tls_ms": r(self.tls_ms),
            "send_ms": r(self.send_ms),
            "wait_ms": r(self.wait_ms),
            "download_ms": r(self.download_ms),
            "total_ms": r(self.total_ms),
            "ttfb_ms": r(self.ttfb_ms),
            "reused_connection": self.reused_connection,
            "cumulative": self.cumulative(),
        }


def _first(events: Sequence[TraceEvent], *names: str) -> float | None:
    """The time of the first event with one of ``names``."""
    return next((e.at_ms for e in events if e.name in names), None)


def _last(events: Sequence[TraceEvent], name: str) -> float | None:
    found = [e.at_ms for e in events if e.name == name]
    return found[-1] if found else None


_TCP_END = (
    "tcp.complete",
    "tcp.failed",
    "connection.connect_tcp.complete",
    "connection.connect_tcp.failed",
)


def phases_from_events(events: Sequence[TraceEvent], total_ms: float) -> Phases:
    """Phases from the trace of one request (pure: the recorded events in order, and the
    time the exchange ended, whether by the last byte of the body or by a failure)."""
    dns_start = _first(events, "dns.started")
    dns_end = _first(events, "dns.complete")
    # The resolving backend marks its own lookup and connect, tightly around the system
    # calls; httpcore's connect_tcp events (which wrap them) stand in without it.
    ours = any(e.name in ("dns.started", "tcp.started") for e in events)
    tcp_start = _first(events, "tcp.started" if ours else "connection.connect_tcp.started")
    tcp_end = _first(events, *_TCP_END)
    tunnel_end = _first(events, "proxy.start_tls.started")
    tls_start: float | None
    if tunnel_end is not None:
        tls_start = tunnel_end
        tls_end = _first(events, "proxy.start_tls.complete", "proxy.start_tls.failed")
    else:
        tls_start = _first(events, "connection.start_tls.started")
        tls_end = _first(events, "connection.start_tls.complete", "connection.start_tls.failed")
    send_start = _first(events, "http11.send_request_headers.started")
    body_sent = _last(events, "http11.send_request_body.complete")
    headers_in = _last(events, "http11.receive_response_headers.complete")
    body_in = _last(events, "http11.receive_response_body.complete")
    reused = tcp_start is None and send_start is not None

    # (name, whether it happened, the time it ended): in the order they happen.
    steps: list[tuple[str, bool, float | None]] = [
        ("dns", dns_start is not None, dns_end),
        ("connect", tcp_start is not None, tcp_end),
        ("proxy_tunnel", tunnel_end is not None, tunnel_end),
        ("tls", tls_start is not None, tls_end),
        ("send", send_start is not None, body_sent),
        ("wait", body_sent is not None, headers_in),
        ("download", headers_in is not None, body_in),
    ]
    first_packet = dns_start if dns_start is not None else tcp_start
    if first_packet is None:
        first_packet = send_start
    if first_packet is None:
        return Phases(total_ms=total_ms, prepare_ms=total_ms if events else None)
    times: dict[str, float | None] = {}
    clock = min(first_packet, total_ms)
    prepare = clock
    last_started: str | None = None
    for name, happened, end in steps:
        if not happened:
            times[name] = None
            continue
        if end is None or end > total_ms:
            end = total_ms
        times[name] = max(end - clock, 0.0)
        clock = max(end, clock)
        last_started = name
    if last_started is not None and clock < total_ms:
        # what is left (the end of reading the body, or the wait a failure ended) belongs
        # to the step that was under way
        times[last_started] = (times[last_started] or 0.0) + (total_ms - clock)
    return Phases(
        dns_ms=times["dns"],
        connect_ms=times["connect"],
        proxy_tunnel_ms=times["proxy_tunnel"],
        tls_ms=times["tls"],
        send_ms=times["send"],
        wait_ms=times["wait"],
        download_ms=times["download"],
        total_ms=total_ms,
        reused_connection=reused,
        prepare_ms=prepare,
    )


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpHop:
    """One request of the chain (the first, then one per redirect followed)."""

    method: str
    url: str
    proxy: ProxyChoice
    phases: Phases
    status: int | None = None
    reason: str = ""
    http_version: str | None = None
    resolved: tuple[str, ...] = ()  # what the connected-to name resolved to
    remote: str | None = None  # the address connected (or tried) to; the proxy's when proxied
    tls_version: str | None = None
    tls_cipher: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # the path-telling ones
    server_timing: tuple[ServerTimingEntry, ...] = ()
    location: str | None = None
    date: str | None = None  # the server's clock (a certificate's dates are judged by it too)
    body_bytes: int = 0
    body_preview: str | None = None  # the start of an error response's body
    error: HttpErrorClass | None = None
    # the body itself, when the caller asked to keep it (keep_body); not in the JSON
    body: bytes | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "proxy": self.proxy.to_json(),
            "resolved": list(self.resolved),
            "remote": self.remote,
            "tls_version": self.tls_version,
            "tls_cipher": self.tls_cipher,
            "phases": self.phases.to_json(),
            "headers": [[k, v] for k, v in self.headers],
            "server_timing": [e.to_json() for e in self.server_timing],
            "location": self.location,
            "date": self.date,
            "body_bytes": self.body_bytes,
            "body_preview": self.body_preview,
            "error": None if self.error is None else self.error._asdict(),
        }


@dataclass(frozen=True)
class HttpReport:
    url: str
    method: str
    hops: tuple[HttpHop, ...]
    followed: bool
    error: HttpErrorClass | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def final(self) -> HttpHop:
        return self.hops[-1]

    @property
    def status(self) -> int | None:
        return self.final.status if self.hops else None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 400

    @property
    def redirects(self) -> tuple[tuple[int, str, str], ...]:
        return tuple(
            (h.status, h.url, nxt.url)
            for h, nxt in zip(self.hops, self.hops[1:], strict=False)
            if h.status is not None
        )

    def to_json(self) -> dict[str, Any]:
        final = self.final if self.hops else None
        return {
            "url": self.url,
            "method": self.method,
            "ok": self.ok,
            "status": self.status,
            "final_url": final.url if final else None,
            "proxy": final.proxy.to_json() if final else None,
            "phases": final.phases.to_json() if final else None,
            "server_timing": [e.to_json() for e in final.server_timing] if final else [],
            "redirects": [{"status": s, "from": a, "to": b} for s, a, b in self.redirects],
            "hops": [h.to_json() for h in self.hops],
            "error": None if self.error is None else self.error._asdict(),
            "notes": list(self.notes),
        }


# --- the driver ------------------------------------------------------------------------


class _Recorder:
    """The trace callback of one request: every event with its time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.events: list[TraceEvent] = []
        self.resolved: tuple[str, ...] = ()
        self.attempted: str | None = None  # the address:port a connection was tried to

    def mark(self, name: str) -> None:
        self.events.append(TraceEvent(name, (time.perf_counter() - self.start) * 1000))

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.mark(name)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """getaddrinfo with a deadline (the C library has none of its own)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc
        done.set()

    threading.Thread(target=run, name="resolve", daemon=True).start()
    finished = done.wait(timeout)
    # Raised inside an except block so the original stays in __context__: httpcore's pool
    # re-raises with ``from None``, which drops __cause__ but not __context__.
    try:
        if not finished:
            raise socket.gaierror(socket.EAI_AGAIN, f"name resolution timed out after {timeout}s")
        if "error" in box:
            raise box["error"]
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    seen: dict[str, None] = {}
    for info in box["infos"]:
        seen[str(info[4][0])] = None
    return list(seen)


class _ResolvingBackend(httpcore.SyncBackend):
    """Resolves the name on the request's clock, then connects to the addresses it found."""

    def __init__(self, pins: Mapping[tuple[str, int], str] | None = None) -> None:
        self.recorder: _Recorder | None = None
        self.pins = {(h.lower(), p): a for (h, p), a in (pins or {}).items()}

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        recorder = self.recorder
        pinned = self.pins.get((host.lower(), port))
        if pinned is not None:  # --resolve NAME:PORT:ADDR, as curl has it
            addresses = [pinned]
        elif is_ip_literal(host.replace("%25", "%")):
            # a zone in a URL is written %25 (RFC 6874): fe80::1%25eth0 is fe80::1%eth0
            addresses = [host.strip("[]").replace("%25", "%")]
        else:
            if recorder:
                recorder.mark("dns.started")
            try:
                addresses = _resolve(host, port, timeout)
            finally:  # a failed lookup took its time too
                if recorder:
                    recorder.mark("dns.complete")
        if recorder:
            recorder.resolved = tuple(addresses)
            recorder.mark("tcp.started")
        failure: OSError | None = None
        for address in addresses:
            if recorder:
                recorder.attempted = host_port(address, port)
            try:
                sock = _connect_socket(address, port, timeout, local_address, socket_options)
            except OSError as exc:  # try the next address, as curl does
                failure = exc
                continue
            if recorder:
                recorder.mark("tcp.complete")
            return SyncStream(sock)
        if recorder:
            recorder.mark("tcp.failed")
        assert failure is not None
        # Raised inside an except block so the socket error stays in __context__ (httpcore's
        # pool re-raises with ``from None``), where the failure's kind is read from.
        try:
            raise failure
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc


def _connect_socket(
    address: str,
    port: int,
    timeout: float | None,
    local_address: str | None,
    socket_options: Iterable[Any] | None,
) -> socket.socket:
    """A connected TCP socket to an address (no name, so no lookup: the connect is timed
    alone, as curl times it)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    target: tuple[Any, ...] = (address, port)
    if family == socket.AF_INET6 and "%" in address:  # fe80::1%eth0: the zone is an index
        host, _, zone = address.partition("%")
        try:
            index = int(zone) if zone.isdigit() else socket.if_nametoindex(zone)
        except OSError as exc:
            raise OSError(
                errno.ENODEV, f"no network interface {zone!r} (the zone of {address})"
            ) from exc
        target = (host, port, 0, index)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_address is not None:
            sock.bind((local_address, 0))
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def _transport(
    proxy: str | None, verify: ssl.SSLContext | bool, backend: _ResolvingBackend
) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=verify, proxy=proxy, trust_env=False)
    # httpx builds its httpcore pool without a way to pass a network backend; the pool keeps
    # it in one attribute (httpcore 1.0), used for every connection it opens.
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpcore version does not keep _network_backend on its pool")
    pool._network_backend = backend
    return transport


def _tls_info(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None, None, None
    remote: str | None = None
    try:
        peer = stream.get_extra_info("server_addr")
        if peer:
            remote = host_port(str(peer[0]), peer[1])
    except OSError:
        pass
    ssl_object = stream.get_extra_info("ssl_object")
    if ssl_object is None:
        return remote, None, None
    cipher = ssl_object.cipher()
    return remote, ssl_object.version(), cipher[0] if cipher else None


def _hop(
    client: httpx.Client,
    request: httpx.Request,
    choice: ProxyChoice,
    backend: _ResolvingBackend,
    keep_body: int = 0,
) -> tuple[HttpHop, httpx.Response | None]:
    recorder = _Recorder()
    backend.recorder = recorder
    request.extensions["trace"] = recorder
    try:
        response = client.send(request, stream=True)
        try:
            remote, tls_version, tls_cipher = _tls_info(response)
            body = response.read()
            done_ms = recorder.elapsed_ms()
        finally:
            response.close()
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a bad Location header
        error = classify_http_error(exc, proxy=choice.proxy)
        phases = phases_from_events(recorder.events, recorder.elapsed_ms())
        log.debug("http %s %s failed: %s", request.method, request.url, error.message)
        hop = HttpHop(
            request.method,
            str(request.url),
            choice,
            phases,
            resolved=recorder.resolved,
            remote=recorder.attempted,
            error=error,
        )
        return hop, None
    finally:
        backend.recorder = None
    phases = phases_from_events(recorder.events, done_ms)
    status = response.status_code
    preview = None
    if status >= 400 and body:
        preview = body[: _PREVIEW_CHARS * 4].decode("utf-8", "replace")[:_PREVIEW_CHARS]
    hop = HttpHop(
        method=request.method,
        url=str(request.url),
        proxy=choice,
        phases=phases,
        status=status,
        reason=response.reason_phrase,
        http_version=response.http_version,
        resolved=recorder.resolved,
        remote=remote,
        tls_version=tls_version,
        tls_cipher=tls_cipher,
        headers=path_headers(response.headers.multi_items()),
        server_timing=parse_server_timing(response.headers.get_list("server-timing")),
        location=response.headers.get("location"),
        date=response.headers.get("date"),
        body_bytes=len(body),
        body_preview=preview,
        body=body[:keep_body] if keep_body else None,
    )
    return hop, response


def probe_http(
    url: str,
    *,
    method: str | None = None,
    content: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
    proxy_env: ProxyEnv | None = None,
    proxy: str | None = None,
    follow: bool = True,
    verify: bool = True,
    cafile: str | None = None,
    pins: Mapping[tuple[str, int], str] | None = None,
    keep_body: int = 0,
) -> HttpReport:
    """Send one request (and follow its redirects), timing each phase of each hop.

    The proxy of each hop is chosen by :func:`choose_proxy` from ``proxy_env`` and ``proxy``
    (the environment is never read here). ``verify=False`` skips certificate checks;
    ``cafile`` trusts that CA bundle instead of the system store. ``pins`` maps (name,
    port) to the address to dial instead of resolving the name (curl's ``--resolve``);
    ``keep_body`` keeps up to that many bytes of each response body on its hop.
    """
    env = proxy_env or ProxyEnv()
    notes: list[str] = []
    if "://" not in url:
        url = "http://" + url
        notes.append("no scheme given: http:// assumed, as curl does")
    method = (method or ("POST" if content is not None else "GET")).upper()
    contexts: list[ssl.SSLContext] = []

    def tls_context() -> ssl.SSLContext | bool:
        # read the trust store when TLS is first spoken: plain HTTP has no use for it
        if not verify:
            return False
        if not contexts:
            try:
                contexts.append(ssl.create_default_context(cafile=cafile))
            except (ssl.SSLError, OSError) as exc:
                raise UsageError(f"cannot load the CA bundle {cafile}: {exc}") from exc
        return contexts[0]

    backend = _ResolvingBackend(pins)
    clients: dict[tuple[str | None, bool], httpx.Client] = {}
    hops: list[HttpHop] = []
    try:
        request_url = url
        request: httpx.Request | None = None
        for _ in range(MAX_REDIRECTS + 1):
            choice = choose_proxy(request_url, env, proxy)
            tls = any(u.lower().startswith("https://") for u in (request_url, choice.proxy or ""))
            client = clients.get((choice.proxy, tls))
            if client is None:
                try:
                    transport = _transport(choice.proxy, tls_context() if tls else False, backend)
                except (ValueError, ImportError) as exc:  # an unsupported proxy scheme
                    raise UsageError(f"cannot use proxy {choice.proxy}: {exc}") from exc
                client = httpx.Client(
                    transport=transport,
                    timeout=timeout,
                    trust_env=False,
                    follow_redirects=False,
                )
                clients[(choice.proxy, tls)] = client
            if request is None:
                try:
                    request = client.build_request(
                        method, request_url, content=content, headers=list(headers)
                    )
                    if request.url.scheme not in ("http", "https"):
                        raise httpx.UnsupportedProtocol(
                            f"{request.url.scheme or 'no'} scheme in {url!r}: use http:// or "
                            "https://"
                        )
                except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                    error = classify_http_error(exc)
                    return HttpReport(url, method, (), follow, error, tuple(notes))
            hop, response = _hop(client, request, choice, backend, keep_body)
            hops.append(hop)
            if hop.error is not None:
                return HttpReport(url, method, tuple(hops), follow, hop.error, tuple(notes))
            assert response is not None
            next_request = response.next_request
            if not follow or next_request is None:
                break
            request = next_request
            request_url = str(next_request.url)
        else:
            notes.append(f"stopped after {MAX_REDIRECTS} redirects")
            error = HttpErrorClass("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
            return HttpReport(url, method, tuple(hops), follow, error, tuple(notes))
    finally:
        for c in clients.values():
            c.close()
    proxied = {h.proxy.proxy for h in hops if h.proxy.proxy}
    if proxied:
        notes.append(
            "through a forward proxy the proxy resolves and connects to the target; the DNS "
            "and connect phases here are those of the proxy itself"
        )
    if not follow and hops and hops[-1].location:
        notes.append(f"not following the redirect to {hops[-1].location} (--no-follow)")
    return HttpReport(url, method, tuple(hops), follow, None, tuple(notes))


def probe_http_series(
    url: str,
    *,
    count: int,
    deadline: float,
    method: str = "GET",
    content: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
    proxy_env: ProxyEnv | None = None,
    proxy: str | None = None,
    verify: bool = True,
    cafile: str | None = None,
    pins: Mapping[tuple[str, int], str] | None = None,
) -> tuple[HttpReport, ...]:
    """Send the same request up to ``count`` times, one after another over one client, so
    that each reuses the connection the one before left open (keep-alive) as a client's pool
    does. Redirects are not followed.

    :param deadline: a ``time.monotonic()`` after which no further request starts.
    Stops after the first request that got no answer in time: a second costs another timeout.
    """
    choice = choose_proxy(url, proxy_env or ProxyEnv(), proxy)
    tls = any(u.lower().startswith("https://") for u in (url, choice.proxy or ""))
    context: ssl.SSLContext | bool = False
    if tls and verify:
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"cannot load the CA bundle {cafile}: {exc}") from exc
    backend = _ResolvingBackend(pins)
    try:
        transport = _transport(choice.proxy, context, backend)
    except (ValueError, ImportError) as exc:
        raise UsageError(f"cannot use proxy {choice.proxy}: {exc}") from exc
    reports: list[HttpReport] = []
    with httpx.Client(
        transport=transport, timeout=timeout, trust_env=False, follow_redirects=False
    ) as client:
        for _ in range(count):
            if reports and time.monotonic() > deadline:
                break
            try:
                request = client.build_request(method, url, content=content, headers=list(headers))
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                reports.append(HttpReport(url, method, (), False, classify_http_error(exc)))
                break
            hop, _ = _hop(client, request, choice, backend)
            reports.append(HttpReport(url, method, (hop,), False, hop.error))
            if hop.error is not None and "timeout" in hop.error.kind:
                break
    return tuple(reports)
