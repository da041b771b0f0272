"""What the kernel counts about listening sockets: the accept queue and its overflows.

A connection the kernel has accepted (the handshake is done) waits in the listening socket's
accept queue until the server calls ``accept()``; none of the server's own measures see that
wait. When the queue is full the kernel drops the handshake's last packet and counts
``ListenOverflows`` and ``ListenDrops`` (``nstat``'s ``TcpExtListenOverflows``), for the whole
network namespace. Parsing is pure (the text of ``/proc/net/netstat`` and ``/proc/net/tcp``,
the bytes of a sock_diag answer); the readers are one file read or one netlink dump each and
answer None where the kernel cannot be asked.

A listening socket's bound on its queue (``listen(fd, backlog)``, capped at
``net.core.somaxconn``) is in no ``/proc`` file: ``ss -lt`` prints it as Send-Q, read from the
kernel's sock_diag netlink answer (``inet_diag_msg.idiag_wqueue`` of a listener), and so does
:func:`listen_queues`, for sockets of any process.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ListenCounters",
    "ListenQueue",
    "accept_queue",
    "inet_diag_request",
    "listen_counters",
    "listen_queues",
    "parse_accept_queue",
    "parse_inet_diag",
    "parse_netstat",
    "somaxconn",
]

PROC = Path("/proc")
#: /proc/net/tcp's state code of a listening socket.
_LISTEN = "0A"

# sock_diag (linux/sock_diag.h, linux/inet_diag.h): one dump request per address family.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN_STATE = 10
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# family, state, timer, retrans, sockid (sport, dport, src, dst, interface, cookie[2]),
# expires, rqueue, wqueue, uid, inode
_MESSAGE = struct.Struct("=BBBB2s2s16s16sIIIIIIII")


@dataclass(frozen=True)
class ListenCounters:
    """``TcpExt`` counters of the namespace: handshakes dropped for a full accept queue."""

    overflows: int
    drops: int


def parse_netstat(text: str) -> dict[str, dict[str, int]]:
    """``/proc/net/netstat`` (pairs of lines: names, then values) as {group: {name: value}}."""
    groups: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, name_text = names.partition(":")
        vgroup, _, value_text = values.partition(":")
        if group != vgroup:
            continue
        keys, numbers = name_text.split(), value_text.split()
        groups[group] = {k: int(v) for k, v in zip(keys, numbers, strict=False) if v.isdigit()}
    return groups


def parse_accept_queue(lines: Iterable[str], inode: int) -> int | None:
    """The accept queue's length of the listening socket ``inode`` in ``/proc/net/tcp``
    (or ``tcp6``) lines: the ``rx_queue`` column of a listening socket; None when absent."""
    wanted = str(inode)
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[9] != wanted or fields[3] != _LISTEN:
            continue
        _, _, rx = fields[4].partition(":")
        try:
            return int(rx, 16)
        except ValueError:
            return None
    return None


def listen_counters(proc: Path = PROC) -> ListenCounters | None:
    """This namespace's ListenOverflows and ListenDrops; None where they cannot be read."""
    try:
        text = (proc / "net" / "netstat").read_text()
    except OSError:
        return None
    ext = parse_netstat(text).get("TcpExt", {})
    if "ListenOverflows" not in ext:
        return None
    return ListenCounters(ext["ListenOverflows"], ext.get("ListenDrops", 0))


def accept_queue(fd: int, proc: Path = PROC) -> int | None:
    """Connections waiting for ``accept()`` on the listening socket ``fd`` of this process;
    None where it cannot be read."""
    try:
        target = (proc / "self" / "fd" / str(fd)).readlink()
    except OSError:
        return None
    text = str(target)
    if not text.startswith("socket:["):
        return None
    inode = int(text[len("socket:[") : -1])
    for name in ("tcp", "tcp6"):
        try:
            with (proc / "net" / name).open() as lines:
                found = parse_accept_queue(lines, inode)
        except OSError:
            continue
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class ListenQueue:
    """One listening socket's accept queue: connections waiting for ``accept()``, and the
    bound past which the kernel drops new handshakes (``ss -lt``'s Recv-Q and Send-Q)."""

    address: str
    port: int
    queued: int
    backlog: int
    inode: int

    @property
    def full(self) -> bool:
        # The kernel refuses a handshake once more than ``backlog`` wait; a queue at its
        # bound takes at most one more, so at the bound it is full for any burst.
        return self.queued >= max(self.backlog, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "queued": self.queued,
            "backlog": self.backlog,
            "inode": self.inode,
            "full": self.full,
        }


def inet_diag_request(family: int, seq: int = 1) -> bytes:
    """A sock_diag dump request for the listening TCP sockets of ``family``."""
    # inet_diag_req_v2: family, protocol, extensions, pad, the states wanted, and a zeroed
    # inet_diag_sockid (48 bytes: ports, addresses, interface, cookie) that matches any socket
    body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN_STATE)
    body += bytes(48)
    header = _NLMSG.pack(
        _NLMSG.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0
    )
    return header + body


def _diag_address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def parse_inet_diag(data: bytes) -> tuple[list[ListenQueue], bool]:
    """The listening sockets in one read of a sock_diag answer, and whether the dump ended
    (NLMSG_DONE or an error) with it. Truncated or foreign messages are skipped."""
    found: list[ListenQueue] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            break
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            return found, True
        body = offset + _NLMSG.size
        if kind == _SOCK_DIAG_BY_FAMILY and length - _NLMSG.size >= _MESSAGE.size:
            fields = _MESSAGE.unpack_from(data, body)
            family, state, sport, src = fields[0], fields[1], fields[4], fields[6]
            rqueue, wqueue, inode = fields[12], fields[13], fields[15]
            if state == _TCP_LISTEN_STATE and family in (socket.AF_INET, socket.AF_INET6):
                port = int.from_bytes(sport, "big")
                found.append(ListenQueue(_diag_address(family, src), port, rqueue, wqueue, inode))
        offset += (length + 3) & ~3  # messages are 4-byte aligned
    return found, False


def listen_queues(port: int | None = None, *, timeout: float = 1.0) -> list[ListenQueue] | None:
    """The accept queues of this namespace's listening TCP sockets (on ``port`` if given),
    from the kernel's sock_diag answer; None where netlink cannot be asked."""
    found: list[ListenQueue] = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(timeout)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
                sock.send(inet_diag_request(family, seq))
                done = False
                while not done:
                    data = sock.recv(65536)
                    if not data:
                        break
                    queues, done = parse_inet_diag(data)
                    found += queues
    except OSError:
        return None
    return [q for q in found if port is None or q.port == port]


def somaxconn(proc: Path = PROC) -> int | None:
    """``net.core.somaxconn``: the cap the kernel puts on every listen() backlog."""
    try:
        return int((proc / "sys" / "net" / "core" / "somaxconn").read_text().strip())
    except (OSError, ValueError):
        return None
