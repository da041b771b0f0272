from __future__ import annotations

import pytest

from servepath.errors import ConfigError
from servepath.load.schedule import (
    FindMaxPlan,
    OpenLoopSchedule,
    interleaved_share,
    parse_duration,
    split_count,
    split_open_loop,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("500ms", 0.5), ("1.5s", 1.5), ("1h", 3600.0)],
)
def test_durations_read_plain_seconds_or_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10 parsecs", "0", "-5s"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_open_loop_times_are_evenly_spaced_whatever_happens() -> None:
    schedule = OpenLoopSchedule(200.0)
    assert [schedule.intended(i) for i in range(4)] == pytest.approx([0, 0.005, 0.010, 0.015])
    assert schedule.count_before(3.0) == 600


def test_split_schedules_interleave_into_the_single_process_stream() -> None:
    single = OpenLoopSchedule(300.0)
    parts = split_open_loop(300.0, 3)
    merged = sorted(p.intended(i) for p in parts for i in range(100))
    assert merged == pytest.approx([single.intended(i) for i in range(300)])
    assert sum(p.count_before(2.0) for p in parts) == single.count_before(2.0) == 600


def test_request_budgets_split_without_losing_or_adding_one() -> None:
    assert split_count(10, 3) == [4, 3, 3]
    assert sum(interleaved_share(1001, j, 4) for j in range(4)) == 1001
    assert interleaved_share(2, 3, 4) == 0


def _search(capacity: float, **kwargs: float) -> FindMaxPlan:
    plan = FindMaxPlan(**kwargs)  # type: ignore[arg-type]
    while (rate := plan.next_rate()) is not None:
        plan.record(rate, "pass" if rate <= capacity else "fail")
    return plan


def test_find_max_doubles_then_bisects_to_within_its_tolerance() -> None:
    plan = _search(730.0, start_rate=50.0, tolerance=0.05)
    assert plan.passed is not None and plan.failed is not None
    assert plan.passed <= 730.0 < plan.failed
    assert plan.failed <= plan.passed * 1.05
    rates = [r for r, _ in plan.history]
    assert rates[:5] == [50, 100, 200, 400, 800]


def test_find_max_goes_down_when_the_first_step_already_fails() -> None:
    plan = _search(30.0, start_rate=100.0, tolerance=0.1)
    assert plan.passed is not None and plan.passed <= 30.0
    assert plan.history[0] == (100.0, "fail")


def test_find_max_stops_at_the_rate_ceiling_it_was_given() -> None:
    plan = _search(1e9, start_rate=100.0, max_rate=500.0)
    assert plan.passed == 500.0
    assert max(r for r, _ in plan.history) == 500.0


def test_find_max_can_be_stopped_and_then_proposes_nothing() -> None:
    plan = FindMaxPlan(start_rate=10.0)
    plan.record(10.0, "pass")
    plan.stop("the generator fell behind")
    assert plan.done and plan.next_rate() is None
