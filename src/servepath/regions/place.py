"""Where to put a service so that its callers wait least, by the latency model.

Each candidate region is scored by the weighted mean RTT of the callers (weights are shares of
the traffic, normalised to sum to 1) and by the RTT of its worst-served caller. Ranking by
``mean`` (the default) sorts on the weighted mean, then the worst caller, then the region id;
ranking by ``worst`` swaps the first two. RTTs are compared rounded to 0.1 ms, below which the
model says nothing, so near-equal candidates fall through to the next key instead of being
ordered by noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from servepath.errors import BadCallers
from servepath.regions.catalogue import Region
from servepath.regions.model import DEFAULT_MODEL, LatencyModel

__all__ = ["BadCallers", "CallerRTT", "Placement", "RankBy", "parse_callers", "place"]

RankBy = Literal["mean", "worst"]


@dataclass(frozen=True)
class CallerRTT:
    region: str
    weight: float  # share of the traffic, 0..1
    rtt_ms: float

    def to_json(self) -> dict[str, object]:
        return {
            "region": self.region,
            "weight": round(self.weight, 4),
            "rtt_ms": round(self.rtt_ms, 1),
        }


@dataclass(frozen=True)
class Placement:
    """One candidate region scored against the callers; ``rank`` starts at 1."""

    rank: int
    region: Region
    mean_rtt_ms: float
    worst_rtt_ms: float
    worst_caller: str
    callers: tuple[CallerRTT, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "region": self.region.id,
            "provider": self.region.provider,
            "city": self.region.city,
            "country": self.region.country,
            "mean_rtt_ms": round(self.mean_rtt_ms, 1),
            "worst_rtt_ms": round(self.worst_rtt_ms, 1),
            "worst_caller": self.worst_caller,
            "callers": [c.to_json() for c in self.callers],
        }


def parse_callers(text: str) -> list[tuple[str, float]]:
    """Parse ``"europe-central2=70,us-east1=30"``; a caller without ``=W`` weighs 1."""
    callers: list[tuple[str, float]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition("=")
        name = name.strip()
        if not name:
            raise BadCallers(f"caller {item!r} has no region before '='")
        if not sep:
            callers.append((name, 1.0))
            continue
        try:
            weight = float(weight_text.strip().rstrip("%"))
        except ValueError:
            raise BadCallers(f"caller {name!r}: weight {weight_text!r} is not a number") from None
        callers.append((name, weight))
    if not callers:
        raise BadCallers("no callers given; use REGION=WEIGHT,REGION=WEIGHT")
    return callers


def place(
    callers: Mapping[Region, float],
    candidates: Sequence[Region],
    *,
    model: LatencyModel = DEFAULT_MODEL,
    by: RankBy = "mean",
) -> list[Placement]:
    """Rank ``candidates`` for ``callers`` (region → traffic weight), best first."""
    if not callers:
        raise BadCallers("no callers given")
    if not candidates:
        raise BadCallers("no candidate regions to rank")
    for region, weight in callers.items():
        if not weight >= 0 or weight == float("inf"):
            raise BadCallers(f"caller {region.id}: weight must be a finite number >= 0")
    total = sum(callers.values())
    if total <= 0:
        raise BadCallers("caller weights add up to 0; give at least one a positive weight")
    shares = {region: weight / total for region, weight in callers.items()}

    scored: list[tuple[float, float, str, Region, tuple[CallerRTT, ...]]] = []
    for candidate in dict.fromkeys(candidates):
        rtts = tuple(
            CallerRTT(caller.id, share, model.rtt_ms(caller, candidate))
            for caller, share in shares.items()
        )
        mean = sum(c.weight * c.rtt_ms for c in rtts)
        # A caller with no traffic does not make a region worse.
        served = [c for c in rtts if c.weight > 0]
        worst = max(served, key=lambda c: (c.rtt_ms, c.region))
        scored.append((mean, worst.rtt_ms, worst.region, candidate, rtts))

    def key(item: tuple[float, float, str, Region, tuple[CallerRTT, ...]]) -> tuple[object, ...]:
        mean, worst, _, region, _ = item
        first, second = (mean, worst) if by == "mean" else (worst, mean)
        return (round(first, 1), round(second, 1), region.id)

    scored.sort(key=key)
    return [
        Placement(rank, region, mean, worst, worst_caller, rtts)
        for rank, (mean, worst, worst_caller, region, rtts) in enumerate(scored, start=1)
    ]
