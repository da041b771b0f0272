"""Traceroute without root: every TTL probed at once, ICMP errors read from the error queue.

Each probe is a socket of its own with a small ``IP_TTL``: a TCP connect to the service's port
(the default: it passes the firewalls that let the service through), a UDP datagram, or an
ICMP echo through a ping socket. The router where the TTL runs out answers with ICMP
time-exceeded, which ``IP_RECVERR`` queues on that very socket together with the router's
address, so no raw socket is needed. ICMP echo falls back to a raw socket when ping sockets
are not allowed (``net.ipv4.ping_group_range``) but the process may open raw sockets.

:class:`TraceMachine` decides which probes to send and when the trace is complete, and
:func:`interpret` turns what a socket reported into a hop; both are pure. :func:`trace` is
the driver that owns the sockets.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import selectors
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from servepath.errors import TraceError
from servepath.net.icmp import (
    ECHO_PAYLOAD,
    IcmpReport,
    echo_request,
    enable_recverr,
    enable_timestamps,
    read_errqueue,
    tcp_rtt_ms,
    timestamp_of,
)
from servepath.net.sockets import fd_budget, resolve_host, reverse_names, sockaddr_for

__all__ = [
    "DEFAULT_MAX_HOPS",
    "DEFAULT_QUERIES",
    "DEFAULT_TCP_PORT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_UDP_PORT",
    "Hop",
    "Probe",
    "ProbeEvent",
    "Reply",
    "Trace",
    "TraceError",
    "TraceMachine",
    "TraceMethod",
    "TraceProtocol",
    "interpret",
    "parse_raw_icmp",
    "trace",
]

TraceProtocol = Literal["tcp", "udp", "icmp"]
TraceMethod = Literal["tcp-connect", "udp", "icmp-dgram", "icmp-raw"]
ReplyKind = Literal["hop", "reached", "unreachable"]
TargetPortState = Literal["open", "closed", "rejected"]

DEFAULT_TCP_PORT = 80
DEFAULT_UDP_PORT = 33434  # traceroute's base port: nothing listens there
DEFAULT_MAX_HOPS = 30
DEFAULT_QUERIES = 3
DEFAULT_TIMEOUT = 2.0


# ---- pure part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    seq: int
    ttl: int
    query: int
    port: int | None


@dataclass(frozen=True)
class ProbeEvent:
    """What a probe's socket reported: the input of :func:`interpret`."""

    answered: bool = False  # TCP connected, UDP data, ICMP echo reply
    errno: int | None = None
    icmp: IcmpReport | None = None
    source: str | None = None  # who answered, when the answer was not an ICMP error
    rtt_ms: float | None = None  # from kernel timestamps, when the socket had them


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    address: str | None
    rtt_ms: float
    note: str | None = None
    port_state: TargetPortState | None = None


def interpret(
    protocol: TraceProtocol, target: str, event: ProbeEvent, rtt_ms: float
) -> Reply | None:
    """A hop, the target, or the end of the road; None when the event says nothing yet."""
    icmp = event.icmp
    if icmp is not None:
        if icmp.kind == "time-exceeded":
            return Reply("hop", icmp.offender, rtt_ms)
        if icmp.is_unreachable:
            if icmp.offender == target:
                if protocol == "udp" and icmp.kind == "port-unreachable":
                    # The normal end of a UDP trace: the target says nothing listens there.
                    return Reply("reached", target, rtt_ms, "port-unreachable", "closed")
                state: TargetPortState | None = "rejected" if protocol != "icmp" else None
                return Reply("reached", target, rtt_ms, icmp.kind, state)
            return Reply("unreachable", icmp.offender, rtt_ms, icmp.kind)
        return None  # MTU news and the like: the probe is still in flight
    if event.answered:
        if protocol == "tcp":
            return Reply("reached", event.source or target, rtt_ms, "open", "open")
        if protocol == "udp":
            return Reply("reached", event.source or target, rtt_ms, "answered", "open")
        return Reply("reached", event.source or target, rtt_ms, "echo-reply")
    if event.errno == errno.ECONNREFUSED and protocol == "tcp":
        return Reply("reached", target, rtt_ms, "closed", "closed")
    if event.errno is not None:
        return Reply("unreachable", None, rtt_ms, errno.errorcode.get(event.errno, "error"))
    return None


@dataclass
class _Slot:
    probe: Probe
    reply: Reply | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Hop:
    ttl: int
    address: str | None
    rtt_ms: tuple[float, ...]
    lost: int
    addresses: tuple[str, ...] = ()
    name: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "ttl": self.ttl,
            "address": self.address,
            "rtt_ms": list(self.rtt_ms),
            "name": self.name,
            "lost": self.lost,
            "addresses": list(self.addresses),
            "note": self.note,
        }


class TraceMachine:
    """Which probes to send, and when the trace is complete. No sockets, no clock.

    Probes go out TTL by TTL (all queries of a TTL together, so a router or the target that
    rate-limits its ICMP answers the nearest TTLs first), up to ``window`` in flight; by
    default all of them at once, so N hops cost one round of timeouts. Once the target (or a
    router saying "unreachable") answers at some TTL, nothing beyond it is sent and probes
    beyond it still in flight are abandoned.

    A silent hop need not cost a whole timeout: as traceroute does (``-w MAX,HERE,NEAR``),
    once a farther hop has answered in r ms, a probe still waiting is given up after
    ``near`` x r (``here`` x r for an answer from its own hop), but never before ``floor_ms``.
    """

    def __init__(
        self,
        *,
        max_hops: int = DEFAULT_MAX_HOPS,
        queries: int = DEFAULT_QUERIES,
        first_ttl: int = 1,
        port: int | None = None,
        vary_port: bool = False,
        window: int | None = None,
        here: float = 3.0,
        near: float = 10.0,
        floor_ms: float = 50.0,
    ) -> None:
        if not 1 <= first_ttl <= max_hops <= 255:
            raise ValueError("need 1 <= first_ttl <= max_hops <= 255")
        if not 1 <= queries <= 10:
            raise ValueError("queries must be 1 to 10")
        self.max_hops = max_hops
        self.queries = queries
        self.first_ttl = first_ttl
        self.window = window if window is not None else (max_hops - first_ttl + 1) * queries
        self.here = here
        self.near = near
        self.floor_ms = floor_ms
        if self.window < 1:
            raise ValueError("window must be at least 1")
        self._slots: dict[int, _Slot] = {}
        self._unsent: deque[Probe] = deque()
        self._in_flight: set[int] = set()
        self._abandon: list[int] = []
        self._end_ttl: int | None = None
        seq = 0
        for ttl in range(first_ttl, max_hops + 1):
            for query in range(queries):
                seq += 1
                probe_port = port
                if port is not None and vary_port:
                    probe_port = (port - 1 + seq - 1) % 65535 + 1
                probe = Probe(seq=seq, ttl=ttl, query=query, port=probe_port)
                self._slots[seq] = _Slot(probe)
                self._unsent.append(probe)

    @property
    def horizon(self) -> int:
        """The last TTL that matters: the target's (or the blocker's), else max_hops."""
        return self._end_ttl if self._end_ttl is not None else self.max_hops

    def next_probe(self) -> Probe | None:
        """The next probe to send now, or None (window full, or nothing left worth sending)."""
        if len(self._in_flight) >= self.window or not self._unsent:
            return None
        probe = self._unsent[0]
        if probe.ttl > self.horizon:
            self._unsent.clear()
            return None
        self._unsent.popleft()
        self._in_flight.add(probe.seq)
        return probe

    def on_reply(self, seq: int, reply: Reply) -> None:
        slot = self._slots[seq]
        if seq not in self._in_flight:
            return  # abandoned or already settled
        self._in_flight.discard(seq)
        slot.reply = reply
        if reply.kind in ("reached", "unreachable"):
            ttl = slot.probe.ttl
            if self._end_ttl is None or ttl < self._end_ttl:
                self._end_ttl = ttl
                for other in sorted(self._in_flight):
                    if self._slots[other].probe.ttl > ttl:
                        self._in_flight.discard(other)
                        self._abandon.append(other)

    def on_timeout(self, seq: int) -> None:
        if seq in self._in_flight:
            self._in_flight.discard(seq)
            self._slots[seq].timed_out = True

    def patience_ms(self, seq: int) -> float | None:
        """How long after sending probe ``seq`` it is worth waiting, given the answers so far;
        None when nothing shortens the caller's full timeout."""
        ttl = self._slots[seq].probe.ttl
        limits: list[float] = []
        same = [s.reply.rtt_ms for s in self._slots.values() if s.reply and s.probe.ttl == ttl]
        farther = [s.reply.rtt_ms for s in self._slots.values() if s.reply and s.probe.ttl > ttl]
        if same and self.here > 0:
            limits.append(self.here * max(same))
        if farther and self.near > 0:
            limits.append(self.near * max(farther))
        if not limits:
            return None
        return max(self.floor_ms, min(limits))

    def abandoned(self) -> list[int]:
        """Probes in flight that no longer matter; the driver closes their sockets."""
        found, self._abandon = self._abandon, []
        return found

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._in_flight)

    @property
    def done(self) -> bool:
        horizon = self.horizon
        if any(self._slots[s].probe.ttl <= horizon for s in self._in_flight):
            return False
        return not any(p.ttl <= horizon for p in self._unsent)

    @property
    def reached(self) -> bool:
        end = self._end_ttl
        return end is not None and any(
            s.reply is not None and s.reply.kind == "reached" and s.probe.ttl == end
            for s in self._slots.values()
        )

    def final_reply(self) -> Reply | None:
        """The reply that ended the trace (target or blocker), if any."""
        if self._end_ttl is None:
            return None
        for slot in self._slots.values():
            reply = slot.reply
            if slot.probe.ttl == self._end_ttl and reply is not None and reply.kind != "hop":
                return reply
        return None

    def hops(self) -> list[Hop]:
        by_ttl: dict[int, list[_Slot]] = {}
        for slot in self._slots.values():
            if slot.probe.ttl <= self.horizon:
                by_ttl.setdefault(slot.probe.ttl, []).append(slot)
        hops: list[Hop] = []
        for ttl in sorted(by_ttl):
            slots = sorted(by_ttl[ttl], key=lambda s: s.probe.query)
            replies = [s.reply for s in slots if s.reply is not None]
            addresses: list[str] = []
            for r in replies:
                if r.address is not None and r.address not in addresses:
                    addresses.append(r.address)
            notes = [r.note for r in replies if r.kind != "hop" and r.note]
            hops.append(
                Hop(
                    ttl=ttl,
                    address=addresses[0] if addresses else None,
                    rtt_ms=tuple(r.rtt_ms for r in replies),
                    lost=sum(1 for s in slots if s.reply is None),
                    addresses=tuple(addresses),
                    note=notes[0] if notes else None,
                )
            )
        return hops


@dataclass(frozen=True)
class Trace:
    target: str
    address: str
    port: int | None
    protocol: TraceProtocol
    method: TraceMethod
    reached: bool
    hops: tuple[Hop, ...]
    detail: str
    port_state: TargetPortState | None = None
    elapsed_s: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    max_hops: int = DEFAULT_MAX_HOPS
    queries: int = DEFAULT_QUERIES

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "method": self.method,
            "reached": self.reached,
            "port_state": self.port_state,
            "detail": self.detail,
            "hops": [h.to_json() for h in self.hops],
            "elapsed_s": self.elapsed_s,
            "timeout": self.timeout,
            "max_hops": self.max_hops,
            "queries": self.queries,
        }


def describe_end(
    machine: TraceMachine, target: str, protocol: TraceProtocol, port: int | None
) -> str:
    final = machine.final_reply()
    where = f"{target} port {port}" if port is not None and protocol == "tcp" else target
    hops = f"{machine.horizon} hop{'s' if machine.horizon != 1 else ''}"
    if final is None:
        return (
            f"{where} not reached within {machine.max_hops} hops: probes beyond the last "
            "answering hop were dropped silently (a firewall DROP, or the host is down)"
        )
    if final.kind == "unreachable":
        who = final.address or "this machine"
        return f"stopped at hop {machine.horizon}: {who} answered {final.note} for {target}"
    if final.port_state == "open":
        return f"reached {where} in {hops}: the port accepted the connection"
    if final.port_state == "closed" and protocol == "tcp":
        return f"reached {target} in {hops}: port {port} is closed (reset)"
    if final.port_state == "rejected":
        return (
            f"reached {target} in {hops}, but it rejects port {port} "
            f"({final.note}: a firewall rule on the target)"
        )
    return f"reached {target} in {hops}"


def parse_raw_icmp(
    packet: bytes, source: str, family: int, ident: int
) -> tuple[int, ProbeEvent] | None:
    """Match a packet read from a raw ICMP socket to one of our echo probes (ident, seq).

    IPv4 raw sockets hand over the IP header; IPv6 ones start at the ICMPv6 header.
    """
    if family == socket.AF_INET:
        if len(packet) < 20:
            return None
        icmp = packet[(packet[0] & 0x0F) * 4 :]
        echo_request, echo_reply, unreach, exceeded = 8, 0, 3, 11
        origin: Literal["icmp", "icmp6"] = "icmp"
    else:
        icmp = packet
        echo_request, echo_reply, unreach, exceeded = 128, 129, 1, 3
        origin = "icmp6"
    if len(icmp) < 8:
        return None
    icmp_type, code = icmp[0], icmp[1]
    if icmp_type == echo_reply:
        got_ident, seq = struct.unpack_from("!HH", icmp, 4)
        if got_ident != ident:
            return None
        return seq, ProbeEvent(answered=True, source=source)
    if icmp_type not in (unreach, exceeded):
        return None
    inner = icmp[8:]
    if family == socket.AF_INET:
        if len(inner) < 20 or inner[9] != socket.IPPROTO_ICMP:
            return None
        quoted = inner[(inner[0] & 0x0F) * 4 :]
    else:
        if len(inner) < 40 or inner[6] != socket.IPPROTO_ICMPV6:
            return None
        quoted = inner[40:]
    if len(quoted) < 8 or quoted[0] != echo_request:
        return None
    got_ident, seq = struct.unpack_from("!HH", quoted, 4)
    if got_ident != ident:
        return None
    error = IcmpReport(origin=origin, type=icmp_type, code=code, errno=0, offender=source)
    return seq, ProbeEvent(icmp=error)


# ---- I/O ----------------------------------------------------------------------------------


class _Transport(Protocol):
    method: TraceMethod

    def send(self, probe: Probe) -> None: ...

    def events(self, key: selectors.SelectorKey) -> list[tuple[int, ProbeEvent]]: ...

    def discard(self, seq: int) -> None: ...

    def close(self) -> None: ...


def _set_ttl(sock: socket.socket, ttl: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def _local_failure(target: str, exc: OSError) -> TraceError:
    code = exc.errno
    if code in (errno.EPERM, errno.EACCES):
        return TraceError(f"a firewall rule on this machine blocks probes to {target}: {exc}")
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return TraceError(f"this machine has no route to {target}: {exc}")
    return TraceError(f"cannot send a probe to {target}: {exc}")


class _SocketPerProbe:
    """One socket per probe (TCP, UDP, ping socket): the kernel matches every answer for us."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        method: TraceMethod,
        address: str,
    ) -> None:
        self.selector = selector
        self.method = method
        self.address = address
        self.family, _ = sockaddr_for(address, 0)
        self.sockets: dict[int, socket.socket] = {}
        self.sent_wall: dict[int, float] = {}

    def _new_socket(self) -> socket.socket:
        if self.method == "tcp-connect":
            return socket.socket(self.family, socket.SOCK_STREAM)
        if self.method == "udp":
            return socket.socket(self.family, socket.SOCK_DGRAM)
        proto = socket.IPPROTO_ICMP if self.family == socket.AF_INET else socket.IPPROTO_ICMPV6
        return socket.socket(self.family, socket.SOCK_DGRAM, proto)

    def send(self, probe: Probe) -> None:
        sock = self._new_socket()
        try:
            sock.setblocking(False)
            enable_recverr(sock)
            enable_timestamps(sock)
            _set_ttl(sock, probe.ttl)
            _, sockaddr = sockaddr_for(self.address, probe.port or 0)
            self.sent_wall[probe.seq] = time.time()
            if self.method == "tcp-connect":
                code = sock.connect_ex(sockaddr)
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, os.strerror(code))
                self.selector.register(sock, selectors.EVENT_WRITE, probe.seq)
            elif self.method == "udp":
                sock.connect(sockaddr)
                sock.send(ECHO_PAYLOAD)
                self.selector.register(sock, selectors.EVENT_READ, probe.seq)
            else:
                # The kernel puts the socket's own identifier in the echo request.
                sock.sendto(echo_request(self.family, 0, probe.seq), sockaddr)
                self.selector.register(sock, selectors.EVENT_READ, probe.seq)
        except OSError as exc:
            sock.close()
            raise _local_failure(self.address, exc) from exc
        self.sockets[probe.seq] = sock

    def events(self, key: selectors.SelectorKey) -> list[tuple[int, ProbeEvent]]:
        seq: int = key.data
        sock = self.sockets.get(seq)
        if sock is None:
            return []
        queued = read_errqueue(sock)
        if queued:
            rtt = self._rtt(seq, queued[0].received_at)
            return [(seq, ProbeEvent(icmp=queued[0], rtt_ms=rtt))]
        if self.method == "tcp-connect":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            rtt = tcp_rtt_ms(sock) if code == 0 else None
            return [(seq, ProbeEvent(answered=code == 0, errno=code or None, rtt_ms=rtt))]
        try:
            data, ancdata, _flags, peer = sock.recvmsg(2048, 256)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            return [(seq, ProbeEvent(errno=exc.errno))]
        if self.method == "icmp-dgram":
            reply_type = 0 if self.family == socket.AF_INET else 129
            if not data or data[0] != reply_type:
                return []
        rtt = self._rtt(seq, timestamp_of(ancdata))
        return [(seq, ProbeEvent(answered=True, source=str(peer[0]), rtt_ms=rtt))]

    def _rtt(self, seq: int, received_at: float | None) -> float | None:
        sent = self.sent_wall.get(seq)
        if received_at is None or sent is None:
            return None
        return max(0.0, (received_at - sent) * 1000)

    def discard(self, seq: int) -> None:
        sock = self.sockets.pop(seq, None)
        self.sent_wall.pop(seq, None)
        if sock is None:
            return
        self.selector.unregister(sock)
        if self.method == "tcp-connect":
            # Reset rather than close politely: a probe that got through is no real client.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def close(self) -> None:
        for seq in list(self.sockets):
            self.discard(seq)


class _RawIcmp:
    """ICMP echo over one raw socket (needs CAP_NET_RAW); answers matched by ident and seq."""

    method: TraceMethod = "icmp-raw"

    def __init__(self, selector: selectors.BaseSelector, address: str) -> None:
        self.selector = selector
        self.address = address
        self.family, self.sockaddr = sockaddr_for(address, 0)
        proto = socket.IPPROTO_ICMP if self.family == socket.AF_INET else socket.IPPROTO_ICMPV6
        self.sock = socket.socket(self.family, socket.SOCK_RAW, proto)
        self.sock.setblocking(False)
        enable_timestamps(self.sock)
        self.ident = os.getpid() & 0xFFFF
        self.sent_wall: dict[int, float] = {}
        selector.register(self.sock, selectors.EVENT_READ, None)

    def send(self, probe: Probe) -> None:
        _set_ttl(self.sock, probe.ttl)
        self.sent_wall[probe.seq] = time.time()
        try:
            self.sock.sendto(echo_request(self.family, self.ident, probe.seq), self.sockaddr)
        except OSError as exc:
            raise _local_failure(self.address, exc) from exc

    def events(self, key: selectors.SelectorKey) -> list[tuple[int, ProbeEvent]]:
        found: list[tuple[int, ProbeEvent]] = []
        for _ in range(256):
            try:
                packet, ancdata, _flags, peer = self.sock.recvmsg(4096, 256)
            except (BlockingIOError, InterruptedError):
                break
            matched = parse_raw_icmp(packet, str(peer[0]), self.family, self.ident)
            if matched is None:
                continue
            seq, event = matched
            stamp, sent = timestamp_of(ancdata), self.sent_wall.get(seq)
            if stamp is not None and sent is not None:
                event = dataclasses.replace(event, rtt_ms=max(0.0, (stamp - sent) * 1000))
            found.append((seq, event))
        return found

    def discard(self, seq: int) -> None:
        return None

    def close(self) -> None:
        self.selector.unregister(self.sock)
        self.sock.close()


def _open_transport(
    protocol: TraceProtocol, selector: selectors.BaseSelector, address: str
) -> _Transport:
    if protocol == "tcp":
        return _SocketPerProbe(selector, "tcp-connect", address)
    if protocol == "udp":
        return _SocketPerProbe(selector, "udp", address)
    family, _ = sockaddr_for(address, 0)
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        socket.socket(family, socket.SOCK_DGRAM, proto).close()
    except PermissionError:
        pass  # ping sockets are not allowed for this group; try a raw socket
    else:
        return _SocketPerProbe(selector, "icmp-dgram", address)
    try:
        return _RawIcmp(selector, address)
    except PermissionError:
        raise TraceError(
            "ICMP echo needs ping sockets (sysctl net.ipv4.ping_group_range must include "
            f"group {os.getgid()}) or a raw socket (root or CAP_NET_RAW); "
            "use --protocol tcp or udp instead"
        ) from None


def _run(
    machine: TraceMachine,
    transport: _Transport,
    selector: selectors.BaseSelector,
    protocol: TraceProtocol,
    address: str,
    timeout: float,
) -> None:
    sent_at: dict[int, float] = {}

    def handle(ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _mask in ready:
            for seq, event in transport.events(key):
                if seq not in sent_at or seq not in machine.in_flight:
                    continue
                measured = event.rtt_ms
                if measured is None:
                    measured = (time.monotonic() - sent_at[seq]) * 1000
                reply = interpret(protocol, address, event, round(measured, 3))
                if reply is None:
                    continue
                machine.on_reply(seq, reply)
                transport.discard(seq)
                del sent_at[seq]

    # A bound on the whole run, whatever the replies do: one timeout per window of probes.
    rounds = -(-machine.max_hops * machine.queries // machine.window)
    give_up = time.monotonic() + timeout * (rounds + 1)
    while not machine.done and time.monotonic() < give_up:
        while (probe := machine.next_probe()) is not None:
            transport.send(probe)
            sent_at[probe.seq] = time.monotonic()
            # Answers are taken as they come, so the sending of later probes does not
            # inflate the round trips of earlier ones.
            handle(selector.select(0))
        for seq in machine.abandoned():
            transport.discard(seq)
            sent_at.pop(seq, None)
        if machine.done:
            break
        deadlines = [_deadline(machine, seq, sent, timeout) for seq, sent in sent_at.items()]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.0
        handle(selector.select(wait))
        now = time.monotonic()
        expired = [s for s, t in sent_at.items() if now >= _deadline(machine, s, t, timeout)]
        for seq in expired:
            machine.on_timeout(seq)
            transport.discard(seq)
            del sent_at[seq]


def _deadline(machine: TraceMachine, seq: int, sent: float, timeout: float) -> float:
    patience = machine.patience_ms(seq)
    if patience is None:
        return sent + timeout
    return sent + min(timeout, patience / 1000)


def trace(
    host: str,
    *,
    protocol: TraceProtocol = "tcp",
    port: int | None = None,
    max_hops: int = DEFAULT_MAX_HOPS,
    queries: int = DEFAULT_QUERIES,
    timeout: float = DEFAULT_TIMEOUT,
    resolve_names: bool = True,
    family: int = socket.AF_UNSPEC,
    window: int | None = None,
) -> Trace:
    """Trace the path to ``host`` (a name or an IP literal).

    ``port``: the TCP port (default 80) or, for UDP, a fixed destination port (default:
    33434 upwards, one per probe, as traceroute does). ICMP has no port.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    address = resolve_host(host, family)[0]
    if protocol == "tcp":
        probe_port: int | None = port if port is not None else DEFAULT_TCP_PORT
        vary = False
    elif protocol == "udp":
        probe_port = port if port is not None else DEFAULT_UDP_PORT
        vary = port is None
    else:
        probe_port, vary = None, False
    if window is None:
        # Every probe at once, as long as the file-descriptor limit allows a socket each.
        window = min(max_hops * queries, fd_budget())
    machine = TraceMachine(
        max_hops=max_hops, queries=queries, port=probe_port, vary_port=vary, window=window
    )
    started = time.perf_counter()
    with selectors.DefaultSelector() as selector:
        transport = _open_transport(protocol, selector, address)
        try:
            _run(machine, transport, selector, protocol, address, timeout)
        finally:
            transport.close()
    hops = machine.hops()
    if resolve_names:
        names = reverse_names([h.address for h in hops if h.address], timeout)
        hops = [_named(h, names) for h in hops]
    final = machine.final_reply()
    return Trace(
        target=host,
        address=address,
        port=probe_port,
        protocol=protocol,
        method=transport.method,
        reached=machine.reached,
        hops=tuple(hops),
        detail=describe_end(machine, address, protocol, probe_port),
        port_state=final.port_state if final is not None and machine.reached else None,
        elapsed_s=round(time.perf_counter() - started, 3),
        timeout=timeout,
        max_hops=max_hops,
        queries=queries,
    )


def _named(hop: Hop, names: dict[str, str]) -> Hop:
    if hop.address is None or hop.address not in names:
        return hop
    return Hop(
        ttl=hop.ttl,
        address=hop.address,
        rtt_ms=hop.rtt_ms,
        lost=hop.lost,
        addresses=hop.addresses,
        name=names[hop.address],
        note=hop.note,
    )
