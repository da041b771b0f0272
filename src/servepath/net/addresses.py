"""What kind of address an IP is, in the words of someone deploying a service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

AddressKind = Literal[
    "loopback", "private", "cgnat", "link-local", "public", "unspecified", "multicast", "reserved"
]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ULA = ipaddress.ip_network("fc00::/7")

_MEANING: dict[AddressKind, str] = {
    "loopback": "this machine only; not reachable from any other host or container",
    "private": "an internal address, reachable only inside its own network (RFC 1918, or "
    "RFC 4193 for IPv6)",
    "cgnat": "carrier-grade NAT space (RFC 6598); shared by an ISP, not reachable from outside",
    "link-local": "valid on one link only; not routed",
    "public": "an external address, routable on the internet",
    "unspecified": "the wildcard address: every interface of the machine",
    "multicast": "a multicast group, not one host",
    "reserved": "reserved or documentation space; not a real host on the internet",
}


@dataclass(frozen=True)
class AddressInfo:
    address: str
    version: int
    kind: AddressKind
    meaning: str

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "version": self.version,
            "kind": self.kind,
            "meaning": self.meaning,
        }


def _is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in n for n in _RFC1918)
    return ip in _ULA


def classify_address(address: str) -> AddressInfo:
    """Classify an IPv4 or IPv6 literal (zone ids like ``fe80::1%eth0`` allowed)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    kind: AddressKind
    if ip.is_unspecified:
        kind = "unspecified"
    elif ip.is_loopback:
        kind = "loopback"
    elif ip.is_link_local:
        kind = "link-local"
    elif ip.is_multicast:
        kind = "multicast"
    elif isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        kind = "cgnat"
    elif _is_private(ip):
        kind = "private"
    elif ip.is_global:
        kind = "public"
    else:
        kind = "reserved"
    return AddressInfo(address=str(ip), version=ip.version, kind=kind, meaning=_MEANING[kind])
