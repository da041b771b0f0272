"""Reading the kernel's route tables and matching an address against them."""

from __future__ import annotations

from pathlib import Path

from servepath.net.routes import (
    default_gateway,
    lookup,
    parse_proc_ipv6_route,
    parse_proc_route,
    read_routes,
)

# /proc/net/route: default via 10.0.2.1 on eth0, 10.0.2.0/24 on-link, 172.17.0.0/16 on docker0,
# 192.168.50.0/24 via 10.0.2.254 (little-endian hex), and one route that is down.
PROC_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t0032A8C0\tFE02000A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth1\t000010AC\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0
"""

# /proc/net/ipv6_route: fd00::/64 on-link, fe80::/64 on-link, default via fd00::1, the
# machine's own address fd00::2 (local), and the kernel's unreachable default on lo.
Z = "0" * 32
PROC_IPV6_ROUTE = f"""\
fd000000000000000000000000000000 40 {Z} 00 {Z} 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 {Z} 00 {Z} 00000100 00000002 00000000 00000001     eth0
{Z} 00 {Z} 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
fd000000000000000000000000000002 80 {Z} 00 {Z} 00000000 00000003 00000000 80200001     eth0
{Z} 00 {Z} 00 {Z} ffffffff 00000001 00000000 00200200       lo
"""


def test_ipv4_table_is_read_with_gateways_and_without_routes_that_are_down() -> None:
    routes = parse_proc_route(PROC_ROUTE)
    assert [(r.interface, str(r.network), r.gateway) for r in routes] == [
        ("eth0", "0.0.0.0/0", "10.0.2.1"),
        ("eth0", "10.0.2.0/24", None),
        ("docker0", "172.17.0.0/16", None),
        ("eth0", "192.168.50.0/24", "10.0.2.254"),
    ]


def test_ipv6_table_leaves_out_local_and_unreachable_routes() -> None:
    routes = parse_proc_ipv6_route(PROC_IPV6_ROUTE)
    assert [(r.interface, str(r.network), r.gateway) for r in routes] == [
        ("eth0", "fd00::/64", None),
        ("eth0", "fe80::/64", None),
        ("eth0", "::/0", "fd00::1"),
    ]


def test_lookup_takes_the_longest_prefix_of_the_addresses_own_version() -> None:
    routes = parse_proc_route(PROC_ROUTE) + parse_proc_ipv6_route(PROC_IPV6_ROUTE)
    kinds = {
        address: (found.kind, found.route.gateway if found.route else None)
        for address in (
            "10.0.2.15",
            "192.168.50.7",
            "203.0.113.5",
            "127.0.0.1",
            "fd00::99",
            "2001:db8::1",
            "::1",
            "not an address",
        )
        for found in [lookup(address, routes)]
    }
    assert kinds == {
        "10.0.2.15": ("on-link", None),
        "192.168.50.7": ("via-route", "10.0.2.254"),
        "203.0.113.5": ("via-default", "10.0.2.1"),
        "127.0.0.1": ("local", None),
        "fd00::99": ("on-link", None),
        "2001:db8::1": ("via-default", "fd00::1"),
        "::1": ("local", None),
        "not an address": ("none", None),
    }


def test_an_ipv6_only_table_has_no_route_for_ipv4() -> None:
    routes = parse_proc_ipv6_route(PROC_IPV6_ROUTE)
    assert lookup("10.0.2.15", routes).kind == "none"
    assert default_gateway(routes, 4) is None
    gateway = default_gateway(routes)
    assert gateway is not None and gateway.gateway == "fd00::1"


def test_default_gateway_prefers_ipv4_and_can_be_asked_for_a_version() -> None:
    routes = parse_proc_route(PROC_ROUTE) + parse_proc_ipv6_route(PROC_IPV6_ROUTE)
    v4, v6 = default_gateway(routes), default_gateway(routes, 6)
    assert v4 is not None and v4.gateway == "10.0.2.1"
    assert v6 is not None and v6.gateway == "fd00::1"


def test_unreadable_tables_add_nothing(tmp_path: Path) -> None:
    v4 = tmp_path / "route"
    v4.write_text(PROC_ROUTE)
    routes = read_routes(v4, tmp_path / "no-ipv6_route")
    assert len(routes) == 4
    assert read_routes(tmp_path / "a", tmp_path / "b") == []


def test_this_machines_tables_parse() -> None:
    # Whatever this machine has, every route read back is up and well formed.
    for route in read_routes():
        assert route.network.version in (4, 6) and route.interface
