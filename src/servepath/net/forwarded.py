"""Trusted proxies: who sent a request, and what its forwarded headers only claim.

A ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` header is written by whoever sent the
request: a proxy the operator runs, or the caller itself. Only a proxy the server trusts
(``--forwarded-allow-ips``, nginx's ``set_real_ip_from``) can vouch for the hop before it.
:func:`resolve_client` walks the chain right to left from the TCP peer, as nginx's
``real_ip_recursive on`` does: while the current hop is a trusted proxy, the entry it
appended names the next one; the first address that is not trusted is the client. Every
entry left of it is *claimed*: kept, bounded, never believed.

Pure: no sockets, no ASGI. The service passes the peer and the header values in.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from servepath.errors import ConfigError
from servepath.net.quoted import split_outside_quotes, unquote, unterminated

__all__ = [
    "MAX_CLAIMED_BYTES",
    "MAX_CLAIMED_HOPS",
    "ClientView",
    "Hop",
    "TrustedProxies",
    "parse_forwarded",
    "parse_node",
    "parse_x_forwarded_for",
    "resolve_client",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HopKind = Literal["address", "obfuscated", "unknown", "malformed"]
Header = Literal["forwarded", "x-forwarded-for"]
Source = Literal["peer", "forwarded", "x-forwarded-for"]

#: The claimed part of a chain keeps at most this many hops (the ones nearest the client
#: the server believes) and this many bytes of text; what is cut is counted and marked.
MAX_CLAIMED_HOPS = 16
MAX_CLAIMED_BYTES = 1024
#: One entry is shown at most this long.
MAX_ENTRY_CHARS = 64
#: Only the last this many characters of a header are parsed: a trust walk never goes
#: further back than a few hops, and a caller must not buy CPU time with a long header.
MAX_PARSED_CHARS = 16_384

HEADER_NAMES: dict[Header, str] = {"forwarded": "Forwarded", "x-forwarded-for": "X-Forwarded-For"}

_OBFUSCATED = re.compile(r"^_[A-Za-z0-9._-]+$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose forwarded headers are believed: addresses and networks, or all."""

    networks: tuple[Network, ...] = ()
    everyone: bool = False
    #: Whether RFC 7239 ``Forwarded`` is read at all (``--trust-forwarded``). nginx and most
    #: proxies pass a caller's ``Forwarded`` on untouched while they append to
    #: ``X-Forwarded-For``, so by default only ``X-Forwarded-For`` is walked and a
    #: ``Forwarded`` header is kept as a claim.
    forwarded: bool = False

    @classmethod
    def parse(cls, text: str | Sequence[str], *, forwarded: bool = False) -> TrustedProxies:
        """``"127.0.0.1, 10.0.0.0/8, ::1, fd00::/8"`` or ``"*"``; empty trusts no one.

        An IPv4-mapped IPv6 entry (``::ffff:10.0.0.1``) means the IPv4 address.
        """
        items = text.split(",") if isinstance(text, str) else list(text)
        networks: list[Network] = []
        everyone = False
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                everyone = True
                continue
            try:
                network = ipaddress.ip_network(item.strip("[]"), strict=False)
            except ValueError:
                raise ConfigError(
                    f"forwarded-allow-ips entry {item!r} is not an address, a CIDR "
                    "(10.0.0.0/8, fd00::/8) or '*'"
                ) from None
            networks.append(_unmapped_network(network))
        return cls(tuple(networks), everyone, forwarded)

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` (a canonical IP, see :func:`canonical_ip`) is trusted."""
        if self.everyone:
            return True
        if address is None or not self.networks:
            return False
        ip = _ip(address)
        if ip is None:
            return False
        return any(ip in network for network in self.networks if network.version == ip.version)

    @property
    def configured(self) -> bool:
        return self.everyone or bool(self.networks)

    def describe(self) -> str:
        if self.everyone:
            return "*"
        return ", ".join(str(n) for n in self.networks) or "none"


def _unmapped_network(network: Network) -> Network:
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((int(mapped), network.prefixlen - 96))
    return network


# The same few addresses (proxies, busy clients) come back on every request, and parsing one
# with ipaddress costs microseconds: remember the last few thousand. Bounded, so a caller
# sending ever new entries only misses.
@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def canonical_ip(text: str) -> str | None:
    """``text`` as one spelling of its address (IPv4-mapped IPv6 as IPv4); None if not an IP."""
    ip = _ip(text)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True)
class Hop:
    """One entry of a forwarded chain: what it says, and what it is."""

    text: str  # as written (printable ASCII, at most MAX_ENTRY_CHARS)
    kind: HopKind
    header: Header
    address: str | None = None  # canonical IP when kind is "address"
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.text,
            "kind": self.kind,
            "header": self.header,
            "address": self.address,
            "port": self.port,
        }


def _shown(text: str) -> str:
    text = _UNPRINTABLE.sub("?", text)
    return text if len(text) <= MAX_ENTRY_CHARS else text[: MAX_ENTRY_CHARS - 1] + "…"


@functools.lru_cache(maxsize=4096)
def parse_node(text: str, header: Header = "x-forwarded-for") -> Hop:
    """One node as RFC 7239 writes it (``192.0.2.1``, ``"[2001:db8::1]:4711"``, ``unknown``,
    ``_hidden``), leniently also a bare IPv6 address and ``a.b.c.d:port`` as some proxies
    put them into X-Forwarded-For."""
    node = text.strip()
    if len(node) >= 2 and node[0] == node[-1] == '"':
        node = unquote(node).strip()
    shown = _shown(node)

    def bad() -> Hop:
        return Hop(shown, "malformed", header)

    host, port_text = node, None
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return bad()
        host, rest = node[1:end], node[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return bad()
            port_text = rest[1:]
        if ":" not in host:  # brackets hold IPv6 only
            return bad()
    elif node.count(":") == 1:
        host, port_text = node.split(":")
    port: int | None = None
    if port_text is not None:
        if _PORT.match(port_text) and 0 < int(port_text) < 65536:
            port = int(port_text)
        elif not _OBFUSCATED.match(port_text):
            return bad()
    if host.lower() == "unknown":
        return Hop(shown, "unknown", header)
    if _OBFUSCATED.match(host):
        return Hop(shown, "obfuscated", header)
    if "%" in host:  # a zone id says nothing to anyone off the link
        host = host.split("%", 1)[0]
    address = canonical_ip(host)
    if address is None:
        return bad()
    return Hop(shown, "address", header, address, port)


def _tail(value: str) -> tuple[str, bool]:
    """The part of a header value that is parsed: its end, from an element boundary."""
    if len(value) <= MAX_PARSED_CHARS:
        return value, False
    tail = value[-MAX_PARSED_CHARS:]
    comma = tail.find(",")
    return (tail[comma + 1 :] if comma >= 0 else ""), True


def parse_forwarded(values: Sequence[str]) -> tuple[list[Hop], bool]:
    """The ``for=`` node of each element of ``Forwarded`` headers, client first.

    Several headers are one list, in order (RFC 9110 5.3). An element without ``for=``, or
    with two, or that cannot be read, is a hop that names no address. Returns the hops and
    whether the front of a long header was left unparsed.
    """
    text, cut = _tail(",".join(values))
    hops: list[Hop] = []
    for element in split_outside_quotes(text, ","):
        if not element.strip():
            continue  # empty list elements are ignored (RFC 9110 5.6.1)
        if unterminated(element):
            hops.append(Hop(_shown(element.strip()), "malformed", "forwarded"))
            continue
        nodes: list[str] = []
        malformed = False
        for pair in split_outside_quotes(element, ";"):
            if not pair.strip():
                continue
            name, eq, value = pair.partition("=")
            if not eq or not name.strip():
                malformed = True
                continue
            if name.strip().lower() == "for":
                nodes.append(value.strip())
        if malformed or len(nodes) != 1:
            kind: HopKind = "unknown" if not nodes and not malformed else "malformed"
            hops.append(Hop(_shown(element.strip()), kind, "forwarded"))
            continue
        hops.append(parse_node(nodes[0], "forwarded"))
    return hops, cut


def parse_x_forwarded_for(values: Sequence[str]) -> tuple[list[Hop], bool]:
    """The entries of ``X-Forwarded-For`` headers, client first; empty entries skipped."""
    text, cut = _tail(",".join(values))
    return [parse_node(part) for part in text.split(",") if part.strip()], cut


@dataclass(frozen=True)
class ClientView:
    """Who sent a request, as far as the server can believe, and what is only claimed."""

    client: str | None  # the believed client's address (canonical IP); None if unknown
    client_port: int | None
    source: Source  # where the client address comes from: the TCP peer or a header
    trusted: bool  # whether a forwarded header was believed for at least one hop
    reason: str
    #: The trusted proxies the request came through, nearest (the TCP peer) first.
    proxies: tuple[str, ...] = ()
    #: Hops the headers name but the server does not believe, client first, bounded.
    claimed: tuple[Hop, ...] = ()
    #: How many hops were claimed before bounding (at least ``len(claimed)``).
    claimed_hops: int = 0
    #: The claimed chain was cut: hops or bytes dropped, or a header's front unparsed.
    truncated: bool = False
    #: The chain as the headers write it (the header the walk read), client first, bounded.
    chain: tuple[str, ...] = field(default=(), repr=False)
    #: The request came through a proxy the server trusts (the TCP peer is one), whether or
    #: not its headers could be believed: such a client is never "this machine".
    via_proxy: bool = False
    #: ``Forwarded`` and ``X-Forwarded-For`` named different clients: neither is believed.
    conflict: bool = False

    def claimed_text(self) -> str | None:
        """The claimed chain as one line for the log: ``a, b`` (``…(+N) a, b`` when cut)."""
        if not self.claimed:
            return "…" if self.truncated else None
        headers = {hop.header for hop in self.claimed}
        if len(headers) == 1:
            text = ", ".join(hop.text for hop in self.claimed)
        else:
            text = "; ".join(
                f"{HEADER_NAMES[h]}: " + ", ".join(x.text for x in self.claimed if x.header == h)
                for h in ("forwarded", "x-forwarded-for")
                if h in headers
            )
        if self.truncated:
            dropped = self.claimed_hops - len(self.claimed)
            text = (f"…(+{dropped}) " if dropped else "… ") + text
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "client_port": self.client_port,
            "source": self.source,
            "trusted": self.trusted,
            "reason": self.reason,
            "proxies": list(self.proxies),
            "claimed": [hop.to_json() for hop in self.claimed],
            "claimed_hops": self.claimed_hops,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class _Walk:
    client: str | None
    port: int | None
    proxies: tuple[str, ...]
    rest: int  # hops[:rest] are not believed
    stopped_at: Hop | None  # a trusted proxy's entry that names no address


def _walk(peer: str | None, port: int | None, hops: list[Hop], trusted: TrustedProxies) -> _Walk:
    current, current_port = peer, port
    proxies: list[str] = []
    i = len(hops) - 1
    stopped_at = None
    while i >= 0 and trusted.trusts(current):
        hop = hops[i]
        if hop.kind != "address":
            stopped_at = hop
            break
        if current is not None:
            proxies.append(current)
        current, current_port = hop.address, hop.port
        i -= 1
    return _Walk(current, current_port, tuple(proxies), i + 1, stopped_at)


def _bounded(hops: list[Hop]) -> tuple[tuple[Hop, ...], bool]:
    """The last hops of ``hops`` that fit MAX_CLAIMED_HOPS and MAX_CLAIMED_BYTES."""
    kept: list[Hop] = []
    size = 0
    for hop in reversed(hops[-MAX_CLAIMED_HOPS:]):
        size += len(hop.text.encode()) + 2
        if size > MAX_CLAIMED_BYTES - 64:  # room for a header name and the cut marker
            break
        kept.append(hop)
    kept.reverse()
    return tuple(kept), len(kept) < len(hops) or any(h.text.endswith("…") for h in kept)


def resolve_client(
    peer: str | None,
    peer_port: int | None,
    *,
    forwarded: Sequence[str] = (),
    x_forwarded_for: Sequence[str] = (),
    trusted: TrustedProxies,
) -> ClientView:
    """Decide the client of a request from its TCP peer and its forwarded headers.

    ``peer`` is the address the socket reports (an IPv4-mapped IPv6 one is taken as
    IPv4); ``forwarded`` and ``x_forwarded_for`` are the values of every header of that
    name, in order. ``X-Forwarded-For`` is walked; ``Forwarded`` only when ``trusted``
    says so (``--trust-forwarded``), and then it is preferred. When both are read and a
    trusted proxy would make them name different clients, neither is believed: one of them
    was written by someone else. Whenever the walk cannot go on (a conflict, or a trusted
    proxy naming ``unknown``, ``_hidden`` or junk), the client recorded is the hop nearest
    the server that is not a trusted proxy, or none: never the proxy itself, so that a
    caller cannot make itself the proxy (an "insider" on loopback) by confusing the walk.
    """
    peer_ip = canonical_ip(peer) if peer else None
    if peer_ip is None and peer:
        peer_ip = peer  # not an IP (a unix socket path): never trusted except by "*"
    read_forwarded = trusted.forwarded
    fwd_hops, fwd_cut = parse_forwarded(forwarded) if forwarded else ([], False)
    xff_hops, xff_cut = parse_x_forwarded_for(x_forwarded_for) if x_forwarded_for else ([], False)
    via_proxy = trusted.trusts(peer_ip)
    if not fwd_hops and not xff_hops:
        return ClientView(
            peer_ip,
            peer_port,
            "peer",
            False,
            "no Forwarded or X-Forwarded-For entry: the client is the TCP peer",
            truncated=fwd_cut or xff_cut,
            via_proxy=via_proxy,
        )
    if read_forwarded and fwd_hops:
        header: Header = "forwarded"
        hops, cut, other, other_cut = fwd_hops, fwd_cut, xff_hops, xff_cut
    else:
        header = "x-forwarded-for"
        hops, cut, other, other_cut = xff_hops, xff_cut, fwd_hops, fwd_cut
    chain = tuple(h.text for h in hops[-MAX_CLAIMED_HOPS:])
    name = HEADER_NAMES[header]
    walk = _walk(peer_ip, peer_port, hops, trusted)
    conflict = ""
    if header == "forwarded" and xff_hops:
        other_walk = _walk(peer_ip, peer_port, xff_hops, trusted)
        walked_any = walk.rest < len(hops) or other_walk.rest < len(xff_hops)
        if walked_any and other_walk.client != walk.client:
            # The proxy appended its peer to X-Forwarded-For (every proxy does); the hop
            # nearest the server that it names is recorded, not believed, and never the proxy.
            fallback = _untrusted_nearest(xff_hops, trusted)
            conflict = (
                f"Forwarded names {walk.client or '?'} and X-Forwarded-For names "
                f"{other_walk.client or '?'}: one was written by someone else, so neither "
                f"is believed; the client is recorded as {fallback[0] or 'unknown'}, the "
                "nearest hop that is not a trusted proxy"
            )
            walk = _Walk(fallback[0], fallback[1], (), len(hops), None)
        else:
            other = xff_hops[: other_walk.rest]
    cut = cut or other_cut
    not_believed = hops[: walk.rest]
    claimed_main, cut_main = _bounded(not_believed)
    claimed_other, cut_other = _bounded(other) if other else ((), False)
    walked = len(hops) - walk.rest
    believed = walked > 0 and not conflict
    client, client_port = walk.client, walk.port
    if conflict:
        reason = conflict
    elif not via_proxy:
        who = f"the TCP peer {peer_ip}" if peer_ip else "an unknown TCP peer"
        reason = (
            f"{who} is not a trusted proxy (not in --forwarded-allow-ips): {name} is "
            "claimed, not believed; the client is the TCP peer"
        )
        if fwd_hops and not read_forwarded:
            reason += " (Forwarded is not read without --trust-forwarded)"
    elif not hops:
        client, client_port = None, None
        reason = (
            f"the trusted proxy {peer_ip} sent no {name}, only a Forwarded header that is not "
            "read (--trust-forwarded reads it): the client is unknown"
        )
    elif walk.stopped_at is not None:
        at = walk.client or "the TCP peer"
        client, client_port = None, None
        reason = (
            f"the trusted proxy {at} names its client {walk.stopped_at.text!r} "
            f"({walk.stopped_at.kind}): the client is unknown (a proxy is never taken for "
            "its client)"
        )
    elif walk.rest == 0 and trusted.trusts(walk.client):
        reason = (
            f"every hop of {name} is a trusted proxy: the client is the first one named, "
            f"{walk.client}"
        )
    else:
        reason = (
            f"{name} believed for {walked} hop{'s' if walked != 1 else ''} through trusted "
            f"proxies: {walk.client} is the first address not trusted"
        )
    if fwd_hops and not read_forwarded and via_proxy and hops:
        reason += "; Forwarded is claimed, not read (--trust-forwarded reads it)"
    return ClientView(
        client=client,
        client_port=client_port,
        source=header if believed else "peer",
        trusted=believed,
        reason=reason,
        proxies=walk.proxies,
        claimed=claimed_main + claimed_other,
        claimed_hops=len(not_believed) + len(other),
        truncated=cut or cut_main or cut_other,
        chain=chain,
        via_proxy=via_proxy,
        conflict=bool(conflict),
    )


def _untrusted_nearest(hops: list[Hop], trusted: TrustedProxies) -> tuple[str | None, int | None]:
    """The address of the hop nearest the server that is not a trusted proxy; a hop that
    names no address stops the search (nothing left of it can be placed)."""
    for hop in reversed(hops):
        if hop.kind != "address":
            return None, None
        if not trusted.trusts(hop.address):
            return hop.address, hop.port
    return None, None
