"""This machine's interface addresses, and which of them a server bound to HOST answers on."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import psutil

from servepath.net.addresses import AddressKind, classify_address
from servepath.net.endpoints import host_port


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str
    address: str
    version: int
    kind: AddressKind

    def to_json(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "address": self.address,
            "version": self.version,
            "kind": self.kind,
        }


def local_addresses() -> list[InterfaceAddress]:
    found: list[InterfaceAddress] = []
    for name, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = addr.address.split("%", 1)[0]
            info = classify_address(ip)
            found.append(InterfaceAddress(name, info.address, info.version, info.kind))
    order = {"public": 0, "private": 1, "cgnat": 2, "loopback": 3, "link-local": 4}
    return sorted(found, key=lambda a: (a.version, order.get(a.kind, 9), a.interface))


def answering_addresses(
    bind_host: str, addresses: list[InterfaceAddress]
) -> list[InterfaceAddress]:
    """The addresses a server bound to ``bind_host`` accepts connections on."""
    if bind_host in ("", "0.0.0.0"):
        return [a for a in addresses if a.version == 4]
    if bind_host == "::":
        # Linux dual-stack sockets accept IPv4 too unless bindv6only is set.
        return list(addresses)
    try:
        wanted = ipaddress.ip_address(bind_host)
    except ValueError:
        try:
            resolved = {info[4][0] for info in socket.getaddrinfo(bind_host, None)}
        except OSError:
            return []
        return [a for a in addresses if a.address in resolved]
    return [a for a in addresses if ipaddress.ip_address(a.address) == wanted]


def url_for(address: InterfaceAddress, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{host_port(address.address, port)}"
