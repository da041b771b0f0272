"""The path echo: what the server saw of a request. Never environment values or secrets."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from servepath.net.addresses import classify_address
from servepath.net.endpoints import is_ip_literal, unmapped
from servepath.netdiag.container import detect_container
from servepath.service.asgi import Scope, header, header_values

_FORWARDED_FOR = re.compile(r'for=("?)(\[[^\]]+\]|[^;,"]+)\1', re.IGNORECASE)


def forwarded_chain(scope: Scope) -> list[str]:
    """Client-first list of addresses that proxies say the request came through."""
    chain: list[str] = []
    for value in header_values(scope, b"forwarded"):
        chain.extend(m.group(2) for m in _FORWARDED_FOR.finditer(value))
    if not chain:
        for value in header_values(scope, b"x-forwarded-for"):
            chain.extend(part.strip() for part in value.split(",") if part.strip())
    return chain


def _peer_json(addr: Any) -> dict[str, Any] | None:
    if not addr:
        return None
    # A dual-stack socket ("::") sees IPv4 peers as ::ffff:a.b.c.d: report the IPv4 address.
    host, port = unmapped(addr[0]) if addr[0] else addr[0], addr[1] if len(addr) > 1 else None
    kind = classify_address(host).kind if host and is_ip_literal(host) else None
    return {"address": host, "port": port, "kind": kind}


def path_echo(
    scope: Scope, *, bound_host: str, bound_port: int, request_id: str, in_kubernetes: bool
) -> dict[str, Any]:
    chain = forwarded_chain(scope)
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
        "forwarded": header(scope, b"forwarded"),
        "x_forwarded_for": header(scope, b"x-forwarded-for"),
        "x_forwarded_proto": header(scope, b"x-forwarded-proto"),
        "x_forwarded_host": header(scope, b"x-forwarded-host"),
        "x_real_ip": header(scope, b"x-real-ip"),
        "via": via,
        "chain": chain,
        "proxies_seen": max(len(via), len(chain)),
        "original_client": chain[0] if chain else (peer or {}).get("address"),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "container": detect_container(in_kubernetes).to_json(),
    }
