"""Port names, IANA ranges and the PORTS spec parser."""

from __future__ import annotations

import socket

import pytest

from servepath.errors import PortSpecError
from servepath.netdiag.services import DEFAULT_PORTS, parse_ports, port_range, service_name


@pytest.mark.parametrize(
    ("port", "name"),
    [
        (22, "ssh"),
        (53, "dns"),
        (80, "http"),
        (443, "https"),
        (5432, "postgresql"),
        (6379, "redis"),
        (8080, "http-alt"),
        (9090, "prometheus"),
    ],
)
def test_field_ports_have_their_conventional_names(port: int, name: str) -> None:
    assert service_name(port) == name


def test_dev_server_ports_are_named_for_what_runs_there() -> None:
    assert "flask" in (service_name(5000) or "")
    assert "uvicorn" in (service_name(8000) or "")
    assert service_name(8888) == "jupyter"


def test_unlisted_ports_fall_back_to_the_system_services_database() -> None:
    try:
        expected = socket.getservbyport(79, "tcp")
    except OSError:
        pytest.skip("no /etc/services entry for port 79 on this machine")
    assert service_name(79) == expected


def test_a_port_nobody_names_has_no_service() -> None:
    assert service_name(47_123) is None


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (0, "well-known"),
        (1023, "well-known"),
        (1024, "registered"),
        (49151, "registered"),
        (49152, "dynamic"),
        (65535, "dynamic"),
    ],
)
def test_ranges_follow_rfc_6335_boundaries(port: int, expected: str) -> None:
    assert port_range(port) == expected


def test_a_port_outside_16_bits_has_no_range() -> None:
    with pytest.raises(ValueError):
        port_range(65536)


def test_lists_and_ranges_keep_the_order_given_without_duplicates() -> None:
    assert parse_ports("443, 80,8000-8003,80") == (443, 80, 8000, 8001, 8002, 8003)


def test_service_names_are_accepted_in_a_spec() -> None:
    assert parse_ports("ssh,https,postgresql") == (22, 443, 5432)


def test_a_single_port_range_is_one_port() -> None:
    assert parse_ports("8080-8080") == (8080,)


def test_the_default_set_is_the_ports_this_field_uses() -> None:
    assert set(DEFAULT_PORTS) == {22, 80, 443, 5432, 6379, 8080, 8443, 8000, 3000}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no ports given"),
        ("80,,443", "empty item"),
        ("80,", "empty item"),
        ("8010-8000", "did you mean 8000-8010"),
        ("0", "1 to 65535"),
        ("65536", "1 to 65535"),
        ("80-", "empty port number"),
        ("htp", "neither a number nor a known service"),
        ("-5", "empty port number"),
    ],
)
def test_bad_specs_name_the_offending_item(spec: str, message: str) -> None:
    with pytest.raises(PortSpecError) as caught:
        parse_ports(spec)
    assert message in str(caught.value)
    assert caught.value.spec == spec
