"""The kernel's view of listening sockets: parsed from its text, and read off real sockets."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from servepath.net.kernel import (
    accept_queue,
    listen_counters,
    parse_accept_queue,
    parse_netstat,
)

NETSTAT = """TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops
TcpExt: 0 0 17 19
IpExt: InNoRoutes InTruncatedPkts
IpExt: 3 0
"""

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
LISTENING = (
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0"
    "        0 4242 1 0000000000000000 100 0 0 10 0"
)
ESTABLISHED = (
    "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000009 00:00000000 00000000     0"
    "        0 4243 1 0000000000000000 20 4 30 10 -1"
)
TCP = "\n".join((TCP_HEADER, LISTENING, ESTABLISHED))


def test_netstat_groups_pair_names_with_values() -> None:
    groups = parse_netstat(NETSTAT)
    assert groups["TcpExt"]["ListenOverflows"] == 17
    assert groups["TcpExt"]["ListenDrops"] == 19
    assert groups["IpExt"] == {"InNoRoutes": 3, "InTruncatedPkts": 0}


def test_the_accept_queue_is_the_rx_queue_of_the_listening_socket_with_that_inode() -> None:
    lines = TCP.splitlines()
    assert parse_accept_queue(lines, 4242) == 5
    # An established socket with the same port is not the listener; another inode is absent.
    assert parse_accept_queue(lines, 4243) is None
    assert parse_accept_queue(lines, 1) is None


def test_garbage_parses_to_nothing_rather_than_raising() -> None:
    assert parse_netstat("TcpExt: a b\nIpExt: 1 2\n") == {}
    assert parse_accept_queue(["x", "", "1 2 3 0A zz:zz 0 0 0 0 4242"], 4242) is None


def test_connections_nobody_accepts_are_counted_in_the_accept_queue() -> None:
    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        assert accept_queue(listener.fileno()) == 0
        for _ in range(3):
            clients.append(socket.create_connection(listener.getsockname(), timeout=5))
        deadline = time.monotonic() + 10
        while accept_queue(listener.fileno()) != 3:  # the handshakes complete in the kernel
            assert time.monotonic() < deadline, accept_queue(listener.fileno())
            time.sleep(0.01)
        conn, _ = listener.accept()
        conn.close()
        assert accept_queue(listener.fileno()) == 2
    finally:
        for c in clients:
            c.close()
        listener.close()


def test_an_ipv6_listener_is_found_in_tcp6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    listener = socket.socket(socket.AF_INET6)
    try:
        try:
            listener.bind(("::1", 0))
        except OSError:
            pytest.skip("no ::1 on this machine")
        listener.listen(4)
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        deadline = time.monotonic() + 10
        while accept_queue(listener.fileno()) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        client.close()
    finally:
        listener.close()


def test_a_descriptor_that_is_no_listening_socket_reads_as_unknown(tmp_path: Path) -> None:
    with (tmp_path / "f").open("w") as f:
        assert accept_queue(f.fileno()) is None
    assert accept_queue(10**6) is None


def test_this_namespace_has_listen_counters() -> None:
    counters = listen_counters()
    assert counters is not None
    assert counters.overflows >= 0 and counters.drops >= 0


def test_a_sock_diag_answer_gives_each_listeners_queue_and_backlog() -> None:
    import struct

    from servepath.net.kernel import inet_diag_request, parse_inet_diag

    request = inet_diag_request(socket.AF_INET, seq=7)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (len(request), 20, 0x301, 7)

    def message(family: int, state: int, port: int, address: bytes, rq: int, wq: int) -> bytes:
        body = struct.pack("=BBBB", family, state, 0, 0)
        body += port.to_bytes(2, "big") + bytes(2) + address.ljust(16, b"\0") + bytes(16)
        body += struct.pack("=IIIIIIII", 0, 0, 0, 0, rq, wq, 0, 4242)
        return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body

    data = message(socket.AF_INET, 10, 8080, bytes([10, 0, 0, 5]), 129, 128)
    data += message(socket.AF_INET6, 10, 8080, socket.inet_pton(socket.AF_INET6, "::1"), 0, 4096)
    data += message(socket.AF_INET, 1, 8080, bytes(4), 9, 9)  # an established socket
    queues, done = parse_inet_diag(data)
    assert not done
    assert [(q.address, q.queued, q.backlog, q.full) for q in queues] == [
        ("10.0.0.5", 129, 128, True),
        ("::1", 0, 4096, False),
    ]
    assert parse_inet_diag(struct.pack("=IHHII", 20, 3, 2, 1, 0) + bytes(4)) == ([], True)
    assert parse_inet_diag(data[:30]) == ([], False)  # truncated: nothing, no exception


def test_listen_queues_reads_the_backlog_and_queue_of_a_real_listener() -> None:
    from servepath.net.kernel import listen_queues

    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        deadline = time.monotonic() + 10
        while True:
            found = listen_queues(port)
            assert found is not None
            (queue,) = found
            if queue.queued == 2:
                break
            assert time.monotonic() < deadline, queue
            time.sleep(0.01)
        assert (queue.address, queue.port, queue.backlog, queue.full) == (
            "127.0.0.1",
            port,
            5,
            False,
        )
    finally:
        for c in clients:
            c.close()
        listener.close()
