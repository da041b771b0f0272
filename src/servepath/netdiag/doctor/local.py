"""`servepath doctor --local PORT`: the server's side of the path, run on the VM or in the
container. Is anything listening on PORT, on which addresses, which process, inside a
container or not, which host ports map to it, what the kernel says (the connection-tracking
table, the firewall against Docker's published ports, the port's accept queue: counters
sampled twice, a short window apart) and does the local health route answer?"""

from __future__ import annotations

import time
from typing import Any

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
    strict: bool = False,
) -> DoctorReport:
    """Stages and verdict from what was read locally: no I/O.

    :param kernel: what the kernel said; None leaves its stages out.
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


def run_local_doctor(port: int, *, timeout: float = 2.0) -> DoctorReport:
    started = time.perf_counter()
    before = sample_kernel()
    queues = kernel.listen_queues(port)
    listen = inspect_port(port, udp=False)
    health: tuple[int | None, str] = (None, "not asked")
    if listen.listening:
        url = _health_url(listen, port)
        report = probe_http(url, timeout=timeout, headers=list(header_for("doctor").items()))
        if report.error is None and report.status is not None:
            health = (report.status, f"GET {url} -> {report.status}")
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
    )
