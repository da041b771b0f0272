"""The path echo: what the server saw of a request. Never environment values or secrets."""

from __future__ import annotations

import os
import socket
from typing import Any

from servepath.net.addresses import classify_address
from servepath.net.container import detect_container
from servepath.net.endpoints import host_port, is_ip_literal, unmapped
from servepath.net.forwarded import ClientView, TrustedProxies, resolve_client
from servepath.service.asgi import Scope, header, header_values
from servepath.service.request import Head, RequestContext, RequestMeta
from servepath.store.bounds import (
    MAX_ADDRESS_CHARS,
    MAX_FORWARDED_BYTES,
    bounded_text,
    new_record_id,
)

#: Why a path echo to a caller from elsewhere without a key names no host, pid or container.
WITHHELD = (
    "hostname, pid and container runtime are shown to callers with an API key or on this machine"
)


def client_view(scope: Scope, trusted: TrustedProxies, head: Head | None = None) -> ClientView:
    """Who sent the request, believing forwarded headers only from ``trusted`` proxies;
    ``head``: the forwarded headers as read already (else they are read from ``scope``)."""
    client = scope.get("client")
    if head is None:
        head = Head.of(scope["headers"])
    return resolve_client(
        str(client[0]) if client else None,
        int(client[1]) if client and len(client) > 1 and client[1] is not None else None,
        forwarded=head.forwarded or (),
        x_forwarded_for=head.x_forwarded_for or (),
        trusted=trusted,
    )


def caller_view(scope: Scope, ctx: RequestContext, trusted: TrustedProxies) -> ClientView:
    """:func:`client_view`, resolved once per request and kept on ``ctx``."""
    view = ctx.view
    if view is None:
        view = ctx.view = client_view(scope, trusted, ctx.head)
    return view


def meta_for_log(
    meta: RequestMeta, scope: Scope, ctx: RequestContext, trusted: TrustedProxies
) -> None:
    """Fill in what the prediction log keeps of who sent the request, within its bounds."""
    view = caller_view(scope, ctx, trusted)
    client = scope.get("client")
    truncated: list[str] = []
    peer = host_port(str(client[0]), client[1]) if client else None
    peer, cut = bounded_text(peer, MAX_ADDRESS_CHARS)
    if cut:
        truncated.append("client_addr")
    meta.client = peer
    meta.client_ip, cut = bounded_text(view.client, MAX_ADDRESS_CHARS)
    if cut:
        truncated.append("client_ip")
    meta.forwarded, cut = bounded_text(view.claimed_text(), MAX_FORWARDED_BYTES)
    if view.truncated or cut:
        truncated.append("forwarded")
    meta.truncated = tuple(truncated)
    # With no usable X-Request-ID of the caller's, the id the response carries is the
    # server's own: it names the record too. A caller's id is only stored beside one.
    meta.record_id = ctx.request_id if ctx.head.request_id != ctx.request_id else new_record_id()


def _peer_json(addr: Any) -> dict[str, Any] | None:
    if not addr:
        return None
    # A dual-stack socket ("::") sees IPv4 peers as ::ffff:a.b.c.d: report the IPv4 address.
    host, port = unmapped(addr[0]) if addr[0] else addr[0], addr[1] if len(addr) > 1 else None
    kind = classify_address(host).kind if host and is_ip_literal(host) else None
    return {"address": host, "port": port, "kind": kind}


#: A header is echoed at most this long: the echo must not amplify what a caller sends.
MAX_ECHOED_CHARS = 1024


def _shown(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_ECHOED_CHARS:
        return value
    return value[:MAX_ECHOED_CHARS] + f"…(+{len(value) - MAX_ECHOED_CHARS} chars)"


def _client_json(view: ClientView) -> dict[str, Any]:
    address = view.client
    kind = classify_address(address).kind if address and is_ip_literal(address) else None
    return {"address": address, "port": view.client_port, "kind": kind, "source": view.source}


def path_echo(
    scope: Scope,
    *,
    bound_host: str,
    bound_port: int,
    request_id: str,
    in_kubernetes: bool,
    trusted: TrustedProxies | None = None,
    insider: bool = True,
    view: ClientView | None = None,
) -> dict[str, Any]:
    """What the server saw of the request; ``view``: the client as resolved already."""
    if view is None:
        view = client_view(scope, trusted or TrustedProxies())
    chain = list(view.chain)
    via = [v.strip() for value in header_values(scope, b"via") for v in value.split(",")]
    peer = _peer_json(scope.get("client"))
    return {
        "request_id": request_id,
        "peer": peer,
        "server": _peer_json(scope.get("server")),
        "bound": {"host": bound_host, "port": bound_port},
        "host_header": header(scope, b"host"),
        "scheme": scope.get("scheme", "http"),
        "http_version": scope.get("http_version"),
        "forwarded": _shown(header(scope, b"forwarded")),
        "x_forwarded_for": _shown(header(scope, b"x-forwarded-for")),
        "x_forwarded_proto": _shown(header(scope, b"x-forwarded-proto")),
        "x_forwarded_host": _shown(header(scope, b"x-forwarded-host")),
        "x_real_ip": _shown(header(scope, b"x-real-ip")),
        "via": via,
        "chain": chain,
        "proxies_seen": max(len(via), len(chain)),
        # The client the server believes: the TCP peer unless a trusted proxy vouches for
        # more (--forwarded-allow-ips). What the headers say beyond that is only claimed.
        "client": _client_json(view),
        "original_client": view.client,
        "claimed": [hop.to_json() for hop in view.claimed],
        "forwarded_trust": {
            "trusted": view.trusted,
            "reason": view.reason,
            "proxies": list(view.proxies),
            "claimed_hops": view.claimed_hops,
            "truncated": view.truncated,
        },
        # The server's own identity only to an insider (a key, or this machine).
        **(
            {
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "container": detect_container(in_kubernetes).to_json(),
            }
            if insider
            else {
                "hostname": None,
                "pid": None,
                # Whether it is a container is the path's shape (a NAT hop); which runtime
                # is the server's own business.
                "container": {
                    "in_container": detect_container(in_kubernetes).in_container,
                    "runtime": None,
                },
                "withheld": WITHHELD,
            }
        ),
    }
