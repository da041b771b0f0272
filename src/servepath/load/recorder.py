"""Per-request outcomes folded into histograms and counters, and the verdict on a run.

A :class:`Recorder` lives in each generator process; recorders pickle (histograms travel in
their compressed HDR encoding) and merge exactly, so N processes report what one would have.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from servepath.load.capacity import SLO, check_slo
from servepath.load.histogram import LatencyHistogram
from servepath.load.report import (
    ERROR_CLASSES,
    CacheSummary,
    ErrorBreakdown,
    ErrorClass,
    GeneratorHealth,
    LatencySummary,
    Mode,
    RunReport,
    SecondRow,
)

#: A run that sent more than this share of its requests late did not keep its rate.
LATE_SHARE_LIMIT = 0.01
#: Share of a core past which the generator itself, not the machine, is why sends were late.
GENERATOR_BUSY_PERCENT = 80.0
#: Late sends the machine may cause (other work on its cores) before the offered load is
#: too far from the plan to measure it: past this share the run fails, whatever the cause.
MACHINE_LATE_LIMIT = 0.10
#: Above this share of one core a closed-loop generator may be measuring itself.
CPU_WARNING_PERCENT = 90.0


def server_total_ms(header: str | None) -> float | None:
    """The ``total`` duration of a ``Server-Timing`` header, in milliseconds."""
    if not header:
        return None
    for entry in header.split(","):
        parts = entry.split(";")
        if parts[0].strip() != "total":
            continue
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                try:
                    return float(value.strip().strip('"'))
                except ValueError:
                    return None
    return None


@dataclass
class _Second:
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    late: int = 0
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(2))
    service: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(2))

    def merge(self, other: _Second) -> None:
        self.sent += other.sent
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.late += other.late
        self.latency.merge(other.latency)
        self.service.merge(other.service)


class Recorder:
    """Counts and histograms of the measured part of a run (warmup requests are only counted).

    Times are ``time.monotonic()`` seconds, a clock every process on the machine shares.
    """

    def __init__(self, measure_from: float, *, late_threshold: float) -> None:
        self.measure_from = measure_from
        self.late_threshold = late_threshold
        self.latency = LatencyHistogram()
        self.service = LatencyHistogram()
        self.server = LatencyHistogram()
        self.network = LatencyHistogram()
        self.lag = LatencyHistogram()
        self.sent = 0
        self.succeeded = 0
        self.failed = 0
        self.warmup = 0
        self.errors: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()  # the shared failure kinds: refused, dns, proxy…
        self.kind_messages: dict[str, str] = {}  # the first message of each kind
        self.status_errors: Counter[int] = Counter()
        self.hits = 0
        self.misses = 0
        self.cache_unknown = 0
        self.late = 0
        self.inflight_waits = 0
        self.last_done = measure_from
        self.last_send = measure_from
        self.first_ok = float("inf")
        self.last_ok = float("-inf")
        self.seconds: dict[int, _Second] = {}
        self.cpu_percent: list[float] = []

    def record(
        self,
        intended: float,
        sent_at: float,
        done: float,
        *,
        status: int | None,
        error: ErrorClass | None,
        server_timing: str | None = None,
        x_cache: str | None = None,
        waited: bool = False,
        started: float | None = None,
        kind: str | None = None,
        message: str = "",
    ) -> None:
        """One finished request. ``status`` None means no HTTP response (``error`` and the
        failure ``kind`` say why); ``started`` is when the generator got round to the
        request (open loop only)."""
        if intended < self.measure_from:
            self.warmup += 1
            return
        self.sent += 1
        second = self.seconds.get(int(intended - self.measure_from))
        if second is None:
            second = self.seconds[int(intended - self.measure_from)] = _Second()
        second.sent += 1
        if started is not None:
            self.lag.record_seconds(started - intended)
        if sent_at - intended > self.late_threshold:
            self.late += 1
            second.late += 1
        if waited:
            self.inflight_waits += 1
        if done > self.last_done:
            self.last_done = done
        if sent_at > self.last_send:
            self.last_send = sent_at
        if status is None:
            self.failed += 1
            second.failed += 1
            self.errors[error or "other"] += 1
            shared = kind or "other"
            self.kinds[shared] += 1
            self.kind_messages.setdefault(shared, message)
            return
        latency = done - intended
        service = done - sent_at
        self.latency.record_seconds(latency)
        self.service.record_seconds(service)
        second.latency.record_seconds(latency)
        second.service.record_seconds(service)
        if status >= 400:
            self.failed += 1
            second.failed += 1
            self.status_errors[status] += 1
        else:
            self.succeeded += 1
            second.succeeded += 1
            self.first_ok = min(self.first_ok, done)
            self.last_ok = max(self.last_ok, done)
        total = server_total_ms(server_timing)
        if total is not None:
            self.server.record_us(int(total * 1000))
            self.network.record_us(max(int(service * 1_000_000 - total * 1000), 0))
        if x_cache is None:
            self.cache_unknown += 1
        elif x_cache.upper().startswith("HIT"):
            self.hits += 1
        elif x_cache.upper().startswith("MISS"):
            self.misses += 1
        else:
            self.cache_unknown += 1

    def merge(self, other: Recorder) -> None:
        for name in ("latency", "service", "server", "network", "lag"):
            getattr(self, name).merge(getattr(other, name))
        for name in (
            "sent",
            "succeeded",
            "failed",
            "warmup",
            "hits",
            "misses",
            "cache_unknown",
            "late",
            "inflight_waits",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.kinds.update(other.kinds)
        for kind, message in other.kind_messages.items():
            self.kind_messages.setdefault(kind, message)
        self.status_errors.update(other.status_errors)
        self.last_done = max(self.last_done, other.last_done)
        self.last_send = max(self.last_send, other.last_send)
        self.first_ok = min(self.first_ok, other.first_ok)
        self.last_ok = max(self.last_ok, other.last_ok)
        for key, second in other.seconds.items():
            if key in self.seconds:
                self.seconds[key].merge(second)
            else:
                self.seconds[key] = second
        self.cpu_percent.extend(other.cpu_percent)

    def error_breakdown(self) -> ErrorBreakdown:
        return ErrorBreakdown(
            connect=self.errors["connect"],
            timeout=self.errors["timeout"],
            disconnect=self.errors["disconnect"],
            other=sum(n for k, n in self.errors.items() if k not in ERROR_CLASSES[:3]),
            http_4xx=tuple(sorted((c, n) for c, n in self.status_errors.items() if c < 500)),
            http_5xx=tuple(sorted((c, n) for c, n in self.status_errors.items() if c >= 500)),
            kinds=tuple(
                (kind, n, self.kind_messages.get(kind, "")) for kind, n in self.kinds.most_common()
            ),
        )


@dataclass(frozen=True)
class RunShape:
    """What a run was asked to do, as the report states it."""

    url: str
    mode: Mode
    target_rate: float | None
    concurrency: int | None
    processes: int
    window_s: float | None
    inflight_limit: int | None


def build_report(shape: RunShape, rec: Recorder, slo: SLO | None) -> RunReport:
    """The report of a finished run: summaries, the generator's health, and the verdict."""
    elapsed = max(rec.last_done - rec.measure_from, 1e-9)
    window = shape.window_s if shape.window_s else max(rec.last_send - rec.measure_from, 1e-9)
    send_rate = rec.sent / window if shape.mode == "open" else rec.sent / elapsed
    errors = rec.error_breakdown()
    assert errors.total == rec.failed, "every failure has exactly one class"
    slo_check = (
        check_slo(
            slo,
            rec.latency.percentile_ms(slo.percentile),
            rec.sent,
            rec.failed,
            rec.service.percentile_ms(slo.percentile),
        )
        if slo
        else None
    )
    late_share = rec.late / rec.sent if rec.sent else 0.0
    kept = None if shape.mode == "closed" else late_share <= LATE_SHARE_LIMIT and rec.sent > 0
    health = GeneratorHealth(
        processes=shape.processes,
        cpu_percent=tuple(rec.cpu_percent),
        sched_lag=LatencySummary.of(rec.lag) if rec.lag.count else None,
        late=rec.late,
        late_threshold_ms=rec.late_threshold * 1000,
        inflight_limit=shape.inflight_limit,
        inflight_waits=rec.inflight_waits,
        send_rate=send_rate,
        kept_rate=kept,
    )
    problems, warnings = judge(shape, rec, health, errors, slo_check is not None)
    if slo_check is not None and not slo_check.met:
        problems.insert(0, f"SLO {slo_check.describe()}")
    last = max(rec.seconds) if rec.seconds else -1
    seconds_run = max(last + 1, math.ceil(shape.window_s - 1e-9) if shape.window_s else 0)
    rows = tuple(_row(s, rec.seconds.get(s)) for s in range(seconds_run))
    return RunReport(
        url=shape.url,
        mode=shape.mode,
        target_rate=shape.target_rate,
        concurrency=shape.concurrency,
        processes=shape.processes,
        duration_s=window,
        elapsed_s=elapsed,
        warmup_requests=rec.warmup,
        sent=rec.sent,
        succeeded=rec.succeeded,
        failed=rec.failed,
        errors=errors,
        achieved_rate=achieved_rate(rec.succeeded, rec.first_ok, rec.last_ok, elapsed),
        latency=LatencySummary.of(rec.latency),
        service_time=LatencySummary.of(rec.service),
        server_time=LatencySummary.of(rec.server) if rec.server.count else None,
        network_time=LatencySummary.of(rec.network) if rec.network.count else None,
        cache=CacheSummary(rec.hits, rec.misses, rec.cache_unknown),
        generator=health,
        slo=slo_check,
        problems=tuple(problems),
        warnings=tuple(warnings),
        timeseries=rows,
        spectrum=tuple(rec.latency.spectrum()),
        service_spectrum=tuple(rec.service.spectrum()),
    )


def achieved_rate(succeeded: int, first: float, last: float, elapsed: float) -> float:
    """Successful responses per second, from the spacing of their completions.

    ``n`` completions spread evenly at rate R span ``(n-1)/R`` seconds, so ``(n-1)/span``
    measures R without the bias a short run's start-up and drain add to ``n/elapsed``.
    """
    if succeeded >= 2 and last > first:
        return (succeeded - 1) / (last - first)
    return succeeded / elapsed


def _row(index: int, second: _Second | None) -> SecondRow:
    if second is None:
        return SecondRow(index, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    lat = second.latency
    return SecondRow(
        second=index,
        sent=second.sent,
        succeeded=second.succeeded,
        failed=second.failed,
        late=second.late,
        p50_ms=lat.percentile_ms(50),
        p90_ms=lat.percentile_ms(90),
        p99_ms=lat.percentile_ms(99),
        max_ms=lat.max_ms(),
        service_p99_ms=second.service.percentile_ms(99),
    )


def judge(
    shape: RunShape,
    rec: Recorder,
    health: GeneratorHealth,
    errors: ErrorBreakdown,
    has_slo: bool,
) -> tuple[list[str], list[str]]:
    """Problems (the run failed its purpose) and warnings (read the numbers with care)."""
    problems: list[str] = []
    warnings: list[str] = []
    busiest = max(health.cpu_percent, default=0.0)
    if rec.sent == 0:
        problems.append("no request was sent in the measured window")
    if rec.failed and not has_slo:
        problems.append(f"{rec.failed} of {rec.sent} requests failed: {errors.describe()}")
    if shape.mode == "open" and rec.sent and not health.kept_rate:
        share = rec.late / rec.sent
        if rec.inflight_waits >= rec.late / 2:
            problems.append(
                f"the open loop could not keep {shape.target_rate:g} req/s: {rec.late} requests "
                f"({share:.1%}) left more than {health.late_threshold_ms:g} ms late, "
                f"{rec.inflight_waits} of them waiting for one of {shape.inflight_limit} "
                "in-flight slots while the server held them; the latency column still counts "
                "that wait"
            )
        elif (
            health.cpu_percent and busiest < GENERATOR_BUSY_PERCENT and share <= MACHINE_LATE_LIMIT
        ):
            # The generator had time to spare, so the delay was the machine's (other work
            # on its cores). Latency counts from each request's intended time, so it
            # includes that delay: the numbers stand, conservative; the run does not fail.
            warnings.append(
                f"{rec.late} requests ({share:.1%}) left more than "
                f"{health.late_threshold_ms:g} ms after their intended time while the "
                f"generator used at most {busiest:.0f}% of a core: other work on this machine "
                "delayed them; their latency counts from the intended time, so it includes "
                "that delay"
            )
        else:
            problems.append(
                f"the generator could not keep {shape.target_rate:g} req/s: {rec.late} requests "
                f"({share:.1%}) left more than {health.late_threshold_ms:g} ms after their "
                f"intended time (busiest process at {busiest:.0f}% of a core); "
                "add --processes or lower --rate"
            )
    elif shape.mode == "open" and rec.late:
        warnings.append(
            f"{rec.late} requests left more than {health.late_threshold_ms:g} ms late "
            f"(within the {LATE_SHARE_LIMIT:.0%} allowance)"
        )
    if shape.mode == "closed" and busiest >= CPU_WARNING_PERCENT:
        warnings.append(
            f"a generator process used {busiest:.0f}% of a core: the throughput may be the "
            "generator's limit, not the server's; add --processes"
        )
    if rec.latency.clamped:
        warnings.append(f"{rec.latency.clamped} latencies above one hour were recorded as 1 h")
    return problems, warnings
