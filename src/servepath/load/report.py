"""What a load run found, as frozen data: one run, a capacity search, a concurrency sweep."""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from servepath.load.capacity import SLO, ReplicaEstimate, SloCheck, UslModel
from servepath.load.histogram import LatencyHistogram, SpectrumPoint

Mode = Literal["open", "closed"]
ErrorClass = Literal["connect", "timeout", "disconnect", "other"]
ERROR_CLASSES: tuple[ErrorClass, ...] = ("connect", "timeout", "disconnect", "other")


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @classmethod
    def of(cls, hist: LatencyHistogram) -> LatencySummary:
        return cls(
            count=hist.count,
            mean_ms=hist.mean_ms(),
            p50_ms=hist.percentile_ms(50),
            p90_ms=hist.percentile_ms(90),
            p99_ms=hist.percentile_ms(99),
            p999_ms=hist.percentile_ms(99.9),
            max_ms=hist.max_ms(),
        )

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ErrorBreakdown:
    """Failed requests by class; HTTP failures by status code."""

    connect: int = 0
    timeout: int = 0
    disconnect: int = 0
    other: int = 0
    http_4xx: tuple[tuple[int, int], ...] = ()
    http_5xx: tuple[tuple[int, int], ...] = ()
    #: Requests without an answer by the shared failure kind (refused, dns, proxy, tls,
    #: read_timeout, ...): (kind, count, the first message of that kind).
    kinds: tuple[tuple[str, int, str], ...] = ()

    @property
    def total(self) -> int:
        return (
            self.connect
            + self.timeout
            + self.disconnect
            + self.other
            + sum(n for _, n in self.http_4xx)
            + sum(n for _, n in self.http_5xx)
        )

    def describe(self) -> str:
        if self.kinds:
            parts = [f"{n} {kind} ({message})" if message else f"{n} {kind}"
                     for kind, n, message in self.kinds]  # fmt: skip
        else:
            parts = [f"{getattr(self, c)} {c}" for c in ERROR_CLASSES if getattr(self, c)]
        parts += [f"{n} × HTTP {code}" for code, n in (*self.http_4xx, *self.http_5xx)]
        return ", ".join(parts) or "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "connect": self.connect,
            "timeout": self.timeout,
            "disconnect": self.disconnect,
            "other": self.other,
            "4xx": {str(code): n for code, n in self.http_4xx},
            "5xx": {str(code): n for code, n in self.http_5xx},
            "kinds": {kind: {"count": n, "message": message} for kind, n, message in self.kinds},
        }


@dataclass(frozen=True)
class CacheSummary:
    """Responses by their ``X-Cache`` header."""

    hits: int
    misses: int
    unknown: int

    @property
    def hit_ratio(self) -> float | None:
        seen = self.hits + self.misses
        return self.hits / seen if seen else None

    def describe(self) -> str:
        """``0.0% cache hits`` (or that the server does not say), for beside a figure."""
        from servepath.output import percent

        ratio = self.hit_ratio
        if ratio is None:
            return "cache hits unknown (no X-Cache header)"
        return f"{percent(ratio)} cache hits"

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "unknown": self.unknown,
            "hit_ratio": self.hit_ratio,
        }


@dataclass(frozen=True)
class GeneratorHealth:
    """Whether the load generator did what it was asked, and what it cost."""

    processes: int
    cpu_percent: tuple[float, ...]
    sched_lag: LatencySummary | None
    late: int
    late_threshold_ms: float
    inflight_limit: int | None
    inflight_waits: int
    send_rate: float
    kept_rate: bool | None  # None in a closed loop, which has no rate to keep

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "cpu_percent": list(self.cpu_percent),
            "sched_lag": self.sched_lag.to_json() if self.sched_lag else None,
            "late": self.late,
            "late_threshold_ms": self.late_threshold_ms,
            "inflight_limit": self.inflight_limit,
            "inflight_waits": self.inflight_waits,
            "send_rate": self.send_rate,
            "kept_rate": self.kept_rate,
        }


@dataclass(frozen=True)
class SecondRow:
    """One second of the run, by the second in which requests were due to be sent."""

    second: int
    sent: int
    succeeded: int
    failed: int
    late: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    service_p99_ms: float

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


CSV_FIELDS = tuple(f.name for f in fields(SecondRow))


@dataclass(frozen=True)
class RunReport:
    """One load run. ``latency`` is measured from each request's intended send time (what a
    population of callers experiences); ``service_time`` from the moment it was sent."""

    url: str
    mode: Mode
    target_rate: float | None
    concurrency: int | None
    processes: int
    duration_s: float
    elapsed_s: float
    warmup_requests: int
    sent: int
    succeeded: int
    failed: int
    errors: ErrorBreakdown
    achieved_rate: float
    latency: LatencySummary
    service_time: LatencySummary
    server_time: LatencySummary | None
    network_time: LatencySummary | None
    cache: CacheSummary
    generator: GeneratorHealth
    slo: SloCheck | None
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    timeseries: tuple[SecondRow, ...]
    spectrum: tuple[SpectrumPoint, ...]
    service_spectrum: tuple[SpectrumPoint, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "mode": self.mode,
            "ok": self.ok,
            "target_rate": self.target_rate,
            "concurrency": self.concurrency,
            "processes": self.processes,
            "duration_s": self.duration_s,
            "elapsed_s": self.elapsed_s,
            "warmup_requests": self.warmup_requests,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": self.errors.to_json(),
            "achieved_rate": self.achieved_rate,
            "latency": self.latency.to_json(),
            "service_time": self.service_time.to_json(),
            "server_time": self.server_time.to_json() if self.server_time else None,
            "network_time": self.network_time.to_json() if self.network_time else None,
            "cache": self.cache.to_json(),
            "generator": self.generator.to_json(),
            "slo": self.slo.to_json() if self.slo else None,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "timeseries": [row.to_json() for row in self.timeseries],
            "spectrum": [p.to_json() for p in self.spectrum],
            "service_spectrum": [p.to_json() for p in self.service_spectrum],
        }


@dataclass(frozen=True)
class FindMaxStep:
    """One rate tried by a capacity search."""

    rate: float
    achieved_rate: float
    observed_ms: float
    error_ratio: float
    passed: bool
    kept_rate: bool
    note: str
    cache_hit_ratio: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class FindMaxReport:
    """The highest open-loop rate that met the SLO, and the steps that found it."""

    url: str
    slo: SLO
    steps: tuple[FindMaxStep, ...]
    max_rate: float | None
    stopped: str | None
    best: RunReport | None
    replicas: ReplicaEstimate | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "slo": self.slo.to_json(),
            "max_rate": self.max_rate,
            "cache_hit_ratio": self.best.cache.hit_ratio if self.best else None,
            "stopped": self.stopped,
            "steps": [s.to_json() for s in self.steps],
            "replicas": self.replicas.to_json() if self.replicas else None,
            "problems": list(self.problems),
            "best": self.best.to_json() if self.best else None,
        }


@dataclass(frozen=True)
class SweepReport:
    """Closed-loop runs at several concurrencies, with a USL fit when there are enough."""

    url: str
    slo: SLO | None
    runs: tuple[RunReport, ...]
    usl: UslModel | None
    capacity_rps: float | None
    replicas: ReplicaEstimate | None
    problems: tuple[str, ...]
    capacity_cache_hit_ratio: float | None = None  # of the run the capacity comes from
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "slo": self.slo.to_json() if self.slo else None,
            "capacity_rps": self.capacity_rps,
            "capacity_cache_hit_ratio": self.capacity_cache_hit_ratio,
            "warnings": list(self.warnings),
            "usl": self.usl.to_json() if self.usl else None,
            "replicas": self.replicas.to_json() if self.replicas else None,
            "problems": list(self.problems),
            "runs": [r.to_json() for r in self.runs],
        }


def write_csv(rows: tuple[SecondRow, ...], path: Path) -> None:
    """The per-second time series, one row per second of the run."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_FIELDS)
        for row in rows:
            writer.writerow(
                [
                    f"{value:.3f}" if isinstance(value, float) else value
                    for value in (getattr(row, name) for name in CSV_FIELDS)
                ]
            )
