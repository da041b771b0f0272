"""The pure part of the port probe: error-queue decoding and the verdict on each attempt."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest

from servepath.net.addresses import classify_address
from servepath.net.icmp import (
    IP_RECVERR,
    IPV6_RECVERR,
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_ICMP6,
    SO_EE_ORIGIN_LOCAL,
    SO_TIMESTAMPNS,
    IcmpReport,
    icmp_kind,
    parse_extended_err,
    timestamp_of,
)
from servepath.netdiag.ports import (
    ConnectAttempt,
    PortScan,
    classify_attempt,
    result_for,
)

TARGET = "10.9.2.2"
ROUTER = "10.9.1.1"
SOURCE = "10.9.1.2"


def _extended_err(
    ee_errno: int, origin: int, icmp_type: int, code: int, offender: bytes, info: int = 0
) -> bytes:
    return struct.pack("=IBBBBII", ee_errno, origin, icmp_type, code, 0, info, 0) + offender


def _sockaddr_in(address: str) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET)
        + b"\0\0"
        + ipaddress.IPv4Address(address).packed
        + b"\0" * 8
    )


def _sockaddr_in6(address: str) -> bytes:
    packed = ipaddress.IPv6Address(address).packed
    return struct.pack("=H", socket.AF_INET6) + b"\0\0" + b"\0" * 4 + packed + b"\0" * 4


def icmp4(icmp_type: int, code: int, offender: str, ee_errno: int = 0) -> IcmpReport:
    return IcmpReport(origin="icmp", type=icmp_type, code=code, errno=ee_errno, offender=offender)


# ---- error queue decoding ------------------------------------------------------------------


def test_an_ipv4_port_unreachable_is_decoded_with_its_offender() -> None:
    data = _extended_err(errno.ECONNREFUSED, SO_EE_ORIGIN_ICMP, 3, 3, _sockaddr_in(ROUTER))
    error = parse_extended_err(socket.IPPROTO_IP, IP_RECVERR, data)
    assert error == IcmpReport("icmp", 3, 3, errno.ECONNREFUSED, ROUTER)
    assert error.kind == "port-unreachable"
    assert error.is_unreachable


def test_an_ipv6_admin_prohibited_is_decoded_with_its_offender() -> None:
    data = _extended_err(errno.EACCES, SO_EE_ORIGIN_ICMP6, 1, 1, _sockaddr_in6("fd09:2::2"))
    error = parse_extended_err(socket.IPPROTO_IPV6, IPV6_RECVERR, data)
    assert error is not None
    assert (error.origin, error.kind, error.offender) == ("icmp6", "admin-prohibited", "fd09:2::2")


def test_an_ipv4_mapped_offender_is_shown_as_plain_ipv4() -> None:
    data = _extended_err(0, SO_EE_ORIGIN_ICMP, 11, 0, _sockaddr_in6("::ffff:10.9.1.1"))
    error = parse_extended_err(socket.IPPROTO_IPV6, IPV6_RECVERR, data)
    assert error is not None and error.offender == ROUTER


def test_a_local_error_has_no_offender() -> None:
    unspecified = struct.pack("=H", socket.AF_UNSPEC) + b"\0" * 14
    data = _extended_err(errno.EMSGSIZE, SO_EE_ORIGIN_LOCAL, 0, 0, unspecified, info=1400)
    error = parse_extended_err(socket.IPPROTO_IP, IP_RECVERR, data)
    assert error is not None
    assert (error.origin, error.kind, error.offender, error.info) == ("local", "local", None, 1400)
    assert not error.is_unreachable


def test_control_messages_that_are_not_errors_are_ignored() -> None:
    assert parse_extended_err(socket.SOL_SOCKET, SO_TIMESTAMPNS, b"\0" * 16) is None
    assert parse_extended_err(socket.IPPROTO_IP, IP_RECVERR, b"\0" * 8) is None


def test_kernel_timestamps_are_read_from_the_control_data() -> None:
    stamp = struct.pack("=qq", 1_700_000_000, 250_000_000)
    ancdata = [(socket.IPPROTO_IP, IP_RECVERR, b""), (socket.SOL_SOCKET, SO_TIMESTAMPNS, stamp)]
    assert timestamp_of(ancdata) == pytest.approx(1_700_000_000.25)
    assert timestamp_of([]) is None


@pytest.mark.parametrize(
    ("origin", "icmp_type", "code", "kind"),
    [
        ("icmp", 3, 0, "net-unreachable"),
        ("icmp", 3, 1, "host-unreachable"),
        ("icmp", 3, 2, "protocol-unreachable"),
        ("icmp", 3, 3, "port-unreachable"),
        ("icmp", 3, 4, "frag-needed"),
        ("icmp", 3, 9, "admin-prohibited"),
        ("icmp", 3, 10, "admin-prohibited"),  # iptables icmp-host-prohibited
        ("icmp", 3, 13, "admin-prohibited"),  # iptables icmp-admin-prohibited
        ("icmp", 11, 0, "time-exceeded"),
        ("icmp", 12, 0, "parameter-problem"),
        ("icmp6", 1, 0, "net-unreachable"),
        ("icmp6", 1, 1, "admin-prohibited"),
        ("icmp6", 1, 3, "host-unreachable"),
        ("icmp6", 1, 4, "port-unreachable"),
        ("icmp6", 2, 0, "frag-needed"),
        ("icmp6", 3, 0, "time-exceeded"),
        ("icmp", 5, 1, "other"),  # a redirect is no error for us
    ],
)
def test_icmp_types_and_codes_are_named_by_their_meaning(
    origin: str, icmp_type: int, code: int, kind: str
) -> None:
    assert icmp_kind(origin, icmp_type, code) == kind  # type: ignore[arg-type]


# ---- verdicts ---------------------------------------------------------------------------


def attempt(**changes: object) -> ConnectAttempt:
    values: dict[str, object] = {
        "outcome": "error",
        "target": TARGET,
        "timeout": 1.0,
        "source": SOURCE,
    }
    values.update(changes)
    return ConnectAttempt(**values)  # type: ignore[arg-type]


def test_an_accepted_connection_is_open() -> None:
    verdict = classify_attempt(attempt(outcome="connected"))
    assert (verdict.state, verdict.offender) == ("open", None)


def test_a_reset_without_icmp_is_closed() -> None:
    verdict = classify_attempt(attempt(errno=errno.ECONNREFUSED))
    assert verdict.state == "closed"
    assert "nothing listens" in verdict.detail


def test_no_answer_in_time_is_filtered() -> None:
    verdict = classify_attempt(attempt(outcome="timeout", timeout=1.5))
    assert verdict.state == "filtered"
    assert "1.5s" in verdict.detail


def test_a_refusal_carried_by_icmp_port_unreachable_is_a_firewall_reject_not_a_closed_port() -> (
    None
):
    # The same ECONNREFUSED as a reset: only the queued ICMP error tells them apart.
    icmp = icmp4(3, 3, TARGET, errno.ECONNREFUSED)
    verdict = classify_attempt(attempt(errno=errno.ECONNREFUSED, icmp=icmp))
    assert verdict.state == "unreachable"
    assert verdict.offender == TARGET
    assert "REJECT" in verdict.detail and "the target 10.9.2.2 itself" in verdict.detail


def test_a_reject_on_a_router_names_the_router_as_offender() -> None:
    icmp = icmp4(3, 13, ROUTER, errno.EHOSTUNREACH)
    verdict = classify_attempt(attempt(errno=errno.EHOSTUNREACH, icmp=icmp))
    assert verdict.state == "unreachable"
    assert verdict.offender == ROUTER
    assert "administratively prohibited" in verdict.detail
    assert "before the target" in verdict.detail


def test_host_unreachable_from_this_machine_means_no_neighbour_answered() -> None:
    icmp = icmp4(3, 1, SOURCE, errno.EHOSTUNREACH)
    verdict = classify_attempt(attempt(outcome="timeout", icmp=icmp))
    assert verdict.state == "unreachable"
    assert "ARP" in verdict.detail


def test_host_unreachable_from_a_router_says_it_cannot_deliver() -> None:
    verdict = classify_attempt(attempt(icmp=icmp4(3, 1, ROUTER, errno.EHOSTUNREACH)))
    assert verdict.offender == ROUTER
    assert "cannot deliver" in verdict.detail


def test_time_exceeded_on_a_connect_is_a_routing_loop() -> None:
    verdict = classify_attempt(attempt(icmp=icmp4(11, 0, ROUTER, errno.EHOSTUNREACH)))
    assert verdict.state == "unreachable"
    assert "routing loop" in verdict.detail


def test_icmp_beats_the_errno_it_was_mapped_to() -> None:
    # ICMPv6 admin-prohibited surfaces as EACCES, which alone would mean a local rule.
    icmp = IcmpReport("icmp6", 1, 1, errno.EACCES, "fd09:2::2")
    verdict = classify_attempt(attempt(target="fd09:2::2", errno=errno.EACCES, icmp=icmp))
    assert (verdict.state, verdict.offender) == ("unreachable", "fd09:2::2")


def test_a_local_output_rule_is_filtered_here_not_on_the_path() -> None:
    verdict = classify_attempt(attempt(errno=errno.EPERM))
    assert verdict.state == "filtered"
    assert "this machine" in verdict.detail


def test_no_local_route_is_unreachable_without_offender() -> None:
    verdict = classify_attempt(attempt(errno=errno.ENETUNREACH, source=None))
    assert (verdict.state, verdict.offender) == ("unreachable", None)
    assert "routing table" in verdict.detail


def test_an_unexpected_errno_is_named() -> None:
    verdict = classify_attempt(attempt(errno=errno.EADDRNOTAVAIL))
    assert verdict.state == "unreachable"
    assert "EADDRNOTAVAIL" in verdict.detail


def test_mtu_news_alone_does_not_decide_the_state() -> None:
    local = IcmpReport("local", 0, 0, errno.EMSGSIZE, None, info=1400)
    assert classify_attempt(attempt(outcome="connected", icmp=local)).state == "open"
    assert classify_attempt(attempt(outcome="timeout", icmp=local)).state == "filtered"


def test_a_timed_out_port_has_no_round_trip_time() -> None:
    result = result_for(8080, attempt(outcome="timeout"), rtt_ms=1000.0)
    assert result.rtt_ms is None
    assert (result.service, result.range) == ("http-alt", "registered")


def test_scan_json_is_a_list_of_ports_with_the_target_classified() -> None:
    results = (
        result_for(80, attempt(outcome="connected"), 0.5),
        result_for(83, attempt(icmp=icmp4(3, 3, TARGET, errno.ECONNREFUSED)), 0.7),
    )
    scan = PortScan(
        host="api.test",
        address=TARGET,
        target=classify_address(TARGET),
        timeout=1.0,
        elapsed_s=0.01,
        results=results,
    )
    data = scan.to_json()
    assert isinstance(data, list) and len(data) == 2
    for entry in data:
        assert {"port", "state", "rtt_ms", "offender", "detail"} <= set(entry)
        assert entry["target"] == {
            "address": TARGET,
            "version": 4,
            "kind": "private",
            "meaning": classify_address(TARGET).meaning,
        }
    assert data[1]["icmp"] == {
        "origin": "icmp",
        "type": 3,
        "code": 3,
        "kind": "port-unreachable",
        "errno": "ECONNREFUSED",
        "offender": TARGET,
    }
    assert not scan.all_open
