"""TCP-connect round trips to real endpoints, set beside the latency model's estimate.

Like gcping, this times a small, cheap exchange with each endpoint many times, all endpoints
at once, and reports the median: here the TCP handshake, since ``connect()`` returns when the
SYN-ACK arrives, one round trip after the SYN left. Names are resolved once, before any timing,
so DNS never lands in a sample. Each target gets its own paced sequence of samples (one every
``interval`` seconds, targets staggered across the interval) so that no burst of SYNs queues
behind another on the way out.

A SYN that is lost is sent again by the kernel after its initial retransmission timeout (1 s on
Linux), so with ``timeout`` at or below 1 s a lost SYN counts as loss rather than as a
one-second outlier in the percentiles.

Everything but ``_connect_once`` and the asyncio scheduling around it is pure: target parsing,
error classification, statistics and the verdict per target.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from servepath.errors import BadTarget, EndpointError
from servepath.net.endpoints import host_port, parse_host_port
from servepath.regions.catalogue import Region
from servepath.regions.model import DEFAULT_MODEL, LatencyModel

__all__ = [
    "DEFAULT_PORT",
    "BadTarget",
    "MeasureReport",
    "MeasureTarget",
    "Outcome",
    "RTTStats",
    "Sample",
    "TargetResult",
    "TargetStatus",
    "classify_errno",
    "measure",
    "parse_measure_target",
    "percentile",
    "summarize",
    "target_status",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 443

Outcome = Literal["ok", "refused", "timeout", "unreachable", "error"]
TargetStatus = Literal["ok", "lossy", "lost", "refused", "unreachable", "unresolved", "error"]

# (family, sockaddr) pairs, as getaddrinfo's first and last fields.
Resolver = Callable[[str, int], list[tuple[int, tuple[object, ...]]]]


# ---- targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureTarget:
    """``host:port``, and the region it is known to be in (``None`` when not given)."""

    host: str
    port: int
    region: str | None = None

    @property
    def label(self) -> str:
        return host_port(self.host, self.port)

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "region": self.region}


def parse_measure_target(spec: str, default_port: int = DEFAULT_PORT) -> MeasureTarget:
    """Parse ``HOST[:PORT][@REGION]``; IPv6 literals go in brackets when a port follows.

    ``api.example.com``, ``10.0.0.5:8080@europe-west1``, ``[2001:db8::1]:443@us-east1`` and a
    bare ``::1`` are all accepted. The region is checked against the catalogue by the caller.
    """
    text = spec.strip()
    if not text:
        raise BadTarget("empty target")
    address, at, region = text.rpartition("@") if "@" in text else (text, "", "")
    region_id: str | None = region.strip() or None
    if at and region_id is None:
        raise BadTarget(f"target {spec!r}: nothing after '@' (expected a region id)")
    try:
        host, port = parse_host_port(address, default_port)
    except EndpointError as exc:
        raise BadTarget(f"target {spec!r}: {exc.reason}") from exc
    return MeasureTarget(host, port, region_id)


# ---- samples and statistics ----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    outcome: Outcome
    rtt_ms: float | None = None  # set for "ok" only
    error: str | None = None
    at_ms: float = 0.0  # when the SYN left, from the start of the measurement

    def to_json(self) -> dict[str, object]:
        rtt = None if self.rtt_ms is None else round(self.rtt_ms, 3)
        return {
            "at_ms": round(self.at_ms, 1),
            "outcome": self.outcome,
            "rtt_ms": rtt,
            "error": self.error,
        }


_UNREACHABLE_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
)


def classify_errno(code: int | None) -> Outcome:
    """What a failed ``connect()`` means for the path, from its errno."""
    if code == errno.ECONNREFUSED:
        return "refused"
    if code == errno.ETIMEDOUT:
        return "timeout"
    if code in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return "error"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class RTTStats:
    """Counts over all samples; RTT figures over the connected ones (``None`` if none)."""

    sent: int
    ok: int
    lost: int  # no answer within the timeout
    failed: int  # an answer, but not a connection: refused, unreachable, other errors
    min_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    max_ms: float | None

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.lost / self.sent if self.sent else 0.0

    def to_json(self) -> dict[str, object]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "sent": self.sent,
            "ok": self.ok,
            "lost": self.lost,
            "failed": self.failed,
            "loss_pct": round(self.loss_pct, 1),
            "min_ms": r(self.min_ms),
            "median_ms": r(self.median_ms),
            "p90_ms": r(self.p90_ms),
            "max_ms": r(self.max_ms),
        }


def summarize(samples: Sequence[Sample]) -> RTTStats:
    rtts = [s.rtt_ms for s in samples if s.outcome == "ok" and s.rtt_ms is not None]
    lost = sum(1 for s in samples if s.outcome == "timeout")
    return RTTStats(
        sent=len(samples),
        ok=len(rtts),
        lost=lost,
        failed=len(samples) - len(rtts) - lost,
        min_ms=min(rtts) if rtts else None,
        median_ms=percentile(rtts, 50) if rtts else None,
        p90_ms=percentile(rtts, 90) if rtts else None,
        max_ms=max(rtts) if rtts else None,
    )


_FAILURES: tuple[tuple[Outcome, TargetStatus], ...] = (
    ("refused", "refused"),
    ("unreachable", "unreachable"),
    ("timeout", "lost"),
    ("error", "error"),
)


def target_status(samples: Sequence[Sample]) -> TargetStatus:
    """``ok`` when every sample connected, ``lossy`` when only some did; when none did, the
    most frequent failure: ``refused``, ``unreachable``, ``lost`` (no answer at all) or
    ``error``, ties going to the one earlier in that list, which says more about the path."""
    if not samples:
        return "error"
    counts = Counter(s.outcome for s in samples)
    if counts["ok"] == len(samples):
        return "ok"
    if counts["ok"]:
        return "lossy"
    rank = {outcome: i for i, (outcome, _) in enumerate(_FAILURES)}
    worst = max(rank, key=lambda outcome: (counts[outcome], -rank[outcome]))
    return dict(_FAILURES)[worst]


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetResult:
    target: MeasureTarget
    address: str | None  # the address connected to; None when the name did not resolve
    status: TargetStatus
    stats: RTTStats
    samples: tuple[Sample, ...]
    estimate_ms: float | None = None  # the model's RTT from the --from region to target.region
    detail: str | None = None

    @property
    def vs_estimate(self) -> float | None:
        """Measured median ÷ the model's estimate (1.0 = the model was right)."""
        if self.estimate_ms is None or self.stats.median_ms is None or self.estimate_ms <= 0:
            return None
        return self.stats.median_ms / self.estimate_ms

    def to_json(self) -> dict[str, object]:
        ratio = self.vs_estimate
        return {
            "target": self.target.label,
            **self.target.to_json(),
            "address": self.address,
            "status": self.status,
            **self.stats.to_json(),
            "estimate_ms": None if self.estimate_ms is None else round(self.estimate_ms, 1),
            "vs_estimate": None if ratio is None else round(ratio, 2),
            "detail": self.detail,
            "samples": [s.to_json() for s in self.samples],
        }


@dataclass(frozen=True)
class MeasureReport:
    from_region: str | None
    samples: int
    timeout_s: float
    interval_s: float
    targets: tuple[TargetResult, ...]
    model: LatencyModel

    @property
    def all_failed(self) -> bool:
        """True when no target gave a clean measurement (every sample connected)."""
        return all(t.status != "ok" for t in self.targets)

    def to_json(self) -> dict[str, object]:
        return {
            "from_region": self.from_region,
            "samples": self.samples,
            "timeout_s": self.timeout_s,
            "interval_s": self.interval_s,
            "model": self.model.to_json(),
            "targets": [t.to_json() for t in self.targets],
        }


# ---- the driver ---------------------------------------------------------------------------


def resolve_tcp(host: str, port: int) -> list[tuple[int, tuple[object, ...]]]:
    """The addresses of ``host`` for TCP, in the order the system prefers them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [(family, tuple(sockaddr)) for family, _, _, _, sockaddr in infos]


async def _connect_once(family: int, sockaddr: tuple[object, ...], timeout: float) -> Sample:
    """One TCP handshake; the RTT is the time from connect() to the SYN-ACK."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
        except TimeoutError:
            return Sample("timeout", error=f"no answer within {timeout:g}s")
        except OSError as exc:
            # asyncio puts "Connect call failed (addr)" in strerror; the errno's text is clearer.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            return Sample(classify_errno(exc.errno), error=reason)
        return Sample("ok", rtt_ms=(time.perf_counter() - start) * 1000)
    finally:
        sock.close()


async def _sample_target(
    family: int,
    sockaddr: tuple[object, ...],
    *,
    count: int,
    timeout: float,
    interval: float,
    offset: float,
    start: float,
    gate: asyncio.Semaphore,
) -> list[Sample]:
    loop = asyncio.get_running_loop()
    samples: list[Sample] = []
    for i in range(count):
        # Send times are fixed in advance; a slow sample delays only the next one, not the rest.
        delay = start + offset + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            at_ms = (loop.time() - start) * 1000
            sample = await _connect_once(family, sockaddr, timeout)
        samples.append(replace(sample, at_ms=at_ms))
    return samples


def measure(
    targets: Sequence[MeasureTarget],
    *,
    samples: int = 10,
    timeout: float = 1.0,
    interval: float = 0.1,
    concurrency: int = 64,
    from_region: Region | None = None,
    regions: dict[str, Region] | None = None,
    model: LatencyModel = DEFAULT_MODEL,
    resolve: Resolver = resolve_tcp,
) -> MeasureReport:
    """Measure every target concurrently, ``samples`` handshakes each.

    ``regions`` maps the region ids the targets name to catalogue entries (the caller looks
    them up, so an unknown id is a usage error before anything is sent). Names are resolved
    in the calling thread, which matters for callers that run this inside a network namespace.
    """
    if samples < 1:
        raise ValueError("samples must be >= 1")
    if timeout <= 0 or interval < 0:
        raise ValueError("timeout must be > 0 and interval >= 0")
    regions = regions or {}
    resolved: list[tuple[int, tuple[object, ...]] | str] = []
    for target in targets:
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            resolved.append(f"cannot resolve {target.host}: {exc}")
            continue
        if not addresses:
            resolved.append(f"{target.host} has no address")
            continue
        resolved.append(addresses[0])

    async def run() -> list[list[Sample]]:
        gate = asyncio.Semaphore(max(1, concurrency))
        start = asyncio.get_running_loop().time()
        jobs = []
        for index, entry in enumerate(resolved):
            if isinstance(entry, str):
                continue
            jobs.append(
                _sample_target(
                    entry[0],
                    entry[1],
                    count=samples,
                    timeout=timeout,
                    interval=interval,
                    offset=interval * index / max(1, len(resolved)),
                    start=start,
                    gate=gate,
                )
            )
        return list(await asyncio.gather(*jobs))

    measured = iter(asyncio.run(run()))
    results: list[TargetResult] = []
    for target, entry in zip(targets, resolved, strict=True):
        estimate = None
        region = regions.get(target.region) if target.region else None
        if from_region is not None and region is not None:
            estimate = model.rtt_ms(from_region, region)
        if isinstance(entry, str):
            results.append(
                TargetResult(target, None, "unresolved", summarize(()), (), estimate, entry)
            )
            continue
        taken = tuple(next(measured))
        status = target_status(taken)
        errors = Counter(s.error for s in taken if s.error)
        detail = "; ".join(f"{e} (×{n})" for e, n in errors.most_common(3)) or None
        address = str(entry[1][0])
        logger.debug("measured %s at %s: %s", target.label, address, status)
        results.append(
            TargetResult(target, address, status, summarize(taken), taken, estimate, detail)
        )
    return MeasureReport(
        from_region=from_region.id if from_region else None,
        samples=samples,
        timeout_s=timeout,
        interval_s=interval,
        targets=tuple(results),
        model=model,
    )
