"""A load run as one self-contained page (``servepath load --html``), from the same reports
as ``--json``: the headline numbers, latency over time, the percentile spectrum, errors by
class, server against network time, and for a capacity search or a sweep the search itself
and the replica estimate. Charts are inline SVG; each has its numbers in a table too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from servepath.load.capacity import ReplicaEstimate
from servepath.load.plot import ticks_125
from servepath.load.report import (
    ERROR_CLASSES,
    FindMaxReport,
    LatencySummary,
    RunReport,
    SweepReport,
)
from servepath.output import percent, plural
from servepath.render.charts import PALETTE, Axes, Rule, Scale, Series, hbars, legend, line_chart
from servepath.render.charts import nice_ticks as _nice
from servepath.render.markup import el, esc, ms, table, text_el
from servepath.render.page import page

__all__ = ["load_html"]

LoadResult = RunReport | FindMaxReport | SweepReport

OK, FAIL, MUTED = "#1a7f37", "#cf222e", "#6e7781"
P50, P90, P99, MAX, SERVICE = PALETTE[0], PALETTE[2], PALETTE[1], PALETTE[3], PALETTE[6]
SERVER, NETWORK = PALETTE[0], PALETTE[1]
_SPECTRUM_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def _num(value: float) -> str:
    return f"{value:g}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} req/s" if value < 1000 else f"{value:,.0f} req/s"


def _ms_tick(value: float) -> str:
    return f"{value:g}"


def _log_axis(values: Sequence[float]) -> tuple[Scale, tuple[float, ...]]:
    seen = [v for v in values if v > 0 and math.isfinite(v)]
    ticks = tuple(ticks_125(min(seen), max(seen))) if seen else (0.1, 1.0, 10.0)
    return Scale(ticks[0], ticks[-1], log=True), ticks


def _linear_axis(values: Sequence[float], floor: float = 0.0) -> tuple[Scale, tuple[float, ...]]:
    seen = [v for v in values if math.isfinite(v)]
    ticks = _nice(min([floor, *seen]), max([floor + 1e-9, *seen]))
    return Scale(ticks[0], ticks[-1]), ticks


def _figure(title: str, svg: str, caption: str, details: str = "", key: str = "") -> str:
    more = el("details", el("summary", "the numbers"), details) if details else ""
    return el("figure", text_el("h3", title), svg, key, text_el("figcaption", caption), more)


def _card(key: str, value: str, detail: str = "", tone: str | None = None) -> str:
    return el(
        "div",
        text_el("div", key, class_="k"),
        text_el("div", value, class_=f"v {tone}" if tone else "v"),
        text_el("div", detail, class_="d") if detail else "",
        class_="card",
    )


def _mode(r: RunReport) -> str:
    if r.mode == "open":
        return f"open loop at {_num(r.target_rate or 0)} req/s"
    return f"closed loop at concurrency {r.concurrency}"


def _headline(r: RunReport) -> str:
    """The main latency: from intended send in an open loop (callers' view), else service."""
    return "from intended send" if r.mode == "open" else "from send to answer"


def _main_latency(r: RunReport) -> LatencySummary:
    return r.latency if r.mode == "open" else r.service_time


def _cards(r: RunReport) -> str:
    lat = _main_latency(r)
    error_share = r.failed / r.sent if r.sent else 0.0
    cards = [
        _card("requests", f"{r.sent:,}", f"{r.succeeded:,} succeeded"),
        _card(
            "failed",
            f"{r.failed:,}",
            percent(error_share, 2) + " of sent",
            "fail" if r.failed else "ok",
        ),
        _card(
            "achieved",
            _rate(r.achieved_rate),
            f"target {_num(r.target_rate)} req/s" if r.target_rate else f"in {r.elapsed_s:.2f} s",
        ),
        _card("p50", ms(lat.p50_ms), _headline(r)),
        _card("p99", ms(lat.p99_ms), _headline(r)),
        _card("max", ms(lat.max_ms), f"p99.9 {ms(lat.p999_ms)}"),
        _card(
            "cache hits",
            percent(r.cache.hit_ratio),
            f"{r.cache.hits} hit, {r.cache.misses} miss"
            if r.cache.hit_ratio is not None
            else "no X-Cache header",
        ),
    ]
    if r.slo is not None:
        cards.append(
            _card(
                f"SLO {r.slo.slo.label}",
                "met" if r.slo.met else "missed",
                f"p{_num(r.slo.slo.percentile)} {ms(r.slo.observed_ms)}",
                "ok" if r.slo.met else "fail",
            )
        )
    return el("div", *cards, class_="cards", role="group", aria_label="headline numbers")


def _over_time(r: RunReport) -> str:
    rows = r.timeseries
    if len(rows) < 2:
        return text_el(
            "p",
            f"the run lasted {r.elapsed_s:.2f} s: too short for a series over time (see the "
            "percentile spectrum)",
            class_="lead",
        )
    secs = [float(row.second) for row in rows]

    def pts(values: Sequence[float]) -> tuple[tuple[float, float], ...]:
        return tuple((s, v) for s, v in zip(secs, values, strict=True) if v > 0)

    series = [
        Series("p50", pts([x.p50_ms for x in rows]), P50, marker="circle"),
        Series("p90", pts([x.p90_ms for x in rows]), P90, marker="circle"),
        Series("p99", pts([x.p99_ms for x in rows]), P99, marker="circle"),
        Series("max", pts([x.max_ms for x in rows]), MAX, marker="circle"),
    ]
    if r.mode == "open":
        series.append(
            Series(
                "service time p99 (from actual send)",
                pts([x.service_p99_ms for x in rows]),
                SERVICE,
                dashed=True,
            )
        )
    values = [v for s in series for _, v in s.points]
    if r.slo is not None:  # the objective in view, however far the data is below it
        values.append(r.slo.slo.threshold_ms)
    y, y_ticks = _log_axis(values)
    x, x_ticks = _linear_axis([*secs, secs[-1] + (0 if len(secs) > 1 else 1)])
    x_ticks = tuple(t for t in x_ticks if float(t).is_integer())
    rules = [Rule(r.slo.slo.threshold_ms, f"SLO {r.slo.slo.label}")] if r.slo else []
    axes = Axes(
        x,
        y,
        x_ticks,
        y_ticks,
        "second of the run" + (" (by intended send time)" if r.mode == "open" else ""),
        f"latency {_headline(r)}, ms",
        x_format=lambda v: f"{v:g}",
        y_format=_ms_tick,
    )
    svg = line_chart(
        "latency per second",
        axes,
        series,
        rules=rules,
        description=f"p50, p90, p99 and max latency for each of {len(rows)} seconds, "
        "on a logarithmic axis",
    )
    throughput_rows = [
        (s, float(row.succeeded), float(row.failed)) for s, row in zip(secs, rows, strict=True)
    ]
    tx, tx_ticks = _linear_axis([*secs, secs[-1] + (0 if len(secs) > 1 else 1)])
    ty, ty_ticks = _linear_axis([v for _, a, b in throughput_rows for v in (a, b)])
    tput = line_chart(
        "requests per second",
        Axes(
            tx,
            ty,
            tuple(t for t in tx_ticks if float(t).is_integer()),
            ty_ticks,
            "second of the run",
            "requests",
        ),
        [
            Series("succeeded", tuple((s, a) for s, a, _ in throughput_rows), OK, marker="circle"),
            Series(
                "failed",
                tuple((s, b) for s, _, b in throughput_rows),
                FAIL,
                # a cross marks a second that had failures; the line at 0 says the rest
                markers=tuple("cross" if b else "" for _, _, b in throughput_rows),
            ),
        ],
        description="requests that succeeded and failed in each second",
        height=210,
    )
    numbers = table(
        (
            "second",
            "sent",
            "ok",
            "failed",
            "late",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "service p99 ms",
        ),
        [
            (
                x.second,
                x.sent,
                x.succeeded,
                x.failed,
                x.late,
                ms(x.p50_ms),
                ms(x.p90_ms),
                ms(x.p99_ms),
                ms(x.max_ms),
                ms(x.service_p99_ms),
            )
            for x in rows
        ],
        numeric=range(10),
    )
    return el(
        "div",
        _figure(
            "Latency over time",
            svg,
            "each second's percentiles (log scale); a line that climbs is a queue building",
            numbers,
            legend(series, rules),
        ),
        _figure(
            "Throughput",
            tput,
            "requests answered and failed per second",
            "",
            legend([Series("succeeded", (), OK), Series("failed", (), FAIL)]),
        ),
        class_="grid2",
    )


def _sx(percentile: float) -> float:
    # HdrHistogram's spectrum axis: 1/(1-p), so each nine gets the same room.
    return 1.0 / max(1.0 - percentile / 100.0, 1e-6)


def _spectrum(r: RunReport) -> str:
    curves = []
    if r.mode == "open":
        curves.append(("latency from intended send", r.spectrum, P99, False))
        curves.append(("service time from actual send", r.service_spectrum, SERVICE, True))
    else:
        curves.append(("latency (send to answer)", r.service_spectrum or r.spectrum, P99, False))
    series = [
        Series(
            label, tuple((_sx(p.percentile), p.ms) for p in pts if p.ms > 0), colour, dashed=dashed
        )
        for label, pts, colour, dashed in curves
        if pts
    ]
    if not series:
        return text_el("p", "no latency was recorded", class_="lead")
    # the last point is the maximum (100%): drawn at the first nine past what the data
    # resolves, where the axis ends
    below = [p.percentile for _, pts, _, _ in curves for p in pts if p.percentile < 100]
    top = max(below, default=90.0)
    end = next((t for t in _SPECTRUM_TICKS if t >= top and t > 0), _SPECTRUM_TICKS[-1])
    ticks = tuple(_sx(t) for t in _SPECTRUM_TICKS if t <= end)
    x = Scale(1.0, _sx(end), log=True)
    series = [
        replace(s, points=tuple((min(px, x.high), py) for px, py in s.points)) for s in series
    ]
    threshold = [r.slo.slo.threshold_ms] if r.slo else []
    y, y_ticks = _log_axis([*(v for s in series for _, v in s.points), *threshold])
    rules = [Rule(r.slo.slo.threshold_ms, f"SLO {r.slo.slo.label}")] if r.slo else []
    axes = Axes(
        x,
        y,
        ticks,
        y_ticks,
        "percentile",
        "ms",
        x_format=lambda v: f"{100 - 100 / v:g}%" if v > 1 else "0%",
        y_format=_ms_tick,
    )
    svg = line_chart(
        "percentile spectrum",
        axes,
        series,
        rules=rules,
        description="the share of requests (x) that took at most the time (y); "
        "each nine gets equal room",
    )
    summaries: list[tuple[str, LatencySummary]] = []
    if r.mode == "open":
        summaries.append(("from intended send (callers' view)", r.latency))
    summaries.append(
        (
            "service time (from actual send)"
            if r.mode == "open"
            else "per request (send to answer)",
            r.service_time,
        )
    )
    if r.server_time is not None:
        summaries.append(("of which server (Server-Timing total)", r.server_time))
    if r.network_time is not None:
        summaries.append(("of which network and client", r.network_time))
    numbers = table(
        ("latency, ms", "mean", "p50", "p90", "p99", "p99.9", "max"),
        [
            (
                label,
                ms(s.mean_ms),
                ms(s.p50_ms),
                ms(s.p90_ms),
                ms(s.p99_ms),
                ms(s.p999_ms),
                ms(s.max_ms),
            )
            for label, s in summaries
        ],
        numeric=range(1, 7),
    )
    return el(
        "div",
        _figure(
            "Percentile spectrum",
            svg,
            "how the slowest requests compare with the typical one",
            "",
            legend(series, rules),
        ),
        el("div", text_el("h3", "Percentiles"), numbers),
        class_="grid2",
    )


def _errors(r: RunReport) -> str:
    e = r.errors
    rows: list[tuple[str, float, str]] = [
        (c, float(getattr(e, c)), FAIL) for c in ERROR_CLASSES if getattr(e, c)
    ]
    rows += [(f"HTTP {code}", float(n), PALETTE[4]) for code, n in e.http_4xx]
    rows += [(f"HTTP {code}", float(n), PALETTE[3]) for code, n in e.http_5xx]
    if not rows:
        body = text_el("p", f"✔ no failed requests: all {r.sent:,} succeeded", class_="lead")
        return el("section", text_el("h2", "Errors by class"), body)
    chart = hbars(
        f"failed requests by class: {e.describe()}",
        rows,
        unit="requests",
        value_format=lambda v: f"{v:,.0f}",
    )
    kinds = (
        table(
            ("kind", "requests", "first message"), [(k, n, m) for k, n, m in e.kinds], numeric=(1,)
        )
        if e.kinds
        else ""
    )
    share = percent(r.failed / r.sent if r.sent else 0.0, 2)
    return el(
        "section",
        text_el("h2", f"Errors by class: {r.failed:,} failed ({share})"),
        el("figure", chart),
        kinds,
    )


def _server_network(r: RunReport) -> str:
    if r.server_time is None or r.network_time is None:
        return el(
            "section",
            text_el("h2", "Server against network time"),
            text_el(
                "p",
                "the answers carried no Server-Timing total, so the server's share of "
                "each request is unknown",
                class_="lead",
            ),
        )
    server, network = r.server_time, r.network_time
    rows = []
    for name, attr in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
        rows.append((f"{name} server", float(getattr(server, attr)), SERVER))
        rows.append((f"{name} network + client", float(getattr(network, attr)), NETWORK))
    chart = hbars(
        "server time (Server-Timing total) against network and client time",
        rows,
        unit="ms",
        value_format=lambda v: ms(v).removesuffix(" ms"),
    )
    share = (
        server.p50_ms / (server.p50_ms + network.p50_ms) if server.p50_ms + network.p50_ms else 0
    )
    return el(
        "section",
        text_el("h2", "Server against network time"),
        text_el(
            "p",
            f"at the median the server spends {ms(server.p50_ms)} and the network and "
            f"client {ms(network.p50_ms)}: the server is {share:.0%} of the time",
            class_="lead",
        ),
        el(
            "figure",
            chart,
            legend(
                [
                    Series("server (Server-Timing total)", (), SERVER),
                    Series("network and client", (), NETWORK),
                ]
            ),
        ),
    )


def _generator(r: RunReport) -> str:
    g = r.generator
    rows = [
        ("CPU", ", ".join(f"{c:.0f}%" for c in g.cpu_percent) + " of a core"),
        ("processes", str(g.processes)),
        ("send rate", _rate(g.send_rate)),
    ]
    if r.mode == "open":
        if g.sched_lag is not None:
            rows.append(
                (
                    "scheduling lag",
                    f"p50 {ms(g.sched_lag.p50_ms)}, p99 "
                    f"{ms(g.sched_lag.p99_ms)}, max {ms(g.sched_lag.max_ms)}",
                )
            )
        rows.append(("sent late", f"{g.late} more than {_num(g.late_threshold_ms)} ms late"))
        rows.append(("kept the rate", "yes" if g.kept_rate else "no"))
    if r.warmup_requests:
        rows.append(("warmup", f"{r.warmup_requests} requests, not counted"))
    return el("section", text_el("h2", "The load generator"), table(("", ""), rows))


def _notes(problems: Sequence[str], warnings: Sequence[str]) -> str:
    if not problems and not warnings:
        return ""
    items = [text_el("li", f"problem: {p}", class_="problem") for p in problems]
    items += [text_el("li", f"warning: {w}", class_="warning") for w in warnings]
    return el("ul", *items, class_="notes")


def _run_sections(r: RunReport) -> list[str]:
    return [
        _cards(r),
        _notes(r.problems, r.warnings),
        el("section", text_el("h2", "Latency"), _over_time(r), _spectrum(r)),
        el("div", _errors(r), _server_network(r), class_="grid2"),
        _generator(r),
    ]


def _replicas(est: ReplicaEstimate | None) -> str:
    if est is None:
        return ""
    shown = min(est.replicas, 48)
    w = 46
    boxes = [
        el(
            "g",
            el("title", esc(f"replica {i + 1}: {est.planned_per_replica_rps:.0f} req/s")),
            el(
                "rect",
                x=i % 16 * (w + 6),
                y=i // 16 * (w + 6),
                width=w,
                height=w,
                rx=6,
                fill=PALETTE[0],
            ),
        )
        for i in range(shown)
    ]
    rows = math.ceil(shown / 16)
    more = (
        text_el("text", f"+ {est.replicas - shown} more", x=0, y=rows * (w + 6) + 16, font_size=14)
        if est.replicas > shown
        else ""
    )
    svg = el(
        "svg",
        *boxes,
        more,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {16 * (w + 6)} {rows * (w + 6) + (24 if more else 0)}",
        role="img",
        aria_label=f"{est.replicas} replicas",
        style="max-width:640px",
    )
    facts = [
        ("target", _rate(est.target_rps)),
        ("measured at the SLO", _rate(est.measured_rps)),
        ("per replica", _rate(est.per_replica_rps)),
        ("headroom", f"{est.headroom:.0%}"),
        ("planned per replica", _rate(est.planned_per_replica_rps)),
        ("model", est.model),
        ("cache hits while measured", percent(est.cache_hit_ratio)),
    ]
    return el(
        "section",
        text_el("h2", f"Replica estimate: {est.replicas} for {_rate(est.target_rps)}"),
        el("figure", svg),
        text_el("p", est.statement),
        _notes((), est.notes),
        table(("", ""), facts),
        class_="replicas",
    )


def _find_max(f: FindMaxReport) -> str:
    p = _num(f.slo.percentile)
    steps = f.steps
    series = [
        Series(
            f"p{p} at each rate tried",
            tuple((s.rate, s.observed_ms) for s in steps),
            MUTED,
            line=False,
            markers=tuple("circle" if s.passed else "cross" for s in steps),
            tips=tuple(
                f"{s.rate:.1f} req/s: p{p} {ms(s.observed_ms)}, errors "
                f"{percent(s.error_ratio, 2)} — {'pass' if s.passed else 'fail'}"
                for s in steps
            ),
        ),
        Series(
            "pass",
            tuple((s.rate, s.observed_ms) for s in steps if s.passed),
            OK,
            line=False,
            marker="circle",
        ),
        Series(
            "fail",
            tuple((s.rate, s.observed_ms) for s in steps if not s.passed),
            FAIL,
            line=False,
            marker="cross",
        ),
    ]
    x, x_ticks = _linear_axis([s.rate for s in steps] or [1.0])
    y, y_ticks = _log_axis([*(s.observed_ms for s in steps), f.slo.threshold_ms])
    rules = [Rule(f.slo.threshold_ms, f"SLO p{p} ≤ {ms(f.slo.threshold_ms)}")]
    chart = line_chart(
        "capacity search",
        Axes(x, y, x_ticks, y_ticks, "rate tried, req/s", f"p{p} latency, ms", y_format=_ms_tick),
        series[1:],
        rules=rules,
        marks=[Rule(f.max_rate, f"highest within the SLO: {_rate(f.max_rate)}", OK)]
        if f.max_rate is not None
        else [],
        description=f"{plural(len(steps), 'rate')} tried; a circle met the SLO, a cross missed it",
    )
    numbers = table(
        ("rate", "achieved", f"p{p}", "errors", "cache hits", "result", "note"),
        [
            (
                f"{s.rate:.1f}",
                f"{s.achieved_rate:.1f}",
                ms(s.observed_ms),
                percent(s.error_ratio, 2),
                percent(s.cache_hit_ratio),
                ("pass" if s.passed else "fail") + ("" if s.kept_rate else ", generator late"),
                s.note,
            )
            for s in steps
        ],
        numeric=(0, 1, 2, 3, 4),
        row_class=["" if s.passed else "fail" for s in steps],
    )
    best = (
        f"highest rate meeting the SLO: {_rate(f.max_rate)}"
        + (f" at {f.best.cache.describe()}" if f.best is not None else "")
        if f.max_rate is not None
        else "no rate met the SLO"
    )
    cards = el(
        "div",
        _card(
            "highest rate within the SLO",
            _rate(f.max_rate),
            f.slo.label,
            "ok" if f.max_rate is not None else "fail",
        ),
        _card("rates tried", str(len(steps)), f.stopped or ""),
        *(
            [_card("replicas", str(f.replicas.replicas), f"for {_rate(f.replicas.target_rps)}")]
            if f.replicas
            else []
        ),
        class_="cards",
    )
    return el(
        "section",
        text_el("h2", f"Capacity search, SLO {f.slo.label}"),
        cards,
        text_el("p", best, class_="lead"),
        _notes(f.problems, ()),
        el(
            "div",
            _figure(
                "The rates tried",
                chart,
                "each rate the search tried, and the latency it measured there against the SLO",
                "",
                legend(series[1:], rules),
            ),
            el("div", text_el("h3", "Steps"), numbers),
            class_="grid2",
        ),
        _replicas(f.replicas),
    )


def _sweep(s: SweepReport) -> str:
    runs = [r for r in s.runs if r.concurrency is not None]
    pts = tuple((float(r.concurrency or 0), r.achieved_rate) for r in runs)
    series = [Series("measured throughput", pts, PALETTE[0], marker="circle")]
    if s.usl is not None and runs:
        top = max(n for n, _ in pts)
        grid = [1 + (top - 1) * k / 60 for k in range(61)]
        series.append(
            Series(
                "USL fit" + ("" if s.usl.good_fit else " (not planned with)"),
                tuple((n, s.usl.throughput(n)) for n in grid),
                PALETTE[1],
                dashed=True,
            )
        )
    x, x_ticks = _linear_axis([n for n, _ in pts] or [1.0])
    y, y_ticks = _linear_axis([v for ser in series for _, v in ser.points] or [1.0])
    chart = line_chart(
        "throughput against concurrency",
        Axes(x, y, x_ticks, y_ticks, "concurrency", "req/s"),
        series,
        description="closed-loop throughput at each concurrency",
    )
    p99 = [
        Series(
            "p99",
            tuple((float(r.concurrency or 0), r.service_time.p99_ms) for r in runs),
            P99,
            marker="circle",
        ),
        Series(
            "p50",
            tuple((float(r.concurrency or 0), r.service_time.p50_ms) for r in runs),
            P50,
            marker="circle",
        ),
    ]
    limit = [s.slo.threshold_ms] if s.slo else []
    ly, ly_ticks = _log_axis([*(v for ser in p99 for _, v in ser.points), *limit])
    rules = [Rule(s.slo.threshold_ms, f"SLO {s.slo.label}")] if s.slo else []
    lat = line_chart(
        "latency against concurrency",
        Axes(x, ly, x_ticks, ly_ticks, "concurrency", "ms", y_format=_ms_tick),
        p99,
        rules=rules,
        description="p50 and p99 at each concurrency",
    )
    numbers = table(
        ("concurrency", "achieved req/s", "p50", "p99", "errors", "cache hits", "SLO"),
        [
            (
                r.concurrency,
                f"{r.achieved_rate:.1f}",
                ms(r.service_time.p50_ms),
                ms(r.service_time.p99_ms),
                r.failed,
                percent(r.cache.hit_ratio),
                "–" if r.slo is None else ("met" if r.slo.met else "missed"),
            )
            for r in s.runs
        ],
        numeric=range(6),
    )
    usl = ""
    if s.usl is not None:
        u = s.usl
        usl = text_el(
            "p",
            f"USL fit: λ={u.lambda_:.1f} req/s, σ={u.sigma:.4g}, κ={u.kappa:.3g}, "
            f"R²={u.r_squared:.3f}" + ("" if u.weakness is None else f" — {u.weakness}"),
            class_="lead",
        )
    return el(
        "section",
        text_el("h2", "Concurrency sweep"),
        el(
            "div",
            _card(
                "best throughput within the SLO",
                _rate(s.capacity_rps),
                f"at {percent(s.capacity_cache_hit_ratio)} cache hits",
            ),
            _card("concurrencies", str(len(s.runs))),
            class_="cards",
        ),
        usl,
        _notes(s.problems, s.warnings),
        el(
            "div",
            _figure("Throughput", chart, "req/s at each concurrency", "", legend(series)),
            _figure("Latency", lat, "p50 and p99 at each concurrency", "", legend(p99, rules)),
            class_="grid2",
        ),
        numbers,
        _replicas(s.replicas),
    )


def _detail(result: LoadResult) -> RunReport | None:
    if isinstance(result, RunReport):
        return result
    if isinstance(result, FindMaxReport):
        return result.best
    return max(result.runs, key=lambda r: r.achieved_rate) if result.runs else None


def load_html(
    result: LoadResult, *, sending: str | None = None, generated: str | None = None
) -> str:
    """The load report as one self-contained HTML page.

    ``sending`` describes what the requests carried (as the terminal prints it); ``generated``
    goes in the footer. A capacity search shows its steps and the replica estimate, then the
    best passing run; a sweep its runs and fit, then its highest-throughput run.
    """
    detail = _detail(result)
    if isinstance(result, RunReport):
        what = _mode(result)
    elif isinstance(result, FindMaxReport):
        what = f"capacity search, SLO {result.slo.label}"
    else:
        what = "concurrency sweep " + ", ".join(str(r.concurrency) for r in result.runs)
    badge = (
        text_el("span", "✔ OK", class_="badge ok")
        if result.ok
        else text_el("span", "✘ PROBLEMS", class_="badge fail")
    )
    header = el(
        "header",
        text_el("h1", "servepath load"),
        text_el("span", result.url, class_="url"),
        badge,
        class_="top",
    )
    lead = [text_el("p", what + (f"; {sending}" if sending else ""), class_="lead")]
    sections: list[str] = [header, *lead]
    if isinstance(result, FindMaxReport):
        sections.append(_find_max(result))
    elif isinstance(result, SweepReport):
        sections.append(_sweep(result))
    if detail is not None:
        if detail is not result:
            title = (
                "The best passing rate in detail: " + _mode(detail)
                if isinstance(result, FindMaxReport)
                else "The highest-throughput run in detail: " + _mode(detail)
            )
            sections.append(text_el("h2", title, class_="detail"))
        sections.extend(_run_sections(detail))
    footer = el(
        "footer",
        esc(
            "servepath load"
            + (f", {generated}" if generated else "")
            + ". The same data: servepath load --json"
        ),
    )
    sections.append(footer)
    state = "ok" if result.ok else "problems"
    return page(f"servepath load {result.url}: {state}", "\n".join(sections))
