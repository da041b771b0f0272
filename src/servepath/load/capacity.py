"""Service level objectives and replica estimates, from measured capacity and a stated model.

Two models of how throughput grows:

* **linear** (default): replicas share nothing, so ``n`` replicas serve ``n`` times one
  replica's capacity at the SLO. Each replica is planned at ``1 - headroom`` of that
  capacity, which absorbs uneven load balancing, noisy neighbours and a replica being
  replaced.
* **usl**: the Universal Scalability Law, ``X(N) = λN / (1 + σ(N-1) + κN(N-1))``, fitted to
  closed-loop runs at several concurrencies. ``σ`` is contention (the serial share), ``κ``
  coherency cost (crosstalk). Throughput peaks at ``N* = sqrt((1-σ)/κ)``; a replica cannot
  be planned above that peak however the SLO reads, so the per-replica capacity becomes the
  lower of the measured SLO capacity and the fitted peak. A fit that explains the points
  poorly (R² below :data:`USL_MIN_R_SQUARED`) is reported, flagged, and not planned with.

Every capacity figure carries the cache hit ratio it was measured at: a replica that
answers from its cache serves many times what one that computes does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servepath.errors import ConfigError
from servepath.output import percent

DEFAULT_HEADROOM = 0.3
DEFAULT_ERROR_BUDGET = 0.001
#: Below this R² a USL fit does not describe the measurements well enough to plan with.
USL_MIN_R_SQUARED = 0.9
#: The USL has three parameters: three concurrencies fit it exactly (R² = 1 whatever the
#: service does), so a fit says something only from four on.
USL_MIN_POINTS = 4

_SLO = re.compile(r"^\s*p(\d+(?:\.\d+)?)\s*[=<:]\s*(\d+(?:\.\d*)?)\s*(us|µs|ms|s)?\s*$", re.I)
_TO_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class SLO:
    """A latency objective at one percentile, plus the share of requests allowed to fail."""

    percentile: float
    threshold_ms: float
    error_budget: float = DEFAULT_ERROR_BUDGET

    @property
    def label(self) -> str:
        return (
            f"p{_num(self.percentile)} ≤ {_num(self.threshold_ms)} ms, "
            f"errors ≤ {_num(self.error_budget * 100)}%"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "percentile": self.percentile,
            "threshold_ms": self.threshold_ms,
            "error_budget": self.error_budget,
        }


def _num(value: float) -> str:
    return f"{value:g}"


def parse_slo(text: str, error_budget: float = DEFAULT_ERROR_BUDGET) -> SLO:
    """``p99=50ms``, ``p99.9=200ms``, ``p50=0.5s`` (milliseconds when the unit is left out)."""
    match = _SLO.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not an SLO; write e.g. p99=50ms")
    percentile = float(match.group(1))
    if not 0 < percentile < 100:
        raise ConfigError(f"the SLO percentile must be between 0 and 100, got {percentile:g}")
    threshold = float(match.group(2)) * _TO_MS[(match.group(3) or "ms").lower()]
    if threshold <= 0:
        raise ConfigError("the SLO latency must be above zero")
    return SLO(percentile, threshold, error_budget)


def parse_error_budget(text: str) -> float:
    """``0.1%`` or ``0.001`` as a fraction of requests."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"{text!r} is not an error budget; write e.g. 0.1%") from None
    if not 0 <= value < 1:
        raise ConfigError(f"the error budget must be at least 0 and below 100%, got {text!r}")
    return value


SloFailure = Literal["latency", "errors", "no_responses"]


@dataclass(frozen=True)
class SloCheck:
    """How one run measured against an SLO."""

    slo: SLO
    observed_ms: float
    error_ratio: float
    failures: tuple[SloFailure, ...]
    #: The service time (from the actual send) at the SLO's percentile: the server's part.
    service_ms: float | None = None

    @property
    def met(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        parts = [
            f"p{_num(self.slo.percentile)} {self.observed_ms:.1f} ms "
            f"(objective {_num(self.slo.threshold_ms)} ms)",
            f"errors {self.error_ratio * 100:.3g}% (budget {_num(self.slo.error_budget * 100)}%)",
        ]
        return ("met: " if self.met else "missed: ") + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "slo": self.slo.to_json(),
            "met": self.met,
            "observed_ms": self.observed_ms,
            "error_ratio": self.error_ratio,
            "failures": list(self.failures),
            "service_ms": self.service_ms,
        }


def check_slo(
    slo: SLO, observed_ms: float, sent: int, failed: int, service_ms: float | None = None
) -> SloCheck:
    """Judge a run: its latency at the SLO's percentile, and its failures out of ``sent``."""
    failures: list[SloFailure] = []
    ratio = failed / sent if sent else 0.0
    if sent == 0 or failed == sent:
        failures.append("no_responses")
    if observed_ms > slo.threshold_ms:
        failures.append("latency")
    if ratio > slo.error_budget:
        failures.append("errors")
    return SloCheck(slo, observed_ms, ratio, tuple(failures), service_ms)


@dataclass(frozen=True)
class UslModel:
    """Universal Scalability Law coefficients fitted to (concurrency, throughput) points."""

    lambda_: float
    sigma: float
    kappa: float
    r_squared: float
    points: tuple[tuple[float, float], ...]

    def throughput(self, n: float) -> float:
        return self.lambda_ * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def enough_points(self) -> bool:
        """More concurrencies measured than the curve has parameters."""
        return len({n for n, _ in self.points}) >= USL_MIN_POINTS

    @property
    def good_fit(self) -> bool:
        """Whether the curve explains the measurements well enough to plan replicas with."""
        return self.enough_points and self.r_squared >= USL_MIN_R_SQUARED

    @property
    def weakness(self) -> str | None:
        """Why the fit is not planned with, in one phrase; None for a good fit."""
        if not self.enough_points:
            count = len({n for n, _ in self.points})
            return (
                f"{count} concurrencies fit the USL's 3 parameters exactly (R² says nothing): "
                f"not used to plan replicas or find a peak; measure {USL_MIN_POINTS} or more"
            )
        if not self.good_fit:
            return (
                f"a poor fit: not used to plan replicas (R²={self.r_squared:.2f}, below "
                f"{USL_MIN_R_SQUARED:g})"
            )
        return None

    @property
    def peak_concurrency(self) -> float | None:
        """Where throughput stops growing; None when the fit shows no retrograde region."""
        if self.kappa <= 0:
            return None
        return math.sqrt(max(1 - self.sigma, 0.0) / self.kappa)

    @property
    def peak_throughput(self) -> float:
        """The highest throughput the curve reaches (its ceiling λ/σ when κ is zero)."""
        n = self.peak_concurrency
        if n is not None:
            return self.throughput(max(n, 1.0))
        return self.lambda_ / self.sigma if self.sigma > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        peak_n = self.peak_concurrency
        peak_x = self.peak_throughput
        return {
            "lambda": self.lambda_,
            "sigma": self.sigma,
            "kappa": self.kappa,
            "r_squared": self.r_squared,
            "good_fit": self.good_fit,
            "enough_points": self.enough_points,
            "peak_concurrency": peak_n,
            "peak_throughput": None if math.isinf(peak_x) else peak_x,
            "points": [list(p) for p in self.points],
        }


def fit_usl(points: Sequence[tuple[float, float]]) -> UslModel:
    """Fit λ, σ, κ (σ, κ ≥ 0) by least squares on throughput.

    For fixed σ and κ the best λ has a closed form, so the search is over σ and κ only: a
    linearised start (Gunther's ``N/C(N) - 1 = σ(N-1) + κN(N-1)``) refined on a log grid.
    """
    import numpy as np

    data = sorted((float(n), float(x)) for n, x in points)
    if len({n for n, _ in data}) < 3:
        raise ConfigError("a USL fit needs throughput measured at 3 or more concurrencies")
    if any(n < 1 or x <= 0 for n, x in data):
        raise ConfigError("USL points need concurrency ≥ 1 and throughput above zero")
    n = np.array([p[0] for p in data])
    x = np.array([p[1] for p in data])

    def best_lambda(sigma: float, kappa: float) -> tuple[float, float]:
        g = n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
        lam = float(np.dot(x, g) / np.dot(g, g))
        return lam, float(np.sum((x - lam * g) ** 2))

    # Linearised start, taking λ from the lowest concurrency measured.
    lam0 = x[0] / n[0]
    y = n / (x / lam0) - 1
    design = np.column_stack([n - 1, n * (n - 1)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sigma0, kappa0 = max(float(coef[0]), 0.0), max(float(coef[1]), 0.0)

    best = (sigma0, kappa0, *best_lambda(sigma0, kappa0))
    sigmas = np.concatenate([[0.0], np.logspace(-5, 0, 60)])
    kappas = np.concatenate([[0.0], np.logspace(-8, 0, 80)])
    for s in sigmas:
        for k in kappas:
            lam, sse = best_lambda(float(s), float(k))
            if sse < best[3]:
                best = (float(s), float(k), lam, sse)
    # One refinement pass on a finer grid around the best cell.
    s_c, k_c = best[0], best[1]
    for s in _around(s_c, 1e-5):
        for k in _around(k_c, 1e-8):
            lam, sse = best_lambda(s, k)
            if sse < best[3]:
                best = (s, k, lam, sse)
    sigma, kappa, lam, sse = best
    total = float(np.sum((x - x.mean()) ** 2))
    r2 = 1 - sse / total if total > 0 else 1.0
    return UslModel(lam, sigma, kappa, r2, tuple(data))


def _around(center: float, floor: float) -> list[float]:
    import numpy as np

    if center <= 0:
        return [0.0, *np.linspace(floor / 10, floor, 10).tolist()]
    return [float(v) for v in np.linspace(center * 0.8, center * 1.25, 41)]


ScalingModel = Literal["linear", "usl"]


@dataclass(frozen=True)
class ReplicaEstimate:
    """Replicas needed for ``target_rps`` at the SLO, and the model that says so."""

    target_rps: float
    measured_rps: float
    per_replica_rps: float
    headroom: float
    planned_per_replica_rps: float
    replicas: int
    model: ScalingModel
    usl: UslModel | None
    statement: str
    #: The share of answers that came from the server's cache while capacity was measured.
    cache_hit_ratio: float | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "target_rps": self.target_rps,
            "measured_rps": self.measured_rps,
            "per_replica_rps": self.per_replica_rps,
            "headroom": self.headroom,
            "planned_per_replica_rps": self.planned_per_replica_rps,
            "replicas": self.replicas,
            "model": self.model,
            "usl": self.usl.to_json() if self.usl else None,
            "statement": self.statement,
            "cache_hit_ratio": self.cache_hit_ratio,
            "notes": list(self.notes),
        }


def estimate_replicas(
    target_rps: float,
    measured_rps: float,
    *,
    headroom: float = DEFAULT_HEADROOM,
    usl: UslModel | None = None,
    cache_hit_ratio: float | None = None,
) -> ReplicaEstimate:
    """Replicas for ``target_rps`` given one replica's measured capacity at the SLO.

    ``measured_rps`` is the highest rate one replica served within the SLO (from a
    ``--find-max`` search or the best closed-loop run that met it), at ``cache_hit_ratio``
    of its answers from the cache. A ``usl`` fit is planned with only when it is a good
    one; a poor one is named in the notes and the estimate is linear.
    """
    if target_rps <= 0:
        raise ConfigError("the target rate must be above zero")
    if not 0 <= headroom < 1:
        raise ConfigError(f"headroom must be at least 0 and below 1, got {headroom}")
    if measured_rps <= 0:
        raise ConfigError("no measured capacity: no rate met the SLO, so no replica count can")
    per_replica = measured_rps
    model: ScalingModel = "linear"
    bound = ""
    notes: list[str] = []
    if usl is not None and not usl.good_fit:
        more = "" if usl.enough_points else " or the fit"
        notes.append(
            f"the USL fit: {usl.weakness}; the estimate assumes linear scaling. Measure more "
            f"concurrencies{more}, or longer"
        )
        usl = None
    if usl is not None:
        model = "usl"
        peak = usl.peak_throughput
        if peak < per_replica:
            per_replica = peak
            bound = f", bounded by the USL peak {peak:.0f} req/s"
    planned = per_replica * (1 - headroom)
    replicas = max(1, math.ceil(target_rps / planned - 1e-9))
    if model == "linear":
        how = (
            f"linear scaling: {replicas} × {planned:.0f} req/s "
            f"({per_replica:.0f} req/s per replica at the SLO less {headroom:.0%} headroom)"
        )
    else:
        assert usl is not None
        peak_n = usl.peak_concurrency
        where = f"peaks at concurrency {peak_n:.1f}" if peak_n is not None else "has no peak"
        how = (
            f"USL per replica (σ={usl.sigma:.4g}, κ={usl.kappa:.3g}, λ={usl.lambda_:.0f} req/s, "
            f"R²={usl.r_squared:.3f}; throughput {where}); "
            f"{per_replica:.0f} req/s per replica{bound}, less {headroom:.0%} headroom = "
            f"{planned:.0f} req/s; replicas assumed to share nothing"
        )
    cached = (
        f"; measured with {percent(cache_hit_ratio)} of answers from the cache"
        if cache_hit_ratio is not None
        else ""
    )
    if cache_hit_ratio is not None and cache_hit_ratio >= 0.5:
        notes.append(
            f"{percent(cache_hit_ratio)} of the answers came from the cache: a replica that "
            "computes its answers serves far less; drop --repeat to measure cache misses"
        )
    noun = "replica" if replicas == 1 else "replicas"
    statement = f"{replicas} {noun} for {target_rps:.0f} req/s — {how}{cached}"
    return ReplicaEstimate(
        target_rps, measured_rps, per_replica, headroom, planned, replicas, model, usl,
        statement, cache_hit_ratio, tuple(notes),
    )  # fmt: skip
