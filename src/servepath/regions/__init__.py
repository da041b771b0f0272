"""Cloud regions: where they are, how far apart in milliseconds, and where to place a service.

``catalogue`` lists the regions, ``model`` estimates the RTT between two of them from physics,
``place`` ranks regions for a population of callers, ``measure`` times TCP handshakes to real
endpoints and sets them beside the estimate, ``plot`` draws a matrix as a heatmap.
"""

from __future__ import annotations

from servepath.errors import BadCallers, UnknownRegion
from servepath.regions.catalogue import (
    PROVIDERS,
    Provider,
    Region,
    all_regions,
    get_region,
    regions_of,
)
from servepath.regions.measure import (
    MeasureReport,
    MeasureTarget,
    TargetResult,
    measure,
    parse_measure_target,
)
from servepath.regions.model import (
    DEFAULT_MODEL,
    LatencyMatrix,
    LatencyModel,
    calibrate,
    great_circle_km,
    latency_matrix,
)
from servepath.regions.place import Placement, place

__all__ = [
    "DEFAULT_MODEL",
    "PROVIDERS",
    "BadCallers",
    "LatencyMatrix",
    "LatencyModel",
    "MeasureReport",
    "MeasureTarget",
    "Placement",
    "Provider",
    "Region",
    "TargetResult",
    "UnknownRegion",
    "all_regions",
    "calibrate",
    "get_region",
    "great_circle_km",
    "latency_matrix",
    "measure",
    "parse_measure_target",
    "place",
    "regions_of",
]
