"""MTU black holes on a real path: a 1400-byte link whose router never says "too big".

    client 10.9.1.2 ─ 10.9.1.1 r1 10.9.2.1 ══ 10.9.2.2 r2 10.9.3.1 ─ 10.9.3.2 vm :8080
                                         MTU 1400

Every other link has MTU 1500. On the black-hole path r1 drops the ICMP fragmentation-needed
(IPv6: packet-too-big) it generates, so the client never learns that 1500-byte packets do
not fit: handshakes and small requests pass, a large POST stalls. On the healthy path the
same link is there but r1 says so, and PMTU discovery works.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from servepath.netdiag.mtu import MtuNarrowing, locate_mtu_hop, narrow_mtu
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Rule, Topology

pytestmark = [pytest.mark.net, pytest.mark.timeout(120)]

VM = {4: "10.9.3.2", 6: "fd09:3::2"}
R1_CLIENT_SIDE = {4: "10.9.1.1", 6: "fd09:1::1"}
R2_R1_SIDE = {4: "10.9.2.2", 6: "fd09:2::2"}
NARROW_LINK = {"r1": {4: "10.9.2.1", 6: "fd09:2::1"}, "r2": R2_R1_SIDE}
PORT = 8080
LINK_MTU = 1400
LARGE_BODY = 20_000
TIMEOUT = 2.0

SILENT_TOO_BIG = {
    4: Rule("OUTPUT", ("-p", "icmp", "--icmp-type", "fragmentation-needed"), ("-j", "DROP")),
    6: Rule(
        "OUTPUT",
        ("-p", "icmpv6", "--icmpv6-type", "packet-too-big"),
        ("-j", "DROP"),
        ipv6=True,
    ),
}

# Answers any GET or POST once it has read the whole body, on IPv4 and IPv6.
_SERVER = r"""
import socket, socketserver, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = f"read {len(body)} bytes\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply)
        self.close_connection = True

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 128  # every probe's SYN at once, none left to a retransmission

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address):
        pass  # probes reset their connections; that is not news

server = Server(("::", int(sys.argv[1])), Handler)
print("ready", flush=True)
server.serve_forever()
"""


def build_path(build_network: BuildNetwork, *, blackhole: bool) -> Network:
    topo = Topology()
    topo.router("r1")
    topo.router("r2")
    topo.link("client", "10.9.1.2/24,fd09:1::2/64", "r1", "10.9.1.1/24,fd09:1::1/64")
    topo.link("r1", "10.9.2.1/24,fd09:2::1/64", "r2", "10.9.2.2/24,fd09:2::2/64")
    topo.link("r2", "10.9.3.1/24,fd09:3::1/64", "vm", f"{VM[4]}/24,{VM[6]}/64")
    # Linux would otherwise shrink its segments after repeated timeouts and heal the hole.
    topo.sysctl("client", "net.ipv4.tcp_mtu_probing", "0")
    if blackhole:
        topo.rule("r1", SILENT_TOO_BIG[4])
        topo.rule("r1", SILENT_TOO_BIG[6])
    net = build_network(topo)
    for node, addresses in NARROW_LINK.items():
        found = net.run(node, ["ip", "-o", "addr", "show", "to", addresses[4]]).stdout.split()
        net.run(node, ["ip", "link", "set", "dev", found[1], "mtu", str(LINK_MTU)])
    proc = net.spawn(
        "vm", [sys.executable, "-c", _SERVER, str(PORT)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return net


@pytest.fixture(scope="module")
def blackhole(build_network: BuildNetwork) -> Iterator[Network]:
    yield build_path(build_network, blackhole=True)


@pytest.fixture(scope="module")
def healthy(build_network: BuildNetwork) -> Iterator[Network]:
    yield build_path(build_network, blackhole=False)


def post(body_size: int) -> bytes:
    head = f"POST /decisions HTTP/1.1\r\nHost: vm\r\nContent-Length: {body_size}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + b"x" * body_size


def exchange(address: str, request: bytes, *, mss: int | None = None) -> bytes | None:
    """The first bytes of the answer to ``request``, or None if none came within TIMEOUT."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if mss is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.settimeout(TIMEOUT)
        sock.connect((address, PORT))
        try:
            sock.sendall(request)
            return sock.recv(64)
        except TimeoutError:
            return None


def net_exchange(
    net: Network, version: int, request: bytes, *, mss: int | None = None
) -> bytes | None:
    return net.call("client", exchange, VM[version], request, mss=mss)


def dropped_too_big(net: Network, version: int) -> int:
    """How many fragmentation-needed / packet-too-big errors r1 has swallowed so far."""
    tool = "ip6tables" if version == 6 else "iptables"
    out = net.run("r1", [tool, "-w", "-n", "-v", "-x", "-L", "OUTPUT"]).stdout
    counts = [int(line.split()[0]) for line in out.splitlines() if re.search(r"\bDROP\b", line)]
    assert len(counts) == 1, out
    return counts[0]


def narrow(net: Network, version: int) -> MtuNarrowing:
    request = post(LARGE_BODY)
    return net.call("client", narrow_mtu, VM[version], PORT, request, timeout=TIMEOUT)


@pytest.mark.parametrize("version", [4, 6])
def test_the_black_hole_passes_small_requests_and_stalls_large_ones(
    blackhole: Network, version: int
) -> None:
    small = net_exchange(blackhole, version, b"GET / HTTP/1.1\r\nHost: vm\r\n\r\n")
    assert small is not None and small.startswith(b"HTTP/1.1 200")
    before = dropped_too_big(blackhole, version)
    assert net_exchange(blackhole, version, post(LARGE_BODY)) is None
    # The router did say "too big"; its own firewall swallowed it.
    assert dropped_too_big(blackhole, version) > before
    # The same request in segments that fit the narrow link is answered: size is the cause.
    fits = LINK_MTU - (40 if version == 4 else 60)
    answer = net_exchange(blackhole, version, post(LARGE_BODY), mss=fits)
    assert answer is not None and answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("version", [4, 6])
def test_narrowing_finds_the_narrow_links_mtu_in_one_timeout(
    blackhole: Network, version: int
) -> None:
    result = narrow(blackhole, version)
    assert result.verdict == "blackhole", result.to_json()
    assert result.path_mtu is not None and 1280 < result.path_mtu <= LINK_MTU
    assert result.path_mtu == LINK_MTU  # the list has 1400 itself
    assert result.stalling_size == 1420  # the next candidate up
    assert result.contradicted_mss == ()
    states = {o.mss + (40 if version == 4 else 60): o.state for o in result.outcomes}
    assert all(state == ("answered" if mtu <= 1400 else "stalled") for mtu, state in states.items())
    assert result.elapsed_s < 3 * TIMEOUT


@pytest.mark.parametrize("version", [4, 6])
def test_locating_names_the_last_hop_before_the_narrow_link(
    blackhole: Network, version: int
) -> None:
    started = time.monotonic()
    hop = blackhole.call("client", locate_mtu_hop, VM[version], size=1420, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert hop is not None
    assert (hop.ttl, hop.before_ttl, hop.before, hop.after) == (
        2,
        1,
        R1_CLIENT_SIDE[version],
        R2_R1_SIDE[version],
    )
    assert hop.adjacent and not hop.at_target
    assert elapsed < 3 * TIMEOUT


@pytest.mark.parametrize("version", [4, 6])
def test_the_largest_passing_size_crosses_where_the_stalling_size_dies(
    blackhole: Network, version: int
) -> None:
    result = narrow(blackhole, version)
    assert result.path_mtu is not None and result.stalling_size is not None
    passing = blackhole.call("client", locate_mtu_hop, VM[version], size=result.path_mtu)
    stalling = blackhole.call("client", locate_mtu_hop, VM[version], size=result.stalling_size)
    assert passing is None
    assert stalling is not None and stalling.before == R1_CLIENT_SIDE[version]


@pytest.mark.parametrize("version", [4, 6])
def test_a_narrow_link_that_says_too_big_is_no_black_hole(healthy: Network, version: int) -> None:
    answer = net_exchange(healthy, version, post(LARGE_BODY))
    assert answer is not None and answer.startswith(b"HTTP/1.1 200")
    result = narrow(healthy, version)
    assert result.verdict == "clear", result.to_json()
    assert {o.state for o in result.outcomes} == {"answered"}
    # PMTU discovery shrank the large candidates' segments; the result reports what was sent.
    assert result.path_mtu == LINK_MTU
    assert result.elapsed_s < TIMEOUT
    assert healthy.call("client", locate_mtu_hop, VM[version], size=1500) is None
