"""A point-to-point link with a real propagation delay, for kernels without tc netem.

Two TUN devices, one in each network namespace, joined by a process that reads every IP packet
from one device and writes it to the other ``one_way_ms`` later, in order. Packets really wait
in flight, so a TCP handshake across the link costs a round trip of twice that, as it would on
a long fibre. ``delay_link()`` builds it between two nodes of a ``tests.topology.topology``
network and removes it on exit; the module also runs as the relay process itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the relay runs as a script, where the tests package is not importable
    from tests.topology.topology import Network

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """Create TUN device ``name`` in the calling thread's network namespace; returns its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def relay(fd_a: int, fd_b: int, one_way_s: float) -> None:
    """Forward packets between the two TUN fds, each held ``one_way_s`` before delivery."""
    other = {fd_a: fd_b, fd_b: fd_a}
    poller = select.poll()
    for fd in other:
        poller.register(fd, select.POLLIN)
    queue: list[tuple[float, int, int, bytes]] = []
    order = itertools.count()
    while True:
        now = time.monotonic()
        wait_ms = -1 if not queue else max(0, int((queue[0][0] - now) * 1000))
        for fd, _ in poller.poll(wait_ms):
            packet = os.read(fd, 65536)
            heapq.heappush(queue, (time.monotonic() + one_way_s, next(order), other[fd], packet))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, packet = heapq.heappop(queue)
            with contextlib.suppress(OSError):  # a device going down mid-teardown
                os.write(out, packet)


@contextlib.contextmanager
def delay_link(
    net: Network,
    a: str,
    a_address: str,
    b: str,
    b_address: str,
    *,
    rtt_ms: float,
    name: str = "sptun0",
) -> Iterator[None]:
    """A delayed point-to-point link ``a`` ↔ ``b`` (host addresses, no prefix) for the block."""
    fds: list[int] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        for node, local, peer in ((a, a_address, b_address), (b, b_address, a_address)):
            fds.append(net.call(node, open_tun, name))
            net.run(node, ["ip", "addr", "add", local, "peer", peer, "dev", name])
            net.run(node, ["ip", "link", "set", name, "up"])
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(fds[0]), str(fds[1]), str(rtt_ms / 2)],
            pass_fds=fds,
            start_new_session=True,
        )
        yield
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fd in fds:
            os.close(fd)  # the last close removes a non-persistent TUN device


if __name__ == "__main__":
    relay(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000)
