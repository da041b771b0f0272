"""This machine's routing tables, read from /proc/net/route (IPv4) and /proc/net/ipv6_route:
the default gateway, and whether an address is on a directly attached network, behind a
specific route, or reachable only through the default route."""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROC_ROUTE = Path("/proc/net/route")
PROC_ROUTE6 = Path("/proc/net/ipv6_route")

_RTF_UP = 0x0001
_RTF_REJECT = 0x0200
_RTF_LOCAL = 0x80000000  # the machine's own addresses (IPv6 lists them; IPv4 does not)

RouteKind = Literal["local", "on-link", "via-route", "via-default", "none"]


@dataclass(frozen=True)
class KernelRoute:
    interface: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: str | None  # None for a directly attached network

    def to_json(self) -> dict[str, str | None]:
        return {"interface": self.interface, "network": str(self.network), "gateway": self.gateway}


@dataclass(frozen=True)
class RouteLookup:
    address: str
    kind: RouteKind
    route: KernelRoute | None

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "kind": self.kind,
            "route": self.route.to_json() if self.route else None,
        }


def _le_ip(hex_text: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hex_text, 16)))


def parse_proc_route(text: str) -> list[KernelRoute]:
    """Parse the kernel's IPv4 route table (``/proc/net/route``; addresses little-endian hex)."""
    routes: list[KernelRoute] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, flags, mask = fields[0], fields[1], fields[2], fields[3], fields[7]
        if not int(flags, 16) & 0x1:  # RTF_UP
            continue
        network = ipaddress.IPv4Network(f"{_le_ip(dest)}/{_le_ip(mask)}", strict=False)
        gw = _le_ip(gateway)
        routes.append(KernelRoute(iface, network, None if gw == "0.0.0.0" else gw))
    return routes


def parse_proc_ipv6_route(text: str) -> list[KernelRoute]:
    """Parse the kernel's IPv6 route table (``/proc/net/ipv6_route``; addresses as 32 hex
    digits). Unreachable (reject) routes and the machine's own addresses are left out."""
    routes: list[KernelRoute] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        dest, prefix, nexthop, flags, iface = fields[0], fields[1], fields[4], fields[8], fields[9]
        bits = int(flags, 16)
        if not bits & _RTF_UP or bits & (_RTF_REJECT | _RTF_LOCAL):
            continue
        network = ipaddress.IPv6Network((int(dest, 16), int(prefix, 16)), strict=False)
        gateway = ipaddress.IPv6Address(int(nexthop, 16))
        routes.append(
            KernelRoute(iface, network, None if gateway.packed == bytes(16) else str(gateway))
        )
    return routes


def read_routes(path: Path = PROC_ROUTE, path6: Path = PROC_ROUTE6) -> list[KernelRoute]:
    """Both tables, IPv4 first; a table that cannot be read (no IPv6, say) adds nothing."""
    routes: list[KernelRoute] = []
    for file, parse in ((path, parse_proc_route), (path6, parse_proc_ipv6_route)):
        try:
            routes += parse(file.read_text())
        except OSError:
            continue
    return routes


def default_gateway(routes: list[KernelRoute], version: int | None = None) -> KernelRoute | None:
    """The default route of ``version`` (4 or 6), or the first of either, IPv4 first."""
    for route in routes:
        if route.network.prefixlen == 0 and version in (None, route.network.version):
            return route
    return None


def lookup(address: str, routes: list[KernelRoute]) -> RouteLookup:
    """Longest-prefix match of ``address`` against the ``routes`` of its IP version."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return RouteLookup(address, "none", None)
    if ip.is_loopback:
        return RouteLookup(address, "local", None)
    matches = [r for r in routes if r.network.version == ip.version and ip in r.network]
    if not matches:
        return RouteLookup(address, "none", None)
    best = max(matches, key=lambda r: r.network.prefixlen)
    if best.network.prefixlen == 0:
        return RouteLookup(address, "via-default", best)
    if best.gateway is None:
        return RouteLookup(address, "on-link", best)
    return RouteLookup(address, "via-route", best)
