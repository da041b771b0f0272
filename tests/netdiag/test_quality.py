"""The path's quality: the burst's count, where loss starts, where the time jumps, and a lost
SYN told apart from a filter. Pure, but for the burst's own sockets on loopback."""

from __future__ import annotations

import socket

import pytest

from servepath.netdiag.ports import PortResult
from servepath.netdiag.quality import (
    BURST_PROBES,
    LOSS_SIGNIFICANT,
    Burst,
    assess,
    probe_burst,
    settle_port,
)
from servepath.netdiag.trace import Hop, Trace

VM = "10.20.2.2"


def burst(missed: int, *, answered: int | None = None, state: str = "open") -> Burst:
    answered = BURST_PROBES - missed if answered is None else answered
    opened, closed = (answered, 0) if state == "open" else (0, answered)
    return Burst(VM, 8080, BURST_PROBES, opened, closed, 0, 0, missed, (12.0,) * answered)


def trace(*hops: tuple[str | None, int, float], reached: bool = True) -> Trace:
    """Hops as (address, lost of 5, round trip)."""
    built = tuple(
        Hop(ttl, address, (rtt,) * (5 - lost) if address else (), lost if address else 5)
        for ttl, (address, lost, rtt) in enumerate(hops, 1)
    )
    return Trace(VM, VM, 8080, "tcp", "tcp-connect", reached, built, "reached", "open")


PATH = ("10.20.0.1", "10.20.1.1", VM)


def test_loss_matters_from_the_threshold_on_and_not_one_probe_before() -> None:
    path = trace((PATH[0], 0, 1.0), (PATH[1], 1, 2.0), (VM, 1, 3.0))
    below = assess(path, burst(LOSS_SIGNIFICANT - 1))
    at = assess(path, burst(LOSS_SIGNIFICANT))
    assert below is not None and not below.lossy and below.start is None
    assert at is not None and at.lossy and at.loss_pct == round(100 * LOSS_SIGNIFICANT / 80, 1)


def test_the_loss_starts_at_the_first_hop_of_the_run_of_lossy_hops_that_ends_at_the_target() -> (
    None
):
    # hop 1 rations its ICMP (loses, but hop 2 does not): not where the loss starts
    path = trace((PATH[0], 2, 1.0), ("10.20.0.9", 0, 1.5), (PATH[1], 2, 2.0), (VM, 1, 3.0))
    quality = assess(path, burst(27))
    assert quality is not None and quality.start is not None
    assert (quality.start.ttl, quality.start.address) == (3, PATH[1])


def test_silent_hops_are_passed_over_and_a_clean_last_router_puts_the_start_at_the_target() -> None:
    path = trace((PATH[0], 1, 1.0), (None, 5, 0.0), (PATH[1], 2, 2.0), (VM, 0, 3.0))
    quality = assess(path, burst(27))
    assert quality is not None and quality.start is not None and quality.start.ttl == 1
    clean = trace((PATH[0], 0, 1.0), (PATH[1], 0, 2.0), (VM, 0, 3.0))
    at_target = assess(clean, burst(27))
    assert at_target is not None and at_target.start is not None
    assert at_target.start.target and at_target.start.address == VM
    # and so it is not the path's loss: a full accept queue drops SYNs just the same
    assert not at_target.lossy and at_target.at_target


def test_a_port_that_never_answers_is_silence_not_loss() -> None:
    quality = assess(None, burst(BURST_PROBES, answered=0))
    assert quality is not None and not quality.lossy


def test_the_target_row_is_the_burst_not_the_five_trace_probes() -> None:
    quality = assess(trace((PATH[0], 0, 1.0), (VM, 0, 3.0)), burst(20))
    assert quality is not None
    assert [(h.ttl, h.sent, h.lost, h.target) for h in quality.hops] == [
        (1, 5, 0, False),
        (2, 80, 20, True),
    ]


def test_the_time_jumps_where_the_best_round_trip_rises_most() -> None:
    path = trace((PATH[0], 0, 1.0), (PATH[1], 0, 151.0), (VM, 0, 152.0))
    quality = assess(path, None)
    assert quality is not None and quality.jump is not None
    assert (quality.jump.address, quality.jump_ms) == (PATH[1], 150.0)
    assert quality.before_jump is not None and quality.before_jump.address == PATH[0]
    flat = assess(trace((PATH[0], 0, 1.0), (VM, 0, 5.0)), None)
    assert flat is not None and flat.jump is None  # under 20 ms: no jump worth naming


@pytest.mark.parametrize("state", ["open", "closed"])
def test_a_silent_port_that_answered_the_burst_lost_a_syn_and_is_not_filtered(state: str) -> None:
    silent = PortResult(8080, "filtered", None, None, "no answer within 1s", None, "registered")
    settled = settle_port(silent, burst(27, state=state))
    assert settled.state == state and "lost a packet" in settled.detail
    assert settle_port(silent, burst(BURST_PROBES, answered=0)) is silent
    assert settle_port(silent, None) is silent


def test_the_burst_counts_an_open_port_and_a_closed_one_at_the_first_try() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(BURST_PROBES)
        port = server.getsockname()[1]
        opened = probe_burst("127.0.0.1", port, timeout=2.0)
    closed = probe_burst("127.0.0.1", port, timeout=2.0)
    assert (opened.open, opened.missed, opened.state) == (BURST_PROBES, 0, "open")
    assert (closed.closed, closed.missed, closed.state) == (BURST_PROBES, 0, "closed")
    assert opened.elapsed_s < 1 and closed.elapsed_s < 1
