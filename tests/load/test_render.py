"""What `servepath load` prints for a run, a sweep and a capacity search, and its plots.

Reports are built from recorded outcomes (no network), rendered into a captured output,
and read as a user reads them.
"""

from __future__ import annotations

import io

import pytest

from servepath.load.capacity import SLO, estimate_replicas, fit_usl
from servepath.load.plot import build_figure, ticks_125
from servepath.load.recorder import Recorder, RunShape, build_report
from servepath.load.report import FindMaxReport, FindMaxStep, RunReport, SweepReport
from servepath.output import Output
from servepath.render.text_load import render_find_max, render_run, render_sweep

URL = "http://[2001:db8::7]:8080/decisions"


def _report(mode: str, *, n: int = 200, hit_every: int = 0, latency: float = 0.004) -> RunReport:
    shape = (
        RunShape(URL, "open", 100.0, None, 1, n / 100, 100)
        if mode == "open"
        else RunShape(URL, "closed", None, 4, 1, None, None)
    )
    rec = Recorder(0.0, late_threshold=0.01)
    for i in range(n):
        intended = i / 100
        rec.record(
            intended,
            intended + 0.0005,
            intended + 0.0005 + latency * (1 + i % 7),
            status=200,
            error=None,
            server_timing="total;dur=1.0",
            x_cache="HIT" if hit_every and i % hit_every == 0 else "MISS",
            started=intended + 0.0004 if mode == "open" else None,
        )
    rec.cpu_percent.append(30.0)
    return build_report(shape, rec, None)


def _text(render, report) -> str:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    render(Output(stdout=buffer, format="plain"), report)
    return buffer.getvalue()


def test_an_open_loop_run_shows_both_latencies_and_the_generators_timeliness() -> None:
    text = _text(render_run, _report("open"))
    assert text.startswith(f"{URL} — open loop at 100 req/s, 1 process, 2.0 s\n")
    assert "from intended send (callers' view)" in text
    assert "service time (from actual send)" in text
    assert "kept the rate   yes" in text
    assert "achieved" in text and "at 0.0% cache hits" in text


def test_a_closed_loop_run_has_no_open_loop_rows() -> None:
    report = _report("closed")
    assert report.generator.kept_rate is None
    text = _text(render_run, report)
    assert "closed loop at concurrency 4" in text
    assert "per request (from send to answer)" in text
    for open_loop_only in ("intended", "kept the rate", "scheduling lag", "sent late", "target"):
        assert open_loop_only not in text, open_loop_only


def _usl_points(runs: list[RunReport]) -> list[tuple[float, float]]:
    return [(float(r.concurrency or 1), r.achieved_rate) for r in runs]


def test_a_sweep_flags_a_poor_fit_and_plans_replicas_without_it() -> None:
    runs = [_report("closed", latency=0.001 * k) for k in (4, 1, 3, 1, 2)]
    runs = [
        RunReport(**{**r.__dict__, "concurrency": c})
        for r, c in zip(runs, (1, 2, 4, 8, 16), strict=True)
    ]
    usl = fit_usl(_usl_points(runs))
    assert not usl.good_fit
    best = max(runs, key=lambda r: r.achieved_rate)
    replicas = estimate_replicas(3000, best.achieved_rate, usl=usl, cache_hit_ratio=0.0)
    sweep = SweepReport(URL, None, tuple(runs), usl, best.achieved_rate, replicas, (),
                        capacity_cache_hit_ratio=0.0,
                        warnings=("the USL fit is poor (R²=0.34): it describes these runs "
                                  "badly and is not used to plan replicas",))  # fmt: skip
    text = _text(render_sweep, sweep)
    assert "a poor fit: not used to plan replicas" in text
    assert "linear scaling" in text and "USL per replica" not in text
    assert "best throughput within the SLO:" in text and "at 0.0% cache hits" in text
    assert "measured with 0.0% of answers from the cache" in text
    header = next(line for line in text.splitlines() if "concurrency" in line)
    assert "cache hits" in header


def test_a_sweep_of_three_concurrencies_warns_and_draws_no_peak() -> None:
    runs = [_report("closed", latency=0.001 * k) for k in (1, 2, 5)]
    runs = [
        RunReport(**{**r.__dict__, "concurrency": c}) for r, c in zip(runs, (1, 4, 16), strict=True)
    ]
    usl = fit_usl(_usl_points(runs))
    best = max(runs, key=lambda r: r.achieved_rate)
    sweep = SweepReport(URL, None, tuple(runs), usl, best.achieved_rate, None, ())
    text = _text(render_sweep, sweep)
    assert "3 concurrencies fit the USL's 3 parameters exactly" in text
    assert "throughput peaks at" not in text


def test_a_capacity_search_puts_the_cache_ratio_beside_each_rate() -> None:
    best = _report("open", hit_every=2)
    slo = SLO(99, 50)
    steps = (
        FindMaxStep(100, 99.5, 8.0, 0.0, True, True, "met", cache_hit_ratio=0.5),
        FindMaxStep(200, 150.0, 80.0, 0.0, False, True, "missed", cache_hit_ratio=0.5),
    )
    replicas = estimate_replicas(1000, 100, cache_hit_ratio=best.cache.hit_ratio)
    report = FindMaxReport(URL, slo, steps, 100.0, None, best, replicas, ())
    text = _text(render_find_max, report)
    assert "highest rate meeting the SLO: 100.0 req/s at 50.0% cache hits" in text
    assert "measured with 50.0% of answers from the cache" in text
    assert "50.0% of the answers came from the cache" in text  # the warning beside it
    rows = [line.split() for line in text.splitlines()]
    assert ["100.0", "99.5", "8.00", "0.00%", "50.0%", "pass"] in rows
    assert report.to_json()["cache_hit_ratio"] == 0.5


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_the_plot_has_readable_log_axes_and_legends_off_the_data(mode: str) -> None:
    report = _report(mode)
    fig = build_figure(report)
    fig.canvas.draw()
    top, _twin, bottom = fig.axes[0], fig.axes[2], fig.axes[1]
    for axes in (top, bottom):
        labels = [t.get_text() for t in axes.get_yticklabels() if t.get_text()]
        assert len(labels) >= 3, labels
        legend = axes.get_legend()
        assert legend is not None
        box, area = legend.get_window_extent(), axes.get_window_extent()
        assert box.y1 <= area.y0  # below the plot, never over the data
    names = [t.get_text() for t in top.get_legend().get_texts()]
    assert ("service time p99 (from actual send)" in names) == (mode == "open")


def test_latency_ticks_follow_1_2_5_across_the_range() -> None:
    assert ticks_125(0.3, 12) == [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
    assert ticks_125(3, 3) == [2.0, 5.0, 10.0]
    assert len(ticks_125(40, 45)) >= 3
