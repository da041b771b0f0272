"""Summaries of repeated runs, ratios, and the issue's targets (pure)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servebench.stacks import BATCHING_PEERS, CEILING, SERVEPATH, STACKS, TUTORIAL, Variant
from servebench.wrk import WrkResult

Verdict = Literal["PASS", "FAIL", "N/A"]


@dataclass(frozen=True)
class Point:
    """The repeated runs of one stack at one variant and concurrency, summarised."""

    stack: str
    variant: Variant
    concurrency: int
    runs: tuple[WrkResult, ...]
    measured_as: Variant | None = None  # set when a stack without a cache stands in for hit

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def rps_min(self) -> float:
        return min(r.rps for r in self.runs)

    @property
    def rps_max(self) -> float:
        return max(r.rps for r in self.runs)

    @property
    def spread(self) -> float:
        """(max - min) / median of the runs' throughput."""
        return (self.rps_max - self.rps_min) / self.rps if self.rps > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def client_cpu(self) -> float | None:
        values = [r.client_cpu for r in self.runs if r.client_cpu is not None]
        return statistics.median(values) if values else None

    @property
    def others_on_core(self) -> float | None:
        values = [r.others_on_core for r in self.runs if r.others_on_core is not None]
        return statistics.median(values) if values else None

    @property
    def server_cpu(self) -> float | None:
        values = [r.server_cpu for r in self.runs if r.server_cpu is not None]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "variant": self.variant,
            "concurrency": self.concurrency,
            "measured_as": self.measured_as,
            "rps": self.rps,
            "rps_min": self.rps_min,
            "rps_max": self.rps_max,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "runs": [r.to_json() for r in self.runs],
        }


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def find(points: Sequence[Point], stack: str, variant: Variant, concurrency: int) -> Point | None:
    for p in points:
        if p.stack == stack and p.variant == variant and p.concurrency == concurrency:
            return p
    return None


def hit_view(points: Sequence[Point]) -> list[Point]:
    """The cache-hit table: measured hit points, and miss points of stacks without a cache
    (for them a repeated instance costs what a new one does)."""
    rows = [p for p in points if p.variant == "hit"]
    have = {(p.stack, p.concurrency) for p in rows}
    for p in points:
        if p.variant == "miss" and (p.stack, p.concurrency) not in have:
            stack = STACKS.get(p.stack)
            if stack is not None and not stack.has_cache:
                rows.append(dataclasses.replace(p, variant="hit", measured_as="miss"))
    return rows


@dataclass(frozen=True)
class TargetCheck:
    name: str
    verdict: Verdict
    detail: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def evaluate_targets(points: Sequence[Point], unavailable: Mapping[str, str]) -> list[TargetCheck]:
    """The issue's targets, from the medians of one run."""
    checks: list[TargetCheck] = []
    sp = find(points, SERVEPATH, "miss", 64)
    tut = find(points, TUTORIAL, "miss", 64)

    name = "cache-miss c=64 throughput ≥ 30× the tutorial, with a lower p99"
    if sp is None or tut is None:
        checks.append(TargetCheck(name, "N/A", _missing(sp, tut, SERVEPATH, TUTORIAL, unavailable)))
    else:
        times = ratio(sp.rps, tut.rps)
        ok = times is not None and times >= 30 and sp.p99_ms < tut.p99_ms and sp.errors == 0
        checks.append(
            TargetCheck(
                name,
                "PASS" if ok else "FAIL",
                f"{fmt_times(times)} ({sp.rps:,.0f} vs {tut.rps:,.0f} req/s); "
                f"p99 {sp.p99_ms:.1f} vs {tut.p99_ms:.1f} ms{_errors_note(sp)}",
            )
        )

    name = "cache-miss c=64 throughput ≥ 2× the best of BentoML, MLServer, LitServe, lower p99"
    peers = [p for s in BATCHING_PEERS if (p := find(points, s, "miss", 64)) is not None]
    absent = [STACKS[s].label for s in BATCHING_PEERS if find(points, s, "miss", 64) is None]
    if sp is None or not peers:
        reason = "servepath did not run" if sp is None else "none of them ran"
        checks.append(TargetCheck(name, "N/A", reason))
    else:
        best = max(peers, key=lambda p: p.rps)
        times = ratio(sp.rps, best.rps)
        lowest_p99 = min(p.p99_ms for p in peers)
        ok = times is not None and times >= 2 and sp.p99_ms < lowest_p99 and sp.errors == 0
        detail = (
            f"{fmt_times(times)} the best, {STACKS[best.stack].label} ({best.rps:,.0f} req/s); "
            f"p99 {sp.p99_ms:.1f} ms vs lowest peer p99 {lowest_p99:.1f} ms{_errors_note(sp)}"
        )
        if absent:
            detail += f"; not measured: {', '.join(absent)}"
        checks.append(TargetCheck(name, "PASS" if ok else "FAIL", detail))

    name = "cache-miss c=1 p50 ≤ 2 ms"
    one = find(points, SERVEPATH, "miss", 1)
    if one is None:
        checks.append(TargetCheck(name, "N/A", "servepath was not measured at c=1"))
    else:
        ok = one.p50_ms <= 2.0 and one.errors == 0
        tut1 = find(points, TUTORIAL, "miss", 1)
        also = f" (tutorial {tut1.p50_ms:.2f} ms)" if tut1 else ""
        checks.append(
            TargetCheck(
                name, "PASS" if ok else "FAIL", f"p50 {one.p50_ms:.2f} ms{also}{_errors_note(one)}"
            )
        )

    name = "cache-hit c=64 throughput ≥ 60% of the transport ceiling"
    hit = find(points, SERVEPATH, "hit", 64)
    ceiling = find(points, CEILING, "hit", 64)
    if hit is None or ceiling is None:
        checks.append(
            TargetCheck(name, "N/A", _missing(hit, ceiling, SERVEPATH, CEILING, unavailable))
        )
    else:
        share = ratio(hit.rps, ceiling.rps)
        ok = share is not None and share >= 0.6 and hit.errors == 0
        checks.append(
            TargetCheck(
                name,
                "PASS" if ok else "FAIL",
                f"{fmt_share(share)} ({hit.rps:,.0f} vs {ceiling.rps:,.0f} req/s)"
                + _errors_note(hit),
            )
        )
    return checks


def _missing(
    a: Point | None, b: Point | None, a_name: str, b_name: str, unavailable: Mapping[str, str]
) -> str:
    gone = [n for p, n in ((a, a_name), (b, b_name)) if p is None]
    return "; ".join(
        f"{n} not measured" + (f" ({unavailable[n]})" if n in unavailable else "") for n in gone
    )


def _errors_note(p: Point) -> str:
    return f"; {p.errors} errors in {p.requests:,} requests" if p.errors else ""


def fmt_times(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}×"


def fmt_share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"
