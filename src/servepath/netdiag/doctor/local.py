"""`servepath doctor --local PORT`: the server's side of the path, run on the VM or in the
container. Is anything listening on PORT, on which addresses, which process, inside a
container or not, which host ports map to it, what the kernel says (the connection-tracking
table, the firewall against Docker's published ports, the port's accept queue: counters
sampled twice, a short window apart), does the local health route answer, and does the server
keep idle connections longer than the proxy in front of it, when that proxy is known?

The proxy in front is known from where the doctor runs, which is where the server runs: Vertex
AI's variables (``AIP_*``) mean Google's front ends, which keep idle connections to the container
600 s; Kubernetes (``KUBERNETES_SERVICE_HOST``) means an ingress controller, taken to be
ingress-nginx with its default ``upstream-keepalive-timeout`` of 60 s (the controller's own
setting cannot be read from a pod). Anywhere else nothing is assumed: an nginx, ALB or Envoy
in front is configured where the doctor cannot see it. The server's own idle timeout is what
its health document says."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from servepath.net import conntrack, firewall, kernel
from servepath.net.container import detect_container
from servepath.net.endpoints import host_port
from servepath.net.listeners import PortListenReport, inspect_port
from servepath.netdiag.doctor.causes import Cause
from servepath.netdiag.doctor.kernel_stages import (
    KernelReadings,
    KernelSample,
    StageVerdict,
    accept_queue_stage,
    conntrack_stage,
    firewall_stage,
)
from servepath.netdiag.doctor.report import DoctorReport, Stage, StageStatus, Verdict
from servepath.netdiag.http import probe_http
from servepath.traffic import header_for

#: The window over which the kernel's counters are compared: long enough to see a queue
#: that overflows under load, short enough that a healthy run stays well under two seconds.
KERNEL_WINDOW_S = 0.5
#: How far back the kernel's log of a full conntrack table counts.
LOG_HORIZON_S = 300.0


@dataclass(frozen=True)
class ProxyInFront:
    """The proxy that reuses idle connections to the server, as far as the doctor can tell."""

    name: str
    #: How long it keeps an idle connection to the server for its next request, seconds.
    idle_timeout_s: float
    #: How the doctor knows.
    known_from: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "idle_timeout_s": self.idle_timeout_s,
            "known_from": self.known_from,
        }


def proxy_in_front(*, on_vertex: bool, in_kubernetes: bool) -> ProxyInFront | None:
    """The proxy in front of a server on this machine, from its deploy target; None: unknown."""
    if on_vertex:
        return ProxyInFront(
            "Google's front ends (Vertex AI)", 600.0, "AIP_* variables: a Vertex AI container"
        )
    if in_kubernetes:
        return ProxyInFront(
            "ingress-nginx",
            60.0,
            "KUBERNETES_SERVICE_HOST: a pod; ingress-nginx's default upstream-keepalive-timeout",
        )
    return None


def server_keepalive(body: bytes | None) -> float | None:
    """The idle timeout a servepath health document states; None when it states none."""
    try:
        value = orjson.loads(body or b"").get("keepalive_timeout_s")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _health_url(report: PortListenReport, port: int) -> str:
    addresses = report.bind_addresses
    for address in addresses:
        if address in ("0.0.0.0", "::", "127.0.0.1", "::1"):
            return f"http://{'[::1]' if address in ('::', '::1') else '127.0.0.1'}:{port}/"
    return f"http://{host_port(addresses[0], port)}/"


def _loopback_fix(listen: PortListenReport, port: int, in_container: bool) -> dict[str, Any]:
    """Who holds the loopback-only port decides the fix: Docker's publisher (docker run
    -p 127.0.0.1:PORT:...) is fixed by the publish address, a server by its --host."""
    published = bool(listen.listeners) and all(x.forwarder for x in listen.listeners)
    if published:
        mapping = next((m for m in listen.mappings if m.covers(port)), None)
        return {
            "publish": True,
            "container_port": mapping.target_port if mapping is not None else 8080,
            "reach": "reachable from this machine only, not from other hosts",
        }
    reach = (
        "reachable from inside this container only, not through a published port"
        if in_container
        else "reachable from this machine only, not from other hosts"
    )
    return {"serve_fix": True, "reach": reach}


def diagnose_local(
    port: int,
    listen: PortListenReport,
    in_container: dict[str, Any],
    health: tuple[int | None, str],
    elapsed_s: float,
    kernel: KernelReadings | None = None,
    *,
    keepalive_s: float | None = None,
    front: ProxyInFront | None = None,
    strict: bool = False,
) -> DoctorReport:
    """Stages and verdict from what was read locally: no I/O.

    :param kernel: what the kernel said; None leaves its stages out.
    :param keepalive_s: the server's idle timeout, as its health document says it.
    :param front: the proxy in front, when it is known (:func:`proxy_in_front`).
    :param strict: raise when an explanation needs a fact the run lacks (the tests).
    """
    verdict = Verdict()

    def judged(found: StageVerdict) -> None:
        stage, cause, ctx = found
        if cause is not None and stage.status == "warn":
            verdict.add_warning(stage, cause, **ctx)
        else:
            verdict.add(stage, cause, **ctx)

    def add(
        name: str,
        state: StageStatus,
        summary: str,
        data: dict[str, Any] | None = None,
        cause: Cause | None = None,
        **ctx: Any,
    ) -> None:
        verdict.add(Stage(name, state, summary, data or {}), cause, **ctx)

    base: dict[str, Any] = {"port": port, "url": f"local:{port}"}
    data = listen.to_json()
    if not listen.listening:
        add("listening", "fail", f"nothing listens on tcp port {port}", data, "not_listening")
    else:
        add("listening", "ok", f"tcp port {port}: {', '.join(listen.processes) or '?'}", data)
    if listen.listening:
        bound = ", ".join(listen.bind_addresses)
        if listen.loopback_only:
            add(
                "bind",
                "fail",
                f"bound to {bound} only: unreachable from other hosts",
                data,
                "bound_to_loopback",
                bound=bound,
                process=", ".join(listen.processes) or "the process",
                **_loopback_fix(listen, port, bool(in_container.get("in_container"))),
            )
        else:
            add("bind", "ok", f"bound to {bound}", data)
    else:
        add("bind", "skip", "nothing bound")
    runtime = in_container.get("runtime")
    where = f"in a container ({runtime})" if in_container.get("in_container") else "on the host"
    add("container", "ok", f"this machine runs {where}", in_container)
    mappings = [m for m in listen.mappings if m.target_port == port or m.covers(port)]
    if mappings:
        add(
            "mapping",
            "ok",
            "; ".join(m.describe() for m in mappings),
            {"mappings": [m.to_json() for m in mappings]},
        )
    else:
        note = listen.forwarder or "no docker-proxy or NAT rule maps another port here"
        add("mapping", "skip", note)
    if kernel is not None:
        # in the order a caller's packet meets them: conntrack (PREROUTING), the filter,
        # then the listening socket
        judged(conntrack_stage(port, kernel, bool(in_container.get("in_container"))))
        judged(firewall_stage(port, kernel))
        if listen.listening:
            process = ", ".join(listen.processes) or "the process"
            judged(accept_queue_stage(port, kernel, process))
        else:
            add("accept queue", "skip", "nothing listens")
    status, detail = health
    if not listen.listening:
        add("health", "skip", "nothing to ask")
    elif status == 200:
        add("health", "ok", detail)
    else:
        add(
            "health",
            "fail",
            detail,
            None,
            "http_error",
            who=", ".join(listen.processes) or "the process on the port",
            status=status or "no answer",
            route="/",
            detail=detail,
            no_request_id=True,
        )
    name, state, summary, facts = keepalive_stage(keepalive_s, front)
    add(name, state, summary, facts)
    return verdict.report(f"local:{port}", base, elapsed_s, strict=strict)


def sample_kernel() -> KernelSample:
    """The namespace's counters now: accept-queue overflows and conntrack events."""
    return KernelSample(time.monotonic(), kernel.listen_counters(), conntrack.conntrack_stats())


def _deepest(
    first: list[kernel.ListenQueue] | None, second: list[kernel.ListenQueue] | None
) -> tuple[kernel.ListenQueue, ...] | None:
    """Each socket's fuller reading of the two (a queue drains between reads)."""
    if first is None and second is None:
        return None
    best: dict[int, kernel.ListenQueue] = {}
    for q in (first or []) + (second or []):
        key = q.inode or hash((q.address, q.port))
        if key not in best or q.queued > best[key].queued:
            best[key] = q
    return tuple(best.values())


def read_kernel(
    port: int,
    listen: PortListenReport,
    before: KernelSample,
    queues: list[kernel.ListenQueue] | None,
) -> KernelReadings:
    """The rest of what the kernel says, read at the window's end."""
    rules, note = firewall.read_rules()
    input_verdict = firewall.input_verdict(rules, port) if rules is not None else None
    bypasses = (
        tuple(firewall.published_past_firewall(rules, listen.mappings, port)) if rules else ()
    )
    log = conntrack.kernel_log()
    logged = None
    if log is not None:
        since = time.monotonic_ns() // 1000 - int(LOG_HORIZON_S * 1e6)
        logged = conntrack.table_full_logged(log, since)
    wait = KERNEL_WINDOW_S - (time.monotonic() - before.at)
    if wait > 0:
        time.sleep(wait)  # the window the counters' deltas are taken over
    after = sample_kernel()
    return KernelReadings(
        before=before,
        after=after,
        queues=_deepest(queues, kernel.listen_queues(port)),
        somaxconn=kernel.somaxconn(),
        table=conntrack.conntrack_table(),
        table_full_logged=logged,
        log_horizon_s=LOG_HORIZON_S,
        input=input_verdict,
        bypasses=bypasses,
        firewall_note=note,
    )


def keepalive_stage(
    keepalive_s: float | None, front: ProxyInFront | None
) -> tuple[str, StageStatus, str, dict[str, Any]]:
    """Whether the server keeps idle connections longer than the proxy in front (a warning
    when not: the cause of rare 502s the server never logs)."""
    data: dict[str, Any] = {
        "server_idle_timeout_s": keepalive_s,
        "proxy": front.to_json() if front is not None else None,
    }
    if front is None:
        return "keep-alive", "skip", "the proxy in front is not known here", data
    if keepalive_s is None:
        return "keep-alive", "skip", "the server did not say its idle timeout", data
    if keepalive_s <= front.idle_timeout_s:
        return (
            "keep-alive",
            "warn",
            f"the server closes idle connections after {keepalive_s:g} s, before "
            f"{front.name} ({front.idle_timeout_s:g} s): a request it sends on a connection "
            "the server is closing fails with a 502 the server never logs; serve with "
            f"--keepalive-timeout {front.idle_timeout_s + 15:g}",
            data,
        )
    return (
        "keep-alive",
        "ok",
        f"the server keeps idle connections {keepalive_s:g} s, longer than {front.name} "
        f"({front.idle_timeout_s:g} s)",
        data,
    )


def run_local_doctor(
    port: int, *, timeout: float = 2.0, front: ProxyInFront | None = None
) -> DoctorReport:
    started = time.perf_counter()
    before = sample_kernel()
    queues = kernel.listen_queues(port)
    listen = inspect_port(port, udp=False)
    health: tuple[int | None, str] = (None, "not asked")
    keepalive_s = None
    if listen.listening:
        url = _health_url(listen, port)
        report = probe_http(
            url, timeout=timeout, headers=list(header_for("doctor").items()), keep_body=65536
        )
        if report.error is None and report.status is not None:
            health = (report.status, f"GET {url} -> {report.status}")
            keepalive_s = server_keepalive(report.final.body)
        else:
            health = (None, f"GET {url} failed: {report.error.message if report.error else '?'}")
    readings = read_kernel(port, listen, before, queues)
    return diagnose_local(
        port,
        listen,
        detect_container().to_json(),
        health,
        time.perf_counter() - started,
        readings,
        keepalive_s=keepalive_s,
        front=front,
    )
