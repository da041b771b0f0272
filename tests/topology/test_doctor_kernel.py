"""`doctor --local` reading a real kernel, in network namespaces of its own: a listener whose
accept queue is full, Docker's publication of a port the firewall closes (real iptables
rules, never the machine's), and a connection-tracking table filled past 90%.

Counters of a namespace belong to it (ListenOverflows, the conntrack count and events), so
each case lives in a namespace where nothing else runs. The table's maximum is the machine's
(read-only in a namespace): the full table is filled for real, with unanswered UDP packets
that leave the namespace toward an address no one holds, and torn down with the namespace.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servepath.net.kernel import listen_queues, parse_netstat
from tests.support import TESTS_DIR, need
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Topology

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TESTS_DIR.parent / "src")}
PUBLISHED = 18080
#: An address on the conntrack node's link that no one holds, with a made-up neighbour entry:
#: packets to it leave the namespace (and are tracked) without anyone answering or resolving.
NOBODY = "10.79.0.99"


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Network:
    topo = Topology()
    topo.link("srv", "10.79.0.1/24", "ct", "10.79.0.2/24")
    return build_network(topo)


def local_doctor(net: Network, node: str, port: int, *extra: str) -> dict[str, Any]:
    proc = net.run(
        node,
        [sys.executable, "-m", "servepath", "doctor", "--local", str(port), "--json", *extra],
        check=False,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    return report


# --- the accept queue ----------------------------------------------------------------------------


def _flood(port: int, count: int) -> tuple[socket.socket, list[socket.socket]]:
    """A listener with a backlog of one that never accepts, and ``count`` connects to it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1)
    clients = []
    for _ in range(count):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        clients.append(c)
    return listener, clients


def test_a_listener_that_never_accepts_is_named_by_its_own_full_queue(net: Network) -> None:
    port = 18070
    listener, clients = net.call("srv", _flood, port, 8)
    try:
        deadline = time.monotonic() + 10
        while True:  # the handshakes complete in the kernel, at its pace
            queues = net.call("srv", listen_queues, port)
            if queues and queues[0].full:
                break
            assert time.monotonic() < deadline, queues
            time.sleep(0.02)
        report = local_doctor(net, "srv", port, "--timeout", "0.5")
    finally:
        for c in clients:
            c.close()
        listener.close()
    assert (report["failed_stage"], report["cause"]) == ("accept queue", "accept_queue_overflow")
    stage = next(s for s in report["stages"] if s["name"] == "accept queue")
    (queue,) = stage["data"]["queues"]
    assert queue["backlog"] == 1 and queue["queued"] >= 1 and queue["full"]
    assert "of 1 connections wait for accept()" in report["explanation"]
    assert report["owner"] == "server operator"
    assert "servepath serve --backlog" in " ".join(report["fix"])


# Another listener of the namespace, never accepting, that keeps receiving new connects: the
# namespace's ListenOverflows grows all the while (bounded: 20 s, 4,000 sockets).
_OVERFLOWING = """
import socket, sys, time
port = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port)); listener.listen(1)
clients = []
end = time.monotonic() + 20
while time.monotonic() < end and len(clients) < 4000:
    c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", port))
    clients.append(c)
    time.sleep(0.005)
"""


# A server whose health route answers 200, with the usual backlog.
_HEALTHY = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}")
    c.close()
"""


def _overflows(net: Network, node: str) -> int:
    text = net.run(node, ["cat", "/proc/net/netstat"]).stdout
    return parse_netstat(text)["TcpExt"]["ListenOverflows"]


def test_drops_at_another_listener_are_not_blamed_on_a_healthy_port(net: Network) -> None:
    flood = net.spawn("srv", [sys.executable, "-c", _OVERFLOWING, "18073"])
    server = net.spawn(
        "srv", [sys.executable, "-c", _HEALTHY, "18071"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        start = _overflows(net, "srv")
        deadline = time.monotonic() + 10
        while _overflows(net, "srv") == start:  # the other queue overflows already
            assert time.monotonic() < deadline
            time.sleep(0.02)
        report = local_doctor(net, "srv", 18071, "--timeout", "0.5")
    finally:
        net.stop(server)
        net.stop(flood)
    assert report["ok"], report["explanation"]
    stage = next(s for s in report["stages"] if s["name"] == "accept queue")
    assert stage["status"] == "warn", stage
    assert "another listener's" in stage["summary"]
    assert stage["data"]["queues"][0]["backlog"] == 1024
    (warning,) = [w for w in report["warnings"] if w["stage"] == "accept queue"]
    assert "whole network namespace" in warning["explanation"]
    assert report["elapsed_s"] < 2.0


# --- Docker publishing a port that the firewall closes --------------------------------------------

_FAKE_PROXY = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[sys.argv.index("-host-port") + 1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}")
    c.close()
"""

# What `docker run -p 18080:80` writes (the nat table) beside ufw's `ufw deny 18080` (filter).
_RULES = f"""*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport {PUBLISHED} -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -j ufw-user-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-USER -j RETURN
-A ufw-user-input -p tcp -m tcp --dport {PUBLISHED} -j DROP
COMMIT
"""


@pytest.fixture(scope="module")
def docker_proxy(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A docker-proxy (the interpreter under that name, with its flags) publishing 18080 on
    every address, and Docker's and ufw's rules in the namespace's own tables."""
    tmp = tmp_path_factory.mktemp("docker-proxy")
    binary = tmp / "docker-proxy"
    shutil.copy(Path(sys.executable).resolve(), binary)
    script = tmp / "fake_proxy.py"
    script.write_text(_FAKE_PROXY)
    rules = tmp / "rules"
    rules.write_text(_RULES)
    net.run("srv", ["iptables-restore", str(rules)])
    flags = ["-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", str(PUBLISHED),
             "-container-ip", "172.17.0.2", "-container-port", "80"]  # fmt: skip
    proc = net.spawn("srv", [str(binary), str(script), *flags], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        net.stop(proc)
        for table in ("filter", "nat"):
            net.run("srv", ["iptables", "-t", table, "-F"])
            net.run("srv", ["iptables", "-t", table, "-X"])


def test_docker_publishing_a_port_ufw_denies_is_a_warning_with_the_fix(
    net: Network, docker_proxy: None
) -> None:
    report = local_doctor(net, "srv", PUBLISHED)
    assert report["ok"], report  # the path works: what the firewall says is not true
    warning = next(w for w in report["warnings"] if w["cause"] == "published_past_firewall")
    assert warning["stage"] == "firewall"
    assert f"--dport {PUBLISHED} -j DROP" in warning["explanation"]
    fix = " ".join(warning["fix"])
    assert f"docker run -p 127.0.0.1:{PUBLISHED}:80" in fix
    assert f"DOCKER-USER -p tcp -m conntrack --ctorigdstport {PUBLISHED}" in fix
    # the fix applied where Docker's packets pass silences the warning
    rule = ["-p", "tcp", "-m", "conntrack", "--ctorigdstport", str(PUBLISHED), "-j", "DROP"]
    net.run("srv", ["iptables", "-I", "DOCKER-USER", *rule])
    try:
        fixed = local_doctor(net, "srv", PUBLISHED)
    finally:
        net.run("srv", ["iptables", "-D", "DOCKER-USER", *rule])
    assert not any(w["cause"] == "published_past_firewall" for w in fixed["warnings"])
    stage = next(s for s in fixed["stages"] if s["name"] == "firewall")
    assert stage["status"] == "warn" and "drops new connections" in stage["summary"]


# --- a full connection-tracking table -------------------------------------------------------------

# Each socket has a source port of its own: with 60,000 destination ports each, no two
# packets share a tuple, so every one is a new entry.
_FILL = """
import socket, sys
count, address = int(sys.argv[1]), sys.argv[2]
sent = 0
while sent < count:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in range(1, 1 + min(60000, count - sent)):
        s.sendto(b"", (address, port))
    sent += min(60000, count - sent)
"""


def _entries(node: str, net: Network) -> int:
    return int(net.run(node, ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout)


def test_a_table_filled_past_ninety_percent_is_conntrack_full(net: Network) -> None:
    limit = Path("/proc/sys/net/netfilter/nf_conntrack_max")
    need(limit.exists(), "no connection tracking in this kernel")
    maximum = int(limit.read_text())
    need(maximum <= 600_000, f"nf_conntrack_max is {maximum}: too many entries to fill here")
    # a namespace tracks connections once a rule asks for it
    net.run("ct", ["iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j",
                   "ACCEPT"])  # fmt: skip
    net.run("ct", ["ip", "neigh", "replace", NOBODY, "lladdr", "02:00:00:00:00:99", "dev", "eth0"])
    with net.listen("ct", "0.0.0.0", [18072]):
        target = int(maximum * 0.95)
        half = target // 2
        fills = [  # two senders, one a core
            net.spawn("ct", [sys.executable, "-c", _FILL, str(n), NOBODY])
            for n in (half, target - half)
        ]
        for proc in fills:
            assert proc.wait(timeout=60) == 0
        assert _entries("ct", net) >= 0.9 * maximum
        report = local_doctor(net, "ct", 18072, "--timeout", "0.5")
    assert (report["failed_stage"], report["cause"]) == ("conntrack", "conntrack_full")
    assert report["owner"] == "network admin"
    assert f"of {maximum} entries" in report["explanation"]
    assert f"nf_conntrack_max={maximum * 2}" in " ".join(report["fix"])
    # the machine's own namespace is untouched: its table did not grow with this one's
    assert int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text()) < 0.5 * maximum
