"""Address classification and the small helpers that print addresses the way URLs do."""

from __future__ import annotations

import pytest

from servepath.net.addresses import classify_address
from servepath.net.endpoints import host_port, unmapped
from servepath.netdiag.doctor.causes import explain
from servepath.service.pathecho import path_echo


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", "private"),
        ("172.20.0.5", "private"),
        ("192.168.1.10", "private"),
        ("100.64.0.1", "cgnat"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("fd20:2::2", "private"),
        ("fe80::1%eth0", "link-local"),
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
        ("203.0.113.5", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:10.0.0.5", "private"),
    ],
)
def test_classify(address: str, kind: str) -> None:
    assert classify_address(address).kind == kind


def test_a_unique_local_address_is_explained_with_its_own_rfc() -> None:
    assert "RFC 4193" in classify_address("fd00::5").meaning


def test_host_port_brackets_ipv6_once() -> None:
    assert host_port("10.0.0.5", 8080) == "10.0.0.5:8080"
    assert host_port("fd20:2::2", 8088) == "[fd20:2::2]:8088"
    assert host_port("[fd20:2::2]", 8088) == "[fd20:2::2]:8088"
    assert host_port("api.example.com", "443") == "api.example.com:443"
    assert host_port("fd20:2::2", None) == "[fd20:2::2]"


def test_unmapped_turns_ipv4_mapped_addresses_back_into_ipv4() -> None:
    assert unmapped("::ffff:10.20.1.2") == "10.20.1.2"
    assert unmapped("fd20:1::2") == "fd20:1::2"
    assert unmapped("not-an-ip") == "not-an-ip"


def test_fixes_quote_ipv6_endpoints_as_a_shell_and_a_url_need_them() -> None:
    private = explain("private_address", {"address": "fd20::5", "port": 8080})
    assert any("ssh -L 8080:[fd20::5]:8080" in line for line in private.fix)
    dropped = explain("port_filtered", {"address": "fd20::5", "port": 8080})
    assert "[fd20::5]:8080" in dropped.meaning
    tls = explain("tls_on_plain_port", {"host": "fd20::5", "port": 8443, "path": "/x"})
    assert any("https://[fd20::5]:8443/x" in line for line in tls.fix)
    # A fact the run did not learn shows as a placeholder, not as a crash.
    assert "(unknown):8080" in explain("port_filtered", {"port": 8080}).meaning


def test_path_echo_reports_ipv4_peers_of_a_dual_stack_socket_as_ipv4() -> None:
    scope = {
        "type": "http",
        "headers": [(b"host", b"api.test:8088")],
        "client": ("::ffff:10.20.1.2", 52000),
        "server": ("::ffff:10.20.2.2", 8088),
    }
    echo = path_echo(scope, bound_host="::", bound_port=8088, request_id="r", in_kubernetes=False)
    assert echo["peer"] == {"address": "10.20.1.2", "port": 52000, "kind": "private"}
    assert echo["server"]["address"] == "10.20.2.2"
    assert echo["original_client"] == "10.20.1.2"
