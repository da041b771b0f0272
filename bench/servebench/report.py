"""The results file (markdown) and the chart."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from servebench.compute import ComputeCost
from servebench.results import Point, TargetCheck, find, fmt_share, fmt_times, hit_view, ratio
from servebench.stacks import CEILING, STACKS, TUTORIAL, Variant
from servebench.wrk import Plan


@dataclass(frozen=True)
class RunInfo:
    started: str
    finished: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    cpu: str
    cores: int
    plan: Plan
    wrk_version: str
    servepath_commit: str
    answers: Mapping[str, float | None]
    unavailable: Mapping[str, str]
    incidents: Mapping[str, str]
    stacks_run: tuple[str, ...]
    expected_probability: float


def _ms(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _cpu(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def point_table(points: Sequence[Point], reference: Sequence[Point], variant: Variant) -> list[str]:
    """Markdown rows for one variant; ratios against the tutorial and the transport ceiling
    at the same concurrency (the tutorial's miss numbers serve for hit: it has no cache)."""
    lines = [
        "| stack | c | req/s (median) | min–max | p50 ms | p99 ms | errors "
        "| × tutorial | % of transport ceiling | server CPU | others on its core | wrk CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(STACKS)
    for p in sorted(points, key=lambda p: (order.index(p.stack), p.concurrency)):
        tut = find(reference, TUTORIAL, "miss" if variant == "hit" else variant, p.concurrency)
        ceil = find(reference, CEILING, variant, p.concurrency)
        label = STACKS[p.stack].label + (" ¹" if p.measured_as == "miss" else "")
        lines.append(
            f"| {label} | {p.concurrency} | {p.rps:,.0f} | {p.rps_min:,.0f}–{p.rps_max:,.0f} "
            f"| {_ms(p.p50_ms)} | {_ms(p.p99_ms)} | {p.errors:,} "
            f"| {fmt_times(ratio(p.rps, tut.rps if tut else None))} "
            f"| {fmt_share(ratio(p.rps, ceil.rps if ceil else None))} "
            f"| {_cpu(p.server_cpu)} | {_cpu(p.others_on_core)} | {_cpu(p.client_cpu)} |"
        )
    return lines


def render_markdown(
    info: RunInfo,
    points: Sequence[Point],
    checks: Sequence[TargetCheck],
    compute: Sequence[ComputeCost],
    chart_name: str | None,
) -> str:
    plan = info.plan
    pin = (
        f"wrk on core {plan.client_core}, servers on core {plan.server_core} (taskset)"
        if plan.server_core is not None
        else "no CPU pinning (fewer than two cores available)"
    )
    out = [
        "# Serving benchmark",
        "",
        f"Run {info.started} – {info.finished} UTC on {info.cpu} ({info.cores} cores); "
        f"servepath at {info.servepath_commit}.",
        f"Load average before {_load(info.load_before)}, after {_load(info.load_after)} "
        "(1, 5, 15 min; other work on the machine shows here and adds noise).",
        "",
        f"Load: {info.wrk_version}, one thread, {pin}; concurrency "
        f"{', '.join(map(str, plan.concurrency))}. {plan.repeats} round(s): each round starts "
        f"every stack afresh and measures each point once for {plan.duration_s} s after a "
        f"{plan.warmup_s} s warm-up; the median of the rounds is reported with their min–max. "
        "Every stack serves the same example model artifact on 127.0.0.1. Cache miss: every "
        "request a new applicant (income varies); cache hit: the example applicant on every "
        "request.",
        "",
        "## Stacks",
        "",
        "| stack | setup | answer for the example |",
        "|---|---|---|",
    ]
    for name, stack in STACKS.items():
        if name in info.unavailable:
            status = f"**not run**: {info.unavailable[name]}"
        elif name not in info.stacks_run:
            status = "not selected"
        elif not stack.has_model:
            status = "constant body (no model)"
        else:
            got = info.answers.get(name)
            status = "–" if got is None else f"p = {got:.6f} ✓"
        if name in info.incidents:
            status += f"; failed in {info.incidents[name]}"
        out.append(f"| {stack.label} | {stack.config} | {status} |")
    out += [
        "",
        f"scikit-learn's probability for the example applicant: {info.expected_probability:.6f}; "
        "each stack's answer is checked against it before it is loaded.",
        "",
        "## Targets",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    out += [f"| {c.name} | **{c.verdict}** | {c.detail} |" for c in checks]
    misses = [p for p in points if p.variant == "miss"]
    hits = hit_view(points)
    out += ["", "## Cache miss (every request a new applicant)", ""]
    out += point_table(misses, points, "miss")
    out += ["", "## Cache hit (the same applicant on every request)", ""]
    out += point_table(hits, points, "hit")
    if any(p.measured_as == "miss" for p in hits):
        out += [
            "",
            "¹ no response cache: a repeated applicant costs what a new one does, so its "
            "cache-miss numbers stand here.",
        ]
    out += [
        "",
        "Ratios compare medians at the same concurrency: × tutorial against the tutorial "
        "FastAPI service, % of transport ceiling against the constant-body server on the same "
        "HTTP stack (the most any Python service on it can answer here). Server CPU is the "
        "server's processes' CPU time over wall time (100% = one core busy; a server whose "
        "threads run on it together can reach it only on its own core); others on its core is "
        "how busy that core was with anything else (other work on the machine takes it from "
        "the server); wrk CPU likewise for the load generator — near 100% means the client, "
        "not the server, set the pace.",
    ]
    if compute:
        out += [
            "",
            "## Compute ceiling (in-process, pinned to the server's core)",
            "",
            "| engine | rows per call | ms per call | µs per row | rows/s at that size |",
            "|---|---:|---:|---:|---:|",
        ]
        for c in compute:
            out.append(
                f"| {c.engine} | {c.rows:,} | {c.per_call_ms:.3f} | {c.per_row_us:,.1f} "
                f"| {1e6 / c.per_row_us:,.0f} |"
            )
        out += [
            "",
            "The last column is the most predictions per second the model itself allows at that "
            "batch size, before any HTTP, JSON or queueing.",
        ]
    if chart_name:
        out += ["", f"![throughput and p99 per stack]({chart_name})"]
    return "\n".join(out) + "\n"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def render_chart(points: Sequence[Point], path: Path) -> None:
    """Throughput (with the runs' min–max) and p99 per stack and concurrency, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    views = [
        ("cache miss", [p for p in points if p.variant == "miss"]),
        ("cache hit", hit_view(points)),
    ]
    order = [s for s in STACKS if any(p.stack == s for p in points)]
    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(STACKS)}
    levels = sorted({p.concurrency for p in points})
    width = 0.8 / max(1, len(order))
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.2), dpi=72)
    for col, (title, rows) in enumerate(views):
        for row, metric in enumerate(("rps", "p99_ms")):
            ax = axes[row][col]
            values: list[float] = []
            for i, name in enumerate(order):
                xs, ys, err_lo, err_hi = [], [], [], []
                for j, c in enumerate(levels):
                    p = next((q for q in rows if q.stack == name and q.concurrency == c), None)
                    if p is None:
                        continue
                    value = p.rps if metric == "rps" else p.p99_ms
                    xs.append(j + (i - (len(order) - 1) / 2) * width)
                    ys.append(value)
                    err_lo.append(value - p.rps_min if metric == "rps" else 0.0)
                    err_hi.append(p.rps_max - value if metric == "rps" else 0.0)
                values += ys
                label = STACKS[name].label
                errors = [err_lo, err_hi] if metric == "rps" else None
                ax.bar(xs, ys, width, label=label, color=colours[name], yerr=errors, capsize=2)
            ax.set_yscale("log")
            positive = [v for v in values if v > 0]
            if positive:
                # Bars on a log axis grow from its bottom: put it a decade under the smallest.
                ax.set_ylim(bottom=10 ** math.floor(math.log10(min(positive))))
            ax.yaxis.set_major_formatter(FuncFormatter(_short_number))
            ax.set_xticks(range(len(levels)), [f"c={c}" for c in levels])
            what = "throughput, req/s (higher is better)" if metric == "rps" else "p99, ms"
            ax.set_title(f"{title}: {what}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(order), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)


def _short_number(value: float, _pos: int) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
