"""`servepath listen`: real sockets found with their process; loopback-only warnings; mappings
read from docker-proxy arguments and from iptables NAT rules."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.net.listeners import (
    Listener,
    PortMapping,
    ProcessInfo,
    SocketInfo,
    build_listeners,
    docker_proxy_mapping,
    forwarder_kind,
    inspect_port,
    kubectl_port_forward_mappings,
    list_listeners,
    listing_warnings,
    loopback_warnings,
    parse_iptables_nat,
    port_report,
)
from tests.support import need_binary, need_root

pytestmark = pytest.mark.timeout(60)

_SERVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.bind((sys.argv[1], 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def server_process(address: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A separate process listening on ``address``; yields its port and the process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, address, "--role=test-listener"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def bound(kind: int, address: str, *, listen: bool = True) -> Iterator[int]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((address, 0))
        if listen and kind == socket.SOCK_STREAM:
            sock.listen(1)
        yield sock.getsockname()[1]


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["listen", *args])
    return result.exit_code, result.output


# --- real sockets -------------------------------------------------------------------------


def test_a_loopback_only_server_is_found_with_its_process_and_warned_about() -> None:
    with server_process("127.0.0.1") as (port, proc):
        report = inspect_port(port, nat=False)
        name = psutil.Process(proc.pid).name()
    (listener,) = report.listeners
    assert (listener.protocol, listener.address, listener.port) == ("tcp", "127.0.0.1", port)
    assert listener.pid == proc.pid
    assert listener.user == psutil.Process().username()
    assert listener.cmdline[-1] == "--role=test-listener"
    assert listener.process == name
    assert report.loopback_only and not report.reachable
    assert len(report.warnings) == 1
    assert f"{port}/tcp" in report.warnings[0] and "127.0.0.1 only" in report.warnings[0]


def test_pid_agrees_with_ss() -> None:
    ss = need_binary("ss")
    with server_process("127.0.0.1") as (port, proc):
        ours = inspect_port(port, nat=False).listeners[0].pid
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout  # fmt: skip
    assert re.search(r"pid=(\d+)", out).group(1) == str(ours) == str(proc.pid)  # type: ignore[union-attr]


def test_a_wildcard_server_is_reachable_and_exits_0() -> None:
    with server_process("0.0.0.0") as (port, _):
        report = inspect_port(port, nat=False)
        code, output = run_cli(str(port))
    assert report.reachable and not report.loopback_only
    assert report.bind_addresses == ("0.0.0.0",)
    assert report.warnings == ()
    assert code == 0 and f"port {port} is reachable" in output


def test_loopback_only_exits_1_with_the_warning() -> None:
    with server_process("127.0.0.1") as (port, _):
        code, output = run_cli(str(port), "--json")
    assert code == 1
    data = json.loads(output)
    assert data["loopback_only"] and not data["reachable"]
    assert data["bind_addresses"] == ["127.0.0.1"]
    assert data["listeners"][0]["address_kind"] == "loopback"


def test_ipv6_loopback_and_wildcard_are_told_apart() -> None:
    with bound(socket.SOCK_STREAM, "::1") as p1, bound(socket.SOCK_STREAM, "::") as p2:
        assert inspect_port(p1, nat=False).loopback_only
        assert inspect_port(p2, nat=False).reachable


def test_one_port_on_two_loopback_addresses_is_still_loopback_only() -> None:
    with bound(socket.SOCK_STREAM, "127.0.0.1") as port, socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.2", port))
        except OSError:
            pytest.skip("cannot bind a second loopback address on the same port")
        other.listen(1)
        report = inspect_port(port, nat=False)
    assert report.bind_addresses == ("127.0.0.1", "127.0.0.2")
    assert report.loopback_only


def test_udp_sockets_are_listed_unless_no_udp_and_connected_ones_never() -> None:
    with (
        bound(socket.SOCK_DGRAM, "0.0.0.0") as port,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        client.connect(("127.0.0.1", port))
        client_port = client.getsockname()[1]
        report = inspect_port(port, nat=False)
        assert [(x.protocol, x.pid) for x in report.listeners] == [("udp", os.getpid())]
        assert inspect_port(port, udp=False, nat=False).listeners == ()
        assert inspect_port(client_port, nat=False).listeners == ()


def test_a_port_nobody_listens_on_exits_1() -> None:
    with bound(socket.SOCK_STREAM, "127.0.0.1", listen=False) as port:  # bound, not listening
        code, output = run_cli(str(port))
        report = inspect_port(port, nat=False)
    assert code == 1
    assert f"nothing listens on port {port}" in output
    assert not report.listening


def test_listing_everything_exits_0_and_includes_our_sockets() -> None:
    with server_process("127.0.0.1") as (port, proc):
        report = list_listeners(nat=False)
        code, output = run_cli("--json")
    assert any(x.port == port and x.pid == proc.pid for x in report.listeners)
    assert code == 0
    assert any(x["port"] == port for x in json.loads(output)["listeners"])


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_bad_port_exits_2(port: str) -> None:
    assert run_cli(port)[0] == 2


@pytest.mark.net
def test_nat_rules_are_read_from_iptables_in_a_namespace() -> None:
    """A box that maps 80 → 8080 as `docker run -p 80:8080` does, and 8081 → a container."""
    from tests.topology.topology import Topology, dnat

    need_root()
    for tool in ("ip", "iptables", "ss", "setpriv", "unshare"):
        need_binary(tool)
    need_binary("iptables-save")
    topo = Topology()
    topo.link("box", "10.79.1.2/24", "ctr", "10.79.1.3/24")
    topo.rules("box", dnat(80, 8080))
    topo.rules("box", dnat(8081, 80, to_address="10.79.1.3"))
    argv = [sys.executable, "-m", "servepath", "listen", "--json"]
    with topo.build() as net:
        with net.listen("box", "0.0.0.0", [8080]):
            served = net.run("box", [*argv, "8080"], check=False)
            forwarded = net.run("box", [*argv, "8081"], check=False)
            unprivileged = net.run("box", [*argv, "8080"], check=False, user="nobody")
        with net.listen("box", "127.0.0.1", [8080]):
            loopback = net.run("box", [*argv, "8080"], check=False)
        saved = net.run("box", ["iptables-save", "-t", "nat"]).stdout
    assert served.returncode == 0, served.stderr
    data = json.loads(served.stdout)
    assert data["reachable"] and data["bind_addresses"] == ["0.0.0.0"]
    assert data["mappings"] == [
        {"source": "iptables", "protocol": "tcp", "host_ip": None, "host_port": 80,
         "host_port_end": None, "target_ip": None, "target_port": 8080, "chain": chain,
         "interface": None}
        for chain in ("PREROUTING", "OUTPUT")
    ]  # fmt: skip
    assert {(m.host_port, m.target_ip, m.target_port) for m in parse_iptables_nat(saved)} == {
        (80, None, 8080),
        (8081, "10.79.1.3", 80),
    }
    assert forwarded.returncode == 1
    data = json.loads(forwarded.stdout)
    assert any("forwarded elsewhere" in w and "10.79.1.3:80" in w for w in data["warnings"])
    assert unprivileged.returncode == 0, unprivileged.stderr
    data = json.loads(unprivileged.stdout)
    assert data["mappings"] == []
    assert any("needs root" in n for n in data["notes"])
    assert loopback.returncode == 1
    data = json.loads(loopback.stdout)
    assert any("redirects here" in w for w in data["warnings"])


# --- pure: iptables-save ---------------------------------------------------------------------

DOCKER_NAT = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 12:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 8080 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.17.0.2:8080
-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p tcp -m tcp --dport 5433 -j DNAT --to-destination 172.17.0.3:5432
-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.4:53
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9000:9010 -j DNAT --to-destination 172.17.0.5:9000-9010
COMMIT
# Completed on Sat Nov 28 12:00:00 2026
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""  # noqa: E501

KUBE_NAT = """\
*nat
:KUBE-NODEPORTS - [0:0]
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/api:http" -m tcp --dport 30080 -j KUBE-EXT-X
-A KUBE-SEP-ABC -p tcp -m comment --comment "default/api:http" -m tcp -j DNAT --to-destination 10.244.0.5:8080
-A PREROUTING -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 8443
-A PREROUTING -p tcp -m tcp ! --dport 22 -j DNAT --to-destination 10.0.0.9
-A CNI-DN-1 -p tcp -m tcp --dport 8090 -j DNAT --to-destination 10.88.0.2
COMMIT
*nat
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8443 -j DNAT --to-destination [fd00:dead::2]:443
COMMIT
"""  # noqa: E501


def test_docker_dnat_rules_become_mappings() -> None:
    assert parse_iptables_nat(DOCKER_NAT) == (
        PortMapping("iptables", "tcp", 80, 8080, None, "172.17.0.2", None, "DOCKER", "!docker0"),
        PortMapping("iptables", "tcp", 5433, 5432, "127.0.0.1", "172.17.0.3", None, "DOCKER",
                    "!docker0"),
        PortMapping("iptables", "udp", 5353, 53, None, "172.17.0.4", None, "DOCKER", "!docker0"),
        PortMapping("iptables", "tcp", 9000, 9000, None, "172.17.0.5", 9010, "DOCKER",
                    "!docker0"),
    )  # fmt: skip


def test_redirect_same_port_dnat_and_ipv6_targets_are_read_and_portless_rules_skipped() -> None:
    found = {
        (m.chain, m.host_port, m.target_ip, m.target_port) for m in parse_iptables_nat(KUBE_NAT)
    }
    assert found == {
        ("PREROUTING", 443, None, 8443),  # REDIRECT: to this host
        ("CNI-DN-1", 8090, "10.88.0.2", 8090),  # no port in the target: the same port
        ("DOCKER", 8443, "fd00:dead::2", 443),
    }


def test_rules_outside_the_nat_table_and_garbage_are_ignored() -> None:
    assert parse_iptables_nat("*filter\n-A INPUT -p tcp --dport 80 -j DNAT --to 1.2.3.4\n") == ()
    assert parse_iptables_nat("-A X -p tcp --dport 'unterminated\n*nat\n") == ()
    assert parse_iptables_nat("") == ()


def test_a_range_mapping_covers_its_ports() -> None:
    m = parse_iptables_nat(DOCKER_NAT)[-1]
    assert m.covers(9000) and m.covers(9010) and not m.covers(9011)
    assert m.describe() == "tcp *:9000-9010 → 172.17.0.5:9000 (iptables)"


def test_an_ipv6_mapping_is_described_with_brackets() -> None:
    m = PortMapping("iptables", "tcp", 8443, 443, host_ip="fd00::1", target_ip="fd00:dead::2")
    assert m.describe() == "tcp [fd00::1]:8443 → [fd00:dead::2]:443 (iptables)"


# --- pure: processes and forwarders ------------------------------------------------------------

DOCKER_PROXY = (
    "/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
    "-container-ip", "172.17.0.2", "-container-port", "80", "-use-listen-fd",
)  # fmt: skip


def test_docker_proxy_arguments_say_which_host_port_maps_to_which_container_port() -> None:
    assert docker_proxy_mapping(DOCKER_PROXY) == PortMapping(
        "docker-proxy", "tcp", 8080, 80, None, "172.17.0.2"
    )
    udp = ("docker-proxy", "--proto=udp", "--host-ip=127.0.0.1", "--host-port=53",
           "--container-ip=172.17.0.9", "--container-port=53")  # fmt: skip
    assert docker_proxy_mapping(udp) == PortMapping(
        "docker-proxy", "udp", 53, 53, "127.0.0.1", "172.17.0.9"
    )
    assert docker_proxy_mapping(("docker-proxy", "-proto", "tcp")) is None


@pytest.mark.parametrize(
    ("name", "cmdline", "kind"),
    [
        ("docker-proxy", DOCKER_PROXY, "docker-proxy"),
        ("rootlessport", ("rootlessport",), "rootlessport"),
        ("containerd-shim", ("/usr/bin/containerd-shim-runc-v2", "-namespace", "moby"),
         "containerd-shim"),
        ("slirp4netns", ("slirp4netns", "--mtu", "65520"), "slirp4netns"),
        ("kube-proxy", ("/usr/local/bin/kube-proxy",), "kube-proxy"),
        ("kubectl", ("kubectl", "port-forward", "svc/api", "8080:80"), "kubectl port-forward"),
        ("kubectl", ("kubectl", "get", "pods"), None),
        ("python3", ("python3", "-m", "servepath", "serve"), None),
        (None, (), None),
    ],
)  # fmt: skip
def test_forwarders_are_recognised(
    name: str | None, cmdline: tuple[str, ...], kind: str | None
) -> None:
    assert forwarder_kind(name, cmdline) == kind


def test_kubectl_port_forward_pairs_become_mappings() -> None:
    cmd = ("kubectl", "port-forward", "--address", "0.0.0.0", "svc/api", "8080:80", "9090")
    assert kubectl_port_forward_mappings(cmd) == (
        PortMapping("kubectl", "tcp", 8080, 80, None, "svc/api"),
        PortMapping("kubectl", "tcp", 9090, 9090, None, "svc/api"),
    )


def _listener(address: str, port: int = 8080, pid: int | None = 7, **kw: object) -> Listener:
    return build_listeners(
        [SocketInfo("tcp", address, port, pid)],
        {7: ProcessInfo(7, "python3", "app", ("python3", "app.py"))},
    )[0]


def test_sockets_join_their_processes_and_ipv4_mapped_addresses_are_unwrapped() -> None:
    listeners = build_listeners(
        [
            SocketInfo("tcp", "::ffff:127.0.0.1", 9000, 7),
            SocketInfo("tcp", "0.0.0.0", 8080, 8),
            SocketInfo("udp", "0.0.0.0", 8080, None),
        ],
        {7: ProcessInfo(7, "python3", "app", ("python3", "app.py")),
         8: ProcessInfo(8, "docker-proxy", "root", DOCKER_PROXY)},
    )  # fmt: skip
    assert [(x.protocol, x.address, x.port, x.address_kind, x.process, x.forwarder)
            for x in listeners] == [
        ("tcp", "0.0.0.0", 8080, "unspecified", "docker-proxy", "docker-proxy"),
        ("udp", "0.0.0.0", 8080, "unspecified", None, None),
        ("tcp", "127.0.0.1", 9000, "loopback", "python3", None),
    ]  # fmt: skip


def test_one_warning_per_loopback_only_port_naming_the_process() -> None:
    listeners = [_listener("127.0.0.1"), _listener("::1"), _listener("0.0.0.0", 9000)]
    (warning,) = loopback_warnings(listeners)
    assert warning.startswith("8080/tcp (python3, pid 7) listens on 127.0.0.1, ::1 only")


def test_a_listing_warns_of_servepath_on_loopback_and_only_counts_the_machines_others() -> None:
    ours = build_listeners(
        [SocketInfo("tcp", "127.0.0.1", 8080, 9)],
        {9: ProcessInfo(9, "servepath", "app", ("/venv/bin/python", "/venv/bin/servepath",
                                                 "serve"))},
    )  # fmt: skip
    others = [_listener("127.0.0.1", 5432), _listener("::1", 631), _listener("0.0.0.0", 22)]
    warnings, notes = listing_warnings([*ours, *others])
    (warning,) = warnings
    assert warning.startswith("8080/tcp (servepath, pid 9) listens on 127.0.0.1 only")
    assert notes == (
        "2 other ports listen on loopback only (reach: loopback); to check one: "
        "servepath listen PORT",
    )
    assert listing_warnings(others[:1]) == (
        (),
        ("1 other port listens on loopback only (reach: loopback); to check one: "
         "servepath listen PORT",),
    )  # fmt: skip
    module = build_listeners(
        [SocketInfo("tcp", "127.0.0.1", 8080, 9)],
        {9: ProcessInfo(9, "python3", "app", ("python3", "-m", "servepath", "serve"))},
    )
    assert listing_warnings(module)[0]


def test_port_report_for_a_container_forwarded_port() -> None:
    listeners = [
        build_listeners([SocketInfo("tcp", "0.0.0.0", 8080, 8)],
                        {8: ProcessInfo(8, "docker-proxy", "root", DOCKER_PROXY)})[0],
    ]  # fmt: skip
    mapping = docker_proxy_mapping(DOCKER_PROXY)
    assert mapping is not None
    report = port_report(8080, listeners, [mapping])
    assert report.reachable and report.forwarder == "docker-proxy"
    assert report.mappings == (mapping,)
    assert report.to_json()["processes"] == ["docker-proxy (pid 8)"]


def test_port_report_on_a_redirect_to_a_loopback_only_port_warns() -> None:
    redirect = PortMapping("iptables", "tcp", 80, 8080, chain="PREROUTING")
    report = port_report(8080, [_listener("127.0.0.1")], [redirect])
    assert report.loopback_only
    assert any("redirects here" in w for w in report.warnings)
    assert port_report(8080, [_listener("0.0.0.0")], [redirect]).warnings == ()
