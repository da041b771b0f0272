"""`servepath ports` on a real topology, side by side with `nc -zvw1`.

    client 10.9.1.2 ── 10.9.1.1 r1 10.9.2.1 ── 10.9.2.2 server (also dns.test's resolver)

The server listens on 80 and 8080. Each other port has one fate, set by a firewall rule on
the server or on the router.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from servepath.netdiag.ports import scan_ports
from tests.support import need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Topology, drop, reject

pytestmark = [pytest.mark.net, pytest.mark.timeout(120)]

CLIENT, ROUTER, SERVER = "10.9.1.2", "10.9.1.1", "10.9.2.2"
CLIENT6, ROUTER6, SERVER6 = "fd09:1::2", "fd09:1::1", "fd09:2::2"

OPEN, CLOSED, DROPPED = 80, 81, 82
REJECTED_BY_SERVER = 83  # iptables' default REJECT: ICMP port-unreachable
PROHIBITED_BY_SERVER = 84  # icmp-admin-prohibited
REJECTED_BY_ROUTER = 85
PROHIBITED_BY_ROUTER = 86
HOST_UNREACHABLE_BY_ROUTER = 87
RESET_BY_SERVER = 88  # tcp-reset: indistinguishable from a closed port, by design
MANY_DROPPED = range(2000, 2300)


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Iterator[Network]:
    topo = Topology()
    topo.router("r1")
    topo.host("client", nameservers=[SERVER])
    topo.link("client", f"{CLIENT}/24,{CLIENT6}/64", "r1", f"{ROUTER}/24,{ROUTER6}/64")
    topo.link("r1", "10.9.2.1/24,fd09:2::1/64", "server", f"{SERVER}/24,{SERVER6}/64")
    topo.rule("server", drop(port=DROPPED))
    topo.rule("server", drop(port=f"{MANY_DROPPED.start}:{MANY_DROPPED.stop - 1}"))
    topo.rule("server", reject(port=REJECTED_BY_SERVER))
    topo.rule("server", reject("icmp-admin-prohibited", port=PROHIBITED_BY_SERVER))
    topo.rule("server", reject("tcp-reset", port=RESET_BY_SERVER))
    topo.rule("server", reject("icmp6-adm-prohibited", port=PROHIBITED_BY_SERVER, ipv6=True))
    topo.rule("r1", reject(chain="FORWARD", port=REJECTED_BY_ROUTER))
    topo.rule("r1", reject("icmp-admin-prohibited", chain="FORWARD", port=PROHIBITED_BY_ROUTER))
    topo.rule(
        "r1", reject("icmp-host-unreachable", chain="FORWARD", port=HOST_UNREACHABLE_BY_ROUTER)
    )
    topo.dns("server", SERVER, records={"api.test": SERVER})
    network = build_network(topo)
    with network.listen("server", "::", [OPEN, 8080]):  # IPv6 and IPv4
        yield network


def servepath(
    net: Network, *args: str, user: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    proc = net.run(
        "client", [sys.executable, "-m", "servepath", *args, "--json"], check=False, user=user
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_port(entries: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(str(e["port"])): e for e in entries}


def nc_state(net: Network, address: str, port: int) -> tuple[str, str]:
    """What `nc -zvw1` makes of a port, in servepath's words, and its own message."""
    proc = net.run("client", ["nc", "-zvw1", address, str(port)], check=False)
    message = proc.stderr.strip()
    if proc.returncode == 0 and "succeeded" in message:
        return "open", message
    if "refused" in message:
        return "closed", message
    if "timed out" in message:
        return "filtered", message
    return "failed", message


def test_open_closed_and_filtered_agree_with_nc(net: Network) -> None:
    need_binary("nc")
    _code, entries = servepath(net, "ports", SERVER, f"{OPEN},{CLOSED},{DROPPED}")
    ours = {port: entry["state"] for port, entry in by_port(entries).items()}
    theirs = {port: nc_state(net, SERVER, port)[0] for port in (OPEN, CLOSED, DROPPED)}
    assert ours == theirs == {OPEN: "open", CLOSED: "closed", DROPPED: "filtered"}


def test_a_reject_on_the_server_is_unreachable_with_the_server_as_offender(net: Network) -> None:
    need_binary("nc")
    _code, entries = servepath(net, "ports", SERVER, f"{REJECTED_BY_SERVER},{PROHIBITED_BY_SERVER}")
    found = by_port(entries)
    for port, kind in (
        (REJECTED_BY_SERVER, "port-unreachable"),
        (PROHIBITED_BY_SERVER, "admin-prohibited"),
    ):
        entry = found[port]
        assert entry["state"] == "unreachable"
        assert entry["offender"] == SERVER
        assert entry["icmp"]["kind"] == kind
    assert "REJECT" in str(found[REJECTED_BY_SERVER]["detail"])
    # nc sees the default REJECT as a plain refusal, exactly like a closed port.
    assert nc_state(net, SERVER, REJECTED_BY_SERVER)[0] == nc_state(net, SERVER, CLOSED)[0]
    assert "No route to host" in nc_state(net, SERVER, PROHIBITED_BY_SERVER)[1]


def test_a_reject_on_the_router_names_the_router_not_the_server(net: Network) -> None:
    need_binary("nc")
    ports = (REJECTED_BY_ROUTER, PROHIBITED_BY_ROUTER, HOST_UNREACHABLE_BY_ROUTER)
    _code, entries = servepath(net, "ports", SERVER, ",".join(map(str, ports)))
    found = by_port(entries)
    kinds = {port: found[port]["icmp"]["kind"] for port in ports}
    assert kinds == {
        REJECTED_BY_ROUTER: "port-unreachable",
        PROHIBITED_BY_ROUTER: "admin-prohibited",
        HOST_UNREACHABLE_BY_ROUTER: "host-unreachable",
    }
    for port in ports:
        assert found[port]["state"] == "unreachable"
        assert found[port]["offender"] == ROUTER
        assert "before the target" in str(found[port]["detail"])
    # nc's messages name no one: the router's REJECT reads like the server's own refusal.
    assert nc_state(net, SERVER, REJECTED_BY_ROUTER)[1].endswith("Connection refused")


def test_a_tcp_reset_rule_looks_like_a_closed_port_to_everyone(net: Network) -> None:
    _code, entries = servepath(net, "ports", SERVER, str(RESET_BY_SERVER))
    assert entries[0]["state"] == "closed"
    assert "tcp-reset" in str(entries[0]["detail"])


def test_an_ipv6_reject_is_read_from_the_ipv6_error_queue(net: Network) -> None:
    _code, entries = servepath(net, "ports", SERVER6, f"{OPEN},{CLOSED},{PROHIBITED_BY_SERVER}")
    found = by_port(entries)
    assert [found[p]["state"] for p in (OPEN, CLOSED, PROHIBITED_BY_SERVER)] == [
        "open",
        "closed",
        "unreachable",
    ]
    assert found[PROHIBITED_BY_SERVER]["offender"] == SERVER6
    assert found[OPEN]["target"]["kind"] == "private"


def test_hundreds_of_filtered_ports_cost_about_one_timeout(net: Network) -> None:
    timeout = 1.0
    started = time.perf_counter()
    scan = net.call("client", scan_ports, SERVER, list(MANY_DROPPED), timeout=timeout)
    elapsed = time.perf_counter() - started
    assert {r.state for r in scan.results} == {"filtered"}
    assert len(scan.results) == len(MANY_DROPPED)
    assert elapsed < 3 * timeout, f"{len(MANY_DROPPED)} filtered ports took {elapsed:.2f}s"


def test_exit_code_is_zero_only_when_every_port_asked_is_open(net: Network) -> None:
    assert servepath(net, "ports", SERVER, f"{OPEN},8080")[0] == 0
    assert servepath(net, "ports", SERVER, f"{OPEN},{CLOSED}")[0] == 1


def test_a_bad_ports_spec_is_a_usage_error(net: Network) -> None:
    proc = net.run(
        "client", [sys.executable, "-m", "servepath", "ports", SERVER, "90-80"], check=False
    )
    assert proc.returncode == 2
    assert "80-90" in proc.stderr


def test_a_name_is_resolved_with_the_system_resolver(net: Network) -> None:
    _code, entries = servepath(net, "ports", "api.test", str(OPEN))
    assert entries[0]["state"] == "open"
    assert entries[0]["address"] == SERVER
    assert entries[0]["host"] == "api.test"


def test_an_unknown_name_is_a_problem_not_a_crash(net: Network) -> None:
    proc = net.run(
        "client", [sys.executable, "-m", "servepath", "ports", "missing.test", "80"], check=False
    )
    assert proc.returncode == 1
    assert "cannot resolve 'missing.test'" in proc.stderr


def test_an_unprivileged_user_gets_the_same_answers(net: Network) -> None:
    ports = (OPEN, CLOSED, REJECTED_BY_SERVER, PROHIBITED_BY_ROUTER)
    _code, as_root = servepath(net, "ports", SERVER, ",".join(map(str, ports)))
    whoami = net.run("client", ["id", "-u"], user="nobody").stdout.strip()
    assert whoami != "0"
    _code, as_nobody = servepath(net, "ports", SERVER, ",".join(map(str, ports)), user="nobody")
    summary = [(e["port"], e["state"], e["offender"]) for e in as_nobody]
    assert summary == [(e["port"], e["state"], e["offender"]) for e in as_root]
    assert summary[2] == (REJECTED_BY_SERVER, "unreachable", SERVER)
    assert summary[3] == (PROHIBITED_BY_ROUTER, "unreachable", ROUTER)


def test_the_table_says_who_rejected_and_why(net: Network) -> None:
    proc = net.run(
        "client",
        [sys.executable, "-m", "servepath", "ports", SERVER, f"{OPEN},{REJECTED_BY_ROUTER}"],
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert proc.returncode == 1
    text = proc.stdout
    assert re.search(rf"{REJECTED_BY_ROUTER}\s.*unreachable.*{re.escape(ROUTER)}", text)
    assert "private" in text and "a router or firewall before the target" in text
