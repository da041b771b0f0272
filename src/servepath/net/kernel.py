"""What the kernel counts about listening sockets: the accept queue and its overflows.

A connection the kernel has accepted (the handshake is done) waits in the listening socket's
accept queue until the server calls ``accept()``; none of the server's own measures see that
wait. When the queue is full the kernel drops the handshake's last packet and counts
``ListenOverflows`` and ``ListenDrops`` (``nstat``'s ``TcpExtListenOverflows``), for the whole
network namespace. Parsing is pure (the text of ``/proc/net/netstat`` and ``/proc/net/tcp``);
the readers are one file read each and answer None where the file cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ListenCounters",
    "accept_queue",
    "listen_counters",
    "parse_accept_queue",
    "parse_netstat",
]

PROC = Path("/proc")
#: /proc/net/tcp's state code of a listening socket.
_LISTEN = "0A"


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
