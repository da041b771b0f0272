"""`servepath load --html`: the run's numbers as charts and tables on one self-contained page.
Pure: reports are recorded from known outcomes, no network."""

from __future__ import annotations

import pytest

from servepath.load.report import FindMaxReport, RunReport, SweepReport
from servepath.render.load import load_html
from servepath.render.markup import ms
from tests.report.builders import (
    HOSTILE,
    find_max_report,
    load_catalogue,
    load_run,
    sweep_report,
)
from tests.report.pages import SVG_NS, assert_self_contained, inline_svgs, parse

CATALOGUE = load_catalogue()


def _text(page: str) -> str:
    return " ".join(" ".join(parse(page).text).split())


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_report_is_one_page_that_fetches_nothing_with_well_formed_charts(
    name: str,
) -> None:
    page = load_html(CATALOGUE[name], sending="sending fresh instances")
    assert_self_contained(page)
    svgs = inline_svgs(page)
    assert svgs
    for svg in svgs:  # every chart says what it shows, for a reader without the picture
        assert svg.get("role") == "img" and svg.get("aria-label")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_chart_has_its_numbers_in_text_too(name: str) -> None:
    result = CATALOGUE[name]
    text = _text(load_html(result))
    run = result if isinstance(result, RunReport) else None
    if isinstance(result, FindMaxReport):
        run = result.best
    if isinstance(result, SweepReport):
        run = max(result.runs, key=lambda r: r.achieved_rate)
    assert run is not None
    assert f"{run.sent:,}" in text and f"{run.succeeded:,} succeeded" in text
    if len(run.timeseries) > 1:  # a series, and its numbers in the table below it
        for row in run.timeseries:
            assert ms(row.p99_ms) in text


def test_an_open_loop_run_shows_both_latencies_and_the_slo() -> None:
    page = load_html(CATALOGUE["open-errors"])
    text = _text(page)
    assert "open loop at 100 req/s" in text
    assert "from intended send (callers' view)" in text
    assert "service time (from actual send)" in text
    assert "SLO p99 ≤ 20 ms, errors ≤ 0.1%" in text and "missed" in text
    assert "✘ PROBLEMS" in text


def test_a_closed_loop_run_has_no_open_loop_rows() -> None:
    text = _text(load_html(CATALOGUE["closed"]))
    assert "closed loop at concurrency 4" in text
    for open_only in ("intended", "kept the rate", "scheduling lag", "sent late"):
        assert open_only not in text, open_only


def test_errors_are_counted_by_class_with_the_first_message_of_each_kind() -> None:
    run = CATALOGUE["closed-errors"]
    assert isinstance(run, RunReport)
    text = _text(load_html(run))
    e = run.errors
    assert e.timeout and e.connect and e.http_5xx and e.http_4xx
    assert f"Errors by class: {run.failed:,} failed" in text
    assert f"{e.timeout} requests" in text and f"{e.connect} requests" in text
    for code, n in (*e.http_4xx, *e.http_5xx):
        assert f"HTTP {code}: {n} requests" in load_html(run)  # the bar's own title
    assert "no answer in 10 s" in text and "connection refused" in text


def test_a_run_without_errors_says_so_instead_of_an_empty_chart() -> None:
    text = _text(load_html(load_run("closed")))
    assert "✔ no failed requests: all 300 succeeded" in text


def test_server_and_network_time_side_by_side_or_why_not() -> None:
    run = load_run("closed")
    assert run.server_time is not None and run.network_time is not None
    text = _text(load_html(run))
    assert "at the median the server spends" in text
    untimed = _text(load_html(CATALOGUE["closed-no-timing"]))
    assert "the answers carried no Server-Timing total" in untimed


def test_a_capacity_search_shows_each_step_the_best_rate_and_the_replicas() -> None:
    report = find_max_report()
    page = load_html(report)
    text = _text(page)
    assert "Capacity search, SLO p99 ≤ 50 ms, errors ≤ 0.1%" in text
    assert "highest rate meeting the SLO: 250.0 req/s at 0.0% cache hits" in text
    for step in report.steps:
        assert f"{step.rate:.1f}" in text and step.note in text
    assert report.replicas is not None
    assert f"Replica estimate: {report.replicas.replicas} for 3,000 req/s" in text
    assert report.replicas.statement in text
    assert "The best passing rate in detail: open loop at 250 req/s" in text
    chart = next(s for s in inline_svgs(page) if s.get("aria-label", "").startswith("capacity"))
    crosses = [p for p in chart.iter(f"{SVG_NS}path") if p.get("stroke-width") == "2.5"]
    assert len(crosses) == sum(not s.passed for s in report.steps)  # fails drawn as crosses


def test_a_sweep_shows_its_runs_the_fit_and_the_replicas() -> None:
    report = sweep_report()
    text = _text(load_html(report))
    assert "Concurrency sweep" in text and "USL fit: λ=" in text
    for run in report.runs:
        assert f"{run.achieved_rate:.1f}" in text
    assert report.replicas is not None and report.replicas.statement in text
    assert "The highest-throughput run in detail: closed loop at concurrency 16" in text


def test_a_find_max_that_met_nothing_still_draws_its_steps() -> None:
    report = find_max_report()
    nothing = FindMaxReport(report.url, report.slo, report.steps[3:5], None, "every rate missed",
                            None, None, ("no rate met the SLO",))  # fmt: skip
    page = load_html(nothing)
    assert_self_contained(page)
    text = _text(page)
    assert "no rate met the SLO" in text and "✘ PROBLEMS" in text


def test_a_hostile_url_is_text_never_markup() -> None:
    page = load_html(CATALOGUE["hostile"], sending=HOSTILE)
    assert "<script" not in page and "<img" not in page and "\x00" not in page
    assert "http://[fd20::1]:8080/&lt;script&gt;" in page
    assert_self_contained(page)


def _charted() -> list[str]:
    """The catalogue's runs that draw a per-second throughput chart (two seconds or more)."""
    return sorted(
        name
        for name, result in CATALOGUE.items()
        if isinstance(result, RunReport) and len(result.timeseries) >= 2
    )


@pytest.mark.parametrize("name", _charted())
def test_the_throughput_chart_crosses_only_the_seconds_that_failed(name: str) -> None:
    result = CATALOGUE[name]
    assert isinstance(result, RunReport)
    page = load_html(result)
    crossed = page.count("<title>failed: ")
    assert crossed == sum(1 for row in result.timeseries if row.failed)
