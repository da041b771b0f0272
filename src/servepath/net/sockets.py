"""Socket helpers the probes share: resolve a host, build the ``connect()`` address of an IP
literal, and how many sockets may be open at once."""

from __future__ import annotations

import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from servepath.errors import ResolveError
from servepath.net.endpoints import is_ip_literal

__all__ = ["ResolveError", "fd_budget", "resolve_host", "reverse_names", "sockaddr_for"]

#: File descriptors left for everything but a probe's sockets (logs, the event loop, files).
_FD_RESERVE = 64


def resolve_host(host: str, family: int = socket.AF_UNSPEC) -> list[str]:
    """Addresses of ``host`` from the system resolver, in its order; a literal is itself."""
    literal = host.strip("[]")
    if is_ip_literal(literal):
        return [literal]
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolveError(host, exc.strerror or str(exc)) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolveError(host, "no addresses")
    return addresses


def sockaddr_for(
    address: str, port: int
) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]]:
    """The family and connect() address of an IP literal (zone id kept for link-local)."""
    if ":" in address:
        info = socket.getaddrinfo(address, port, socket.AF_INET6, 0, 0, socket.AI_NUMERICHOST)
        scope_id = int(info[0][4][-1])
        return socket.AF_INET6, (str(info[0][4][0]), port, 0, scope_id)
    return socket.AF_INET, (address, port)


def fd_budget(unlimited: int = 1024) -> int:
    """How many sockets a probe may hold open at once under RLIMIT_NOFILE (``unlimited`` when
    there is no limit); a few descriptors are kept for everything else."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return unlimited
    return max(1, soft - _FD_RESERVE)


def reverse_names(addresses: list[str], timeout: float) -> dict[str, str]:
    """The system resolver's names for ``addresses``, looked up at once, within ``timeout``
    in all; an address without a name (or too slow to get one) is left out."""
    names: dict[str, str] = {}
    if not addresses:
        return names

    def lookup(address: str) -> str | None:
        try:
            return socket.gethostbyaddr(address)[0]
        except OSError:
            return None

    pool = ThreadPoolExecutor(max_workers=min(8, len(addresses)))
    futures = {address: pool.submit(lookup, address) for address in addresses}
    deadline = time.monotonic() + timeout
    for address, future in futures.items():
        try:
            name = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            continue
        if name:
            names[address] = name
    pool.shutdown(wait=False, cancel_futures=True)
    return names
