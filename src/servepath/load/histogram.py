"""Latency histograms: a thin wrapper over HdrHistogram, recording microseconds.

HDR histograms keep every percentile to a fixed number of significant digits at a constant
memory cost, and add exactly: the histograms of several generator processes merge into the
one a single process would have recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

#: One microsecond to one hour covers every latency a load run can see.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000


@dataclass(frozen=True)
class SpectrumPoint:
    """One point of the percentile spectrum: ``percentile`` of requests took at most ``ms``."""

    percentile: float
    ms: float

    def to_json(self) -> dict[str, float]:
        return {"percentile": self.percentile, "ms": self.ms}


class LatencyHistogram:
    """Durations recorded in microseconds, read back in milliseconds."""

    def __init__(self, significant_digits: int = 3) -> None:
        self.significant_digits = significant_digits
        self._h = HdrHistogram(LOWEST_US, HIGHEST_US, significant_digits)
        #: Values above one hour, recorded as one hour.
        self.clamped = 0

    def record_seconds(self, seconds: float) -> None:
        self.record_us(int(seconds * 1_000_000))

    def record_us(self, us: int) -> None:
        if us < LOWEST_US:
            us = LOWEST_US
        elif us > HIGHEST_US:
            us = HIGHEST_US
            self.clamped += 1
        self._h.record_value(us)

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        """The latency at ``percentile`` (0-100); 0.0 when nothing was recorded."""
        if self.count == 0:
            return 0.0
        return float(self._h.get_value_at_percentile(percentile)) / 1000.0

    def max_ms(self) -> float:
        return float(self._h.get_max_value()) / 1000.0 if self.count else 0.0

    def min_ms(self) -> float:
        return float(self._h.get_min_value()) / 1000.0 if self.count else 0.0

    def mean_ms(self) -> float:
        return float(self._h.get_mean_value()) / 1000.0 if self.count else 0.0

    def count_above_ms(self, ms: float) -> int:
        """How many recorded values exceed ``ms`` (to the histogram's precision)."""
        limit = int(ms * 1000)
        return sum(
            item.count_added_in_this_iter_step
            for item in self._h.get_recorded_iterator()
            if item.value_iterated_to > limit
        )

    def spectrum(self, ticks_per_half_distance: int = 5) -> list[SpectrumPoint]:
        """The percentile distribution, dense towards the tail (as HdrHistogram plots it)."""
        if self.count == 0:
            return []
        points = [
            SpectrumPoint(
                percentile=float(item.percentile_level_iterated_to),
                ms=float(item.value_iterated_to) / 1000.0,
            )
            for item in self._h.get_percentile_iterator(ticks_per_half_distance)
        ]
        # The iterator repeats the last value at 100%; one point there is enough.
        while len(points) > 1 and points[-2].percentile >= 100.0:
            points.pop()
        return points

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value ``other`` recorded; the result is exact, not an approximation."""
        self._h.add(other._h)
        self.clamped += other.clamped

    def encode(self) -> bytes:
        """A compact portable form (HdrHistogram's compressed encoding)."""
        return bytes(self._h.encode())

    @classmethod
    def decode(cls, data: bytes, *, clamped: int = 0) -> LatencyHistogram:
        decoded = HdrHistogram.decode(data)
        hist = cls(int(decoded.significant_figures))
        hist._h.add(decoded)
        hist.clamped = clamped
        return hist

    @classmethod
    def merged(
        cls, parts: Iterable[LatencyHistogram], significant_digits: int = 3
    ) -> LatencyHistogram:
        total = cls(significant_digits)
        for part in parts:
            total.merge(part)
        return total

    def __getstate__(self) -> dict[str, object]:
        return {"data": self.encode(), "clamped": self.clamped}

    def __setstate__(self, state: dict[str, object]) -> None:
        data = state["data"]
        clamped = state["clamped"]
        assert isinstance(data, bytes) and isinstance(clamped, int)
        restored = LatencyHistogram.decode(data, clamped=clamped)
        self.__dict__.update(restored.__dict__)
