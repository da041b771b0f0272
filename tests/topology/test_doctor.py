"""`servepath doctor` on real topologies: one scenario per way the path breaks.

    client 10.20.1.2 ── r1 ── vm 10.20.2.2   (servepath on :8080, nginx, TLS, a slow model)
                        │ └── dns1 10.20.3.53  api.test -> 10.20.2.2
                        └──── dns2 10.20.4.53  api.test -> 10.20.2.99 (disagrees)

Each test runs the doctor as a command inside the client's namespace (so /etc/resolv.conf is
the client's) and asserts the failed stage and the cause.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.nginx import proxy_config
from tests.helpers.slowmodel import write_slow_model
from tests.helpers.waiting import wait_until_answers
from tests.support import TESTS_DIR, need_binary
from tests.topology.conftest import BuildNetwork
from tests.topology.topology import Network, Topology, dnat, drop, reject

CLIENT, ROUTER_IN, ROUTER_OUT, VM = "10.20.1.2", "10.20.1.1", "10.20.2.1", "10.20.2.2"
VM6 = "fd20:2::2"


@pytest.fixture(scope="module")
def net(build_network: BuildNetwork) -> Network:
    need_binary("dnsmasq")
    topo = Topology()
    topo.host("client", nameservers=["10.20.3.53"])
    topo.router("r1")
    topo.host("vm")
    topo.link("client", f"{CLIENT}/24,fd20:1::2/64", "r1", f"{ROUTER_IN}/24,fd20:1::1/64")
    topo.link("r1", f"{ROUTER_OUT}/24,fd20:2::1/64", "vm", f"{VM}/24,{VM6}/64")
    topo.link("r1", "10.20.3.1/24", "dns1", "10.20.3.53/24")
    topo.link("r1", "10.20.4.1/24", "dns2", "10.20.4.53/24")
    topo.dns("dns1", "10.20.3.53", {"api.test": VM}, extra_args=["--local=/test/"])
    topo.dns("dns2", "10.20.4.53", {"api.test": "10.20.2.99"}, extra_args=["--local=/test/"])
    return build_network(topo)


@pytest.fixture(scope="module")
def servers(
    net: Network, tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[dict[str, Any]]:
    """servepath on vm:8080 (all IPv4 interfaces), on vm:[::]:8088 (IPv6), a slow
    one on vm:8086, and one bound to 127.0.0.1:8080 only on dns2's host."""
    tmp = tmp_path_factory.mktemp("doctor")
    slow = tmp / "slow.joblib"
    write_slow_model(slow, delay=0.7)
    env = {
        "SERVEPATH_DATA_DIR": str(tmp / "data"),
        "PYTHONPATH": str(TESTS_DIR.parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    base = [sys.executable, "-m", "servepath", "serve", "--store", "off"]
    procs = [
        net.spawn(
            "vm",
            [*base, "--host", "0.0.0.0", "--port", "8080", "--model", str(example_model_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        net.spawn(
            "dns2",
            [*base, "--host", "127.0.0.1", "--port", "8080", "--model", str(example_model_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        net.spawn(
            "vm",
            [*base, "--host", "0.0.0.0", "--port", "8086", "--cache", "off", "--model", str(slow)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        net.spawn(
            "vm",
            [*base, "--host", "::", "--port", "8088", "--model", str(example_model_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    wait_until_answers(
        f"http://{VM}:8080/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    wait_until_answers(
        f"http://[{VM6}]:8088/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    wait_until_answers(
        f"http://{VM}:8086/", timeout=60, run=lambda get: net.call("client", get), interval=0.1
    )
    net.wait_for_socket("dns2", 8080, timeout=60)
    yield {"tmp": tmp}
    for proc in procs:
        net.stop(proc)


def doctor(
    net: Network, *args: str, env: dict[str, str] | None = None, node: str = "client"
) -> dict[str, Any]:
    # the doctor of this checkout, whichever servepath the interpreter has installed
    here = str(TESTS_DIR.parent / "src")
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": here, **(env or {})}
    proc = net.run(
        node,
        [sys.executable, "-m", "servepath", "doctor", *args, "--json", "--timeout", "1"],
        check=False,
        env=full,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["ok"] else 1)
    return report


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def test_healthy_direct(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, f"http://{VM}:8080/decisions")
    assert report["ok"] and report["cause"] == "ok" and report["failed_stage"] is None
    assert stage(report, "app")["status"] == "ok"
    assert stage(report, "route")["status"] == "ok"
    between = stage(report, "server view")["data"]["between"]
    assert between == {"reverse_proxies": 0, "nat": False, "forward_proxy": None}
    assert report["elapsed_s"] < 2


def test_healthy_over_ipv6_with_the_route_to_its_network(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://[{VM6}]:8088/decisions")
    assert report["ok"] and report["cause"] == "ok", report
    address = stage(report, "address")
    # A unique local address reached through a route to its network: not "called from outside".
    assert address["status"] == "ok", address
    assert address["data"]["route"]["kind"] == "via-route"
    assert address["data"]["route"]["route"]["gateway"] == "fd20:1::1"
    assert stage(report, "transport")["summary"].startswith(f"[{VM6}]:8088 open")
    view = stage(report, "server view")
    assert view["status"] == "ok" and not view["data"]["between"]["nat"], view
    assert "saw the caller as [fd20:1::2]:" in view["summary"]
    assert view["summary"].endswith(f"on [{VM6}]:8088"), view["summary"]


def test_healthy_by_name_through_dns(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, "http://api.test:8080/decisions")
    assert report["ok"], report
    assert stage(report, "dns")["summary"] == f"api.test -> {VM}"


def test_healthy_through_nat_80_to_8080_names_the_port_mapping(
    net: Network, servers: dict[str, Any]
) -> None:
    with net.rule("vm", dnat(80, 8080)[0]):
        report = doctor(net, f"http://{VM}/decisions")
    assert report["ok"], report["cause"]
    view = stage(report, "server view")
    assert view["data"]["between"]["nat"] is True
    assert f"dialled {VM}:80, the server socket is {VM}:8080" in view["summary"]


@pytest.fixture
def nginx(net: Network, tmp_path: Path) -> Iterator[Any]:
    need_binary("nginx")
    started: list[Any] = []

    def start(servers: list[tuple[str, str, tuple[Path, Path] | None]]) -> None:
        conf = proxy_config(tmp_path, servers)
        proc = net.spawn(
            "vm",
            ["nginx", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        port = int(servers[0][0].rsplit(":", 1)[1])
        net.wait_for_socket("vm", port)

    yield start
    for proc in started:
        net.stop(proc)


def test_healthy_through_nginx_reports_one_reverse_proxy_and_the_chain(
    net: Network, servers: dict[str, Any], nginx: Any
) -> None:
    nginx([(f"{VM}:8081", "127.0.0.1:8080", None)])
    report = doctor(net, f"http://{VM}:8081/decisions")
    assert report["ok"], report["cause"]
    view = stage(report, "server view")
    assert view["data"]["between"]["reverse_proxies"] == 1
    assert view["data"]["echo"]["chain"] == [CLIENT]
    assert "reverse proxy: nginx" in stage(report, "http")["summary"]


def test_nginx_up_with_the_app_down_is_upstream_error(
    net: Network, servers: dict[str, Any], nginx: Any
) -> None:
    nginx([(f"{VM}:8082", "127.0.0.1:8099", None)])
    report = doctor(net, f"http://{VM}:8082/decisions")
    assert (report["failed_stage"], report["cause"]) == ("http", "upstream_error")


def test_firewall_drop_on_the_port_is_filtered_and_costs_one_timeout(
    net: Network, servers: dict[str, Any]
) -> None:
    with net.rule("vm", drop(port=8080)):
        report = doctor(net, f"http://{VM}:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "port_filtered")
    assert report["elapsed_s"] < 3  # trace and port probes wait out one 1 s timeout together


def test_reject_on_the_vm_names_the_vm(net: Network, servers: dict[str, Any]) -> None:
    with net.rule("vm", reject(port=8080)):
        report = doctor(net, f"http://{VM}:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "port_rejected")
    assert VM in report["explanation"] and "the target" in report["explanation"]


def test_reject_on_the_router_names_the_router(net: Network, servers: dict[str, Any]) -> None:
    with net.rule("r1", reject("icmp-admin-prohibited", chain="FORWARD", port=8080)):
        report = doctor(net, f"http://{VM}:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "port_rejected")
    assert ROUTER_IN in report["explanation"] or ROUTER_OUT in report["explanation"]
    assert "router" in report["explanation"]


def test_nothing_listening_is_port_closed(net: Network, servers: dict[str, Any]) -> None:
    # dns1 runs no web service at all, on any of the ports the doctor looks at
    report = doctor(net, "http://10.20.3.53:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "port_closed")


def test_service_on_8080_with_80_not_mapped(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, f"http://{VM}/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "service_on_other_port")
    assert f"http://{VM}:8080/decisions" in " ".join(report["fix"])


def test_service_bound_to_loopback_inside_the_vm(net: Network, servers: dict[str, Any]) -> None:
    # vm2 (dns2's host) runs servepath bound to 127.0.0.1:8080 only
    report = doctor(net, "http://10.20.4.53:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "port_closed")
    assert "doctor --local 8080" in " ".join(report["fix"])
    local = doctor(net, "--local", "8080", node="dns2")
    assert (local["failed_stage"], local["cause"]) == ("bind", "bound_to_loopback")
    assert "127.0.0.1" in local["explanation"]
    nothing = doctor(net, "--local", "8099", node="vm")
    assert nothing["cause"] == "not_listening"
    healthy = doctor(net, "--local", "8080", node="vm")
    assert healthy["ok"], healthy


def test_wrong_predict_route_lists_the_routes_that_exist(
    net: Network, servers: dict[str, Any]
) -> None:
    report = doctor(net, f"http://{VM}:8080/predict")
    assert (report["failed_stage"], report["cause"]) == ("app", "route_not_found")
    assert "POST /decisions" in " ".join(report["fix"])


def test_nxdomain(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, "http://nope.test:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("dns", "dns_nxdomain")


def test_two_resolvers_that_disagree(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, "http://api.test:8080/decisions", "--resolver", "10.20.4.53")
    assert (report["failed_stage"], report["cause"]) == ("dns", "dns_disagree")


@pytest.fixture
def proxy(net: Network, tmp_path: Path) -> Iterator[str]:
    binary = need_binary("tinyproxy")
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f'Port 3128\nListen {ROUTER_IN}\nTimeout 10\nAllow 10.20.1.0/24\nViaProxyName "tinyproxy"\n'
    )
    proc = net.spawn(
        "r1", [binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    net.wait_for_socket("r1", 3128)
    yield f"http://{ROUTER_IN}:3128"
    net.stop(proc)


def test_required_forward_proxy_used(net: Network, servers: dict[str, Any], proxy: str) -> None:
    # the client may not reach the VM directly: only through the proxy on the router
    with net.rule("r1", drop(chain="FORWARD", source="10.20.1.0/24", port=8080)):
        direct = doctor(net, f"http://{VM}:8080/decisions")
        report = doctor(net, f"http://{VM}:8080/decisions", env={"HTTP_PROXY": proxy})
    assert direct["cause"] == "port_filtered"
    assert report["ok"], [
        (s["name"], s["summary"]) for s in report["stages"] if s["status"] != "ok"
    ]
    assert stage(report, "server view")["data"]["between"]["forward_proxy"] == proxy
    assert "via forward proxy" in stage(report, "local")["summary"]


def test_forward_proxy_that_is_down(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(
        net, f"http://{VM}:8080/decisions", env={"HTTP_PROXY": f"http://{ROUTER_IN}:3129"}
    )
    assert (report["failed_stage"], report["cause"]) == ("transport", "proxy_failed")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import trustme

    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    now = datetime.now(UTC)
    expired = ca.issue_cert(
        "api.test", not_before=now - timedelta(days=30), not_after=now - timedelta(days=2)
    )
    wrong = ca.issue_cert("other.test")
    files: dict[str, Any] = {"ca": tmp / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for name, cert in (("expired", expired), ("wrong", wrong)):
        chain, key = tmp / f"{name}.pem", tmp / f"{name}.key"
        cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
        cert.private_key_pem.write_to_path(str(key))
        files[name] = (chain, key)
    return files


def test_tls_expired_and_wrong_name(
    net: Network, servers: dict[str, Any], nginx: Any, certificates: dict[str, Any]
) -> None:
    nginx(
        [
            (f"{VM}:8443", "127.0.0.1:8080", certificates["expired"]),
            (f"{VM}:9443", "127.0.0.1:8080", certificates["wrong"]),
        ]
    )
    ca = str(certificates["ca"])
    expired = doctor(net, "https://api.test:8443/decisions", "--cafile", ca)
    assert (expired["failed_stage"], expired["cause"]) == ("tls", "tls_expired")
    wrong = doctor(net, "https://api.test:9443/decisions", "--cafile", ca)
    assert (wrong["failed_stage"], wrong["cause"]) == ("tls", "tls_hostname_mismatch")
    plain = doctor(net, f"https://{VM}:8080/decisions", "--cafile", ca)
    assert (plain["failed_stage"], plain["cause"]) == ("tls", "plain_http_on_tls_port")


def test_private_address_called_from_outside(net: Network, servers: dict[str, Any]) -> None:
    report = doctor(net, "http://10.99.0.5:8080/decisions")
    assert (report["failed_stage"], report["cause"]) == ("transport", "private_address")


def test_slow_model_server_time_dominates(net: Network, servers: dict[str, Any]) -> None:
    body = Path(servers["tmp"]) / "slow-body.json"
    body.write_text('{"x": 1.0, "y": 2.0}')
    report = doctor(net, f"http://{VM}:8086/decisions", "--slow-ms", "500", "--data", str(body))
    assert (report["failed_stage"], report["cause"]) == ("latency", "slow_server")


def test_slow_link_network_time_dominates(net: Network, servers: dict[str, Any]) -> None:
    relay = net.spawn(
        "r1",
        [sys.executable, "-m", "tests.helpers.delayrelay", ROUTER_IN, "9000", VM, "8080", "0.3"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(TESTS_DIR.parent),
    )
    try:
        assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
        report = doctor(net, f"http://{ROUTER_IN}:9000/decisions", "--slow-ms", "500")
    finally:
        net.stop(relay)
    assert (report["failed_stage"], report["cause"]) == ("latency", "slow_network")
