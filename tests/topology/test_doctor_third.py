"""The doctor's third generation on a real topology: redirects on the predict route, a 5xx on
the large request, a routing loop, and failures that come and go behind a load balancer.

    client 10.31.1.2 ── r1 ── r2 ── vm 10.31.4.2   servepath :8080 (every IPv4 address),
      fd31:1::2          │     │       fd31:4::2    nginx: redirects, a loop, a 5xx on
      default via r1     │     └── 10.31.9.0/24      large bodies, one bad replica of two
                         │         bounces between r1 and r2 (a routing loop)
                         └── dns 10.31.3.53: both.test -> A 10.31.4.2, AAAA fd31:4::2
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.nginx import HEADER
from tests.helpers.waiting import wait_until_answers
from tests.support import TESTS_DIR, need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Topology, drop

CLIENT, R1_IN, R1_OUT, R2_IN, VM = "10.31.1.2", "10.31.1.1", "10.31.2.1", "10.31.2.2", "10.31.4.2"
LOOPING = "10.31.9.5"  # routed r1 -> r2 -> r1 ...
VM6, DNS = "fd31:4::2", "10.31.3.53"
# this checkout's code, whichever servepath the interpreter has installed
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TESTS_DIR.parent / "src")}


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Network:
    need_binary("dnsmasq")
    topo = Topology()
    topo.host("client", nameservers=[DNS])
    topo.router("r1")
    topo.router("r2")
    topo.host("vm")
    topo.link("client", f"{CLIENT}/24,fd31:1::2/64", "r1", f"{R1_IN}/24,fd31:1::1/64")
    topo.link("r1", f"{R1_OUT}/24,fd31:2::1/64", "r2", f"{R2_IN}/24,fd31:2::2/64")
    topo.link("r2", "10.31.4.1/24,fd31:4::1/64", "vm", f"{VM}/24,{VM6}/64")
    topo.link("r1", "10.31.3.1/24", "dns", f"{DNS}/24")
    # both.test: A and AAAA, where the service listens on IPv4 only
    topo.dns("dns", DNS, {"both.test": [VM, VM6]}, extra_args=["--local=/test/"])
    topo.route("client", "default", R1_IN)
    topo.route("r1", "10.31.9.0/24", R2_IN)
    topo.route("r2", "10.31.9.0/24", R1_OUT)
    return build_network(topo)


_NGINX_SITES = """
    upstream pair {{
        server 127.0.0.1:8080 max_fails=0;
        server 127.0.0.1:8099 max_fails=0;
    }}
    server {{
        listen {vm}:8094;
        location / {{ return 301 http://{vm}:8080$request_uri; }}
    }}
    server {{
        listen {vm}:8095;
        location / {{ return 308 http://{vm}:8080$request_uri; }}
    }}
    server {{
        listen {vm}:8096;
        location = /decisions {{ return 302 /v1/decisions; }}
        location = /v1/decisions {{ return 302 /decisions; }}
        location / {{ proxy_pass http://127.0.0.1:8080; }}
    }}
    server {{
        listen {vm}:8097;
        location / {{
            if ($content_length ~ "^[0-9]{{5,}}$") {{ return 500; }}
            proxy_pass http://127.0.0.1:8080;
        }}
    }}
    server {{
        listen {vm}:8098;
        location / {{ proxy_pass http://pair; proxy_next_upstream off; }}
    }}
"""


@pytest.fixture(scope="module")
def servers(
    net: Network, tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[None]:
    need_binary("nginx")
    tmp = tmp_path_factory.mktemp("doctor3")
    env = {**ENV, "SERVEPATH_DATA_DIR": str(tmp / "data")}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    (tmp / "nginx").mkdir()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(HEADER.format(dir=tmp / "nginx", servers=_NGINX_SITES.format(vm=VM)))
    procs = [
        net.spawn(
            "vm",
            [
                sys.executable,
                "-m",
                "servepath",
                "serve",
                "--store",
                "off",
                "--host",
                "0.0.0.0",
                "--port",
                "8080",
                "--model",
                str(example_model_path),
            ],
            env=env,
            **quiet,
        ),
        net.spawn(
            "vm", ["nginx", "-p", str(tmp / "nginx"), "-c", str(conf), "-g", "daemon off;"], **quiet
        ),
    ]
    wait_until_answers(
        f"http://{VM}:8080/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    for port in (8094, 8095, 8096, 8097, 8098):
        net.wait_for_socket("vm", port)
    yield
    for proc in procs:
        net.stop(proc)


def doctor(net: Network, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = net.run(
        "client",
        [sys.executable, "-m", "servepath", "doctor", *args, "--json", "--timeout", "1"],
        check=False,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    print(f"\ndoctor {' '.join(args)}: {report['cause']} in {report['elapsed_s']} s "
          f"({time.monotonic() - started:.2f} s with start-up)", file=sys.stderr)  # fmt: skip
    return report


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def verdict(report: dict[str, Any]) -> tuple[str | None, str]:
    return report["failed_stage"], report["cause"]


# --- redirects --------------------------------------------------------------------------------


def test_a_301_on_the_predict_route_is_redirected_with_the_target_named(
    net: Network, servers: None
) -> None:
    report = doctor(net, f"http://{VM}:8094/decisions")
    assert verdict(report) == ("app", "redirected"), report["explanation"]
    assert report["owner"] == "caller"
    target = f"http://{VM}:8080/decisions"
    assert target in report["explanation"]
    assert f"GET {target} got 405" in report["explanation"]
    assert f"call the URL the redirect names directly: {target}" in " ".join(report["fix"])


def test_a_308_keeps_the_post_and_is_only_a_warning(net: Network, servers: None) -> None:
    report = doctor(net, f"http://{VM}:8095/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    app = stage(report, "app")
    assert app["status"] == "warn" and "keeps the method" in app["summary"]
    assert f"POST http://{VM}:8080/decisions got 200" in app["summary"]


def test_a_redirect_loop_is_named_as_one(net: Network, servers: None) -> None:
    report = doctor(net, f"http://{VM}:8096/decisions")
    assert verdict(report) == ("app", "redirected"), report["explanation"]
    fix = " ".join(report["fix"])
    assert f"a loop (http://{VM}:8096/decisions -> http://{VM}:8096/v1/decisions ->" in fix


# --- the large request ------------------------------------------------------------------------


def test_a_500_on_the_large_request_is_a_failure_named_for_nginx(
    net: Network, servers: None
) -> None:
    report = doctor(net, f"http://{VM}:8097/decisions")
    assert verdict(report) == ("large request", "http_error"), report["explanation"]
    assert "nginx" in report["explanation"] and "answered 500" in report["explanation"]
    assert stage(report, "app")["status"] == "ok"  # the small request passed


# --- a routing loop ---------------------------------------------------------------------------


def test_a_routing_loop_is_named_with_the_two_routers_not_as_a_private_address(
    net: Network,
) -> None:
    # a private address this machine reaches only through its default gateway, as in the
    # field: the ICMP TTL exceeded outranks that guess
    report = doctor(net, f"http://{LOOPING}:8080/decisions")
    assert verdict(report) == ("transport", "routing_loop"), report["explanation"]
    assert report["owner"] == "network admin"
    assert f"between {R1_IN} and {R2_IN}" in report["explanation"]
    assert report["elapsed_s"] < 3


# --- failures that come and go ----------------------------------------------------------------


def test_one_bad_replica_behind_round_robin_is_intermittent_never_ok(
    net: Network, servers: None
) -> None:
    report = doctor(net, f"http://{VM}:8098/decisions")
    assert report["cause"] == "intermittent", (report["cause"], report["explanation"])
    assert report["owner"] == "server operator"
    # one of two upstreams answers: about half fail, whichever request nginx sent where
    assert "answered 502 from nginx" in report["explanation"]
    assert f"at {VM}:8098" in report["explanation"]
    assert "publishes no OpenAPI" not in json.dumps(report["stages"])
    assert "one replica or upstream behind nginx" in " ".join(report["fix"])


def test_a_healthy_path_repeats_in_well_under_a_second(net: Network, servers: None) -> None:
    report = doctor(net, f"http://{VM}:8080/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    repeat = stage(report, "repeat")
    assert repeat["status"] == "ok"
    assert "POST /decisions 11x: 11 200" in repeat["summary"]
    assert report["elapsed_s"] < 2


# --- doctor --local with docker-proxy on 127.0.0.1 ---------------------------------------------

_FAKE_PROXY = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18090)); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}")
    c.close()
"""


def test_docker_proxy_publishing_on_loopback_is_fixed_by_the_publish_address(
    net: Network, tmp_path: Path
) -> None:
    """`docker run -p 127.0.0.1:18090:8080`: Docker's publisher holds the loopback address.
    The kernel knows a process by its executable's name, so a copy of the interpreter named
    docker-proxy, with docker-proxy's own flags, stands in for it."""
    import shutil

    binary = tmp_path / "docker-proxy"
    shutil.copy(Path(sys.executable).resolve(), binary)
    script = tmp_path / "fake_proxy.py"
    script.write_text(_FAKE_PROXY)
    flags = ["-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port", "18090",
             "-container-ip", "172.17.0.2", "-container-port", "8080"]  # fmt: skip
    proc = net.spawn("vm", [str(binary), str(script), *flags], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out = net.run(
            "vm",
            [sys.executable, "-m", "servepath", "doctor", "--local", "18090", "--json"],
            check=False,
            env=ENV,
            timeout=60,
        )
        report = json.loads(out.stdout)
    finally:
        net.stop(proc)
    assert verdict(report) == ("bind", "bound_to_loopback"), report["explanation"]
    fix = " ".join(report["fix"])
    assert "docker run -p 18090:8080" in fix, fix
    assert "--host 0.0.0.0" not in fix
    assert "outside the container" not in report["explanation"]


# --- both address families --------------------------------------------------------------------


def test_an_aaaa_record_for_an_ipv4_only_service_is_ipv6_unreachable(
    net: Network, servers: None
) -> None:
    report = doctor(net, "http://both.test:8080/decisions")
    assert verdict(report) == ("transport", "ipv6_unreachable"), report["explanation"]
    assert report["owner"] == "server operator"
    assert f"answers on {VM} but is refused (RST) on {VM6}" in report["explanation"]
    fix = " ".join(report["fix"])
    assert "servepath serve --host ::" in fix and "remove the AAAA record of both.test" in fix


def test_a_silent_ipv6_path_is_the_network_admins_and_costs_one_timeout(
    net: Network, servers: None
) -> None:
    with net.rule("vm", drop(port=8080, ipv6=True)):
        report = doctor(net, "http://both.test:8080/decisions")
    assert verdict(report) == ("transport", "ipv6_unreachable"), report["explanation"]
    assert report["owner"] == "network admin"
    assert "waits until its connect timeout" in report["explanation"]
    assert report["elapsed_s"] < 1 + 2  # --timeout 1: one timeout, and the rest of the walk


# --- a certificate's dates, by whose clock --------------------------------------------------------

_DATED_SERVERS = """
import http.server, ssl, sys, threading, time
from email.utils import formatdate

cert, key = sys.argv[1], sys.argv[2]

def serve(port, offset_s):
    class Handler(http.server.BaseHTTPRequestHandler):
        def date_time_string(self, timestamp=None):
            return formatdate(time.time() + offset_s, usegmt=True)  # this server's clock
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

serve(8443, 0)  # clocks agree: the certificate really starts tomorrow
serve(8444, 3 * 86400)  # the server's clock three days ahead: by it, the certificate is valid
print("ready", flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def dated(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import trustme

    tmp = tmp_path_factory.mktemp("dated")
    ca = trustme.CA()
    now = datetime.now(UTC)
    leaf = ca.issue_cert(VM, not_before=now + timedelta(days=1), not_after=now + timedelta(days=90))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "leaf.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "leaf.key"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    proc = net.spawn(
        "vm",
        [sys.executable, "-c", _DATED_SERVERS, str(tmp / "leaf.pem"), str(tmp / "leaf.key")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield tmp / "ca.pem"
    net.stop(proc)


def test_a_certificate_starting_tomorrow_is_not_yet_valid_never_expired(
    net: Network, dated: Path
) -> None:
    report = doctor(net, f"https://{VM}:8443/decisions", "--cafile", str(dated))
    assert verdict(report) == ("tls", "tls_not_yet_valid"), report["explanation"]
    assert report["owner"] == "server operator"
    assert "expired" not in report["explanation"]
    assert "clock agrees with the server's" in report["explanation"]


def test_a_server_clock_days_away_makes_it_this_machines_clock_skew(
    net: Network, dated: Path
) -> None:
    report = doctor(net, f"https://{VM}:8444/decisions", "--cafile", str(dated))
    assert verdict(report) == ("tls", "clock_skew"), report["explanation"]
    assert report["owner"] == "caller"
    assert "3 days behind the server's" in report["explanation"]


# --- an incomplete chain ----------------------------------------------------------------------

_LEAF_ONLY = """
import http.server, ssl, sys, threading, time

leaf, key, intermediate = sys.argv[1], sys.argv[2], sys.argv[3]
der = open(intermediate, "rb").read()

class Aia(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(der)))
        self.end_headers()
        self.wfile.write(der)
    def log_message(self, *args):
        pass

aia = http.server.ThreadingHTTPServer(("0.0.0.0", 8089), Aia)
tls = http.server.ThreadingHTTPServer(("0.0.0.0", 8445), Aia)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(leaf, key)  # the leaf alone, as nginx with cert.pem, not fullchain.pem
tls.socket = context.wrap_socket(tls.socket, server_side=True)
for server in (aia, tls):
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
time.sleep(3600)
"""


def test_a_leaf_without_its_intermediate_is_an_incomplete_chain(
    net: Network, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.netdiag.test_chain import issue, pem

    root = issue("Servepath Lab Root", None, ca=True)
    inter = issue("Servepath Lab Intermediate", root, ca=True)
    leaf = issue(VM, inter, ca=False, aia=f"http://{VM}:8089/int.der", ip=VM)
    (tmp_path / "leaf.pem").write_bytes(pem(leaf[0]))
    key = leaf[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    (tmp_path / "leaf.key").write_bytes(key)
    (tmp_path / "int.der").write_bytes(inter[0].public_bytes(serialization.Encoding.DER))
    (tmp_path / "root.pem").write_bytes(pem(root[0]))
    files = [str(tmp_path / n) for n in ("leaf.pem", "leaf.key", "int.der")]
    proc = net.spawn("vm", [sys.executable, "-c", _LEAF_ONLY, *files], stdout=subprocess.PIPE,
                     text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        report = doctor(net, f"https://{VM}:8445/decisions", "--cafile", str(tmp_path / "root.pem"))
    finally:
        net.stop(proc)
    assert verdict(report) == ("tls", "tls_chain_incomplete"), report["explanation"]
    assert "CN=Servepath Lab Intermediate" in report["explanation"]
    assert "serve the full chain" in " ".join(report["fix"])
