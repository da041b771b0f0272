"""Listening sockets in every network namespace of this machine: what listens inside a
container, read from the container's own ``/proc/PID/net/tcp*`` (no container API needed).

A published port (``docker run -p 8080:80``) reaches a container's address and port; whether
anything answers there is a fact of the container's namespace, which ``ss`` on the host does
not see. The parsers are pure; :func:`namespaces` walks ``/proc`` (root sees every process).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servepath.net.endpoints import host_port

__all__ = [
    "NamespaceListeners",
    "Socket",
    "find_namespace",
    "local_addresses_from_fib_trie",
    "namespaces",
    "parse_proc_net_tcp",
    "runtime_from_cgroup",
]

_LISTEN = "0A"


@dataclass(frozen=True)
class Socket:
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.address).is_unspecified

    def accepts(self, address: str) -> bool:
        """Whether a connection to ``address`` on this port reaches this socket."""
        if self.wildcard:
            return True
        return ipaddress.ip_address(self.address) == ipaddress.ip_address(address)

    def __str__(self) -> str:
        return host_port(self.address, self.port)


@dataclass(frozen=True)
class NamespaceListeners:
    """One network namespace: a process in it, its addresses, and its TCP listeners."""

    inode: str
    pid: int
    process: str | None
    addresses: tuple[str, ...]
    listeners: tuple[Socket, ...]
    runtime: str | None = None  # docker, containerd, kubernetes, podman: from its cgroup

    def on_port(self, port: int) -> tuple[Socket, ...]:
        return tuple(s for s in self.listeners if s.port == port)

    def reachable_on(self, address: str, port: int) -> bool:
        return any(s.accepts(address) for s in self.on_port(port))

    def describe_listeners(self) -> str:
        if not self.listeners:
            return "nothing listens on any TCP port"
        parts = []
        for s in sorted(self.listeners, key=lambda s: (s.port, s.address)):
            note = " (loopback only)" if s.loopback else ""
            parts.append(f"{s}{note}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "inode": self.inode,
            "pid": self.pid,
            "process": self.process,
            "addresses": list(self.addresses),
            "listeners": [str(s) for s in self.listeners],
            "runtime": self.runtime,
        }


def _hex_address(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc writes IPv6 as four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def parse_proc_net_tcp(text: str) -> tuple[Socket, ...]:
    """The listening sockets of ``/proc/net/tcp`` or ``/proc/net/tcp6`` text."""
    found: list[Socket] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        address, _, port = fields[1].partition(":")
        try:
            found.append(Socket(_hex_address(address), int(port, 16)))
        except ValueError:
            continue
    return tuple(dict.fromkeys(found))


_LOCAL = re.compile(r"\|--\s+(\S+)\s*\n\s*/32 host LOCAL")


def local_addresses_from_fib_trie(text: str) -> tuple[str, ...]:
    """The namespace's own IPv4 addresses, from ``/proc/net/fib_trie``."""
    return tuple(dict.fromkeys(_LOCAL.findall(text)))


def _addresses_v6(text: str) -> tuple[str, ...]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if fields:
            try:
                out.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
            except ValueError:
                continue
    return tuple(out)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def namespaces(proc: Path = Path("/proc")) -> list[NamespaceListeners]:
    """Every network namespace a process of this machine is in (one process each)."""
    seen: dict[str, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            inode = os.readlink(entry / "ns" / "net")
        except OSError:
            continue
        seen.setdefault(inode, int(entry.name))
    result = []
    for inode, pid in seen.items():
        base = proc / str(pid)
        net = base / "net"
        listeners = parse_proc_net_tcp(_read(net / "tcp")) + parse_proc_net_tcp(_read(net / "tcp6"))
        addresses = local_addresses_from_fib_trie(_read(net / "fib_trie")) + _addresses_v6(
            _read(net / "if_inet6")
        )
        process = _read(base / "comm").strip() or None
        runtime = runtime_from_cgroup(_read(base / "cgroup"))
        result.append(NamespaceListeners(inode, pid, process, addresses, listeners, runtime))
    return result


def runtime_from_cgroup(text: str) -> str | None:
    """The container runtime a process's cgroup path names, if any."""
    for marker, runtime in (
        ("kubepods", "kubernetes"),
        ("docker", "docker"),
        ("libpod", "podman"),
        ("containerd", "containerd"),
        ("lxc", "lxc"),
    ):
        if marker in text:
            return runtime
    return None


def find_namespace(
    address: str, spaces: Iterable[NamespaceListeners] | None = None
) -> NamespaceListeners | None:
    """The namespace that owns ``address`` (a container's IP), other than this process's."""
    try:
        own = os.readlink("/proc/self/ns/net")
    except OSError:
        own = ""
    for space in spaces if spaces is not None else namespaces():
        if space.inode != own and address in space.addresses:
            return space
    return None
