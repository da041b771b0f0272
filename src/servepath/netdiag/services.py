"""Port numbers as this field names them, their IANA ranges, and the PORTS spec parser."""

from __future__ import annotations

import socket
from typing import Literal

from servepath.errors import PortSpecError

__all__ = [
    "DEFAULT_PORTS",
    "PortRange",
    "PortSpecError",
    "parse_ports",
    "port_range",
    "service_name",
]

PortRange = Literal["well-known", "registered", "dynamic"]

#: The ports a model API's path usually crosses: SSH to the VM, DNS, the web ports, the
#: dev-server ports, the cache and the database.
DEFAULT_PORTS: tuple[int, ...] = (22, 80, 443, 5432, 6379, 8080, 8443, 8000, 3000)

# Names as people deploying services say them; /etc/services misses most of the dev ports
# and names some of them after long-gone protocols (8080 "http-alt" is right, 3000 is not
# "hbci" to anyone in this field).
_SERVICES: dict[int, str] = {
    20: "ftp-data",
    21: "ftp",
    22: "ssh",
    23: "telnet",
    25: "smtp",
    53: "dns",
    67: "dhcp",
    80: "http",
    110: "pop3",
    123: "ntp",
    143: "imap",
    443: "https",
    465: "smtps",
    587: "submission",
    853: "dns-over-tls",
    993: "imaps",
    1883: "mqtt",
    2375: "docker",
    2376: "docker-tls",
    2379: "etcd",
    3000: "dev-server (node, grafana)",
    3306: "mysql",
    4222: "nats",
    5000: "dev-server (flask, registry)",
    5432: "postgresql",
    5672: "amqp",
    6379: "redis",
    6443: "kubernetes-api",
    8000: "http-dev (uvicorn, django)",
    8001: "kserve-grpc",
    8080: "http-alt",
    8443: "https-alt",
    8501: "tf-serving / streamlit",
    8888: "jupyter",
    9000: "http-alt (minio, php-fpm)",
    9090: "prometheus",
    9100: "node-exporter",
    9200: "elasticsearch",
    10250: "kubelet",
    11211: "memcached",
    27017: "mongodb",
}


def service_name(port: int) -> str | None:
    """The conventional service on ``port``, else the system's /etc/services name, else None."""
    if port in _SERVICES:
        return _SERVICES[port]
    try:
        return socket.getservbyport(port, "tcp")
    except (OSError, OverflowError):
        return None


def port_range(port: int) -> PortRange:
    """IANA's range for ``port`` (RFC 6335)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    if port <= 1023:
        return "well-known"
    if port <= 49151:
        return "registered"
    return "dynamic"


def _one_port(spec: str, item: str, text: str) -> int:
    text = text.strip()
    if not text:
        raise PortSpecError(spec, item, "empty port number")
    if text.isdigit():
        port = int(text)
    else:
        named = _port_by_name(text)
        if named is None:
            raise PortSpecError(spec, item, f"{text!r} is neither a number nor a known service")
        port = named
    if not 1 <= port <= 65535:
        raise PortSpecError(spec, item, "ports run from 1 to 65535")
    return port


def _port_by_name(name: str) -> int | None:
    lowered = name.lower()
    for port, known in _SERVICES.items():
        if known == lowered:
            return port
    try:
        return socket.getservbyname(lowered, "tcp")
    except OSError:
        return None


def parse_ports(spec: str) -> tuple[int, ...]:
    """Parse ``"80,443,8000-8010"`` (service names like ``https`` allowed) in the given order.

    Duplicates are dropped; a range runs low to high; 0 is refused since nothing can be
    connected to on it.
    """
    ports: dict[int, None] = {}
    if not spec.strip():
        raise PortSpecError(spec, spec, "no ports given")
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            raise PortSpecError(spec, raw, "empty item (two commas in a row, or a trailing one)")
        if "-" in item:
            low_text, _, high_text = item.partition("-")
            low = _one_port(spec, item, low_text)
            high = _one_port(spec, item, high_text)
            if low > high:
                raise PortSpecError(spec, item, f"range runs backwards; did you mean {high}-{low}?")
            for port in range(low, high + 1):
                ports[port] = None
        else:
            ports[_one_port(spec, item, item)] = None
    return tuple(ports)
