"""ICMP errors as a socket's error queue reports them (``IP_RECVERR``), and what they mean.

Linux hands an unprivileged socket the ICMP errors its own packets provoked when the socket
asks with ``IP_RECVERR`` (``IPV6_RECVERR``): ``recvmsg(..., MSG_ERRQUEUE)`` then returns a
``struct sock_extended_err`` followed by the address of the node that sent the error (the
*offender*). This is how servepath tells a firewall's REJECT from a closed port and finds the
routers of a traceroute without raw sockets.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "IcmpKind",
    "IcmpReport",
    "enable_recverr",
    "enable_timestamps",
    "icmp_kind",
    "parse_extended_err",
    "read_errqueue",
    "tcp_rtt_ms",
    "timestamp_of",
]

# <linux/in.h>, <linux/in6.h>, <linux/errqueue.h>: not all exported by Python's socket module.
IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_NONE = 0
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS: the kernel's receive time of a packet
_TIMESPEC = struct.Struct("=qq")

_EXTENDED_ERR = struct.Struct("=IBBBBII")  # ee_errno, origin, type, code, pad, info, data

IcmpKind = Literal[
    "time-exceeded",
    "net-unreachable",
    "host-unreachable",
    "protocol-unreachable",
    "port-unreachable",
    "admin-prohibited",
    "frag-needed",
    "parameter-problem",
    "source-route-failed",
    "local",
    "other",
]

Origin = Literal["local", "icmp", "icmp6", "other"]

# ICMPv4 destination-unreachable codes (RFC 792, RFC 1812) by what they tell an operator.
_V4_UNREACH: dict[int, IcmpKind] = {
    0: "net-unreachable",
    1: "host-unreachable",
    2: "protocol-unreachable",
    3: "port-unreachable",
    4: "frag-needed",
    5: "source-route-failed",
    6: "net-unreachable",  # destination network unknown
    7: "host-unreachable",  # destination host unknown
    8: "host-unreachable",  # source host isolated
    9: "admin-prohibited",  # network administratively prohibited
    10: "admin-prohibited",  # host administratively prohibited (iptables icmp-host-prohibited)
    11: "net-unreachable",  # for type of service
    12: "host-unreachable",  # for type of service
    13: "admin-prohibited",  # communication administratively prohibited
    14: "admin-prohibited",  # host precedence violation
    15: "admin-prohibited",  # precedence cutoff in effect
}

# ICMPv6 destination-unreachable codes (RFC 4443).
_V6_UNREACH: dict[int, IcmpKind] = {
    0: "net-unreachable",  # no route to destination
    1: "admin-prohibited",
    2: "net-unreachable",  # beyond scope of source address
    3: "host-unreachable",  # address unreachable
    4: "port-unreachable",
    5: "admin-prohibited",  # source address failed ingress/egress policy
    6: "admin-prohibited",  # reject route to destination
}


def icmp_kind(origin: Origin, icmp_type: int, code: int) -> IcmpKind:
    """Name an ICMP error by what it means for the path, whichever IP version carried it."""
    if origin == "icmp":
        if icmp_type == 3:
            return _V4_UNREACH.get(code, "other")
        if icmp_type == 11:
            return "time-exceeded"
        if icmp_type == 12:
            return "parameter-problem"
        return "other"
    if origin == "icmp6":
        if icmp_type == 1:
            return _V6_UNREACH.get(code, "other")
        if icmp_type == 2:
            return "frag-needed"  # packet too big
        if icmp_type == 3:
            return "time-exceeded"
        if icmp_type == 4:
            return "parameter-problem"
        return "other"
    if origin == "local":
        return "local"
    return "other"


@dataclass(frozen=True)
class IcmpReport:
    """One entry of a socket's error queue: an ICMP error message (or a local error) the
    kernel reported, read as data, never raised."""

    origin: Origin
    type: int
    code: int
    errno: int
    offender: str | None
    info: int = 0  # the next-hop MTU for frag-needed / packet-too-big
    received_at: float | None = None  # kernel receive time (time.time() scale), if stamped

    @property
    def kind(self) -> IcmpKind:
        return icmp_kind(self.origin, self.type, self.code)

    @property
    def is_unreachable(self) -> bool:
        """An error that ends a connection attempt (everything but time-exceeded and MTU news)."""
        return self.kind not in ("time-exceeded", "frag-needed", "local", "other")

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "type": self.type,
            "code": self.code,
            "kind": self.kind,
            "errno": errno_mod.errorcode.get(self.errno, str(self.errno)),
            "offender": self.offender,
        }


def _sockaddr_address(data: bytes) -> str | None:
    """The address inside a raw ``struct sockaddr_in``/``sockaddr_in6`` (None for AF_UNSPEC)."""
    if len(data) < 2:
        return None
    (family,) = struct.unpack_from("=H", data)
    if family == socket.AF_INET and len(data) >= 8:
        return str(ipaddress.IPv4Address(data[4:8]))
    if family == socket.AF_INET6 and len(data) >= 24:
        address = ipaddress.IPv6Address(data[8:24])
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    return None


def parse_extended_err(level: int, cmsg_type: int, data: bytes) -> IcmpReport | None:
    """Decode one control message from ``recvmsg(MSG_ERRQUEUE)``; None if it is not an error."""
    if (level, cmsg_type) not in (
        (socket.IPPROTO_IP, IP_RECVERR),
        (socket.IPPROTO_IPV6, IPV6_RECVERR),
    ):
        return None
    if len(data) < _EXTENDED_ERR.size:
        return None
    ee_errno, origin_code, icmp_type, code, _pad, info, _data = _EXTENDED_ERR.unpack_from(data)
    origin: Origin
    if origin_code == SO_EE_ORIGIN_ICMP:
        origin = "icmp"
    elif origin_code == SO_EE_ORIGIN_ICMP6:
        origin = "icmp6"
    elif origin_code == SO_EE_ORIGIN_LOCAL:
        origin = "local"
    else:
        origin = "other"
    offender = _sockaddr_address(data[_EXTENDED_ERR.size :])
    return IcmpReport(
        origin=origin, type=icmp_type, code=code, errno=ee_errno, offender=offender, info=info
    )


# ---- the thin socket part -------------------------------------------------------------


def enable_recverr(sock: socket.socket) -> None:
    """Ask the kernel to queue ICMP errors on ``sock`` (both levels for a dual-stack socket)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def enable_timestamps(sock: socket.socket) -> None:
    """Have the kernel stamp each received packet, errors included, with its arrival time.

    Round trips then exclude the time this process took to notice the answer.
    """
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def timestamp_of(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The SCM_TIMESTAMPNS time in a message's control data, as seconds since the epoch."""
    for level, cmsg_type, data in ancdata:
        if level == socket.SOL_SOCKET and cmsg_type == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return None


def read_errqueue(sock: socket.socket, limit: int = 16) -> list[IcmpReport]:
    """Drain ``sock``'s error queue without blocking."""
    found: list[IcmpReport] = []
    # A socket with a timeout would poll for input before each call, MSG_DONTWAIT or not.
    previous = sock.gettimeout()
    if previous != 0.0:
        sock.setblocking(False)
    try:
        _drain(sock, limit, found)
    finally:
        if previous != 0.0:
            sock.settimeout(previous)
    return found


def _drain(sock: socket.socket, limit: int, found: list[IcmpReport]) -> None:
    for _ in range(limit):
        try:
            _data, ancdata, _flags, _addr = sock.recvmsg(
                512, 1024, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT
            )
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        stamp = timestamp_of(ancdata)
        for level, cmsg_type, cmsg_data in ancdata:
            error = parse_extended_err(level, cmsg_type, cmsg_data)
            if error is not None:
                found.append(dataclasses.replace(error, received_at=stamp))


def tcp_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's round-trip estimate of a connected TCP socket (the SYN/SYN-ACK sample)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 72:
        return None
    # struct tcp_info: eight u8 fields, then u32s; tcpi_rtt (microseconds) is the 16th u32.
    (rtt_us,) = struct.unpack_from("=I", info, 8 + 15 * 4)
    return rtt_us / 1000 if rtt_us else None


#: What an echo request carries unless told otherwise: recognisable in a capture.
ECHO_PAYLOAD = b"servepath-trace-probe-0123456789"


def echo_request(family: int, ident: int, seq: int, payload: bytes = ECHO_PAYLOAD) -> bytes:
    """An ICMP(v6) echo request; the checksum is left to the kernel for ICMPv6 and ping sockets."""
    icmp_type = 8 if family == socket.AF_INET else 128
    header = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq)
    if family != socket.AF_INET:
        return header + payload
    total = checksum(header + payload)
    return struct.pack("!BBHHH", icmp_type, 0, total, ident, seq) + payload


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
