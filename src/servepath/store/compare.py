"""Versions compared from the prediction log: shadow against primary, and the live split.

A shadow's records name the request they copy (``shadow_of``), so each shadow answer pairs
with the answer the caller got for the same instance. Per pair of versions
(:class:`PairComparison`): how many requests and instances were compared, how often they
agree (the same decision for a classifier, with the confusion table; for a number — a
regression value or a probability — the mean and p99 of the absolute difference), and each
version's latency (the caller's: the whole request as the server answered it; the shadow's:
its model call, queueing included). Beside it, the live split (:class:`VersionShare`): how
many requests each version answered, and in which role.

Pure: the readers fetch rows (:mod:`servepath.store.reader`), this module reduces them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Comparison", "PairComparison", "VersionShare", "compare", "percentile"]

#: Two numbers are the same answer within this (relative past magnitude 1), as the shadow
#: counter decides on the server.
TOLERANCE = 1e-6
#: Rows of pairs a comparison reads at most (newest first): enough for stable shares.
MAX_PAIRS = 200_000


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0–1) of already sorted values, nearest rank; None when empty."""
    if not sorted_values:
        return None
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[rank]


def _output(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes):
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class _Pair:
    requests: set[str] = field(default_factory=set)
    instances: int = 0
    agree: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    differences: list[float] = field(default_factory=list)
    primary_latency: dict[str, float] = field(default_factory=dict)
    shadow_latency: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PairComparison:
    """One primary version against one shadow version, over the requests both answered."""

    primary: str  # label (content version)
    shadow: str
    requests: int
    instances: int
    agreement: float  # share of instances with the same answer
    #: Classifier: primary decision → shadow decision → instances; empty for numbers.
    confusion: dict[str, dict[str, int]]
    #: Numbers (a value, or a probability): mean and p99 |difference|; None without numbers.
    mean_abs_difference: float | None
    p99_abs_difference: float | None
    #: Per version, p50 and p99 latency in milliseconds over the compared requests.
    latency_ms: dict[str, dict[str, float | None]]

    def to_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "shadow": self.shadow,
            "requests": self.requests,
            "instances": self.instances,
            "agreement": self.agreement,
            "confusion": self.confusion,
            "mean_abs_difference": self.mean_abs_difference,
            "p99_abs_difference": self.p99_abs_difference,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class VersionShare:
    """How much live traffic one version answered."""

    version: str  # label (content version)
    role: str  # primary, candidate
    requests: int
    share: float  # of the answered requests in the window
    p50_ms: float | None
    p99_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "role": self.role,
            "requests": self.requests,
            "share": self.share,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True)
class Comparison:
    store: str
    since: float | None
    pairs: tuple[PairComparison, ...]
    live: tuple[VersionShare, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "since": self.since,
            "pairs": [p.to_json() for p in self.pairs],
            "live": [v.to_json() for v in self.live],
        }


def version_name(label: str | None, version: str) -> str:
    """``label (version)``, or the content version alone when it is its own label."""
    return version if not label or label == version else f"{label} ({version})"


def compare(
    store: str,
    since: float | None,
    pairs: Iterable[tuple[Any, ...]],
    live: Iterable[tuple[str | None, str, str | None, float]],
) -> Comparison:
    """Reduce pair rows ``(primary label, primary version, shadow label, shadow version,
    primary record id, idx, primary output, shadow output, primary latency, shadow
    latency)`` and live rows ``(label, version, role, latency)`` (one per request)."""
    grouped: dict[tuple[str, str], _Pair] = {}
    for row in pairs:
        p_label, p_version, s_label, s_version, record, _idx, p_out, s_out, p_ms, s_ms = row
        key = (version_name(p_label, p_version), version_name(s_label, s_version))
        pair = grouped.setdefault(key, _Pair())
        pair.requests.add(record)
        pair.instances += 1
        pair.primary_latency[record] = float(p_ms)
        pair.shadow_latency[record] = float(s_ms)
        a, b = _output(p_out), _output(s_out)
        if "decision" in a and not isinstance(_number(a["decision"]), float):
            left, right = str(a.get("decision")), str(b.get("decision"))
            row_of = pair.confusion.setdefault(left, {})
            row_of[right] = row_of.get(right, 0) + 1
            pair.agree += left == right
            first, second = _number(a.get("probability")), _number(b.get("probability"))
        else:
            first = _number(a.get("decision", a.get("value")))
            second = _number(b.get("decision", b.get("value")))
            if first is not None and second is not None:
                pair.agree += abs(first - second) <= TOLERANCE * max(1.0, abs(first))
        if first is not None and second is not None:
            pair.differences.append(abs(first - second))
    results = []
    for (primary, shadow), pair in sorted(grouped.items()):
        differences = sorted(pair.differences)
        results.append(
            PairComparison(
                primary=primary,
                shadow=shadow,
                requests=len(pair.requests),
                instances=pair.instances,
                agreement=pair.agree / pair.instances if pair.instances else 0.0,
                confusion=pair.confusion,
                mean_abs_difference=sum(differences) / len(differences) if differences else None,
                p99_abs_difference=percentile(differences, 0.99),
                latency_ms={
                    primary: _latency(pair.primary_latency.values()),
                    shadow: _latency(pair.shadow_latency.values()),
                },
            )
        )
    counts: dict[tuple[str, str], list[float]] = {}
    for label, version, role, latency in live:
        counts.setdefault((version_name(label, version), role or "primary"), []).append(
            float(latency)
        )
    total = sum(len(v) for v in counts.values())
    shares = []
    for (version, role), latencies in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        ordered = sorted(latencies)
        shares.append(
            VersionShare(
                version,
                role,
                len(ordered),
                len(ordered) / total if total else 0.0,
                percentile(ordered, 0.5),
                percentile(ordered, 0.99),
            )
        )
    return Comparison(store, since, tuple(results), tuple(shares))


def _latency(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {"p50": percentile(ordered, 0.5), "p99": percentile(ordered, 0.99)}
