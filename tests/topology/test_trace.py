"""`servepath trace` on a real three-router path, side by side with `traceroute`.

    client 10.9.1.2 ─ r1 ─ 10.9.2.0/24 ─ r2 ─ 10.9.3.0/24 ─ r3 ─ 10.9.4.2 server :80

Each router answers a traceroute from the address of its interface toward the client.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Topology, drop, reject, silent_time_exceeded

pytestmark = [pytest.mark.net, pytest.mark.timeout(120)]

SERVER = "10.9.4.2"
HOPS = ["10.9.1.1", "10.9.2.2", "10.9.3.2", SERVER]
SERVER6 = "fd09:4::2"
HOPS6 = ["fd09:1::1", "fd09:2::2", "fd09:3::2", SERVER6]
PORT = 80
NAMES = {"r1.path.test": "10.9.1.1", "r2.path.test": "10.9.2.2", "r3.path.test": "10.9.3.2"}
_IP = re.compile(r"^(\d+\.\d+\.\d+\.\d+|[0-9a-f:]*:[0-9a-f:]+)$")


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Iterator[Network]:
    topo = Topology()
    for router in ("r1", "r2", "r3"):
        topo.router(router)
    topo.host("client", nameservers=[SERVER])
    topo.link("client", "10.9.1.2/24,fd09:1::2/64", "r1", "10.9.1.1/24,fd09:1::1/64")
    topo.link("r1", "10.9.2.1/24,fd09:2::1/64", "r2", "10.9.2.2/24,fd09:2::2/64")
    topo.link("r2", "10.9.3.1/24,fd09:3::1/64", "r3", "10.9.3.2/24,fd09:3::2/64")
    topo.link("r3", "10.9.4.1/24,fd09:4::1/64", "server", f"{SERVER}/24,{SERVER6}/64")
    topo.dns("server", SERVER, records={**NAMES, "api.path.test": SERVER})
    network = build_network(topo)
    with network.listen("server", "::", [PORT]):
        yield network


def servepath_trace(
    net: Network, *args: str, user: str | None = None
) -> tuple[int, dict[str, Any], str]:
    proc = net.run(
        "client",
        [sys.executable, "-m", "servepath", "trace", *args, "--json"],
        check=False,
        user=user,
    )
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        return proc.returncode, {}, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def our_hops(result: dict[str, Any]) -> list[str | None]:
    return [hop["address"] for hop in result["hops"]]


def traceroute_hops(net: Network, *args: str, target: str = SERVER) -> list[str | None]:
    """The first address traceroute prints for each TTL (None for `* * *`)."""
    need_binary("traceroute")
    # `-w 1` alone also turns off traceroute's adaptive wait, which can print `*` early.
    out = net.run("client", ["traceroute", "-n", "-w", "1", *args, target]).stdout
    hops: list[str | None] = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        addresses = [f for f in fields[1:] if _IP.match(f)]
        hops.append(addresses[0] if addresses else None)
    return hops


def test_udp_hops_agree_with_traceroute(net: Network) -> None:
    code, result, _ = servepath_trace(net, SERVER, "--protocol", "udp", "-n")
    assert code == 0
    assert result["method"] == "udp" and result["reached"] is True
    assert our_hops(result) == traceroute_hops(net) == HOPS


def test_tcp_hops_agree_with_traceroute_tcp_mode(net: Network) -> None:
    code, result, _ = servepath_trace(net, SERVER, "--port", str(PORT), "-n")
    assert code == 0
    assert (result["protocol"], result["method"], result["port"]) == ("tcp", "tcp-connect", PORT)
    assert result["port_state"] == "open"
    assert our_hops(result) == traceroute_hops(net, "-T", "-p", str(PORT)) == HOPS


def test_icmp_hops_agree_with_traceroute_icmp_mode(net: Network) -> None:
    code, result, _ = servepath_trace(net, SERVER, "--protocol", "icmp", "-n")
    assert code == 0
    assert result["method"] in ("icmp-raw", "icmp-dgram")
    assert our_hops(result) == traceroute_hops(net, "-I") == HOPS


@pytest.mark.parametrize("protocol", ["udp", "tcp", "icmp"])
def test_ipv6_hops_agree_with_traceroute(net: Network, protocol: str) -> None:
    flags = {"udp": [], "tcp": ["-T", "-p", str(PORT)], "icmp": ["-I"]}[protocol]
    code, result, err = servepath_trace(net, SERVER6, "--protocol", protocol, "-n")
    assert code == 0, (err, json.dumps(result))
    assert our_hops(result) == traceroute_hops(net, "-6", *flags, target=SERVER6) == HOPS6


def test_a_silent_hop_is_null_where_traceroute_prints_stars(net: Network) -> None:
    with net.rule("r2", silent_time_exceeded()):
        code, result, _ = servepath_trace(net, SERVER, "-n", "--timeout", "1")
        theirs = traceroute_hops(net, "-T", "-p", str(PORT))
    assert code == 0 and result["reached"] is True
    assert our_hops(result) == theirs == [HOPS[0], None, HOPS[2], SERVER]
    silent = result["hops"][1]
    assert silent["rtt_ms"] == [] and silent["lost"] == 3


def test_a_target_that_drops_the_probes_is_not_reached(net: Network) -> None:
    with net.rule("server", drop(port=PORT)):
        code, result, _ = servepath_trace(net, SERVER, "-n", "--max-hops", "6", "--timeout", "1")
    assert code == 1
    assert result["reached"] is False and result["port_state"] is None
    assert our_hops(result) == [*HOPS[:3], None, None, None]
    assert "not reached" in str(result["detail"])


def test_a_closed_port_is_reached_and_said_to_be_closed(net: Network) -> None:
    code, result, _ = servepath_trace(net, SERVER, "--port", "81", "-n")
    assert code == 0
    assert result["reached"] is True and result["port_state"] == "closed"
    assert our_hops(result) == HOPS


def test_a_router_that_rejects_ends_the_trace_with_that_router(net: Network) -> None:
    rule = reject("icmp-admin-prohibited", chain="FORWARD", port=PORT)
    with net.rule("r3", rule):
        code, result, _ = servepath_trace(net, SERVER, "-n")
        theirs = traceroute_hops(net, "-T", "-p", str(PORT))
    assert code == 1 and result["reached"] is False
    # TTL 3 expires at r3; TTL 4 gets through the TTL check and meets the rule on r3.
    assert our_hops(result) == theirs == [*HOPS[:3], HOPS[2]]
    assert result["hops"][-1]["note"] == "admin-prohibited"
    assert "10.9.3.2 answered admin-prohibited" in str(result["detail"])


def test_hops_are_named_by_reverse_dns_unless_numeric(net: Network) -> None:
    code, result, _ = servepath_trace(net, "api.path.test", "--timeout", "1")
    assert code == 0
    assert result["target"] == "api.path.test" and result["address"] == SERVER
    names = [hop["name"] for hop in result["hops"]]
    assert names == [*NAMES, "api.path.test"]
    _, numeric, _ = servepath_trace(net, SERVER, "-n")
    assert {hop["name"] for hop in numeric["hops"]} == {None}


@contextlib.contextmanager
def ping_group_range(net: Network, value: str) -> Iterator[None]:
    before = net.run("client", ["sysctl", "-n", "net.ipv4.ping_group_range"]).stdout.split()
    net.sysctl("client", "net.ipv4.ping_group_range", value)
    try:
        yield
    finally:
        net.sysctl("client", "net.ipv4.ping_group_range", " ".join(before))


def test_an_unprivileged_user_traces_with_tcp_and_ping_sockets(net: Network) -> None:
    assert net.run("client", ["id", "-u"], user="nobody").stdout.strip() != "0"
    code, tcp, err = servepath_trace(net, SERVER, "-n", user="nobody")
    assert code == 0, err
    assert our_hops(tcp) == HOPS
    with ping_group_range(net, "65534 65534"):
        code, icmp, err = servepath_trace(net, SERVER, "--protocol", "icmp", "-n", user="nobody")
    assert code == 0, err
    assert icmp["method"] == "icmp-dgram"
    assert our_hops(icmp) == HOPS


def test_icmp_without_ping_sockets_or_root_says_how_to_get_them(net: Network) -> None:
    with ping_group_range(net, "1 0"):
        code, _result, err = servepath_trace(net, SERVER, "--protocol", "icmp", "-n", user="nobody")
    assert code == 1
    assert "ping_group_range" in err and "--protocol tcp" in err


def test_the_table_shows_stars_for_a_silent_hop(net: Network) -> None:
    with net.rule("r2", silent_time_exceeded()):
        proc = net.run(
            "client",
            [sys.executable, "-m", "servepath", "trace", SERVER, "-n", "--timeout", "1"],
            check=False,
        )
    assert proc.returncode == 0
    assert re.search(r"^\s*2\s.*\*\s+\*\s+\*", proc.stdout, re.MULTILINE), proc.stdout
    assert f"reached {SERVER} port {PORT} in 4 hops" in proc.stdout
