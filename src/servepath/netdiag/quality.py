"""The path's quality, as mtr reads it: how many packets it loses, from which hop on, and at
which hop its time jumps — from one round of probes sent at once, not minutes of pings.

Two probes feed it, both run while the port scan runs:

- the trace, with :data:`QUERIES_PER_HOP` probes per TTL, gives each hop's losses and round
  trips (a router's ICMP answers, so they say where, but a router may also ration them);
- :func:`probe_burst` opens :data:`BURST_PROBES` connections to the service's port, a
  millisecond apart, and counts those answered at the first try. Nothing rations a SYN-ACK
  or a reset, so the burst decides how much is lost; the hops say where it starts, and
  whether it is the path's at all (a full accept queue at the target drops SYNs too).

:func:`assess` and :func:`settle_port` are pure; :func:`probe_burst` owns the sockets.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import statistics
import struct
import time
from dataclasses import dataclass, replace

from servepath.net.icmp import enable_recverr, read_errqueue, tcp_rtt_ms
from servepath.net.sockets import sockaddr_for
from servepath.netdiag.ports import PortResult, PortState
from servepath.netdiag.trace import Hop, Trace

__all__ = [
    "BURST_PROBES",
    "JUMP_MS",
    "LOSS_SIGNIFICANT",
    "QUERIES_PER_HOP",
    "Burst",
    "HopQuality",
    "PathQuality",
    "assess",
    "probe_burst",
    "settle_port",
]

#: Probes per TTL in the doctor's trace. A Linux router answers a burst of at most 6 ICMP
#: errors to one destination, then one a second (net.ipv4.icmp_ratelimit): 5 stay inside
#: it, so a router that rations its answers does not look lossy on a single run.
QUERIES_PER_HOP = 5

#: Connections the burst opens at once, and how many of them must miss their first try for
#: the loss to matter. A probe misses when its SYN or the SYN-ACK is lost, so a loss rate of
#: p on the path costs a probe q = 1 - (1 - p)^2 when both directions lose (q = p when only
#: one does). Binomial arithmetic for n = 80, a threshold of 13 (16 %):
#:
#: - a healthy path with 3 % loss both ways (q = 5.9 %): P(X >= 13) = 7.9e-4; with 3 % one
#:   way, P(X >= 13) = 7.6e-7. Under 3 % no false alarm, but for about 1 run in 1,300.
#: - 30 % loss on one hop, one way (q = 30 %): P(X <= 12) = 1.5e-3; both ways (q = 51 %)
#:   P(X <= 12) < 1e-9. Never a miss in practice.
#:
#: Fewer probes cannot tell the two apart: with 10 per hop, as mtr's first seconds show,
#: a 30 % loss shows 0 or 1 lost probes in 15 % of runs.
BURST_PROBES = 80
LOSS_SIGNIFICANT = 13

#: A hop's round trip that exceeds the previous answering hop's by this much is where the
#: path's time jumps (a long link, a congested queue), whatever the total.
JUMP_MS = 20.0

#: How long a first answer may take once other probes of the burst were answered: long
#: enough for a busy machine's event loop, short of the kernel's first SYN retransmission
#: (1 s) on any path whose round trip is under a quarter of a second.
_PATIENCE_FLOOR_S = 0.5
_PATIENCE_FACTOR = 4.0

#: Time between two of the burst's connections (80 take 80 ms): a server that accepts in a
#: loop keeps its accept queue short, where 80 SYNs in the same instant would overflow a
#: small backlog (Python's http.server listens with 5) and read as loss.
SPACING_S = 0.001


# ---- pure part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """What :data:`BURST_PROBES` connections to one port, opened in a burst, got."""

    address: str
    port: int
    sent: int
    open: int  # connected at the first try
    closed: int  # reset at the first try
    unreachable: int  # an ICMP error at the first try
    late: int  # answered only after a retransmission: the first SYN or SYN-ACK was lost
    lost: int  # no answer within the time the burst waited
    rtt_ms: tuple[float, ...] = ()  # of the first-try answers
    elapsed_s: float = 0.0
    timeout: float = 0.0

    @property
    def answered(self) -> int:
        """Answered at the first try."""
        return self.open + self.closed + self.unreachable

    @property
    def missed(self) -> int:
        """Missed their first try: the path lost a packet of theirs."""
        return self.late + self.lost

    @property
    def loss_pct(self) -> float:
        return round(100 * self.missed / self.sent, 1) if self.sent else 0.0

    @property
    def state(self) -> PortState | None:
        """What the port said when it said anything: open, closed, or None (silence only)."""
        if self.open or (self.late and not self.closed):
            return "open"
        if self.closed:
            return "closed"
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "port": self.port,
            "sent": self.sent,
            "open": self.open,
            "closed": self.closed,
            "unreachable": self.unreachable,
            "late": self.late,
            "lost": self.lost,
            "loss_pct": self.loss_pct,
            "best_ms": min(self.rtt_ms) if self.rtt_ms else None,
            "median_ms": round(statistics.median(self.rtt_ms), 3) if self.rtt_ms else None,
            "elapsed_s": self.elapsed_s,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class HopQuality:
    """One hop as mtr shows it: probes sent and lost, best and median round trip."""

    ttl: int
    address: str | None
    sent: int
    lost: int
    best_ms: float | None
    median_ms: float | None
    target: bool = False  # the service itself, counted by the burst

    @property
    def loss_pct(self) -> float:
        return round(100 * self.lost / self.sent, 1) if self.sent else 0.0

    @property
    def label(self) -> str:
        where = self.address or "*"
        return f"hop {self.ttl} ({where})"

    def to_json(self) -> dict[str, object]:
        return {
            "ttl": self.ttl,
            "address": self.address,
            "sent": self.sent,
            "lost": self.lost,
            "loss_pct": self.loss_pct,
            "best_ms": self.best_ms,
            "median_ms": self.median_ms,
            "target": self.target,
        }


@dataclass(frozen=True)
class PathQuality:
    """The path's loss and where it starts; where its time jumps."""

    hops: tuple[HopQuality, ...]
    burst: Burst | None
    lossy: bool  # the burst lost enough to matter (see LOSS_SIGNIFICANT)
    start: HopQuality | None  # the first hop from which the loss carries on to the target
    jump: HopQuality | None  # the hop whose round trip rises most over the one before
    jump_ms: float = 0.0
    before_jump: HopQuality | None = None
    #: the burst lost as much, but no router before the target loses: the target's accept
    #: queue, or its last link
    at_target: bool = False

    @property
    def loss_pct(self) -> float:
        return self.burst.loss_pct if self.burst is not None else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "hops": [h.to_json() for h in self.hops],
            "burst": self.burst.to_json() if self.burst is not None else None,
            "lossy": self.lossy,
            "at_target": self.at_target,
            "loss_pct": self.loss_pct,
            "start": self.start.to_json() if self.start is not None else None,
            "jump": self.jump.to_json() if self.jump is not None else None,
            "jump_ms": self.jump_ms,
            "before_jump": self.before_jump.to_json() if self.before_jump else None,
        }


def _hop(hop: Hop) -> HopQuality:
    rtts = hop.rtt_ms
    return HopQuality(
        ttl=hop.ttl,
        address=hop.address,
        sent=len(rtts) + hop.lost,
        lost=hop.lost,
        best_ms=min(rtts) if rtts else None,
        median_ms=round(statistics.median(rtts), 3) if rtts else None,
    )


def _target_row(ttl: int, burst: Burst) -> HopQuality:
    rtts = burst.rtt_ms
    return HopQuality(
        ttl=ttl,
        address=burst.address,
        sent=burst.sent,
        lost=burst.missed,
        best_ms=min(rtts) if rtts else None,
        median_ms=round(statistics.median(rtts), 3) if rtts else None,
        target=True,
    )


def assess(trace: Trace | None, burst: Burst | None) -> PathQuality | None:
    """The path's quality from the trace's hops and the burst; None when neither ran.

    The loss matters when the burst missed :data:`LOSS_SIGNIFICANT` first tries and the port
    still answered some (silence alone is a filter, not loss), and a router before the
    target loses too. It starts at the first hop of the unbroken run of lossy hops that ends
    at the target, as mtr is read: a hop that loses while the hops after it do not only
    rations its ICMP answers, and silent hops (``*``, routers that never answer) say nothing
    either way.
    """
    if trace is None and burst is None:
        return None
    rows = [_hop(h) for h in trace.hops] if trace is not None else []
    if burst is not None:
        end_ttl = rows[-1].ttl if rows and trace is not None and trace.reached else None
        if end_ttl is not None:
            rows[-1] = _target_row(end_ttl, burst)
        else:
            rows.append(_target_row((rows[-1].ttl + 1) if rows else 1, burst))
    significant = (
        burst is not None and burst.missed >= LOSS_SIGNIFICANT and (burst.answered + burst.late) > 0
    )
    start: HopQuality | None = None
    if significant:
        answering = [r for r in rows if r.address is not None]
        start = answering[-1] if answering else None
        for row in reversed(answering[:-1]):
            if row.lost == 0:
                break
            start = row
    # Loss that only the target shows may be the target's own doing: a SYN that finds the
    # accept queue full is dropped there exactly as on a lossy link (a small listen backlog,
    # a stuck server). Only loss that routers before it show as well is the path's.
    lossy = significant and start is not None and not start.target
    jump, before, rise = _jump(rows)
    return PathQuality(
        tuple(rows), burst, lossy, start, jump, rise, before, at_target=significant and not lossy
    )


def _jump(rows: list[HopQuality]) -> tuple[HopQuality | None, HopQuality | None, float]:
    """The hop whose best round trip rises most over the last answering hop before it (this
    machine, at 0 ms, before the first); best, not median, so that a retransmission or a
    busy queue on one probe does not move it."""
    previous: HopQuality | None = None
    previous_ms = 0.0
    found: tuple[HopQuality | None, HopQuality | None, float] = (None, None, 0.0)
    for row in rows:
        if row.best_ms is None:
            continue
        rise = row.best_ms - previous_ms
        if rise >= JUMP_MS and rise > found[2]:
            found = (row, previous, round(rise, 1))
        previous, previous_ms = row, max(previous_ms, row.best_ms)
    return found


def settle_port(result: PortResult, burst: Burst | None) -> PortResult:
    """The asked port's state once the burst is counted: a port the scan found silent but
    that answered some of the burst's connections lost a SYN, and is not filtered."""
    if result.state != "filtered" or burst is None or burst.state is None:
        return result
    got = burst.answered + burst.late
    rtt = min(burst.rtt_ms) if burst.rtt_ms else result.rtt_ms
    return replace(
        result,
        state=burst.state,
        rtt_ms=rtt,
        detail=(
            f"the scan's connection got no answer, but {got} of {burst.sent} connections "
            f"opened in a burst were answered ({burst.state}): the path lost a packet, no "
            "firewall drops the port"
        ),
    )


# ---- I/O ----------------------------------------------------------------------------------

_TCPI_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans in struct tcp_info


def _retransmitted(sock: socket.socket) -> bool:
    """Whether the kernel had to send the SYN again (its first one, or the answer, was lost)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return False
    if len(info) < _TCPI_TOTAL_RETRANS + 4:
        return False
    (count,) = struct.unpack_from("=I", info, _TCPI_TOTAL_RETRANS)
    return bool(count)


def _reset(sock: socket.socket) -> None:
    # a reset, not a polite close: the probe is no client, and the server frees it at once
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def probe_burst(
    address: str,
    port: int,
    *,
    count: int = BURST_PROBES,
    timeout: float = 2.0,
    spacing_s: float = SPACING_S,
) -> Burst:
    """Open ``count`` connections to ``address``:``port``, ``spacing_s`` apart, and count
    which were answered at the first try, which only after a retransmission, and which not
    at all.

    Ends as soon as every connection is settled; once some were answered, each other one
    gets four times the median round trip (at least half a second) from its own sending
    before it counts as lost, so a lossy path costs well under a second and a silent port
    one ``timeout``.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if count < 1:
        raise ValueError("count must be at least 1")
    family, sockaddr = sockaddr_for(address, port)
    started = time.monotonic()
    pending: dict[socket.socket, float] = {}
    tally = {"open": 0, "closed": 0, "unreachable": 0, "late": 0}
    rtts: list[float] = []
    unsent = count
    next_send = started

    def patience() -> float:
        if not rtts:
            return timeout
        median_s = statistics.median(rtts) / 1000
        return min(timeout, max(_PATIENCE_FLOOR_S, _PATIENCE_FACTOR * median_s))

    def send() -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        enable_recverr(sock)
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            _reset(sock)
            tally["closed" if code == errno.ECONNREFUSED else "unreachable"] += 1
            return
        selector.register(sock, selectors.EVENT_WRITE)
        pending[sock] = time.monotonic()

    def settle(sock: socket.socket) -> None:
        sent = pending.pop(sock)
        selector.unregister(sock)
        elapsed_ms = (time.monotonic() - sent) * 1000
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        icmp = read_errqueue(sock)
        if _retransmitted(sock):
            tally["late"] += 1
        elif code == 0:
            tally["open"] += 1
            # the kernel's sample where it has one: this loop's own clock may be late
            rtts.append(round(tcp_rtt_ms(sock) or elapsed_ms, 3))
        elif code == errno.ECONNREFUSED and not icmp:
            tally["closed"] += 1
            rtts.append(round(elapsed_ms, 3))
        else:
            tally["unreachable"] += 1
        _reset(sock)

    lost = 0
    with selectors.DefaultSelector() as selector:
        try:
            while unsent or pending:
                now = time.monotonic()
                while unsent and now >= next_send:
                    send()
                    unsent -= 1
                    next_send += spacing_s
                wait_for = patience()
                for sock in [s for s, sent in pending.items() if now - sent >= wait_for]:
                    del pending[sock]  # waited its turn: lost
                    selector.unregister(sock)
                    _reset(sock)
                    lost += 1
                wake = min(pending.values(), default=now) + wait_for
                if unsent:
                    wake = min(wake, next_send)
                if not pending and not unsent:
                    break
                for key, _mask in selector.select(max(0.0, wake - time.monotonic())):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    settle(ready)
        finally:
            for sock in pending:
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(sock)
                _reset(sock)
    return Burst(
        address=address,
        port=port,
        sent=count,
        open=tally["open"],
        closed=tally["closed"],
        unreachable=tally["unreachable"],
        late=tally["late"],
        lost=lost,
        rtt_ms=tuple(rtts),
        elapsed_s=round(time.monotonic() - started, 3),
        timeout=timeout,
    )
