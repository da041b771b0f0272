"""This machine's IPv4 routing table, read from /proc/net/route: the default gateway, and
whether an address is on a directly attached network, behind a specific route, or reachable
only through the default route."""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROC_ROUTE = Path("/proc/net/route")

RouteKind = Literal["local", "on-link", "via-route", "via-default", "none"]


@dataclass(frozen=True)
class Route:
    interface: str
    network: ipaddress.IPv4Network
    gateway: str | None  # None for a directly attached network

    def to_json(self) -> dict[str, str | None]:
        return {"interface": self.interface, "network": str(self.network), "gateway": self.gateway}


@dataclass(frozen=True)
class RouteLookup:
    address: str
    kind: RouteKind
    route: Route | None

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "kind": self.kind,
            "route": self.route.to_json() if self.route else None,
        }


def _le_ip(hex_text: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hex_text, 16)))


def parse_proc_route(text: str) -> list[Route]:
    """Parse the kernel's IPv4 route table (``/proc/net/route``; addresses little-endian hex)."""
    routes: list[Route] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, flags, mask = fields[0], fields[1], fields[2], fields[3], fields[7]
        if not int(flags, 16) & 0x1:  # RTF_UP
            continue
        network = ipaddress.IPv4Network(f"{_le_ip(dest)}/{_le_ip(mask)}", strict=False)
        gw = _le_ip(gateway)
        routes.append(Route(iface, network, None if gw == "0.0.0.0" else gw))
    return routes


def read_routes(path: Path = PROC_ROUTE) -> list[Route]:
    try:
        return parse_proc_route(path.read_text())
    except OSError:
        return []


def default_gateway(routes: list[Route]) -> Route | None:
    for route in routes:
        if route.network.prefixlen == 0:
            return route
    return None


def lookup(address: str, routes: list[Route]) -> RouteLookup:
    """Longest-prefix match of ``address`` against ``routes`` (IPv4; IPv6 reports 'none')."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return RouteLookup(address, "none", None)
    if ip.is_loopback:
        return RouteLookup(address, "local", None)
    if not isinstance(ip, ipaddress.IPv4Address):
        return RouteLookup(address, "none", None)
    matches = [r for r in routes if ip in r.network]
    if not matches:
        return RouteLookup(address, "none", None)
    best = max(matches, key=lambda r: r.network.prefixlen)
    if best.network.prefixlen == 0:
        return RouteLookup(address, "via-default", best)
    if best.gateway is None:
        return RouteLookup(address, "on-link", best)
    return RouteLookup(address, "via-route", best)
