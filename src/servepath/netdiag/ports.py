"""Port probe: open, closed, filtered or unreachable, and who said so.

``connect()`` alone cannot tell a firewall's REJECT from a closed port: iptables' default
REJECT answers a TCP SYN with ICMP port-unreachable, which the kernel reports as
``ECONNREFUSED``, exactly like the reset of a port with nothing behind it. With
``IP_RECVERR`` the socket also keeps the ICMP error and the address of the node that sent it
(the *offender*), which is what :func:`classify_attempt` reads. Ports are probed concurrently,
so a thousand dropped ports cost about one timeout.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from servepath.net.addresses import AddressInfo, classify_address
from servepath.net.icmp import (
    IcmpReport,
    enable_recverr,
    enable_timestamps,
    read_errqueue,
    tcp_rtt_ms,
)
from servepath.net.sockets import fd_budget, resolve_host, sockaddr_for
from servepath.netdiag.services import PortRange, port_range, service_name

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "ConnectAttempt",
    "PortResult",
    "PortScan",
    "PortState",
    "Verdict",
    "classify_attempt",
    "scan_ports",
    "scan_ports_async",
]

PortState = Literal["open", "closed", "filtered", "unreachable"]
Outcome = Literal["connected", "error", "timeout"]

DEFAULT_TIMEOUT = 1.0
#: Ports in flight at once. Enough for 1,000 ports in one round of timeouts; it is lowered
#: to what the process's file-descriptor limit allows.
DEFAULT_CONCURRENCY = 1024
_FD_RESERVE = 64


# ---- pure part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectAttempt:
    """What the socket said about one connect: the classifier's whole input."""

    outcome: Outcome
    target: str
    timeout: float
    errno: int | None = None
    icmp: IcmpReport | None = None
    source: str | None = None  # our own address on that path, to spot locally made errors


@dataclass(frozen=True)
class Verdict:
    state: PortState
    offender: str | None
    detail: str


def _where(icmp: IcmpReport, target: str, source: str | None) -> str:
    if icmp.offender is None:
        return "from an unknown sender"
    if icmp.offender == target:
        return f"from the target {target} itself"
    if source is not None and icmp.offender == source:
        return "from this machine"
    return f"from {icmp.offender}, a router or firewall before the target"


def _icmp_detail(icmp: IcmpReport, target: str, source: str | None) -> str:
    where = _where(icmp, target, source)
    at_target = icmp.offender == target
    local = source is not None and icmp.offender == source
    numbers = f"(ICMP type {icmp.type} code {icmp.code})"
    kind = icmp.kind
    if kind == "port-unreachable":
        return (
            f"port unreachable {numbers} {where}: a firewall rule REJECTs this port "
            "(iptables' default REJECT); a closed TCP port answers with a reset, not with this"
        )
    if kind == "admin-prohibited":
        return f"administratively prohibited {numbers} {where}: a firewall rule rejects it"
    if kind == "host-unreachable":
        if local:
            return (
                f"host unreachable {numbers} {where}: no neighbour (ARP/NDP) answer for the "
                "target on the local link; the host is down or the address is unused"
            )
        if at_target:
            return f"host unreachable {numbers} {where}: a firewall rule on the target rejects it"
        return (
            f"host unreachable {numbers} {where}: it cannot deliver to the target (host down "
            "or absent from its link), or a rule there rejects with icmp-host-unreachable"
        )
    if kind == "net-unreachable":
        return f"network unreachable {numbers} {where}: no route onward to the target's network"
    if kind == "protocol-unreachable":
        return f"protocol unreachable {numbers} {where}: TCP is refused there (a firewall rule)"
    if kind == "time-exceeded":
        return f"TTL exceeded in transit {numbers} {where}: a routing loop on the path"
    if kind == "source-route-failed":
        return f"source route failed {numbers} {where}"
    return f"ICMP error {numbers} {where}"


def classify_attempt(attempt: ConnectAttempt) -> Verdict:
    """The state of a port from one connect attempt: no I/O, every case named."""
    icmp = attempt.icmp
    if attempt.outcome == "connected":
        return Verdict("open", None, "accepted the connection: something listens on it")
    if icmp is not None and (icmp.is_unreachable or icmp.kind == "time-exceeded"):
        detail = _icmp_detail(icmp, attempt.target, attempt.source)
        return Verdict("unreachable", icmp.offender, detail)
    if attempt.outcome == "timeout" or attempt.errno == errno.ETIMEDOUT:
        return Verdict(
            "filtered",
            None,
            f"no answer within {attempt.timeout:g}s: a firewall drops the packets silently, "
            "or the host is down",
        )
    code = attempt.errno
    if code == errno.ECONNREFUSED:
        return Verdict(
            "closed",
            None,
            "refused with a TCP reset: the host is up and nothing listens on this port "
            "(a firewall rule rejecting with tcp-reset looks the same)",
        )
    if code in (errno.EPERM, errno.EACCES):
        return Verdict(
            "filtered",
            None,
            "blocked on this machine before it left: a local firewall rule (OUTPUT chain)",
        )
    if code == errno.ENETUNREACH:
        return Verdict(
            "unreachable",
            None,
            f"this machine has no route to {attempt.target}'s network (its routing table)",
        )
    if code == errno.EHOSTUNREACH:
        return Verdict("unreachable", None, f"this machine has no route to {attempt.target}")
    name = errno.errorcode.get(code, str(code)) if code is not None else "unknown"
    reason = os.strerror(code) if code is not None else "unknown error"
    return Verdict("unreachable", None, f"connect failed: {reason} ({name})")


@dataclass(frozen=True)
class PortResult:
    port: int
    state: PortState
    rtt_ms: float | None
    offender: str | None
    detail: str
    service: str | None
    range: PortRange
    icmp: IcmpReport | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "port": self.port,
            "state": self.state,
            "rtt_ms": self.rtt_ms,
            "offender": self.offender,
            "detail": self.detail,
            "service": self.service,
            "range": self.range,
            "icmp": self.icmp.to_json() if self.icmp is not None else None,
        }


@dataclass(frozen=True)
class PortScan:
    """Every asked port of one address, in the order asked."""

    host: str
    address: str
    target: AddressInfo
    timeout: float
    elapsed_s: float
    results: tuple[PortResult, ...]
    other_addresses: tuple[str, ...] = ()

    @property
    def all_open(self) -> bool:
        return all(r.state == "open" for r in self.results)

    def to_json(self) -> list[dict[str, object]]:
        """A list of ports (DESIGN.md); each names the host, address and its class."""
        target = self.target.to_json()
        return [
            {**r.to_json(), "host": self.host, "address": self.address, "target": target}
            for r in self.results
        ]


def result_for(port: int, attempt: ConnectAttempt, rtt_ms: float | None) -> PortResult:
    verdict = classify_attempt(attempt)
    return PortResult(
        port=port,
        state=verdict.state,
        # A timeout has no round trip; neither has an error this machine made up.
        rtt_ms=rtt_ms if attempt.outcome != "timeout" else None,
        offender=verdict.offender,
        detail=verdict.detail,
        service=service_name(port),
        range=port_range(port),
        icmp=attempt.icmp,
    )


# ---- I/O ----------------------------------------------------------------------------------


def _local_address(sock: socket.socket) -> str | None:
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return str(name[0]) if name and name[0] not in ("0.0.0.0", "::") else None


async def _attempt(address: str, port: int, timeout: float) -> tuple[ConnectAttempt, float]:
    loop = asyncio.get_running_loop()
    family, sockaddr = sockaddr_for(address, port)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        enable_recverr(sock)
        enable_timestamps(sock)
        started, sent_wall = time.perf_counter(), time.time()
        code: int | None = sock.connect_ex(sockaddr)
        source = _local_address(sock)
        outcome: Outcome
        if code == errno.EINPROGRESS:
            ready: asyncio.Future[None] = loop.create_future()

            def writable() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_writer(sock.fileno(), writable)
            try:
                await asyncio.wait_for(ready, timeout)
            except TimeoutError:
                code = None
            finally:
                loop.remove_writer(sock.fileno())
            if code is not None:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        # The kernel's own times where it has them: with a thousand sockets in flight, when
        # this loop gets round to a socket says little about when its answer came.
        measured: float | None = (time.perf_counter() - started) * 1000
        if code is None:
            outcome = "timeout"
        elif code == 0:
            outcome = "connected"
            measured = tcp_rtt_ms(sock) or measured
        else:
            outcome = "error"
        queued = read_errqueue(sock)
        if queued and queued[0].received_at is not None:
            measured = max(0.0, (queued[0].received_at - sent_wall) * 1000)
        rtt_ms = round(measured, 3) if measured is not None else 0.0
    attempt = ConnectAttempt(
        outcome=outcome,
        target=address,
        timeout=timeout,
        errno=code or None,
        icmp=queued[0] if queued else None,
        source=source,
    )
    return attempt, rtt_ms


async def probe_ports_async(
    address: str,
    ports: Sequence[int],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[PortResult]:
    """Probe ``ports`` of one IP address concurrently; results in the order of ``ports``."""
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    limit = asyncio.Semaphore(max(1, min(concurrency, fd_budget(DEFAULT_CONCURRENCY))))

    async def one(port: int) -> PortResult:
        async with limit:
            attempt, rtt_ms = await _attempt(address, port, timeout)
        return result_for(port, attempt, rtt_ms)

    return list(await asyncio.gather(*(one(p) for p in ports)))


async def scan_ports_async(
    host: str,
    ports: Sequence[int],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    family: int = socket.AF_UNSPEC,
) -> PortScan:
    """Resolve ``host`` and probe ``ports`` on its first address."""
    # Resolved in this thread on purpose: the system resolver must see this thread's network
    # namespace and /etc, which an executor thread may not share.
    addresses = resolve_host(host, family)
    started = time.perf_counter()
    results = await probe_ports_async(addresses[0], ports, timeout=timeout, concurrency=concurrency)
    return PortScan(
        host=host,
        address=addresses[0],
        target=classify_address(addresses[0]),
        timeout=timeout,
        elapsed_s=round(time.perf_counter() - started, 3),
        results=tuple(results),
        other_addresses=tuple(addresses[1:]),
    )


def scan_ports(
    host: str,
    ports: Sequence[int],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    family: int = socket.AF_UNSPEC,
) -> PortScan:
    """Blocking form of :func:`scan_ports_async`."""
    return asyncio.run(
        scan_ports_async(host, ports, timeout=timeout, concurrency=concurrency, family=family)
    )
