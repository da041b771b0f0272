"""The pure part of the MTU probes: what the TCP outcomes prove, where the large datagrams die."""

from __future__ import annotations

import errno

import pytest

from servepath.net.icmp import IcmpReport
from servepath.netdiag.mtu import (
    DEFAULT_MSS,
    DEFAULT_MTUS,
    HopAnswers,
    MssOutcome,
    MssState,
    MtuHop,
    find_break,
    locate_mtu_hop,
    narrow_mtu,
    summarise,
)

V4 = DEFAULT_MSS[4]  # 1460 ... 536
TARGET = "10.9.3.2"
R1, R2 = "10.9.1.1", "10.9.2.2"


def outcomes(states: dict[int, MssState]) -> list[MssOutcome]:
    return [MssOutcome(mss, state, sent_mss=mss) for mss, state in states.items()]


def threshold(candidates: tuple[int, ...], passing_up_to: int) -> dict[int, MssState]:
    return {mss: "answered" if mss <= passing_up_to else "stalled" for mss in candidates}


# ---- candidates ---------------------------------------------------------------------------


def test_default_candidates_bracket_common_mtus_for_each_family() -> None:
    assert DEFAULT_MSS[4] == tuple(mtu - 40 for mtu in DEFAULT_MTUS)
    assert DEFAULT_MSS[6] == tuple(mtu - 60 for mtu in DEFAULT_MTUS)
    assert {1500, 1492, 1450, 1420, 1280, 576} <= set(DEFAULT_MTUS)


# ---- summarise ----------------------------------------------------------------------------


def test_every_candidate_answered_is_clear_at_the_largest_size() -> None:
    result = summarise(outcomes(dict.fromkeys(V4, "answered")), 4)
    assert result.verdict == "clear"
    assert (result.largest_passing_mss, result.smallest_stalling_mss) == (1460, None)
    assert result.path_mtu == 1500 and result.stalling_size is None


def test_every_candidate_stalled_proves_no_size() -> None:
    result = summarise(outcomes(dict.fromkeys(V4, "stalled")), 4)
    assert result.verdict == "all-stalled"
    assert result.largest_passing_mss is None and result.path_mtu is None
    assert result.smallest_stalling_mss == 536


def test_a_clean_threshold_brackets_the_mtu() -> None:
    result = summarise(outcomes(threshold(V4, 1360)), 4)
    assert result.verdict == "blackhole"
    assert (result.largest_passing_mss, result.smallest_stalling_mss) == (1360, 1380)
    assert result.path_mtu == 1400 and result.stalling_size == 1420
    assert result.contradicted_mss == ()


def test_ipv6_adds_sixty_bytes_of_headers() -> None:
    result = summarise(outcomes(threshold(DEFAULT_MSS[6], 1340)), 6)
    assert result.verdict == "blackhole"
    assert (result.largest_passing_mss, result.path_mtu, result.stalling_size) == (1340, 1400, 1420)


def test_a_lost_probe_below_an_answer_is_contradicted_not_believed() -> None:
    # An answer proves its size crossed; a stall only says nothing came back.
    states = threshold(V4, 1360)
    states[1240] = "stalled"
    result = summarise(outcomes(states), 4)
    assert result.verdict == "blackhole"
    assert (result.largest_passing_mss, result.smallest_stalling_mss) == (1360, 1380)
    assert result.contradicted_mss == (1240,)


def test_a_single_answer_above_stalls_raises_the_bound() -> None:
    states = threshold(V4, 1360)
    states[1420] = "answered"  # 1440 and up still stalled
    result = summarise(outcomes(states), 4)
    assert (result.largest_passing_mss, result.smallest_stalling_mss) == (1420, 1440)
    assert result.contradicted_mss == (1410, 1380)


def test_stalls_only_below_the_largest_answer_are_clear() -> None:
    states: dict[int, MssState] = dict.fromkeys(V4, "answered")
    states[1000 - 40] = "stalled"
    result = summarise(outcomes(states), 4)
    assert result.verdict == "clear" and result.contradicted_mss == (960,)


def test_failed_connections_say_nothing_about_size() -> None:
    states = threshold(V4, 1360)
    states[1460] = states[536] = "failed"
    result = summarise(outcomes(states), 4)
    assert (result.largest_passing_mss, result.smallest_stalling_mss) == (1360, 1380)
    assert summarise(outcomes(dict.fromkeys(V4, "failed")), 4).verdict == "failed"
    assert summarise([], 4).verdict == "failed"


def test_the_size_really_sent_counts_not_the_candidate() -> None:
    # PMTU discovery lowered the large candidates to 1360 before their answers came.
    probes = [MssOutcome(mss, "answered", sent_mss=min(mss, 1360)) for mss in V4]
    result = summarise(probes, 4)
    assert result.verdict == "clear" and result.path_mtu == 1400
    # A server advertising 1420 capped the larger candidates: they proved 1420, not more.
    capped = [MssOutcome(mss, "answered", sent_mss=min(mss, 1420)) for mss in V4]
    assert summarise(capped, 4).path_mtu == 1460
    unknown = MssOutcome(1460, "stalled")
    assert unknown.size == 1460


def test_outcomes_are_ordered_largest_first_and_serialise() -> None:
    result = summarise(outcomes(threshold((536, 1460, 1360), 1360)), 4, elapsed_s=1.0)
    assert [o.mss for o in result.outcomes] == [1460, 1360, 536]
    data = result.to_json()
    assert data["path_mtu"] == 1400 and data["stalling_size"] == 1500
    assert data["outcomes"] == [o.to_json() for o in result.outcomes]
    assert data["elapsed_s"] == 1.0


# ---- find_break ---------------------------------------------------------------------------


def exceeded(offender: str) -> IcmpReport:
    return IcmpReport("icmp", 11, 0, errno.EHOSTUNREACH, offender)


def port_unreachable(offender: str) -> IcmpReport:
    return IcmpReport("icmp", 3, 3, errno.ECONNREFUSED, offender)


def too_big(offender: str, mtu: int) -> IcmpReport:
    return IcmpReport("icmp", 3, 4, errno.EMSGSIZE, offender, info=mtu)


PATH = [R1, R2, TARGET]


def answers(*, large_up_to: int, hops: int = 6) -> dict[int, HopAnswers]:
    """A three-hop path probed to ``hops`` TTLs; large probes answered up to ``large_up_to``."""
    found: dict[int, HopAnswers] = {}
    for ttl in range(1, hops + 1):
        reply = exceeded(PATH[ttl - 1]) if ttl < len(PATH) else port_unreachable(TARGET)
        found[ttl] = HopAnswers(large=reply if ttl <= large_up_to else None, small=reply)
    return found


def locate(found: dict[int, HopAnswers]) -> MtuHop | None:
    return find_break(found, target=TARGET, size=1420, small_size=60)


def test_a_break_mid_path_names_the_hop_before_the_link() -> None:
    hop = locate(answers(large_up_to=1))
    assert hop is not None
    assert (hop.ttl, hop.before_ttl, hop.before, hop.after) == (2, 1, R1, R2)
    assert hop.adjacent and not hop.at_target
    assert (hop.size, hop.small_size) == (1420, 60)
    assert hop.to_json()["detail"] == (
        f"1420-byte packets die between {R1} (hop 1) and {R2} (hop 2) with no ICMP back"
    )


def test_a_break_at_hop_one_is_this_machines_first_link() -> None:
    hop = locate(answers(large_up_to=0))
    assert hop is not None
    assert (hop.ttl, hop.before_ttl, hop.before, hop.after) == (1, 0, None, R1)
    assert "between this machine and" in hop.detail


def test_a_break_into_the_target() -> None:
    hop = locate(answers(large_up_to=2))
    assert hop is not None
    assert (hop.ttl, hop.before, hop.after) == (3, R2, TARGET)
    assert hop.at_target


def test_large_probes_reaching_the_target_is_no_break() -> None:
    assert locate(answers(large_up_to=6)) is None


def test_a_lost_large_probe_beyond_the_target_is_no_break() -> None:
    found = answers(large_up_to=6)
    found[5] = HopAnswers(large=None, small=found[5].small)
    assert locate(found) is None


def test_no_icmp_at_all_finds_nothing() -> None:
    assert locate(dict.fromkeys(range(1, 7), HopAnswers())) is None
    assert locate({}) is None


def test_a_router_that_says_too_big_is_no_black_hole() -> None:
    found = answers(large_up_to=1)
    for ttl in range(2, 7):
        found[ttl] = HopAnswers(large=too_big(R1, 1400), small=found[ttl].small)
    assert locate(found) is None


def test_a_lost_large_probe_before_a_later_answer_is_not_the_break() -> None:
    found = answers(large_up_to=2)
    found[1] = HopAnswers(large=None, small=found[1].small)
    hop = locate(found)
    assert hop is not None and (hop.ttl, hop.before) == (3, R2)


def test_a_silent_hop_before_the_break_widens_the_link_to_a_span() -> None:
    found = answers(large_up_to=1)
    found[2] = HopAnswers()  # r2 never answers a traceroute
    hop = locate(found)
    assert hop is not None
    assert (hop.ttl, hop.before_ttl, hop.before, hop.after) == (3, 1, R1, TARGET)
    assert not hop.adjacent


def test_silent_small_probes_beyond_the_last_large_answer_find_nothing() -> None:
    found = answers(large_up_to=1)
    for ttl in range(2, 7):
        found[ttl] = HopAnswers()
    assert locate(found) is None


# ---- arguments that would make a probe prove nothing (refused before any socket) ----------


def test_a_request_shorter_than_a_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="never fills"):
        narrow_mtu("127.0.0.1", 80, b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ValueError, match="timeout"):
        narrow_mtu("127.0.0.1", 80, b"x" * 2000, timeout=0)


def test_a_large_probe_must_be_larger_than_the_small_one() -> None:
    with pytest.raises(ValueError, match="small probe"):
        locate_mtu_hop("::1", size=80)
    with pytest.raises(ValueError, match="max_hops"):
        locate_mtu_hop("127.0.0.1", size=1500, max_hops=0)
