"""The topology harness itself: routes, NAT, DNS, and a teardown that always happens."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import NETNS_DIR, Topology, dnat

pytestmark = [pytest.mark.net, pytest.mark.timeout(60)]


def _our_namespaces() -> set[str]:
    prefix = f"sp-{os.getpid()}-"
    return {p.name for p in NETNS_DIR.glob(f"{prefix}*")} if NETNS_DIR.is_dir() else set()


def test_static_routes_follow_the_shortest_path() -> None:
    topo = Topology()
    topo.router("r1")
    topo.link("a", "10.9.1.2/24", "r1", "10.9.1.1/24")
    topo.link("r1", "10.9.2.1/24", "b", "10.9.2.2/24")
    assert sorted(topo.computed_routes()) == [
        ("a", "10.9.2.0/24", "10.9.1.1"),
        ("b", "10.9.1.0/24", "10.9.2.1"),
    ]


def test_everything_is_torn_down_even_when_the_block_fails(
    build_network_for_test: BuildNetwork,
) -> None:
    before = _our_namespaces()
    topo = Topology()
    topo.link("a", "10.9.1.1/24", "b", "10.9.1.2/24")
    with pytest.raises(RuntimeError, match="inside the block"), topo.build() as net:
        assert {net.ns("a"), net.ns("b")} <= _our_namespaces()
        raise RuntimeError("inside the block")
    assert _our_namespaces() == before
    assert not Path("/etc/netns", net.ns("a")).exists()


def test_a_docker_style_port_mapping_reaches_the_inner_port(
    build_network_for_test: BuildNetwork,
) -> None:
    need_binary("nc")
    topo = Topology()
    topo.link("client", "10.9.1.2/24", "host", "10.9.1.1/24")
    topo.rules("host", dnat(80, 8080))  # docker run -p 80:8080
    net = build_network_for_test(topo)
    with net.listen("host", "0.0.0.0", [8080]):
        mapped = net.run("client", ["nc", "-zw1", "10.9.1.1", "80"], check=False)
        local = net.run("host", ["nc", "-zw1", "10.9.1.1", "80"], check=False)
    assert mapped.returncode == 0, mapped.stderr
    assert local.returncode == 0, local.stderr  # the OUTPUT rule maps the host's own calls


def test_the_dns_server_answers_for_the_test_zone(build_network_for_test: BuildNetwork) -> None:
    need_binary("dnsmasq")
    topo = Topology()
    topo.host("client", nameservers=["10.9.1.53"])
    topo.link("client", "10.9.1.2/24", "dns", "10.9.1.53/24")
    topo.dns("dns", "10.9.1.53", records={"api.test": "10.9.1.80"}, cnames={"www.test": "api.test"})
    net = build_network_for_test(topo)
    code = "import socket; print(socket.gethostbyname('www.test'))"
    out = net.run("client", [sys.executable, "-c", code]).stdout.strip()
    assert out == "10.9.1.80"


def test_an_unprivileged_command_runs_without_root_or_capabilities(
    build_network_for_test: BuildNetwork,
) -> None:
    topo = Topology()
    topo.link("a", "10.9.1.1/24", "b", "10.9.1.2/24")
    net = build_network_for_test(topo)
    out = net.run("a", ["sh", "-c", "id -u; grep CapEff /proc/self/status"], user="nobody")
    uid, caps = out.stdout.split("\n", 1)
    assert uid != "0"
    assert caps.split()[-1] == "0000000000000000"
    denied = net.run("a", ["ip", "link", "set", "lo", "down"], user="nobody", check=False)
    assert denied.returncode != 0
