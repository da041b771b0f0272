"""The pure part of the tracer: reading a probe's answer, and the machine that runs the trace."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Any

import pytest

from servepath.net.icmp import IcmpReport, checksum, echo_request
from servepath.netdiag.trace import (
    Probe,
    ProbeEvent,
    Reply,
    TraceMachine,
    describe_end,
    interpret,
    parse_raw_icmp,
)

TARGET = "10.9.4.2"


def exceeded(offender: str) -> ProbeEvent:
    return ProbeEvent(icmp=IcmpReport("icmp", 11, 0, errno.EHOSTUNREACH, offender))


def unreachable(offender: str, code: int) -> ProbeEvent:
    return ProbeEvent(icmp=IcmpReport("icmp", 3, code, errno.EHOSTUNREACH, offender))


# ---- interpret --------------------------------------------------------------------------


def test_time_exceeded_names_a_hop() -> None:
    assert interpret("tcp", TARGET, exceeded("10.9.1.1"), 0.3) == Reply("hop", "10.9.1.1", 0.3)


def test_udp_port_unreachable_from_the_target_is_the_normal_end() -> None:
    reply = interpret("udp", TARGET, unreachable(TARGET, 3), 0.4)
    assert reply == Reply("reached", TARGET, 0.4, "port-unreachable", "closed")


def test_tcp_connected_reaches_an_open_port() -> None:
    reply = interpret("tcp", TARGET, ProbeEvent(answered=True), 0.2)
    assert reply is not None and (reply.kind, reply.port_state) == ("reached", "open")


def test_tcp_reset_reaches_a_closed_port() -> None:
    reply = interpret("tcp", TARGET, ProbeEvent(errno=errno.ECONNREFUSED), 0.2)
    assert reply is not None and (reply.kind, reply.port_state) == ("reached", "closed")


def test_tcp_reject_by_the_target_reaches_it_but_the_port_is_rejected() -> None:
    reply = interpret("tcp", TARGET, unreachable(TARGET, 13), 0.2)
    assert reply is not None
    assert (reply.kind, reply.port_state, reply.note) == ("reached", "rejected", "admin-prohibited")


def test_unreachable_from_a_router_ends_the_road_there() -> None:
    reply = interpret("udp", TARGET, unreachable("10.9.3.2", 13), 0.2)
    assert reply == Reply("unreachable", "10.9.3.2", 0.2, "admin-prohibited")


def test_icmp_echo_reply_reaches_the_target() -> None:
    reply = interpret("icmp", TARGET, ProbeEvent(answered=True, source=TARGET), 0.1)
    assert reply is not None and (reply.kind, reply.note) == ("reached", "echo-reply")


def test_mtu_news_is_not_an_answer() -> None:
    event = ProbeEvent(icmp=IcmpReport("icmp", 3, 4, errno.EMSGSIZE, "10.9.1.1", info=1400))
    assert interpret("udp", TARGET, event, 0.1) is None
    assert interpret("udp", TARGET, ProbeEvent(), 0.1) is None


# ---- the machine ------------------------------------------------------------------------


def drain(machine: TraceMachine) -> list[Probe]:
    probes: list[Probe] = []
    while (probe := machine.next_probe()) is not None:
        probes.append(probe)
    return probes


def test_every_ttl_is_sent_at_once_nearest_first() -> None:
    machine = TraceMachine(max_hops=5, queries=2, port=80)
    probes = drain(machine)
    assert [(p.ttl, p.query) for p in probes] == [(t, q) for t in range(1, 6) for q in range(2)]
    assert {p.port for p in probes} == {80}
    assert not machine.done


def test_a_window_limits_probes_in_flight() -> None:
    machine = TraceMachine(max_hops=10, queries=3, window=4)
    first = drain(machine)
    assert len(first) == 4
    machine.on_timeout(first[0].seq)
    assert [p.seq for p in drain(machine)] == [5]


def test_udp_ports_go_up_by_one_per_probe_like_traceroute() -> None:
    machine = TraceMachine(max_hops=2, queries=3, port=33434, vary_port=True)
    assert [p.port for p in drain(machine)] == list(range(33434, 33440))


def test_varying_ports_wrap_below_65536() -> None:
    machine = TraceMachine(max_hops=1, queries=3, port=65535, vary_port=True)
    assert [p.port for p in drain(machine)] == [65535, 1, 2]


def settle(machine: TraceMachine, probes: list[Probe], answers: dict[int, Reply | None]) -> None:
    """Answer each probe by TTL (None: it times out)."""
    for probe in probes:
        if probe.seq not in machine.in_flight:
            continue
        reply = answers.get(probe.ttl)
        if reply is None:
            machine.on_timeout(probe.seq)
        else:
            machine.on_reply(probe.seq, reply)


def test_reaching_the_target_abandons_the_farther_probes() -> None:
    machine = TraceMachine(max_hops=8, queries=1)
    probes = drain(machine)
    machine.on_reply(probes[2].seq, Reply("reached", TARGET, 0.3, "open", "open"))
    assert sorted(machine.abandoned()) == [p.seq for p in probes[3:]]
    assert machine.horizon == 3
    assert not machine.done  # TTL 1 and 2 are still out
    machine.on_reply(probes[0].seq, Reply("hop", "10.9.1.1", 0.1))
    machine.on_timeout(probes[1].seq)
    assert machine.done and machine.reached
    hops = machine.hops()
    assert [(h.ttl, h.address, h.lost) for h in hops] == [
        (1, "10.9.1.1", 0),
        (2, None, 1),
        (3, TARGET, 0),
    ]
    assert hops[2].note == "open"


def test_a_late_answer_from_an_abandoned_probe_is_ignored() -> None:
    machine = TraceMachine(max_hops=4, queries=1)
    probes = drain(machine)
    machine.on_reply(probes[1].seq, Reply("reached", TARGET, 0.2, "open", "open"))
    machine.on_reply(probes[3].seq, Reply("reached", TARGET, 0.2, "open", "open"))
    machine.on_reply(probes[0].seq, Reply("hop", "10.9.1.1", 0.1))
    assert machine.done
    assert [h.ttl for h in machine.hops()] == [1, 2]


def test_a_target_that_drops_everything_is_not_reached_after_max_hops() -> None:
    machine = TraceMachine(max_hops=5, queries=2)
    probes = drain(machine)
    settle(machine, probes, {1: Reply("hop", "10.9.1.1", 0.1), 2: Reply("hop", "10.9.2.2", 0.2)})
    assert machine.done and not machine.reached
    hops = machine.hops()
    assert [h.address for h in hops] == ["10.9.1.1", "10.9.2.2", None, None, None]
    assert [h.lost for h in hops] == [0, 0, 2, 2, 2]
    assert "not reached within 5 hops" in describe_end(machine, TARGET, "tcp", 80)


def test_an_unreachable_router_stops_the_trace_without_reaching() -> None:
    machine = TraceMachine(max_hops=6, queries=1)
    probes = drain(machine)
    settle(
        machine,
        probes,
        {
            1: Reply("hop", "10.9.1.1", 0.1),
            2: Reply("unreachable", "10.9.2.2", 0.2, "admin-prohibited"),
        },
    )
    assert machine.done and not machine.reached
    assert machine.hops()[-1].note == "admin-prohibited"
    assert "10.9.2.2 answered admin-prohibited" in describe_end(machine, TARGET, "tcp", 80)


def test_replies_at_one_ttl_from_several_routers_are_all_kept() -> None:
    machine = TraceMachine(max_hops=1, queries=3)
    probes = drain(machine)
    for probe, address in zip(probes, ["10.0.0.1", "10.0.0.2", "10.0.0.1"], strict=True):
        machine.on_reply(probe.seq, Reply("hop", address, 0.1))
    (hop,) = machine.hops()
    assert hop.address == "10.0.0.1"
    assert hop.addresses == ("10.0.0.1", "10.0.0.2")
    assert hop.rtt_ms == (0.1, 0.1, 0.1)


def test_a_silent_hop_is_given_up_soon_after_a_farther_hop_answers() -> None:
    machine = TraceMachine(max_hops=3, queries=1, near=10, here=3, floor_ms=5)
    probes = drain(machine)
    assert machine.patience_ms(probes[0].seq) is None  # nothing known yet: full timeout
    machine.on_reply(probes[2].seq, Reply("reached", TARGET, 2.0, "open", "open"))
    assert machine.patience_ms(probes[0].seq) == pytest.approx(20.0)
    assert machine.patience_ms(probes[1].seq) == pytest.approx(20.0)


def test_patience_never_drops_below_the_floor() -> None:
    machine = TraceMachine(max_hops=2, queries=2, floor_ms=50)
    probes = drain(machine)
    machine.on_reply(probes[0].seq, Reply("hop", "10.9.1.1", 0.01))
    assert machine.patience_ms(probes[1].seq) == 50  # same hop: 3 x 0.01 ms, floored


@pytest.mark.parametrize(
    "kwargs", [{"max_hops": 0}, {"max_hops": 256}, {"first_ttl": 5, "max_hops": 4}, {"queries": 0}]
)
def test_impossible_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TraceMachine(**kwargs)


# ---- raw ICMP ---------------------------------------------------------------------------


def ipv4_header(source: str, destination: str, proto: int = 1) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        84,
        0,
        0,
        64,
        proto,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(destination).packed,
    )


def test_echo_requests_carry_a_valid_checksum() -> None:
    packet = echo_request(socket.AF_INET, 0x1234, 7)
    assert packet[0] == 8
    assert checksum(packet) == 0


def test_a_raw_echo_reply_is_matched_by_ident_and_seq() -> None:
    reply = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 7) + b"x" * 8
    packet = ipv4_header(TARGET, "10.9.1.2") + reply
    matched = parse_raw_icmp(packet, TARGET, socket.AF_INET, 0x1234)
    assert matched == (7, ProbeEvent(answered=True, source=TARGET))
    assert parse_raw_icmp(packet, TARGET, socket.AF_INET, 0x9999) is None


def test_a_raw_time_exceeded_is_matched_through_the_quoted_probe() -> None:
    quoted = ipv4_header("10.9.1.2", TARGET) + echo_request(socket.AF_INET, 0x1234, 9)[:8]
    icmp = struct.pack("!BBHI", 11, 0, 0, 0) + quoted
    packet = ipv4_header("10.9.2.1", "10.9.1.2") + icmp
    matched = parse_raw_icmp(packet, "10.9.2.1", socket.AF_INET, 0x1234)
    assert matched is not None
    seq, event = matched
    assert seq == 9
    assert event.icmp is not None
    assert (event.icmp.kind, event.icmp.offender) == ("time-exceeded", "10.9.2.1")


def test_a_raw_error_about_someone_elses_packet_is_ignored() -> None:
    udp_quote = ipv4_header("10.9.1.2", TARGET, proto=17) + b"\0" * 8
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + udp_quote
    packet = ipv4_header(TARGET, "10.9.1.2") + icmp
    assert parse_raw_icmp(packet, TARGET, socket.AF_INET, 0x1234) is None


def test_a_raw_icmpv6_time_exceeded_is_matched() -> None:
    inner = struct.pack("!IHBB16s16s", 0x60000000, 16, 58, 1, b"\0" * 16, b"\0" * 16)
    quoted = inner + echo_request(socket.AF_INET6, 0x4321, 3)[:8]
    packet = struct.pack("!BBHI", 3, 0, 0, 0) + quoted
    matched = parse_raw_icmp(packet, "fd09:1::1", socket.AF_INET6, 0x4321)
    assert matched is not None
    assert matched[0] == 3
    assert matched[1].icmp is not None and matched[1].icmp.kind == "time-exceeded"
