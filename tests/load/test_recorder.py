from __future__ import annotations

import pickle

import pytest

from servepath.load.capacity import SLO
from servepath.load.recorder import Recorder, RunShape, achieved_rate, build_report, server_total_ms

SHAPE = RunShape("http://127.0.0.1:1/decisions", "open", 100.0, None, 1, 1.0, 1000)


def test_server_timing_total_is_read_from_the_header() -> None:
    header = 'cache;dur=0.04;desc="miss", model;dur=1.8, total;dur=2.1'
    assert server_total_ms(header) == pytest.approx(2.1)
    assert server_total_ms("model;dur=1.8") is None
    assert server_total_ms(None) is None
    assert server_total_ms("total;dur=abc") is None


def _open_run(rec: Recorder, n: int, *, late_every: int = 0) -> None:
    for i in range(n):
        intended = i / 100
        sent = intended + (0.05 if late_every and i % late_every == 0 else 0.0005)
        rec.record(
            intended,
            sent,
            sent + 0.002,
            status=200 if i % 10 else 503,
            error=None,
            server_timing="total;dur=1.5",
            x_cache="HIT" if i % 2 else "MISS",
            started=sent,
        )


def test_counts_add_up_and_each_failure_has_one_class() -> None:
    rec = Recorder(0.0, late_threshold=0.01)
    _open_run(rec, 100)
    rec.record(0.5, 0.5, 1.5, status=None, error="timeout")
    rec.record(-0.1, -0.1, 0.0, status=200, error=None)  # warmup
    report = build_report(SHAPE, rec, None)
    assert report.sent == 101 == report.succeeded + report.failed
    assert report.warmup_requests == 1
    assert report.errors.timeout == 1
    assert dict(report.errors.http_5xx) == {503: 10}
    assert report.errors.total == report.failed == 11
    assert report.cache.hits == 50 and report.cache.misses == 50
    assert report.server_time is not None and report.server_time.p50_ms == pytest.approx(1.5, 0.01)
    assert report.network_time is not None
    assert report.network_time.p50_ms == pytest.approx(0.5, abs=0.01)
    assert not report.ok  # failures without an SLO are a problem


def test_late_sends_beyond_the_allowance_mean_the_rate_was_not_kept() -> None:
    rec = Recorder(0.0, late_threshold=0.01)
    _open_run(rec, 100, late_every=20)  # 5% late
    report = build_report(SHAPE, rec, SLO(99, 1000, error_budget=0.5))
    assert report.generator.late == 5
    assert not report.generator.kept_rate
    assert any("could not keep 100 req/s" in p for p in report.problems)


def test_late_sends_the_machine_caused_are_a_warning_while_the_offered_load_holds() -> None:
    # The generator used a tenth of a core: other work on the machine delayed its sends.
    rec = Recorder(0.0, late_threshold=0.01)
    rec.cpu_percent.append(11.0)
    _open_run(rec, 100, late_every=20)  # 5% late
    report = build_report(SHAPE, rec, SLO(99, 1000, error_budget=0.5))
    assert not report.generator.kept_rate  # what happened is still said
    assert not any("could not keep" in p for p in report.problems), report.problems
    assert any("other work on this machine delayed them" in w for w in report.warnings)


def test_late_sends_fail_the_run_when_the_generator_was_busy_or_the_machine_too_late() -> None:
    busy = Recorder(0.0, late_threshold=0.01)
    busy.cpu_percent.append(95.0)  # the generator itself was the bottleneck
    _open_run(busy, 100, late_every=20)
    assert any("could not keep" in p for p in build_report(SHAPE, busy, None).problems)
    swamped = Recorder(0.0, late_threshold=0.01)
    swamped.cpu_percent.append(11.0)
    _open_run(swamped, 100, late_every=5)  # 20% late: the plan's load was not offered
    assert any("could not keep" in p for p in build_report(SHAPE, swamped, None).problems)


def test_recorders_merge_exactly_after_travelling_between_processes() -> None:
    parts = [Recorder(0.0, late_threshold=0.01) for _ in range(2)]
    whole = Recorder(0.0, late_threshold=0.01)
    _open_run(parts[0], 60)
    _open_run(parts[1], 40)
    _open_run(whole, 60)
    _open_run(whole, 40)
    merged = pickle.loads(pickle.dumps(parts[0]))
    merged.merge(pickle.loads(pickle.dumps(parts[1])))
    a, b = build_report(SHAPE, merged, None), build_report(SHAPE, whole, None)
    assert (a.sent, a.succeeded, a.failed) == (b.sent, b.succeeded, b.failed)
    assert a.latency == b.latency
    assert a.timeseries == b.timeseries


def test_achieved_rate_is_read_from_the_spacing_of_completions() -> None:
    assert achieved_rate(301, 0.002, 3.002, 3.1) == pytest.approx(100.0)
    assert achieved_rate(1, 0.5, 0.5, 2.0) == pytest.approx(0.5)


def test_the_time_series_has_a_row_for_every_second_even_an_empty_one() -> None:
    rec = Recorder(0.0, late_threshold=0.01)
    rec.record(0.1, 0.1, 0.11, status=200, error=None)
    rec.record(2.5, 2.5, 2.51, status=200, error=None)
    shape = RunShape("u", "open", 1.0, None, 1, 3.0, 10)
    rows = build_report(shape, rec, None).timeseries
    assert [r.second for r in rows] == [0, 1, 2]
    assert [r.sent for r in rows] == [1, 0, 1]
