"""Admission control as pure decisions: the bounds by count, by body bytes and by expected wait,
the model-call fit that predicts the wait, and the Retry-After the drain rate gives."""

from __future__ import annotations

import pytest

from servepath.service.admission import (
    AUTO_WAIT_FACTOR,
    DEFAULT_MIN_WAIT,
    LAG_WINDOW,
    Admission,
    AdmissionLimits,
    CallFit,
    Diagnostics,
    RateBudget,
    RateLimits,
)


def calibrated(fixed: float, per_row: float, **limits: float) -> Admission:
    adm = Admission(AdmissionLimits(**limits), max_batch=64)  # type: ignore[arg-type]
    for rows in (1, 8, 1, 8, 32):
        adm.observe_call(rows, fixed + per_row * rows)
    return adm


def test_the_fit_recovers_a_fixed_and_a_per_row_cost() -> None:
    fit = CallFit()
    for rows in (1, 2, 4, 8, 16, 64, 3):
        fit.observe(rows, 0.004 + 0.00007 * rows)
    a, b = fit.coefficients()
    assert a == pytest.approx(0.004, rel=1e-6)
    assert b == pytest.approx(0.00007, rel=1e-6)
    assert fit.predict(100) == pytest.approx(0.011, rel=1e-6)


def test_with_one_batch_size_seen_all_the_cost_is_taken_per_row() -> None:
    fit = CallFit()
    for _ in range(5):
        fit.observe(4, 0.008)
    assert fit.coefficients() == (0.0, pytest.approx(0.002))


def test_the_fit_forgets_old_calls() -> None:
    fit = CallFit()
    for rows in (1, 8) * 50:
        fit.observe(rows, 0.001 * rows)
    for rows in (1, 8) * 200:
        fit.observe(rows, 0.010 * rows)  # the model became ten times slower
    assert fit.coefficients()[1] == pytest.approx(0.010, rel=0.05)


def test_a_request_finding_the_building_empty_is_always_admitted() -> None:
    adm = calibrated(0.0, 1.0)  # a second per row: any queue would be too long
    for _ in range(LAG_WINDOW):
        adm.observe_lag(5.0)
    assert adm.decide(0.0).admitted


def test_past_the_count_bound_requests_are_refused_whatever_the_wait() -> None:
    adm = Admission(AdmissionLimits(max_in_flight=3, max_wait=100.0))
    for i in range(3):
        assert adm.decide(float(i)).admitted
        adm.enter(float(i))
    decision = adm.decide(3.0)
    assert not decision.admitted and decision.reason == "in_flight"
    assert decision.retry_after >= 1


def test_the_body_bytes_in_flight_are_bounded() -> None:
    adm = Admission(AdmissionLimits(max_body_bytes=1000, max_wait=100.0))
    adm.enter(0.0, body_bytes=900)
    assert not adm.decide(0.0, body_bytes=200).admitted
    assert adm.decide(0.0, body_bytes=100).admitted


def test_the_model_queue_is_predicted_from_the_fit_and_refuses_past_the_wait() -> None:
    # 10 ms a row, a wait bound of 50 ms: about five rows may wait ahead of a new one.
    adm = calibrated(0.0, 0.010, max_wait=0.05)
    admitted = 0
    for i in range(20):
        if adm.decide(float(i) * 1e-6).admitted:
            adm.enter(float(i) * 1e-6)
            admitted += 1
    assert 4 <= admitted <= 7, admitted
    refused = adm.decide(1.0)
    assert refused.reason == "wait" and refused.expected_wait > 0.05


def test_the_rest_of_the_call_in_progress_counts_in_the_wait() -> None:
    adm = calibrated(0.0, 0.010, max_wait=10.0)
    adm.enter(100.0)
    adm.observe_queue(0, 0, 20, 1, 100.0)  # a 200 ms call started at t=100
    assert adm.expected_wait(100.05) == pytest.approx(0.15, rel=1e-6)


def test_a_burst_is_weighed_request_by_request_not_against_an_empty_queue() -> None:
    # Admitted requests still on their way to the model (their bodies being read) count as
    # a row each: a burst decided within one loop iteration cannot all get in.
    adm = calibrated(0.0, 0.010, max_wait=0.05)
    admitted = sum(1 for _ in range(100) if adm.decide(0.0).admitted and adm.enter(0.0))
    assert admitted <= 7


def test_a_standing_event_loop_lag_refuses_but_a_passing_burst_does_not() -> None:
    adm = calibrated(0.0, 0.000001, max_wait=0.05)
    adm.enter(0.0)
    for lag in (0.2, 0.001, 0.2, 0.2, 0.15):  # one quick iteration among slow ones
        adm.observe_lag(lag)
    assert adm.decide(0.0).admitted
    for _ in range(LAG_WINDOW):
        adm.observe_lag(0.08)
    decision = adm.decide(0.0)
    assert not decision.admitted and decision.reason == "wait"


def test_the_automatic_wait_bound_follows_the_models_time_with_a_floor() -> None:
    assert calibrated(0.0, 0.0001).max_wait == DEFAULT_MIN_WAIT
    slow = calibrated(0.030, 0.0)  # 30 ms a call
    assert slow.max_wait == pytest.approx(AUTO_WAIT_FACTOR * 0.030, rel=1e-6)
    assert calibrated(0.030, 0.0, max_wait=0.2).max_wait == 0.2


def test_retry_after_is_the_time_to_drain_what_is_held_and_what_was_turned_away() -> None:
    adm = Admission(AdmissionLimits(max_in_flight=10, max_wait=100.0))
    now = 0.0
    # Drain at 100 a second for a while: the rate is measured over busy time.
    for _ in range(200):
        ticket = adm.enter(now)
        now += 0.01
        adm.leave(now, ticket)
    for _ in range(10):
        adm.enter(now)
    refusals = [adm.decide(now + i * 0.001) for i in range(300)]
    assert all(not r.admitted for r in refusals)
    # 10 held and ~300 turned away in the last second, at ~100 a second: about 3 s.
    assert refusals[-1].retry_after == 4 or refusals[-1].retry_after == 3
    assert refusals[0].retry_after == 1
    assert max(r.retry_after for r in refusals) <= 60


def test_a_snapshot_says_whether_the_building_is_saturated() -> None:
    adm = Admission(AdmissionLimits(max_in_flight=1))
    assert not adm.snapshot(0.0).saturated
    adm.enter(0.0)
    snap = adm.snapshot(0.0)
    assert snap.saturated and snap.in_flight == 1
    assert snap.to_json()["in_flight"] == 1


def test_a_standing_sojourn_refuses_and_a_burst_worked_off_does_not() -> None:
    adm = Admission(AdmissionLimits(max_wait=0.1))
    now = 0.0

    def answer(sojourn: float) -> None:
        ticket = adm.enter(now - sojourn)
        adm.leave(now, ticket)

    # A burst: most waited long, but one got through quickly, in every interval.
    for step in range(30):
        now = step * 0.01
        answer(0.005 if step % 5 == 0 else 0.3)
    held = adm.enter(now)  # something in flight
    assert adm.decide(now).admitted
    # A standing queue: every request of an interval waited past the bound.
    for step in range(30, 60):
        now = step * 0.01
        answer(0.25)
    decision = adm.decide(now)
    assert not decision.admitted and decision.reason == "wait"
    adm.leave(now, held)
    # Idle for a while: the old measurement no longer counts.
    now += 1.0
    adm.enter(now)
    assert adm.decide(now).admitted


def test_a_building_where_nothing_is_answered_for_an_interval_is_saturated() -> None:
    adm = Admission(AdmissionLimits(max_wait=0.1))
    ticket = adm.enter(0.0)
    adm.leave(0.001, ticket)
    adm.enter(0.002)
    adm.enter(0.003)
    assert adm.decide(0.05).admitted
    decision = adm.decide(0.5)  # nothing answered for 0.5 s with two in flight
    assert not decision.admitted and decision.expected_wait >= 0.49


def test_a_request_whose_body_is_still_arriving_holds_no_one_back() -> None:
    # One caller's upload stalls for seconds: it waits on its caller, not on the server, and
    # the requests behind it are admitted (each answered at once).
    adm = Admission(AdmissionLimits(max_wait=0.1))
    stalled = adm.enter(0.0, body_bytes=48_000, receiving=True)
    for i in range(1, 50):
        now = i * 0.1
        assert adm.decide(now).admitted, adm.decide(now).detail
        ticket = adm.received(now, adm.enter(now, receiving=True))
        adm.leave(now + 0.001, ticket)
    assert adm.in_flight == 1 and adm.receiving == 1
    # Its body arrives at last: from then on it is the server's, timed from that moment.
    ready = adm.received(5.0, stalled)
    assert ready[0] == 5.0 and adm.receiving == 0
    assert adm.decide(5.05).admitted
    assert not adm.decide(5.5).admitted  # now it is the server that has not answered it
    adm.leave(5.5, ready)
    assert adm.in_flight == 0 and adm.body_bytes == 0


def test_a_request_answered_before_its_body_arrived_leaves_the_count_right() -> None:
    adm = Admission()
    ticket = adm.enter(0.0, body_bytes=10, receiving=True)  # then refused: bad content type
    adm.leave(0.001, ticket)
    assert (adm.in_flight, adm.receiving, adm.body_bytes) == (0, 0, 0)
    assert adm.received(0.002, adm.received(0.001, adm.enter(0.0, receiving=True)))[3] is False
    assert adm.receiving == 0


def test_a_request_timed_out_on_its_callers_body_is_no_measure_of_the_queue() -> None:
    adm = Admission(AdmissionLimits(max_wait=0.05))
    dripping = adm.enter(0.0, receiving=True)
    adm.leave(3.0, dripping)  # 408 at the request timeout: 3 s waiting on the caller
    held = adm.enter(3.01, receiving=True)  # the next one, still reading its body
    assert adm.decide(3.02).admitted, adm.decide(3.02).detail
    adm.leave(3.03, adm.received(3.021, held))
    assert adm.standing < 0.05


@pytest.mark.parametrize("loop_stalled", [True, False])
def test_a_stall_of_the_event_loop_is_not_taken_for_a_standing_queue(loop_stalled: bool) -> None:
    # Requests answered within 2 ms, one every 10 ms, then 300 ms in which nothing moves. If
    # the event loop stood still (a collection, a thread holding the interpreter), every
    # request waited it out alike and the next ones find the building as it was; if the loop
    # ran and the requests in flight still were not answered, they queue behind something.
    adm = Admission(AdmissionLimits(max_wait=0.05))
    now = 0.0
    for step in range(20):
        now = step * 0.01
        adm.observe_lag(0.0005)  # the lag sampler, every 10 ms
        adm.leave(now + 0.002, adm.enter(now))
    held = adm.enter(now + 0.005)
    now += 0.305
    if loop_stalled:
        adm.observe_lag(0.3)  # the lag sampler's timer ran 300 ms late
    decision = adm.decide(now)
    adm.leave(now + 0.001, held)  # the held request is answered at once
    after = adm.decide(now + 0.002)
    if loop_stalled:
        assert decision.admitted and after.admitted, (decision, after)
        assert adm.expected_wait(now + 0.002) < 0.05
    else:
        assert not decision.admitted and decision.reason == "wait"
        assert adm.expected_wait(now + 0.002) >= 0.3  # the last answer waited 300 ms


def test_a_loop_that_stalls_again_and_again_is_shed_on_its_standing_lag() -> None:
    adm = Admission(AdmissionLimits(max_wait=0.05))
    adm.enter(0.0)
    for _ in range(LAG_WINDOW):
        adm.observe_lag(0.2)
    decision = adm.decide(0.0)
    assert not decision.admitted and decision.expected_wait >= 0.2


def test_a_rate_budget_gives_its_burst_then_one_a_period_and_says_when() -> None:
    budget = RateBudget(RateLimits(rate=2.0, burst=3))
    assert [budget.take(0.0) for _ in range(4)] == [0, 0, 0, 1]
    assert budget.take(0.5) == 0  # a token every half second
    assert budget.take(0.5) == 1
    slow = RateBudget(RateLimits(rate=0.1, burst=1))
    assert slow.take(0.0) == 0
    assert slow.take(0.0) == 10  # a token in ten seconds


def test_diagnostic_routes_give_way_to_saturated_predictions() -> None:
    adm = calibrated(0.0, 0.000001, max_wait=0.05)
    diagnostics = Diagnostics(adm)
    assert diagnostics.decide(0.0).admitted
    adm.enter(0.0)
    for _ in range(LAG_WINDOW):
        adm.observe_lag(0.2)  # predictions are past their bound
    refused = diagnostics.decide(0.0)
    assert not refused.admitted and refused.reason == "overloaded" and refused.retry_after >= 1


def test_past_its_budget_a_flood_of_diagnostic_requests_is_refused() -> None:
    diagnostics = Diagnostics(Admission(), RateLimits(rate=1.0, burst=2))
    decisions = [diagnostics.decide(0.0) for _ in range(100)]
    assert sum(d.admitted for d in decisions) == 2
    assert {d.reason for d in decisions[2:]} == {"rate"}
    assert diagnostics.decide(1.0).admitted  # a token a second


# --- the scaling signal --------------------------------------------------------------------


def test_saturation_is_0_when_idle_and_reaches_1_exactly_when_shedding_starts() -> None:
    # 10 ms a row, a bound of 50 ms: each admitted request adds a row's 10 ms to the wait.
    adm = calibrated(0.0, 0.010, max_wait=0.05)
    assert adm.saturation(0.0) == 0.0
    readings = []
    while adm.decide(0.0).admitted:
        readings.append(adm.saturation(0.0))
        assert readings[-1] < 1.0, "1 before anything was shed"
        adm.enter(0.0)
    # The request refused now is refused for its wait, and the signal says so.
    assert adm.saturation(0.0) == 1.0
    assert readings == sorted(readings) and readings[-1] >= 0.5, readings


def test_saturation_is_1_at_the_count_bound_whatever_the_wait() -> None:
    adm = Admission(AdmissionLimits(max_in_flight=2, max_wait=100.0))
    adm.enter(0.0)
    assert adm.saturation(0.0) == 0.0
    adm.enter(0.0)
    assert not adm.decide(0.0).admitted and adm.saturation(0.0) == 1.0


def test_an_empty_building_reads_below_1_whatever_the_loop_lag() -> None:
    # An empty building admits the next request whatever the wait: the signal never says
    # "shedding" then, though it says the loop is slow.
    adm = calibrated(0.0, 0.000001, max_wait=0.05)
    for _ in range(LAG_WINDOW):
        adm.observe_lag(0.2)
    assert adm.decide(0.0).admitted
    assert 0.9 <= adm.saturation(0.0) < 1.0


def test_saturation_falls_back_to_0_once_the_building_empties() -> None:
    adm = calibrated(0.0, 0.010, max_wait=0.05)
    tickets = [adm.enter(0.0) for _ in range(8)]
    assert adm.saturation(0.0) == 1.0
    for i, ticket in enumerate(tickets):
        adm.leave(0.01 * (i + 1), ticket)
    for _ in range(LAG_WINDOW):
        adm.observe_lag(0.00002)  # an idle loop: twenty microseconds late
    # Past an interval the standing sojourn of the last answers is stale: nothing waits.
    assert adm.saturation(1.0) == 0.0
