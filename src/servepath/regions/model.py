"""A physical estimate of the round-trip time between two regions.

    RTT(a, b) = base + 2 × great-circle distance(a, b) × stretch ÷ v_fibre      (a ≠ b)
    RTT(a, a) = same_region_ms

Light in glass travels at about 200 km per ms (c ÷ 1.47). ``stretch`` is how much longer the
fibre path is than the great circle (cables follow coasts, rail lines and landing points), and
``base`` is the fixed cost of leaving a region: edge routers, the backbone's entry and exit,
and the detours every path has whatever its length. Both are solved from two calibration
pairs (``CALIBRATION_POINTS``) by ``calibrate``; ``DEFAULT_MODEL`` holds the rounded result.
docs/regions.md says how close this comes to measured inter-region latencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from servepath.regions.catalogue import Region

__all__ = [
    "CALIBRATION_POINTS",
    "DEFAULT_MODEL",
    "EARTH_RADIUS_KM",
    "FIBRE_KM_PER_MS",
    "CalibrationPoint",
    "LatencyMatrix",
    "LatencyModel",
    "calibrate",
    "great_circle_km",
    "latency_matrix",
]

EARTH_RADIUS_KM = 6371.0088  # the IUGG mean radius
FIBRE_KM_PER_MS = 200.0  # c / refractive index of silica fibre (~1.47), rounded


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    # min() guards asin against rounding just above 1 for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def region_distance_km(a: Region, b: Region) -> float:
    return great_circle_km(a.latitude, a.longitude, b.latitude, b.longitude)


@dataclass(frozen=True)
class LatencyModel:
    """RTT = base_ms + 2 × distance × stretch ÷ fibre_km_per_ms; same_region_ms within one."""

    base_ms: float
    stretch: float
    same_region_ms: float = 0.5
    fibre_km_per_ms: float = FIBRE_KM_PER_MS

    def rtt_for_distance_ms(self, distance_km: float) -> float:
        """The model's RTT between two distinct regions ``distance_km`` apart."""
        if distance_km < 0:
            raise ValueError(f"distance must be >= 0, got {distance_km}")
        return self.base_ms + 2 * distance_km * self.stretch / self.fibre_km_per_ms

    def rtt_ms(self, a: Region, b: Region) -> float:
        """Estimated round trip between regions ``a`` and ``b`` in milliseconds."""
        if a.id == b.id:
            return self.same_region_ms
        return self.rtt_for_distance_ms(region_distance_km(a, b))

    def to_json(self) -> dict[str, object]:
        return {
            "formula": "base_ms + 2 * distance_km * stretch / fibre_km_per_ms",
            "base_ms": self.base_ms,
            "stretch": self.stretch,
            "fibre_km_per_ms": self.fibre_km_per_ms,
            "same_region_ms": self.same_region_ms,
        }


@dataclass(frozen=True)
class CalibrationPoint:
    """A pair of regions and the round trip the model should reproduce for it."""

    a: str
    b: str
    rtt_ms: float


# Typical median RTTs between these Google Cloud regions: Warsaw ↔ St. Ghislain (Belgium),
# Warsaw ↔ Council Bluffs (Iowa). One short and one transatlantic path pin base and stretch.
CALIBRATION_POINTS: tuple[CalibrationPoint, ...] = (
    CalibrationPoint("europe-central2", "europe-west1", 20.0),
    CalibrationPoint("europe-central2", "us-central1", 100.0),
)


def calibrate(
    points: Sequence[tuple[float, float]],
    *,
    same_region_ms: float = 0.5,
    fibre_km_per_ms: float = FIBRE_KM_PER_MS,
) -> LatencyModel:
    """Least-squares fit of base and stretch to ``(distance_km, rtt_ms)`` points.

    Two points at different distances give the exact line through them.
    """
    if len(points) < 2:
        raise ValueError("calibration needs at least two (distance, rtt) points")
    n = len(points)
    mean_d = sum(d for d, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var_d = sum((d - mean_d) ** 2 for d, _ in points)
    if var_d == 0:
        raise ValueError("calibration points must lie at different distances")
    slope = sum((d - mean_d) * (r - mean_r) for d, r in points) / var_d  # ms per km
    base = mean_r - slope * mean_d
    return LatencyModel(
        base_ms=base,
        stretch=slope * fibre_km_per_ms / 2,
        same_region_ms=same_region_ms,
        fibre_km_per_ms=fibre_km_per_ms,
    )


# calibrate() on CALIBRATION_POINTS gives base 5.73 ms and stretch 1.182 (Warsaw ↔ Belgium is
# 1,208 km, Warsaw ↔ Iowa 7,978 km); rounded here so the numbers can be quoted.
DEFAULT_MODEL = LatencyModel(base_ms=5.7, stretch=1.18, same_region_ms=0.5)


@dataclass(frozen=True)
class LatencyMatrix:
    """Estimated RTT (ms) and distance (km) between every pair of ``regions``."""

    regions: tuple[Region, ...]
    rtt_ms: tuple[tuple[float, ...], ...]
    distance_km: tuple[tuple[float, ...], ...]
    model: LatencyModel

    def to_json(self) -> dict[str, object]:
        return {
            "regions": [r.id for r in self.regions],
            "rtt_ms": [[round(v, 1) for v in row] for row in self.rtt_ms],
            "distance_km": [[round(v) for v in row] for row in self.distance_km],
            "model": self.model.to_json(),
        }


def latency_matrix(regions: Sequence[Region], model: LatencyModel = DEFAULT_MODEL) -> LatencyMatrix:
    """The model's RTT between every pair of ``regions``, in the order given."""
    return LatencyMatrix(
        regions=tuple(regions),
        rtt_ms=tuple(tuple(model.rtt_ms(a, b) for b in regions) for a in regions),
        distance_km=tuple(tuple(region_distance_km(a, b) for b in regions) for a in regions),
        model=model,
    )
