"""The doctor's second generation on a real topology: the causes it learned, and the order
in which evidence wins when several findings hold at once.

    client 10.30.1.2 ── r1 ══ r2 ── vm 10.30.4.2   servepath :8080, slow model :8086,
     servepath on        │  MTU 1400   nginx (vhosts, a short proxy timeout), Redis :6379,
     127.0.0.1:8080      └── dns 10.30.3.53       a 503 server, a port that never answers
     (for localhost)         api.test -> vm (PTR too); NXDOMAIN for localhost

The r1 ══ r2 link has MTU 1400 on both ends. Normally r1 says so (ICMP fragmentation
needed) and path MTU discovery works; the black-hole scenario drops that ICMP on r1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.nginx import HEADER
from tests.helpers.slowmodel import write_slow_model
from tests.helpers.waiting import wait_until_answers
from tests.support import TESTS_DIR, need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Rule, Topology, drop, reject

CLIENT, R1_IN, VM = "10.30.1.2", "10.30.1.1", "10.30.4.2"
R1_R2, R2_VM = "10.30.2.1", "10.30.4.1"
DNS = "10.30.3.53"
# the doctor of this checkout, whichever servepath the interpreter has installed
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TESTS_DIR.parent / "src")}

SILENT_TOO_BIG = Rule(
    "OUTPUT", ("-p", "icmp", "--icmp-type", "fragmentation-needed"), ("-j", "DROP")
)


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Network:
    need_binary("dnsmasq")
    topo = Topology()
    topo.host("client", nameservers=[DNS], hosts={"client": CLIENT})  # no localhost line
    topo.router("r1")
    topo.router("r2")
    topo.host("vm")
    topo.link("client", f"{CLIENT}/24", "r1", f"{R1_IN}/24")
    topo.link("r1", f"{R1_R2}/24", "r2", "10.30.2.2/24")
    topo.link("r2", f"{R2_VM}/24", "vm", f"{VM}/24")
    topo.link("r1", "10.30.3.1/24", "dns", f"{DNS}/24")
    topo.dns("dns", DNS, {"api.test": VM}, extra_args=["--local=/test/", "--local=/localhost/"])
    network = build_network(topo)
    for node in ("r1", "r2"):  # the narrow link: eth1 on both routers
        network.run(node, ["ip", "link", "set", "dev", "eth1", "mtu", "1400"])
    return network


_RAW_SERVERS = r"""
import socket, sys, threading, time

def serve(port, handler):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def busy(c):
    try:
        c.recv(65536)
    except OSError:
        return
    body = b'{"error": "too busy"}'
    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nServer: lb/1.0\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % len(body) + body)
    try:
        c.close()
    except OSError:
        pass

def mute(c):
    time.sleep(120)  # accepts, reads nothing, answers nothing

def ssh(c):
    try:
        c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
        c.recv(1024)
        c.close()
    except OSError:
        pass

serve(9503, busy)
serve(9504, mute)
serve(2222, ssh)
print("ready", flush=True)
time.sleep(3600)
"""

_NGINX_SITES = """
    server {{
        listen {vm}:8090 default_server;
        location / {{ return 404; }}
    }}
    server {{
        listen {vm}:8090;
        server_name api.test;
        location / {{ proxy_pass http://127.0.0.1:8080; proxy_set_header Host $host; }}
    }}
    server {{
        listen {vm}:8091;
        location / {{ proxy_pass http://127.0.0.1:8086; proxy_read_timeout 300ms; }}
    }}
    server {{
        listen {vm}:8092;
        location / {{ proxy_pass http://127.0.0.1:8099; }}
    }}
    server {{
        listen {vm}:8093;
        location / {{ add_header Retry-After 3 always; return 429; }}
    }}
"""


@pytest.fixture(scope="module")
def servers(
    net: Network, tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[dict[str, Any]]:
    need_binary("nginx")
    redis = need_binary("redis-server")
    tmp = tmp_path_factory.mktemp("doctor2")
    slow = tmp / "slow.joblib"
    write_slow_model(slow, delay=0.7)
    env = {**ENV, "SERVEPATH_DATA_DIR": str(tmp / "data"), "PYTHONPATH": str(TESTS_DIR.parent)}
    serve = [sys.executable, "-m", "servepath", "serve", "--store", "off"]
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    (tmp / "nginx").mkdir()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(HEADER.format(dir=tmp / "nginx", servers=_NGINX_SITES.format(vm=VM)))
    raw = net.spawn("vm", [sys.executable, "-c", _RAW_SERVERS], stdout=subprocess.PIPE, text=True)
    procs = [
        raw,
        net.spawn(
            "vm",
            [*serve, "--host", "0.0.0.0", "--port", "8080", "--model", str(example_model_path)],
            env=env,
            **quiet,
        ),
        net.spawn(
            "vm",
            [
                *serve,
                "--host",
                "127.0.0.1",
                "--port",
                "8086",
                "--cache",
                "off",
                "--model",
                str(slow),
            ],
            env=env,
            **quiet,
        ),
        net.spawn(
            "client",
            [*serve, "--host", "127.0.0.1", "--port", "8080", "--model", str(example_model_path)],
            env=env,
            **quiet,
        ),
        net.spawn(
            "vm", ["nginx", "-p", str(tmp / "nginx"), "-c", str(conf), "-g", "daemon off;"], **quiet
        ),
        net.spawn(
            "vm",
            [
                redis,
                "--port",
                "6379",
                "--bind",
                VM,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            **quiet,
        ),
    ]
    assert raw.stdout is not None and raw.stdout.readline().strip() == "ready"
    wait_until_answers(
        f"http://{VM}:8080/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    wait_until_answers(
        "http://127.0.0.1:8080/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    net.wait_for_socket("vm", 8090)
    net.wait_for_socket("vm", 6379)
    net.wait_for_socket("vm", 8086, timeout=60)
    yield {"tmp": tmp}
    for proc in procs:
        net.stop(proc)


def doctor(net: Network, *args: str, env: dict[str, str] | None = None,
           expect_exit: tuple[int, ...] = (0, 1)) -> dict[str, Any]:  # fmt: skip
    proc = net.run(
        "client",
        [sys.executable, "-m", "servepath", "doctor", *args, "--json", "--timeout", "1"],
        check=False,
        env={**ENV, **(env or {})},
        timeout=120,
    )
    assert proc.returncode in expect_exit, proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    # shown with pytest -s: the doctor's own time per scenario, for the docs
    print(
        f"\ndoctor {' '.join(args)}: {report['cause']} in {report['elapsed_s']} s", file=sys.stderr
    )
    return report


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def verdict(report: dict[str, Any]) -> tuple[str | None, str]:
    return report["failed_stage"], report["cause"]


# --- precedence: a firewall's word outranks a neighbour port that answers ----------------------


@pytest.mark.parametrize(
    ("node", "rule", "cause", "offender"),
    [
        ("r1", reject("icmp-admin-prohibited", chain="FORWARD", port=80), "port_rejected", "r1"),
        ("r1", drop(chain="FORWARD", port=80), "port_filtered", None),
        ("vm", reject(port=80), "port_rejected", VM),
        ("vm", drop(port=80), "port_filtered", None),
    ],
    ids=["reject-on-router", "drop-on-router", "reject-on-vm", "drop-on-vm"],
)
def test_a_firewall_on_port_80_outranks_the_service_answering_on_8080(
    net: Network, servers: dict[str, Any], node: str, rule: Rule, cause: str, offender: str | None
) -> None:
    with net.rule(node, rule):
        report = doctor(net, f"http://{VM}/decisions")
    assert verdict(report) == ("transport", cause), report["explanation"]
    assert report["owner"] == "firewall (network or cloud admin)"
    fix = " ".join(report["fix"])
    assert f"it answers on 8080 (http://{VM}:8080/decisions)" in fix
    if offender == "r1":
        assert R1_IN in report["explanation"] or R1_R2 in report["explanation"]
        assert "router" in report["explanation"]
    elif offender is not None:
        assert offender in report["explanation"] and "the target" in report["explanation"]
    assert report["elapsed_s"] < 3


def test_only_the_targets_own_reset_with_a_service_elsewhere_is_the_callers_port(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}/decisions")
    assert verdict(report) == ("transport", "service_on_other_port")
    assert report["owner"] == "caller"


# --- names ------------------------------------------------------------------------------------


def test_localhost_is_healthy_when_the_dns_server_says_nxdomain_for_it(
    net: Network, servers: dict[str, Any]
) -> None:
    direct = net.run("client", ["dig", "+short", "+tries=1", "+time=1", f"@{DNS}", "localhost"],
                     check=False)  # fmt: skip
    assert direct.stdout.strip() == ""  # the DNS server has no answer for it
    report = doctor(net, "http://localhost:8080/decisions")
    assert report["ok"], (report["cause"], report["explanation"])
    assert stage(report, "dns")["summary"] == "localhost -> 127.0.0.1"
    assert "this machine" in stage(report, "address")["summary"]
    dns = net.run("client", [sys.executable, "-m", "servepath", "dns", "localhost", "--json"],
                  check=False, env=ENV)  # fmt: skip
    assert dns.returncode == 0, dns.stdout
    assert json.loads(dns.stdout)["ok"] is True


def test_a_web_server_that_routes_by_name_is_a_virtual_host_and_the_name_is_found(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:8090/decisions")
    assert verdict(report) == ("http", "virtual_host"), report["explanation"]
    fix = " ".join(report["fix"])
    assert "servepath answers when asked for the name api.test" in fix
    assert f"curl --resolve api.test:8090:{VM} http://api.test:8090/decisions" in fix
    pinned = doctor(net, "http://api.test:8090/decisions", "--resolve", f"api.test:8090:{VM}")
    assert pinned["ok"], pinned["cause"]
    assert stage(pinned, "dns")["status"] == "skip"
    by_header = doctor(net, f"http://{VM}:8090/decisions", "--host-header", "api.test")
    assert by_header["ok"], by_header["cause"]


def test_route_not_found_is_only_servepaths_own_404(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, "http://api.test:8090/predict", "--resolve", f"api.test:8090:{VM}")
    assert verdict(report) == ("app", "route_not_found")


# --- answers that say who is at fault -----------------------------------------------------------


def test_a_503_with_retry_after_is_overloaded_and_says_when_to_retry(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:9503/decisions")
    assert verdict(report) == ("http", "overloaded")
    assert "retry after 7 s" in " ".join(report["fix"])
    assert "lb/1.0" in report["explanation"]


def test_a_port_that_accepts_and_never_answers_is_no_response(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:9504/decisions", "--http-timeout", "1.5")
    assert verdict(report) == ("http", "no_response")
    assert "within 1.5 s" in report["explanation"] and "?" not in report["explanation"]
    assert report["elapsed_s"] < 5


def test_a_proxy_that_gives_up_on_a_slow_app_is_upstream_timeout(
    net: Network, servers: dict[str, Any]
) -> None:
    body = Path(servers["tmp"]) / "slow-body.json"
    body.write_text('{"x": 1.0, "y": 2.0}')
    report = doctor(net, f"http://{VM}:8091/decisions", "--data", str(body))
    assert verdict(report) == ("app", "upstream_timeout"), report["explanation"]
    assert "nginx" in report["explanation"]


def test_nginx_502_page_is_one_line_in_the_report(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, f"http://{VM}:8092/decisions")
    assert verdict(report) == ("http", "upstream_error")
    summary = stage(report, "http")["summary"]
    assert "\n" not in summary and "<" not in summary and summary.endswith("502 Bad Gateway")


def test_a_proxy_that_rate_limits_is_overloaded_and_named(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:8093/decisions")
    assert verdict(report) == ("http", "overloaded")
    assert "reverse proxy" in report["explanation"] and "nginx" in report["explanation"]
    assert "retry after 3 s" in " ".join(report["fix"])


def test_an_ssh_port_is_named_from_its_greeting(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, f"http://{VM}:2222/")
    assert verdict(report) == ("http", "not_http"), report["explanation"]
    assert "SSH" in report["explanation"] and "OpenSSH_9.2p1" in report["explanation"]


def test_a_redis_port_speaks_another_protocol(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, f"http://{VM}:6379/")
    assert verdict(report) == ("http", "not_http"), report["explanation"]
    assert "Redis" in report["explanation"]
    tls = doctor(net, f"https://{VM}:6379/")
    assert verdict(tls) == ("tls", "not_http"), tls["explanation"]


# --- forward proxies that refuse ----------------------------------------------------------------


@pytest.fixture
def refusing_proxy(net: Network, tmp_path: Path) -> Iterator[dict[str, str]]:
    binary = need_binary("tinyproxy")
    (tmp_path / "filter").write_text(f"{VM}\n")
    procs = []
    confs = (
        (3130, f'Filter "{tmp_path / "filter"}"\n'),
        (3131, "BasicAuth u p\n"),
        (3132, "ConnectPort 443\n"),
    )
    for port, extra in confs:
        conf = tmp_path / f"tinyproxy-{port}.conf"
        conf.write_text(
            f"Port {port}\nListen {R1_IN}\nTimeout 10\nAllow 10.30.1.0/24\n"
            f'ViaProxyName "tinyproxy"\n{extra}'
        )
        procs.append(net.spawn("r1", [binary, "-d", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        net.wait_for_socket("r1", port)
    yield {
        "filter": f"http://{R1_IN}:3130",
        "auth": f"http://{R1_IN}:3131",
        "connect": f"http://{R1_IN}:3132",
    }
    for proc in procs:
        net.stop(proc)


def test_a_forward_proxy_that_filters_the_destination_is_proxy_denied(
    net: Network, servers: dict[str, Any], refusing_proxy: dict[str, str]
) -> None:
    report = doctor(
        net, f"http://{VM}:8080/decisions", env={"HTTP_PROXY": refusing_proxy["filter"]}
    )
    assert verdict(report) == ("http", "proxy_denied"), report["explanation"]
    assert report["owner"] == "proxy admin" and refusing_proxy["filter"] in report["explanation"]
    auth = doctor(net, f"http://{VM}:8080/decisions", env={"HTTP_PROXY": refusing_proxy["auth"]})
    assert verdict(auth) == ("http", "proxy_denied"), auth["explanation"]
    assert "USER:PASS" in " ".join(auth["fix"])


def test_a_forward_proxy_that_refuses_the_connect_tunnel_is_proxy_denied(
    net: Network, servers: dict[str, Any], refusing_proxy: dict[str, str]
) -> None:
    # only CONNECT to 443 is allowed: an https URL on 8443 is refused before any TLS
    report = doctor(
        net, f"https://{VM}:8443/decisions", env={"HTTPS_PROXY": refusing_proxy["connect"]}
    )
    assert verdict(report) == ("http", "proxy_denied"), (
        report["failed_stage"],
        report["explanation"],
    )
    assert report["owner"] == "proxy admin"


# --- the large request ------------------------------------------------------------------------


def test_a_healthy_path_passes_the_large_request_at_little_cost(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:8080/decisions")
    large = stage(report, "large request")
    assert large["status"] == "ok" and large["data"]["bytes"] >= 40_000, large
    assert report["ok"] and report["elapsed_s"] < 2


def test_an_mtu_black_hole_is_found_sized_and_placed(net: Network, servers: dict[str, Any]) -> None:
    net.run("client", ["ip", "route", "flush", "cache"])
    with net.rule("r1", SILENT_TOO_BIG):
        net.run("client", ["ip", "route", "flush", "cache"])
        report = doctor(net, f"http://{VM}:8080/decisions")
    net.run("client", ["ip", "route", "flush", "cache"])
    assert stage(report, "app")["status"] == "ok"  # the small request passed
    assert verdict(report) == ("large request", "mtu_blackhole"), stage(report, "large request")
    mtu = stage(report, "large request")["data"]["mtu"]
    assert 1280 < mtu["path_mtu"] <= 1400, mtu
    assert R1_IN in " ".join(report["fix"]), report["fix"]  # the hop before the narrow link
    assert report["owner"] == "network admin"
    assert report["elapsed_s"] < 8


# --- usage ----------------------------------------------------------------------------------------


def test_a_url_and_local_together_is_a_usage_error(net: Network, servers: dict[str, Any]) -> None:
    proc = net.run("client", [sys.executable, "-m", "servepath", "doctor", f"http://{VM}:8080/",
                              "--local", "8080"], check=False, env=ENV)  # fmt: skip
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_the_table_prints_every_stage_as_text(net: Network, servers: dict[str, Any]) -> None:
    proc = net.run("client", [sys.executable, "-m", "servepath", "doctor",
                              f"http://{VM}:8090/decisions", "--timeout", "1"],
                   check=False, env=ENV)  # fmt: skip
    assert proc.returncode == 1
    out = textwrap.dedent(proc.stdout)
    assert "cause: virtual_host" in out and "who fixes it: caller" in out
