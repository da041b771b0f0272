"""MTU black holes: which packet sizes cross the path to a service, and where larger ones die.

A black hole is a hop with a smaller MTU whose ICMP "fragmentation needed" (IPv6 "packet too
big") never reaches the sender: the handshake and small requests pass, and a large request
stalls because its full-sized segments vanish. Two probes find one without root:

- :func:`narrow_mtu` opens one TCP connection per candidate MSS, all at once, each capped
  with ``TCP_MAXSEG``, sends the same large request on each and sees which get an answer.
- :func:`locate_mtu_hop` sends, for every TTL at once, a large UDP datagram with DF set and a
  small one (as tracepath does) and reads the ICMP errors from each socket's error queue: the
  first TTL where the small probe is answered and the large one is not marks the link.

:func:`summarise` and :func:`find_break` decide what the answers mean and are pure; the two
probe functions own the sockets.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import socket
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from servepath.net.icmp import IcmpReport, enable_recverr, read_errqueue
from servepath.net.sockets import sockaddr_for

__all__ = [
    "DEFAULT_MSS",
    "DEFAULT_MTUS",
    "DEFAULT_UDP_PORT",
    "HEADER_BYTES",
    "HopAnswers",
    "MssOutcome",
    "MssState",
    "MtuHop",
    "MtuNarrowing",
    "NarrowingVerdict",
    "find_break",
    "locate_mtu_hop",
    "narrow_mtu",
    "summarise",
]

IpVersion = Literal[4, 6]
MssState = Literal["answered", "stalled", "failed"]
# blackhole: some sizes answered and larger ones stalled. clear: nothing stalled above the
# largest answer. all-stalled: nothing answered (an MTU below every candidate, or a server
# that does not answer this request within the timeout). failed: no connection got that far.
NarrowingVerdict = Literal["blackhole", "clear", "all-stalled", "failed"]

# IP and TCP headers without options: a segment of MSS bytes travels in MSS + this.
HEADER_BYTES: Mapping[int, int] = {4: 40, 6: 60}
_UDP_HEADER_BYTES: Mapping[int, int] = {4: 28, 6: 48}

# Ethernet, PPPoE, IP-in-IP, GRE-ish, VXLAN, WireGuard, common clouds and tunnels, the IPv6
# minimum, and IPv4's historic minimum datagram size.
DEFAULT_MTUS = (1500, 1492, 1480, 1460, 1450, 1420, 1400, 1380, 1280, 1200, 1000, 576)
DEFAULT_MSS: Mapping[int, tuple[int, ...]] = {
    version: tuple(mtu - header for mtu in DEFAULT_MTUS) for version, header in HEADER_BYTES.items()
}
DEFAULT_UDP_PORT = 33434  # traceroute's base port: nothing listens there
_SMALL_PAYLOAD = 32

# <linux/in.h>, <linux/in6.h>: not exported by Python's socket module. PROBE sets DF but
# ignores the PMTU the kernel has cached, so a probe is sent at the size it was asked for.
_IP_MTU_DISCOVER = 10
_IPV6_MTU_DISCOVER = 23
_PMTUDISC_PROBE = 3
_IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
_TCPI_OPT_TIMESTAMPS = 1
_TIMESTAMP_OPTION_BYTES = 12  # 10 bytes of option, 2 of padding, in every segment


# ---- pure part: what the TCP probes mean ---------------------------------------------------


@dataclass(frozen=True)
class MssOutcome:
    """What one candidate's connection did."""

    mss: int  # the candidate, set with TCP_MAXSEG before connect
    state: MssState
    # The MSS the connection really used (options included) when it ended: less than the
    # candidate when the server advertised less or PMTU discovery lowered it.
    sent_mss: int | None = None
    reason: str | None = None  # why it failed or what a stall had written
    elapsed_ms: float | None = None  # to the first byte of the answer

    @property
    def size(self) -> int:
        """The segment size this probe really tested."""
        return self.sent_mss if self.sent_mss is not None else self.mss

    def to_json(self) -> dict[str, object]:
        return {
            "mss": self.mss,
            "state": self.state,
            "sent_mss": self.sent_mss,
            "reason": self.reason,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True)
class MtuNarrowing:
    """Which segment sizes got a large request across, and the path MTU that proves.

    ``path_mtu`` is the largest passing MSS plus the IP and TCP headers (40 bytes for IPv4,
    60 for IPv6): the bound the probes proved, to the resolution of the candidate list. The
    real MTU lies between it and the smallest stalling packet (``stalling_size``).
    """

    version: IpVersion
    outcomes: tuple[MssOutcome, ...]
    verdict: NarrowingVerdict
    largest_passing_mss: int | None
    smallest_stalling_mss: int | None
    path_mtu: int | None
    # Candidates that stalled although a larger segment got an answer: a lost probe or a slow
    # server, not the MTU, since an answer proves its size passed and a stall proves nothing.
    contradicted_mss: tuple[int, ...] = ()
    elapsed_s: float = 0.0
    timeout: float = 0.0

    @property
    def stalling_size(self) -> int | None:
        """The smallest packet (IP total length) seen to stall: the size to locate."""
        if self.smallest_stalling_mss is None:
            return None
        return self.smallest_stalling_mss + HEADER_BYTES[self.version]

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "verdict": self.verdict,
            "largest_passing_mss": self.largest_passing_mss,
            "smallest_stalling_mss": self.smallest_stalling_mss,
            "path_mtu": self.path_mtu,
            "stalling_size": self.stalling_size,
            "contradicted_mss": list(self.contradicted_mss),
            "outcomes": [o.to_json() for o in self.outcomes],
            "elapsed_s": self.elapsed_s,
            "timeout": self.timeout,
        }


def summarise(
    outcomes: Sequence[MssOutcome],
    version: IpVersion,
    *,
    elapsed_s: float = 0.0,
    timeout: float = 0.0,
) -> MtuNarrowing:
    """Read the candidates' outcomes as a path MTU.

    An answer is proof that its segment size crossed the path; a stall is only the absence of
    an answer. So the largest answered size wins, stalls at or below it are reported as
    contradicted, and the smallest stall above it bounds the MTU from above. Failed
    connections (refused, reset, no handshake) say nothing about size and are left out.
    """
    ordered = tuple(sorted(outcomes, key=lambda o: o.mss, reverse=True))
    passed = [o.size for o in ordered if o.state == "answered"]
    largest = max(passed, default=None)
    stalled = [o for o in ordered if o.state == "stalled"]
    above = [o.size for o in stalled if largest is None or o.size > largest]
    contradicted = tuple(o.mss for o in stalled if largest is not None and o.size <= largest)
    smallest = min(above, default=None)
    verdict: NarrowingVerdict
    if largest is not None:
        verdict = "blackhole" if smallest is not None else "clear"
    else:
        verdict = "all-stalled" if smallest is not None else "failed"
    return MtuNarrowing(
        version=version,
        outcomes=ordered,
        verdict=verdict,
        largest_passing_mss=largest,
        smallest_stalling_mss=smallest,
        path_mtu=largest + HEADER_BYTES[version] if largest is not None else None,
        contradicted_mss=contradicted,
        elapsed_s=elapsed_s,
        timeout=timeout,
    )


# ---- pure part: where the large datagrams die ----------------------------------------------


@dataclass(frozen=True)
class HopAnswers:
    """The ICMP errors that came back for one TTL's large and small probe (None: silence)."""

    large: IcmpReport | None = None
    small: IcmpReport | None = None


@dataclass(frozen=True)
class MtuHop:
    """The link where large packets die without a word.

    Large probes are answered up to hop ``before_ttl`` (0: this machine) and not at ``ttl``,
    where the small probe is: the link lies between the two, and is one link exactly when
    they are adjacent (hop ``ttl`` - 1 answered, rather than stayed silent).
    """

    address: str  # the target
    ttl: int
    before_ttl: int
    before: str | None  # the last hop that answered large probes; None for this machine
    after: str | None  # who answered the small probe at ``ttl``
    size: int  # the large probes' IP total length
    small_size: int

    @property
    def adjacent(self) -> bool:
        return self.before_ttl == self.ttl - 1

    @property
    def at_target(self) -> bool:
        return self.after == self.address

    @property
    def detail(self) -> str:
        start = "this machine" if self.before is None else f"{self.before} (hop {self.before_ttl})"
        end = f"{self.after} (hop {self.ttl})"
        return f"{self.size}-byte packets die between {start} and {end} with no ICMP back"

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "ttl": self.ttl,
            "before_ttl": self.before_ttl,
            "before": self.before,
            "after": self.after,
            "size": self.size,
            "small_size": self.small_size,
            "adjacent": self.adjacent,
            "at_target": self.at_target,
            "detail": self.detail,
        }


def find_break(
    answers_by_ttl: Mapping[int, HopAnswers], *, target: str, size: int, small_size: int
) -> MtuHop | None:
    """The link where large probes vanish and small ones pass, or None when there is none.

    None when a large probe reached the target or drew a fragmentation-needed (then the path
    tells its senders, which is no black hole), or when no small probe was answered beyond
    the last large answer. A large answer at a TTL proves every TTL below it passed large
    packets, so a lost large probe before it is not mistaken for the break.
    """
    ttls = sorted(answers_by_ttl)
    large = {t: a.large for t in ttls if (a := answers_by_ttl[t]).large is not None}
    if any(e.kind == "frag-needed" or e.offender == target for e in large.values()):
        return None
    last_large = max(large, default=0)
    for ttl in ttls:
        small = answers_by_ttl[ttl].small
        if ttl <= last_large or small is None:
            continue
        return MtuHop(
            address=target,
            ttl=ttl,
            before_ttl=last_large,
            before=large[last_large].offender if last_large else None,
            after=small.offender,
            size=size,
            small_size=small_size,
        )
    return None


# ---- I/O: TCP narrowing --------------------------------------------------------------------


def _sent_mss(sock: socket.socket, cap: int) -> int | None:
    """The MSS a connected socket sends with, options included (TCP_INFO's snd_mss excludes
    the timestamp option that every segment carries)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 20:
        return None
    # struct tcp_info: tcpi_options is the 6th u8; tcpi_snd_mss the 3rd u32 after eight u8s.
    options = info[5]
    snd_mss: int = struct.unpack_from("=I", info, 16)[0]
    if not snd_mss:
        return None
    if options & _TCPI_OPT_TIMESTAMPS:
        snd_mss += _TIMESTAMP_OPTION_BYTES
    return min(cap, snd_mss)


def _reset(sock: socket.socket) -> None:
    # Reset rather than close politely: a stalled connection would retransmit for minutes.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    """One candidate's connection: connect, write the request, wait for a first byte."""

    def __init__(
        self,
        family: int,
        mss: int,
        request: bytes,
        started: float,
        tls: tuple[ssl.SSLContext, str] | None = None,
    ) -> None:
        self.mss = mss
        self.request = memoryview(request)
        self.written = 0
        self.connected = False
        self.started = started
        self.outcome: MssOutcome | None = None
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            raw.setblocking(False)
            # Caps both the segments we send and the MSS we advertise, so answers fit too.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            # TLS over the capped connection: the handshake and the request's records travel
            # in segments of this size, as a client's https request would
            self.sock: socket.socket = (
                tls[0].wrap_socket(raw, server_hostname=tls[1], do_handshake_on_connect=False)
                if tls is not None
                else raw
            )
        except OSError:
            raw.close()
            raise
        self.handshaken = tls is None

    def start(self, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> int:
        """Begin connecting; the events to wait for (0 when it failed at once)."""
        code = self.sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS):
            return self._fail(f"connect: {os.strerror(code)}")
        return selectors.EVENT_WRITE

    def on_ready(self, mask: int) -> int:
        """Advance on readiness; the events to wait for next (0 when the outcome is known)."""
        if not self.connected:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self._fail(f"connect: {os.strerror(code)}")
            self.connected = True
        if not self.handshaken:
            assert isinstance(self.sock, ssl.SSLSocket)
            try:
                self.sock.do_handshake()
            except ssl.SSLWantReadError:
                return selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                return selectors.EVENT_WRITE
            except OSError as exc:  # ssl.SSLError included
                return self._fail(f"tls: {exc}")
            self.handshaken = True
        if self.written < len(self.request):
            try:
                self.written += self.sock.send(self.request[self.written :])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLWantReadError:
                return selectors.EVENT_READ
            except OSError as exc:
                return self._fail(f"send: {exc.strerror or exc}")
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(1)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                data = None  # a TLS session ticket, not the answer
            except ssl.SSLWantWriteError:
                data = None
            except OSError as exc:
                return self._fail(f"recv: {exc.strerror or exc}")
            if data:
                elapsed = round((time.monotonic() - self.started) * 1000, 3)
                self.outcome = MssOutcome(
                    self.mss, "answered", _sent_mss(self.sock, self.mss), elapsed_ms=elapsed
                )
                return 0
            if data == b"":
                return self._fail("the server closed the connection without answering")
        pending = selectors.EVENT_WRITE if self.written < len(self.request) else 0
        return selectors.EVENT_READ | pending

    def expire(self, timeout: float) -> MssOutcome:
        if self.outcome is not None:
            return self.outcome
        if not self.connected:
            self._fail(f"no handshake within {timeout}s")
        elif not self.handshaken:
            # the server's certificates come in full segments too: a stall like any other
            note = f"no TLS handshake within {timeout}s over the capped connection"
            self.outcome = MssOutcome(self.mss, "stalled", _sent_mss(self.sock, self.mss), note)
        else:
            note = f"no answer within {timeout}s; {self.written} of {len(self.request)} bytes "
            self.outcome = MssOutcome(
                self.mss, "stalled", _sent_mss(self.sock, self.mss), note + "written"
            )
        assert self.outcome is not None
        return self.outcome

    def _fail(self, reason: str) -> int:
        sent = _sent_mss(self.sock, self.mss) if self.connected else None
        self.outcome = MssOutcome(self.mss, "failed", sent, reason)
        return 0


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def narrow_mtu(
    address: str,
    port: int,
    request: bytes,
    *,
    timeout: float = 1.0,
    candidates: Sequence[int] | None = None,
    tls_server_name: str | None = None,
) -> MtuNarrowing:
    """Send ``request`` once per candidate MSS, all at once, and see which sizes get answers.

    ``request``: a complete request (e.g. a large HTTP/1.1 POST with ``Connection: close``),
    longer than every candidate so that each probe sends full-sized segments.
    ``candidates``: MSS values to try; default ``DEFAULT_MSS`` for the address's family.
    ``tls_server_name``: speak TLS on each connection, with this name in SNI (a TLS port:
    nothing there answers plain HTTP). The certificate is not judged here; sizes are.
    The whole narrowing costs at most one ``timeout``.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    family, sockaddr = sockaddr_for(address, port)
    version: IpVersion = 6 if family == socket.AF_INET6 else 4
    sizes = tuple(candidates) if candidates is not None else DEFAULT_MSS[version]
    if not sizes:
        raise ValueError("no candidate MSS to try")
    if len(request) <= max(sizes):
        raise ValueError(
            f"a {len(request)}-byte request never fills a {max(sizes)}-byte segment; "
            "send a larger one"
        )
    tls = (_tls_context(), tls_server_name) if tls_server_name is not None else None
    started = time.monotonic()
    deadline = started + timeout
    connections: list[_Connection] = []
    with selectors.DefaultSelector() as selector:
        try:
            for mss in sizes:
                connection = _Connection(family, mss, request, started, tls)
                connections.append(connection)
                events = connection.start(sockaddr)
                if events:
                    selector.register(connection.sock, events, connection)
            while selector.get_map() and (wait := deadline - time.monotonic()) > 0:
                for key, mask in selector.select(wait):
                    connection = key.data
                    events = connection.on_ready(mask)
                    if not events:
                        selector.unregister(connection.sock)
                    elif events != key.events:
                        selector.modify(connection.sock, events, connection)
            outcomes = [c.expire(timeout) for c in connections]
        finally:
            for connection in connections:
                _reset(connection.sock)
    elapsed = round(time.monotonic() - started, 3)
    return summarise(outcomes, version, elapsed_s=elapsed, timeout=timeout)


# ---- I/O: locating the hop -----------------------------------------------------------------


def _udp_probe(family: int, ttl: int) -> socket.socket:
    """A UDP socket that sends with DF at any size the link takes and queues ICMP errors."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        enable_recverr(sock)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_PROBE)
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_DONTFRAG, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    except OSError:
        sock.close()
        raise
    return sock


def locate_mtu_hop(
    address: str, *, size: int, max_hops: int = 16, timeout: float = 1.0
) -> MtuHop | None:
    """Find the link past which ``size``-byte packets vanish while small ones pass.

    ``size``: the large probes' IP total length, e.g. :attr:`MtuNarrowing.stalling_size`.
    Needs no privilege: UDP to traceroute's ports, ICMP read from each socket's error queue.
    None when large probes are answered at every TTL, or nothing answers at all. A probe the
    kernel refuses to send (``size`` above this machine's own link MTU) counts as unanswered,
    so that case reads as a break before hop 1.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if max_hops < 1:
        raise ValueError("max_hops must be at least 1")
    family, _ = sockaddr_for(address, 0)
    version: IpVersion = 6 if family == socket.AF_INET6 else 4
    target = str(ipaddress.ip_address(address.split("%", 1)[0]))  # as ICMP offenders read
    small_size = _UDP_HEADER_BYTES[version] + _SMALL_PAYLOAD
    if size <= small_size:
        raise ValueError(f"size must be above the small probe's {small_size} bytes")
    answers: dict[int, dict[str, IcmpReport]] = {ttl: {} for ttl in range(1, max_hops + 1)}
    sockets: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        try:
            for ttl in range(1, max_hops + 1):
                for index, (which, total) in enumerate((("large", size), ("small", small_size))):
                    sock = _udp_probe(family, ttl)
                    sockets.append(sock)
                    port = DEFAULT_UDP_PORT + 2 * (ttl - 1) + index
                    try:
                        sock.connect(sockaddr_for(address, port)[1])
                        sock.send(bytes(total - _UDP_HEADER_BYTES[version]))
                    except OSError:
                        continue  # e.g. EMSGSIZE: larger than this machine's link
                    selector.register(sock, selectors.EVENT_READ, (sock, ttl, which))
            deadline = time.monotonic() + timeout
            while selector.get_map() and (wait := deadline - time.monotonic()) > 0:
                for key, _mask in selector.select(wait):
                    sock, ttl, which = key.data
                    icmp = [e for e in read_errqueue(sock) if e.origin in ("icmp", "icmp6")]
                    if icmp:
                        answers[ttl][which] = icmp[0]
                        selector.unregister(sock)
                        continue
                    with contextlib.suppress(OSError):
                        sock.recv(2048)  # data from something listening there: not ICMP
        finally:
            for sock in sockets:
                sock.close()
    by_ttl = {t: HopAnswers(large=a.get("large"), small=a.get("small")) for t, a in answers.items()}
    return find_break(by_ttl, target=target, size=size, small_size=small_size)
