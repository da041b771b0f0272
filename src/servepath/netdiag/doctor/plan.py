"""What the doctor will do, decided before any packet is sent: direct or through the
forward proxy, which ports beside the asked one, TLS or plain, which name goes in the Host
header and which address is dialled, and — once the server's OpenAPI document is read —
which predict route, which example, and the large request that looks for an MTU black hole.

Pure: the environment comes in as values (:class:`~servepath.config.ProxyEnv`), the OpenAPI
document as a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from servepath.config import ProxyEnv
from servepath.contract import (
    DEFAULT_HEALTH_ROUTE,
    ServerContract,
    example_for,
    instances_of,
    is_servepath_spec,
)
from servepath.errors import UsageError
from servepath.net.endpoints import host_port, is_ip_literal, parse_host_port
from servepath.net.proxy import ProxyChoice, choose_proxy
from servepath.netdiag.dns import Nameserver

__all__ = [
    "LARGE_REQUEST_BYTES",
    "NEIGHBOUR_PORTS",
    "AppPlan",
    "DoctorOptions",
    "DoctorUsageError",
    "Pin",
    "Plan",
    "Target",
    "make_plan",
    "parse_pin",
    "parse_url",
    "plan_app",
]

#: Ports this field's services usually listen on; probed beside the URL's own.
NEIGHBOUR_PORTS = (80, 443, 8080, 8000, 8443)
#: The large request: tens of KB, dozens of full-size packets, far past any path MTU.
LARGE_REQUEST_BYTES = 48_000
#: The request the MTU narrowing repeats at each segment size: a few packets at the largest.
NARROWING_REQUEST_BYTES = 4_000


class DoctorUsageError(UsageError):
    """The URL or an option cannot be used."""


@dataclass(frozen=True)
class Pin:
    """``--resolve NAME:PORT:ADDR``, as curl has it: dial ADDR for NAME on PORT, no DNS."""

    name: str
    port: int
    address: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "port": self.port, "address": self.address}


def parse_pin(text: str) -> Pin:
    name, sep, rest = text.partition(":")
    port_text, sep2, address = rest.partition(":")
    if not (sep and sep2 and name and port_text and address):
        raise DoctorUsageError(f"--resolve {text!r}: write it as NAME:PORT:ADDRESS, as curl does")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise DoctorUsageError(f"--resolve {text!r}: port {port_text!r} is not 1-65535")
    address = address.strip("[]")
    if not is_ip_literal(address):
        raise DoctorUsageError(f"--resolve {text!r}: {address!r} is not an IP address")
    return Pin(name.lower(), int(port_text), address)


@dataclass(frozen=True)
class DoctorOptions:
    proxy_env: ProxyEnv = field(default_factory=ProxyEnv)
    proxy: str | None = None
    resolvers: tuple[Nameserver, ...] = ()
    data: bytes | None = None
    cafile: str | None = None
    #: Look past an untrusted certificate (curl's -k): the TLS stage warns, HTTP goes on.
    insecure: bool = False
    #: Sent as ``Authorization: Bearer`` to the target (never to a forward proxy's page).
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 2.0  # per network probe (DNS, connect, trace hop, the large request)
    http_timeout: float = 10.0
    slow_ms: float = 1000.0
    neighbours: tuple[int, ...] = NEIGHBOUR_PORTS
    max_hops: int = 16
    resolv_conf: Path = Path("/etc/resolv.conf")
    pins: tuple[Pin, ...] = ()
    host_header: str | None = None
    large_bytes: int = LARGE_REQUEST_BYTES  # 0: do not send the large request


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written, without brackets
    port: int
    path: str

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{host_port(self.host, self.port)}"

    @property
    def host_endpoint(self) -> str:
        return host_port(self.host, self.port)


def parse_url(url: str) -> Target:
    """An http(s) URL with a host; a bare ``host[:port][/path]`` is taken as http://, as
    curl does."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DoctorUsageError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DoctorUsageError(f"{url!r} has an invalid port: {exc}") from None
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(text, parts.scheme, parts.hostname, port, path)


@dataclass(frozen=True)
class Plan:
    target: Target
    proxy: ProxyChoice
    pinned: str | None  # the address to dial without asking DNS (a literal, or --resolve)
    pin: Pin | None
    neighbours: tuple[int, ...]  # probed beside the asked port (none through a proxy)
    tls: bool
    host_header: str | None  # sent instead of the URL's host

    @property
    def resolve_name(self) -> bool:
        return self.pinned is None

    @property
    def direct(self) -> bool:
        return self.proxy.proxy is None

    @property
    def name_in_host_header(self) -> str:
        return self.host_header or self.target.host

    def headers(self) -> list[tuple[str, str]]:
        if self.host_header is None:
            return []
        return [("host", host_port(self.host_header, self.target.port))]

    def proxy_endpoint(self) -> tuple[str, int] | None:
        if self.proxy.proxy is None:
            return None
        try:
            host, port = parse_host_port(self.proxy.proxy, allow_url=True)
        except UsageError:
            return None
        return host, port or 80


def make_plan(url: str, options: DoctorOptions) -> Plan:
    target = parse_url(url)
    pin = next(
        (p for p in options.pins if p.name == target.host.lower() and p.port == target.port),
        None,
    )
    for p in options.pins:
        if pin is None and p.name == target.host.lower():
            raise DoctorUsageError(
                f"--resolve {p.name}:{p.port}:{p.address} does not apply: the URL's port is "
                f"{target.port}"
            )
    pinned = pin.address if pin else (target.host if is_ip_literal(target.host) else None)
    proxy = choose_proxy(target.url, options.proxy_env, options.proxy)
    neighbours = (
        tuple(p for p in options.neighbours if p != target.port) if proxy.proxy is None else ()
    )
    return Plan(
        target=target,
        proxy=proxy,
        pinned=pinned,
        pin=pin,
        neighbours=neighbours,
        tls=target.scheme == "https",
        host_header=options.host_header,
    )


@dataclass(frozen=True)
class AppPlan:
    """The requests of the app stage, from the server's own contract."""

    contract: ServerContract
    servepath: bool  # the OpenAPI document is servepath's
    route: str
    payload: bytes | None
    payload_source: str
    large: bytes | None = None  # the large request's body
    large_instances: int = 0
    narrowing: bytes | None = None  # the MTU narrowing's (smaller) body
    health_route: str = DEFAULT_HEALTH_ROUTE
    echo_route: str | None = None
    large_off: bool = False  # --large-kb 0


def plan_app(
    target: Target,
    spec: dict[str, Any] | None,
    data: bytes | None,
    *,
    large_bytes: int = LARGE_REQUEST_BYTES,
) -> AppPlan:
    contract = ServerContract.from_spec(spec)
    route = contract.route_for(target.path.split("?", 1)[0])
    if target.path not in ("", "/") and "?" in target.path:
        route = target.path
    payload, source = data, "--data"
    instances: list[dict[str, Any]] | None = None
    if data is not None:
        try:
            instances = instances_of(orjson.loads(data))
        except orjson.JSONDecodeError:
            instances = None
    else:
        example = example_for(spec, route)
        if example is not None:
            payload, source = orjson.dumps(example), "the server's OpenAPI example"
            instances = instances_of(example)
    large = narrowing = None
    count = 0
    servepath = is_servepath_spec(spec)
    # Only a server known to take the Vertex form gets the batch; another API might answer a
    # body it does not understand with an error that says nothing about the path.
    if servepath and instances and large_bytes > 0:
        limit = _max_instances(spec)
        large, count = _batch(instances[0], large_bytes, limit)
        narrowing, _ = _batch(instances[0], NARROWING_REQUEST_BYTES, limit)
    return AppPlan(
        contract=contract,
        servepath=servepath,
        route=route,
        payload=payload,
        payload_source=source,
        large=large,
        large_instances=count,
        narrowing=narrowing,
        health_route=contract.health_route,
        echo_route=contract.path_echo_route,
        large_off=large_bytes <= 0,
    )


def _max_instances(spec: dict[str, Any] | None) -> int:
    try:
        limit = spec["components"]["schemas"]["VertexRequest"]["properties"]["instances"][  # type: ignore[index]
            "maxItems"
        ]
    except (KeyError, TypeError):
        return 1000
    return int(limit) if isinstance(limit, int) and limit > 0 else 1000


def _batch(instance: dict[str, Any], target_bytes: int, limit: int) -> tuple[bytes, int]:
    one = len(orjson.dumps(instance)) + 1
    count = max(1, min(limit, -(-target_bytes // one)))
    return orjson.dumps({"instances": [instance] * count}), count
