"""Reading listeners and addresses of a network namespace from /proc text."""

from __future__ import annotations

from servepath.netdiag.netns import (
    NamespaceListeners,
    Socket,
    local_addresses_from_fib_trie,
    parse_proc_net_tcp,
)

_REST = "00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0"


def _table(*rows: tuple[str, str, str]) -> str:
    """/proc/net/tcp text: a header and one line per (local, remote, state)."""
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    lines = [f"{i:4}: {local} {remote} {state} {_REST}" for i, (local, remote, state) in
             enumerate(rows)]  # fmt: skip
    return "\n".join([head, *lines]) + "\n"


ANY6 = "0" * 32
TCP = _table(
    ("0100007F:1F90", "00000000:0000", "0A"),  # 127.0.0.1:8080 listening
    ("00000000:2328", "00000000:0000", "0A"),  # 0.0.0.0:9000 listening
    ("020011AC:1F90", "010011AC:D2F0", "01"),  # an established connection
)
TCP6 = _table(
    ("00000000000000000000000001000000:1F90", f"{ANY6}:0000", "0A"),  # [::1]:8080
    (f"{ANY6}:0050", f"{ANY6}:0000", "0A"),  # [::]:80
    ("0000000000000000FFFF00000200A8C0:0016", f"{ANY6}:0000", "0A"),  # ::ffff:192.168.0.2:22
)
FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 172.17.0.0/16 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
"""


def test_only_listening_sockets_are_read_in_both_families() -> None:
    assert parse_proc_net_tcp(TCP) == (Socket("127.0.0.1", 8080), Socket("0.0.0.0", 9000))
    assert parse_proc_net_tcp(TCP6) == (
        Socket("::1", 8080),
        Socket("::", 80),
        Socket("192.168.0.2", 22),  # an IPv4-mapped listener reads as IPv4
    )


def test_the_namespaces_own_addresses_come_from_the_local_table() -> None:
    assert local_addresses_from_fib_trie(FIB) == ("127.0.0.1", "172.17.0.2")


def test_a_loopback_listener_is_not_reachable_on_the_containers_address() -> None:
    space = NamespaceListeners(
        "net:[1]", 42, "servepath", ("127.0.0.1", "172.17.0.2"), parse_proc_net_tcp(TCP)
    )
    assert not space.reachable_on("172.17.0.2", 8080)
    assert space.reachable_on("172.17.0.2", 9000)
    assert space.reachable_on("127.0.0.1", 8080)
    assert "127.0.0.1:8080 (loopback only)" in space.describe_listeners()
    empty = NamespaceListeners("net:[2]", 43, None, (), ())
    assert empty.describe_listeners() == "nothing listens on any TCP port"
