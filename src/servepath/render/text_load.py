"""A load run's report as text: the tables and lines `servepath load` prints (the same
reports as ``--json``; :mod:`servepath.render.load` draws them as a page)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from servepath.load.report import FindMaxReport, RunReport, SweepReport
from servepath.output import Column, Grid, Output, percent, plural

if TYPE_CHECKING:
    from servepath.load.capacity import ReplicaEstimate

__all__ = ["render_find_max", "render_load", "render_run", "render_sweep"]


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def render_load(out: Output, result: RunReport | FindMaxReport | SweepReport) -> None:
    """The report of a load as tables and lines of text."""
    if isinstance(result, RunReport):
        render_run(out, result)
    elif isinstance(result, FindMaxReport):
        render_find_max(out, result)
    else:
        render_sweep(out, result)


def render_run(out: Output, r: RunReport) -> None:
    """One run: counts, latency percentiles, the generator's health, the SLO."""
    head = (
        f"open loop at {r.target_rate:g} req/s"
        if r.mode == "open"
        else f"closed loop at concurrency {r.concurrency}"
    )
    out.print(
        (r.url, "bold"),
        f" — {head}, {plural(r.processes, 'process', 'processes')}, {r.duration_s:.1f} s",
    )
    counts = Grid(["", ""], header=False, box="none")
    counts.add_row("requests", f"{r.sent} sent = {r.succeeded} succeeded + {r.failed} failed")
    if r.warmup_requests:
        counts.add_row("warmup", f"{plural(r.warmup_requests, 'request')}, not counted")
    target = f" (target {r.target_rate:g})" if r.target_rate else ""
    counts.add_row("achieved", f"{r.achieved_rate:.1f} req/s{target} at {r.cache.describe()}")
    counts.add_row("errors", r.errors.describe())
    ratio = r.cache.hit_ratio
    if ratio is not None:
        unlabelled = f", {r.cache.unknown} unlabelled" if r.cache.unknown else ""
        counts.add_row(
            "cache",
            f"{percent(ratio)} hits ({r.cache.hits} hit, {r.cache.misses} miss{unlabelled})",
        )
    else:
        counts.add_row("cache", "no X-Cache header in the responses")
    out.table(counts)

    numbers = ("p50", "p90", "p99", "p99.9", "max")
    table = Grid(["", *(Column(n, "right") for n in numbers)], title="latency, ms")
    if r.mode == "open":
        rows = [
            ("from intended send (callers' view)", r.latency),
            ("service time (from actual send)", r.service_time),
        ]
    else:
        # A closed loop sends each request when the one before it came back: its latency is
        # the service time, and there is no intended send time to count from.
        rows = [("per request (from send to answer)", r.service_time)]
    if r.server_time is not None:
        rows.append(("  of which server (Server-Timing total)", r.server_time))
    if r.network_time is not None:
        rows.append(("  of which network and client", r.network_time))
    for label, s in rows:
        table.add_row(
            label, _ms(s.p50_ms), _ms(s.p90_ms), _ms(s.p99_ms), _ms(s.p999_ms), _ms(s.max_ms)
        )
    out.table(table)

    g = r.generator
    health = Grid(["", ""], header=False, box="none", title="generator")
    health.add_row("CPU", ", ".join(f"{c:.0f}%" for c in g.cpu_percent) + " of a core")
    health.add_row("send rate", f"{g.send_rate:.1f} req/s")
    if r.mode == "open":
        if g.sched_lag is not None:
            health.add_row(
                "scheduling lag",
                f"p50 {_ms(g.sched_lag.p50_ms)} ms, p99 {_ms(g.sched_lag.p99_ms)} ms, "
                f"max {_ms(g.sched_lag.max_ms)} ms",
            )
            waits = (
                f" ({g.inflight_waits} waited for an in-flight slot)" if g.inflight_waits else ""
            )
            health.add_row(
                "sent late",
                f"{plural(g.late, 'request')} more than {g.late_threshold_ms:g} ms after "
                f"their intended time{waits}",
            )
        health.add_row("kept the rate", "yes" if g.kept_rate else ("no", "bold red"))
    out.table(health)
    if r.slo is not None:
        colour = "green" if r.slo.met else "red"
        out.print((f"SLO {r.slo.slo.label}: {r.slo.describe()}", colour))
    for w in r.warnings:
        out.print(("warning:", "yellow"), f" {w}")
    for p in r.problems:
        out.print(("problem:", "bold red"), f" {p}")


def _replicas(out: Output, replicas: ReplicaEstimate | None) -> None:
    if replicas is None:
        return
    out.print(replicas.statement)
    for note in replicas.notes:
        out.print(("warning:", "yellow"), f" {note}")


def render_find_max(out: Output, f: FindMaxReport) -> None:
    """A capacity search: each step, the highest rate meeting the SLO, the replicas."""
    columns = ("rate", "achieved", f"p{f.slo.percentile:g} ms", "errors", "cache hits")
    table = Grid(
        [*(Column(c, "right") for c in columns), Column("result", "right")],
        title=f"capacity search, SLO {f.slo.label}",
    )
    for s in f.steps:
        verdict = "pass" if s.passed else "fail"
        if not s.kept_rate:
            verdict += ", generator late"
        table.add_row(
            f"{s.rate:.1f}",
            f"{s.achieved_rate:.1f}",
            _ms(s.observed_ms),
            percent(s.error_ratio, 2),
            percent(s.cache_hit_ratio),
            verdict,
        )
    out.table(table)
    if f.max_rate is not None:
        cache = f" at {f.best.cache.describe()}" if f.best is not None else ""
        out.print((f"highest rate meeting the SLO: {f.max_rate:.1f} req/s{cache}", "bold"))
    _replicas(out, f.replicas)
    for p in f.problems:
        out.print(("problem:", "bold red"), f" {p}")


def render_sweep(out: Output, s: SweepReport) -> None:
    """A closed-loop sweep: each concurrency, the USL fit, the best throughput."""
    columns = ("concurrency", "achieved req/s", "p50 ms", "p99 ms", "errors", "cache hits", "SLO")
    table = Grid([Column(c, "right") for c in columns], title="closed-loop sweep")
    for r in s.runs:
        table.add_row(
            str(r.concurrency),
            f"{r.achieved_rate:.1f}",
            _ms(r.service_time.p50_ms),
            _ms(r.service_time.p99_ms),
            str(r.failed),
            percent(r.cache.hit_ratio),
            "—" if r.slo is None else ("met" if r.slo.met else "missed"),
        )
    out.table(table)
    if s.usl is not None:
        u = s.usl
        peak = u.peak_concurrency if u.good_fit else None  # no extrapolation from a weak fit
        verdict = "" if u.weakness is None else f" — {u.weakness}"
        out.print(
            f"USL fit: λ={u.lambda_:.1f} req/s, σ={u.sigma:.4g}, κ={u.kappa:.3g}, "
            f"R²={u.r_squared:.3f}"
            + (f"; throughput peaks at concurrency {peak:.1f}" if peak is not None else "")
            + verdict
        )
    if s.capacity_rps is not None:
        cache = (
            f" at {percent(s.capacity_cache_hit_ratio)} cache hits"
            if s.capacity_cache_hit_ratio is not None
            else ""
        )
        out.print(f"best throughput within the SLO: {s.capacity_rps:.1f} req/s{cache}")
    _replicas(out, s.replicas)
    for w in s.warnings:
        out.print(("warning:", "yellow"), f" {w}")
    for p in s.problems:
        out.print(("problem:", "bold red"), f" {p}")
