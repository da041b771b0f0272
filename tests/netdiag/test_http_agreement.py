"""`servepath http` agrees with `curl -w` on the same requests.

On loopback the two connect within a fraction of a millisecond of each other. In a network
namespace whose firewall drops the first SYN of every connection, every connect takes one
retransmission timeout (a second): connect, time to first byte and total agree with curl's
to a few milliseconds, and the phases add up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.helpers.waiting import wait_until_answers
from tests.support import free_port, need_binary
from tests.topology.conftest import build_network_for_test  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(120)

CURL_FORMAT = (
    '{"namelookup": %{time_namelookup}, "connect": %{time_connect}, '
    '"appconnect": %{time_appconnect}, "pretransfer": %{time_pretransfer}, '
    '"starttransfer": %{time_starttransfer}, "total": %{time_total}}'
)

#: A server that answers every request after DELAY seconds (argv: address, port, delay).
SERVER = textwrap.dedent(
    """
    import http.server, sys, time
    address, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            time.sleep(delay)
            body = b"agreed"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer((address, port), Handler).serve_forever()
    """
)


def _curl(url: str, runner: list[str] | None = None) -> dict[str, float]:
    curl = need_binary("curl")
    argv = [*(runner or []), curl, "-s", "-o", "/dev/null", "--noproxy", "*", "-w",
            CURL_FORMAT, url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return {k: v * 1000 for k, v in json.loads(out).items()}


def _ours(url: str, runner: list[str] | None = None) -> dict[str, float]:
    argv = [*(runner or []), sys.executable, "-m", "servepath", "http", "--json", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    phases = json.loads(out)["phases"]
    parts = [phases[k] for k in ("prepare_ms", "dns_ms", "connect_ms", "proxy_tunnel_ms",
                                 "tls_ms", "send_ms", "wait_ms", "download_ms")]  # fmt: skip
    marks = phases["cumulative"]
    return {
        "connect": phases["connect_ms"],
        "starttransfer": marks["time_starttransfer"],
        "total": phases["total_ms"],
        "sum": sum(p for p in parts if p is not None),
    }


def _best(samples: list[dict[str, float]]) -> dict[str, float]:
    """The least of each time over several runs: on a machine shared with other work, a run
    the scheduler preempted mid-request says nothing about either tool, and the least is the
    run it left alone (a cost a tool adds to every request shows in it all the same)."""
    return {k: min(s[k] for s in samples) for k in samples[0]}


def test_on_loopback_the_connect_is_timed_as_curl_times_it() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, "127.0.0.1", str(port), "0.05"])
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_answers(url, timeout=15, expect=None, interval=0.1)
        samples = [(_ours(url), _curl(url)) for _ in range(7)]  # interleaved: the same load
        ours, curl = _best([o for o, _ in samples]), _best([c for _, c in samples])
    finally:
        server.terminate()
        server.wait(10)
    curl_connect = curl["connect"] - curl["namelookup"]
    # A fresh process, as a user runs it: no first-use cost inside the timed connect.
    assert ours["connect"] <= curl_connect + 0.7, (ours, curl)
    assert all(o["sum"] == pytest.approx(o["total"], abs=0.01) for o, _ in samples)
    # the server's 50 ms are in both times to first byte
    assert ours["starttransfer"] >= 50 and curl["starttransfer"] >= 50
    assert abs(ours["starttransfer"] - curl["starttransfer"]) < 15, (ours, curl)


@pytest.mark.net
def test_a_slow_connect_first_byte_and_total_agree_with_curl(
    build_network_for_test: Any,  # noqa: F811
) -> None:
    from tests.topology.topology import Topology

    need_binary("iptables")
    topo = Topology()
    topo.link("client", "10.79.1.1/24", "vm", "10.79.1.2/24")
    net = build_network_for_test(topo)
    # Every other SYN to the service is dropped: each connection's first one, so every
    # connect waits for the kernel's retransmission, one second later.
    net.run("vm", ["iptables", "-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8080",
                   "-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0",
                   "-j", "DROP"])  # fmt: skip
    net.spawn("vm", [sys.executable, "-c", SERVER, "10.79.1.2", "8080", "0.1"])
    url = "http://10.79.1.2:8080/"
    runner = net.argv("client", [])
    wait_until_answers(
        url, timeout=15, expect=None, run=lambda get: net.call("client", get), interval=0.1
    )
    samples = [(_ours(url, runner), _curl(url, runner)) for _ in range(3)]
    ours, curl = _best([o for o, _ in samples]), _best([c for _, c in samples])
    curl_connect = curl["connect"] - curl["namelookup"]
    assert 900 <= curl_connect < 1500 and 900 <= ours["connect"] < 1500, (ours, curl)
    # (as below: the errors this guards against are a second wide)
    assert abs(ours["connect"] - curl_connect) < 80, (ours, curl)
    # the connect, then the server's 100 ms
    assert curl["starttransfer"] >= curl_connect + 100 and ours["starttransfer"] >= 1000
    # The errors this guards against are a second wide (the retransmitted SYN counted twice,
    # or not at all); a machine busy with other work delays either process by tens of ms.
    assert abs(ours["starttransfer"] - curl["starttransfer"]) < 80, (ours, curl)
    assert abs(ours["total"] - curl["total"]) < 80, (ours, curl)
    assert all(o["sum"] == pytest.approx(o["total"], abs=0.01) for o, _ in samples)
