"""Endpoints as people write them: ``host:port``, ``[IPv6]:port``, a bare IPv6 address.

One formatter (:func:`host_port`) and one parser (:func:`parse_host_port`) for the whole
project, so that an IPv6 address is bracketed the same way in every table, URL, cause and
fix, and every command reads the same spellings with the same error.
"""

from __future__ import annotations

import ipaddress
from typing import overload

from servepath.errors import EndpointError

__all__ = [
    "host_port",
    "is_ip_literal",
    "parse_host_port",
    "unmapped",
    "url_host",
]


def is_ip_literal(text: str) -> bool:
    """An IPv4 or IPv6 address (brackets and a zone id like ``%eth0`` allowed)."""
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def unmapped(address: str) -> str:
    """``::ffff:10.0.0.5`` (an IPv4 peer of a dual-stack socket) as ``10.0.0.5``; others as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address


def url_host(host: str) -> str:
    """``host`` as it stands in a URL's authority: an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def host_port(host: str, port: int | str | None) -> str:
    """``host:port`` as a URL writes it: an IPv6 address in brackets."""
    host = url_host(host)
    return host if port is None else f"{host}:{port}"


@overload
def parse_host_port(
    text: str, default_port: int, *, allow_url: bool = False
) -> tuple[str, int]: ...
@overload
def parse_host_port(
    text: str, default_port: None = None, *, allow_url: bool = False
) -> tuple[str, int | None]: ...
def parse_host_port(
    text: str,
    default_port: int | None = None,
    *,
    allow_url: bool = False,
) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address → (host, port).

    The host comes back without brackets. ``default_port`` stands in when none is written.
    ``allow_url`` also takes ``http(s)://HOST[:PORT]/...`` (the path is ignored), with the
    scheme's port as the default.
    """
    original = text
    text = text.strip()
    if allow_url:
        for scheme, port in (("https://", 443), ("http://", 80)):
            if text.lower().startswith(scheme):
                text = text[len(scheme) :].split("/", 1)[0]
                default_port = default_port if default_port is not None else port
                break
    if not text:
        raise EndpointError(original, "no host")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise EndpointError(original, "an IPv6 address opened with '[' is not closed")
        if rest and not rest.startswith(":"):
            raise EndpointError(original, "write an IPv6 address with a port as [ADDR]:PORT")
        if not is_ip_literal(host):
            raise EndpointError(original, f"{host!r} in brackets is not an IPv6 address")
        port_text = rest[1:] if rest else ""
        if rest == ":":
            raise EndpointError(original, "nothing after ':' (expected a port)")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            raise EndpointError(original, "nothing after ':' (expected a port)")
    elif text.count(":") > 1:
        if not is_ip_literal(text):
            raise EndpointError(
                original, "not an IPv6 address; with a port, write it as [ADDR]:PORT"
            )
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise EndpointError(original, "no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise EndpointError(original, f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)
