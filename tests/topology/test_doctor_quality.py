"""The doctor on a path that loses packets, and on MTU black holes in front of a TLS port and
on IPv6.

    client 10.32.1.2 ── r1 ══ r2 ── vm 10.32.4.2   servepath :8080 (http), :8443 (https),
      fd32:1::2            MTU 1400    fd32:4::2    on every address of both families

The r1 ══ r2 link has MTU 1400; the black hole drops the fragmentation-needed (IPv6:
packet-too-big) that r1 would send. Loss is made on r1 with iptables' ``statistic --mode
nth``: exact rates, so every run sees the same loss. Hop 1 is r1 (10.32.1.1), hop 2 r2
(10.32.2.2), hop 3 the vm.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.waiting import wait_until_answers
from tests.support import TESTS_DIR
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Rule, Topology

pytestmark = [pytest.mark.net, pytest.mark.timeout(180)]

CLIENT, R1_IN, R2_IN, VM, VM6 = "10.32.1.2", "10.32.1.1", "10.32.2.2", "10.32.4.2", "fd32:4::2"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TESTS_DIR.parent / "src")}

SILENT_TOO_BIG = (
    Rule("OUTPUT", ("-p", "icmp", "--icmp-type", "fragmentation-needed"), ("-j", "DROP")),
    Rule("OUTPUT", ("-p", "icmpv6", "--icmpv6-type", "packet-too-big"), ("-j", "DROP"), ipv6=True),
)


def every_nth(n: int, *match: str) -> Rule:
    """Drop every ``n``-th packet r1 forwards that matches: a loss rate of exactly 1/n."""
    nth = ("-m", "statistic", "--mode", "nth", "--every", str(n), "--packet", "0")
    return Rule("FORWARD", (*match, *nth), ("-j", "DROP"))


# One packet in three lost on the r1 -> r2 link, towards the vm only. Each kind of packet
# has a counter of its own, so that the rate holds for each whatever else crosses r1 at the
# same moment: the trace's probes that die at r2 (TTL 1 once r1 has forwarded them: five in
# a row always lose one or two), the SYNs of connections (one counter for all would fall in
# step with each connection's SYN, ACK and RST and drop the same kind every time), the rest.
LOSS_FROM_HOP_2 = (
    every_nth(3, "-s", CLIENT, "-m", "ttl", "--ttl-eq", "1"),
    every_nth(3, "-s", CLIENT, "-p", "tcp", "--syn", "-m", "ttl", "--ttl-gt", "1"),
    every_nth(3, "-s", CLIENT, "-p", "tcp", "!", "--syn", "-m", "ttl", "--ttl-gt", "1"),
)
# One packet in 33 (3 %) lost each way: a healthy path by the doctor's measure.
LIGHT_LOSS = (every_nth(33, "-s", CLIENT), every_nth(33, "-d", CLIENT))


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Network:
    # routes by hand: the client reaches the vm's private address through its default route
    # only, as a laptop reaches a cloud VM, so a lost SYN once read as private_address there
    topo = Topology(auto_routes=False)
    topo.host("client")
    topo.router("r1")
    topo.router("r2")
    topo.host("vm")
    topo.link("client", f"{CLIENT}/24,fd32:1::2/64", "r1", f"{R1_IN}/24,fd32:1::1/64")
    topo.link("r1", "10.32.2.1/24,fd32:2::1/64", "r2", f"{R2_IN}/24,fd32:2::2/64")
    topo.link("r2", "10.32.4.1/24,fd32:4::1/64", "vm", f"{VM}/24,{VM6}/64")
    for node, destination, via in (
        ("client", "default", R1_IN),
        ("client", "::/0", "fd32:1::1"),
        ("r1", "10.32.4.0/24", R2_IN),
        ("r1", "fd32:4::/64", "fd32:2::2"),
        ("r2", "10.32.1.0/24", "10.32.2.1"),
        ("r2", "fd32:1::/64", "fd32:2::1"),
        ("vm", "default", "10.32.4.1"),
        ("vm", "::/0", "fd32:4::1"),
    ):
        topo.route(node, destination, via)
    # Linux would otherwise shrink its segments after repeated timeouts and heal the hole.
    topo.sysctl("client", "net.ipv4.tcp_mtu_probing", "0")
    network = build_network(topo)
    for node in ("r1", "r2"):  # the narrow link: eth1 on both routers
        network.run(node, ["ip", "link", "set", "dev", "eth1", "mtu", "1400"])
    return network


@pytest.fixture(scope="module")
def servers(
    net: Network, tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[None]:
    import trustme

    tmp = tmp_path_factory.mktemp("quality")
    ca = trustme.CA()
    leaf = ca.issue_cert(VM, VM6)
    chain, key = tmp / "chain.pem", tmp / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    env = {**ENV, "SERVEPATH_DATA_DIR": str(tmp / "data")}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    serve = [sys.executable, "-m", "servepath", "serve", "--store", "off", "--host", "::"]
    procs = [
        net.spawn("vm", [*serve, "--port", "8080", "--model", str(example_model_path)],
                  env=env, **quiet),
        net.spawn("vm", [*serve, "--port", "8443", "--model", str(example_model_path),
                         "--tls-cert", str(chain), "--tls-key", str(key)], env=env, **quiet),
    ]  # fmt: skip
    for url in (f"http://{VM}:8080/", f"https://{VM}:8443/"):
        wait_until_answers(url, timeout=60, verify=False, interval=0.1,
                           run=lambda get: net.call("client", get))  # fmt: skip
    yield
    for proc in procs:
        net.stop(proc)


def doctor(net: Network, url: str, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = net.run(
        "client",
        [sys.executable, "-m", "servepath", "doctor", url, *args, "--json", "--timeout", "1"],
        check=False,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    print(f"\ndoctor {url}: {report['cause']} in {report['elapsed_s']} s "
          f"({time.monotonic() - started:.2f} s with start-up)", file=sys.stderr)  # fmt: skip
    return report


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def verdict(report: dict[str, Any]) -> tuple[str | None, str]:
    return report["failed_stage"], report["cause"]


def with_rules(net: Network, node: str, rules: tuple[Rule, ...]) -> ExitStack:
    stack = ExitStack()
    for rule in rules:
        stack.enter_context(net.rule(node, rule))
    return stack


# --- loss ---------------------------------------------------------------------------------------


def test_a_healthy_path_is_ok_in_under_two_seconds_with_each_hop_measured(
    net: Network, servers: None
) -> None:
    report = doctor(net, f"http://{VM}:8080/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    assert report["elapsed_s"] <= 2.0
    quality = stage(report, "route")["data"]["quality"]
    assert [h["address"] for h in quality["hops"]] == [R1_IN, R2_IN, VM]
    assert [h["sent"] for h in quality["hops"]] == [5, 5, 80]
    assert quality["burst"]["open"] == 80 and not quality["lossy"]


def test_a_path_that_loses_one_packet_in_three_is_packet_loss_from_the_hop_where_it_starts(
    net: Network, servers: None
) -> None:
    with with_rules(net, "r1", LOSS_FROM_HOP_2):
        report = doctor(net, f"http://{VM}:8080/decisions")
    assert verdict(report) == ("transport", "packet_loss"), report["explanation"]
    assert stage(report, "address")["status"] == "warn"  # private, through the default route
    assert f"hop 2 ({R2_IN})" in report["explanation"], report["explanation"]
    assert report["owner"] == "network admin"
    burst = stage(report, "route")["data"]["quality"]["burst"]
    assert 20 <= burst["late"] + burst["lost"] <= 40, burst  # one in three, give or take
    # the walk ends once the health route answered through the loss: the transport's one
    # timeout, and what the health request's retransmissions cost
    assert stage(report, "http")["status"] == "ok"
    assert stage(report, "app")["summary"] == "not tried: transport failed"
    assert report["elapsed_s"] < 3, report["elapsed_s"]


def test_three_percent_loss_each_way_is_no_alarm(net: Network, servers: None) -> None:
    with with_rules(net, "r1", LIGHT_LOSS):
        report = doctor(net, f"http://{VM}:8080/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    assert not stage(report, "route")["data"]["quality"]["lossy"]


# A second way from the client to the vm: a point-to-point link whose packets all wait 75 ms
# each way in a relay (this kernel has no netem), handshakes included.
FAR_CLIENT, FAR_VM = "10.32.9.1", "10.32.9.2"


def test_150_ms_of_added_latency_is_no_alarm_and_the_time_is_where_it_was_added(
    net: Network, servers: None
) -> None:
    from tests.regions.delayline import delay_link

    with delay_link(net, "client", FAR_CLIENT, "vm", FAR_VM, rtt_ms=150):
        report = doctor(net, f"http://{FAR_VM}:8080/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    quality = stage(report, "route")["data"]["quality"]
    assert not quality["lossy"] and quality["burst"]["lost"] == 0, quality["burst"]
    (hop,) = quality["hops"]  # one link: the vm is the first hop
    assert hop["address"] == FAR_VM and hop["best_ms"] >= 150, hop
    assert quality["burst"]["best_ms"] >= 150, quality["burst"]


# --- MTU black holes on TLS and IPv6 --------------------------------------------------------------


@pytest.fixture
def black_hole(net: Network) -> Iterator[None]:
    for version in ("-4", "-6"):
        net.run("client", ["ip", version, "route", "flush", "cache"])
    with with_rules(net, "r1", SILENT_TOO_BIG):
        yield
    for version in ("-4", "-6"):
        net.run("client", ["ip", version, "route", "flush", "cache"])


@pytest.mark.parametrize(
    ("url", "header"),
    [(f"https://{VM}:8443/decisions", 40), (f"http://[{VM6}]:8080/decisions", 60)],
    ids=["https", "ipv6"],
)
def test_an_mtu_black_hole_is_found_and_sized_over_tls_and_on_ipv6(
    net: Network, servers: None, black_hole: None, url: str, header: int
) -> None:
    report = doctor(net, url, "--insecure")
    assert stage(report, "app")["status"] == "ok"  # the small request passed
    large = stage(report, "large request")
    assert verdict(report) == ("large request", "mtu_blackhole"), large
    mtu = large["data"]["mtu"]
    assert mtu["path_mtu"] == 1400, mtu  # the candidates include 1400 itself
    assert mtu["largest_passing_mss"] == 1400 - header
    assert report["owner"] == "network admin"


def test_the_narrowing_speaks_tls_on_ipv6_too(
    net: Network, servers: None, black_hole: None
) -> None:
    from servepath.netdiag.mtu import narrow_mtu

    # a body past every candidate segment; any answer (a 4xx to this body) proves its size
    body = b"x" * 4000
    request = (
        f"POST /decisions HTTP/1.1\r\nHost: [{VM6}]:8443\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    result = net.call("client", narrow_mtu, VM6, 8443, request, timeout=1.0, tls_server_name=VM6)
    assert result.verdict == "blackhole", result.to_json()
    assert (result.version, result.path_mtu) == (6, 1400)
