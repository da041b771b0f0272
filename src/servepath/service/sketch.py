"""Live drift: per feature, counts of the recent rows in the reference profile's bins
(:mod:`servepath.model.profile`), and how far they are from the profile's shares. Pure.

The request path pays for reading the profiled values of the request's rows into two flat
lists, while the rows are still in the processor's cache (:meth:`Sketch.note`); the rows
themselves are not kept. The rows are counted later, :data:`FOLD_AT` at a time (or when the
counts are read): one ``fromiter``, one ``searchsorted`` per numeric feature and one
``bincount`` for all of them over the whole chunk, and a ``Counter`` per categorical feature.
Counting each request's rows as they come would pay numpy's per-call overhead on every
request, tens of microseconds for a lone row.

The counts cover the recent traffic, not all history: two epochs of up to ``window / 2``
rows each; when the newer one fills, the older one is dropped. The statistics read the sum,
between ``window / 2`` and ``window`` of the latest rows.

The statistics, per feature, over its bins (a numeric one's below-min, profile, above-max and
missing bins; a categorical one's values, other and missing):

* the population stability index, ``Σ (p - q) ln(p / q)`` with ``p`` the live share and ``q``
  the reference share, an empty bin given a small share (an empty bin would make it infinite);
* the Jensen–Shannon distance (natural logarithm, as Evidently's).

Both are :mod:`servepath.drift.stats`'s, so the live gauge and ``servepath drift`` read the
same numbers off the same bins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from servepath.config import DEFAULT_DRIFT_WINDOW
from servepath.drift import stats
from servepath.model.profile import CategoryProfile, NumericProfile, Profile

#: Rows the statistics cover at most (the latest); at least half of it once that many came.
DEFAULT_WINDOW = DEFAULT_DRIFT_WINDOW
#: Rows noted before they are counted.
FOLD_AT = 512
#: Below this many rows in the window the statistics are not reported: with 10 bins, a few
#: dozen rows of unchanged traffic read as drifted by chance.
MIN_ROWS = 200
Counts = np.ndarray[Any, np.dtype[np.int64]]


def reference_shares(feature: NumericProfile | CategoryProfile) -> list[float]:
    """The profile's shares laid out as the sketch's bins (see :class:`Binner`)."""
    if isinstance(feature, NumericProfile):
        return [0.0, *feature.shares, 0.0, feature.missing]
    return [*feature.shares, feature.other, feature.missing]


class Binner:
    """The bins of one feature, and what finds a value's bin (edges to search, or an index).

    Numeric: bin 0 is below ``min``, 1 … k the profile's bins, k + 1 above ``max``, k + 2
    missing. Categorical: one bin per profiled value, then other, then missing.
    """

    __slots__ = ("bins", "edges", "index", "missing", "name", "other")

    def __init__(self, feature: NumericProfile | CategoryProfile) -> None:
        self.name = feature.name
        self.edges: np.ndarray[Any, Any] | None = None
        self.index: dict[Any, int] = {}
        if isinstance(feature, NumericProfile):
            # searchsorted(side="right") over [min, cuts…, max⁺, +inf]: below min → 0, the
            # profile's bins → 1…k (max itself in k), above max → k + 1, NaN (missing) → k + 2.
            top = np.nextafter(feature.max, np.inf)
            self.edges = np.array([feature.min, *feature.cuts, top, np.inf], dtype=float)
            self.bins = len(feature.cuts) + 4
        else:
            self.index = {value: i for i, value in enumerate(feature.categories)}
            self.other = len(feature.categories)
            self.missing = self.other + 1
            self.index[None] = self.missing
            self.bins = len(feature.categories) + 2


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's drift over the window."""

    name: str
    kind: str
    psi: float
    js: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.psi > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": round(self.psi, 6),
            "js": round(self.js, 6),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every feature's drift, the most drifted first; empty while the window holds fewer
    than ``min_rows`` rows."""

    rows: int
    window: int
    min_rows: int
    threshold: float
    features: tuple[FeatureDrift, ...]

    @property
    def enough(self) -> bool:
        return self.rows >= self.min_rows

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "window": self.window,
            "min_rows": self.min_rows,
            "enough": self.enough,
            "threshold": self.threshold,
            "drifted": list(self.drifted),
            "features": [f.to_json() for f in self.features],
        }


def drift_of(
    profile: Profile,
    counts: Sequence[Counts],
    rows: int,
    *,
    window: int = DEFAULT_WINDOW,
    min_rows: int = MIN_ROWS,
) -> DriftReport:
    """The report of ``counts`` (one array per profiled feature, in the profile's order)."""
    found: list[FeatureDrift] = []
    if rows >= min_rows:
        for feature, observed in zip(profile.features, counts, strict=True):
            reference = np.asarray(reference_shares(feature), dtype=np.float64)
            found.append(
                FeatureDrift(
                    feature.name,
                    feature.kind,
                    stats.psi(reference, observed),
                    stats.jensen_shannon(reference, observed),
                    profile.threshold,
                )
            )
        found.sort(key=lambda f: (-f.psi, f.name))
    return DriftReport(rows, window, min_rows, profile.threshold, tuple(found))


class Sketch:
    """The counts of the latest rows in the profile's bins (see the module docstring)."""

    def __init__(
        self, profile: Profile, *, window: int = DEFAULT_WINDOW, fold_at: int = FOLD_AT
    ) -> None:
        self.profile = profile
        self.window = max(2, window)
        self._epoch = self.window // 2
        self._fold_at = max(1, fold_at)
        self.binners = tuple(Binner(f) for f in profile.features)
        self._numeric = [i for i, f in enumerate(profile.features) if isinstance(f, NumericProfile)]
        self._values = [
            i for i, f in enumerate(profile.features) if not isinstance(f, NumericProfile)
        ]
        names = [f.name for f in profile.features]
        # One call reads every numeric feature of a row as a tuple, another every category.
        self._numbers_of = _getter([names[i] for i in self._numeric])
        self._labels_of = _getter([names[i] for i in self._values])
        self._edges: list[np.ndarray[Any, Any]] = []
        for i in self._numeric:
            edges = self.binners[i].edges
            assert edges is not None
            self._edges.append(edges)
        sizes = [self.binners[i].bins for i in self._numeric]
        self._offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        self._numeric_bins = sum(sizes)
        #: The rows noted and not counted yet, row after row: their numbers (None for a
        #: missing one) and their categories, never the rows themselves.
        self._numbers: list[float | None] = []
        self._labels: list[Any] = []
        self._pending_rows = 0
        self._current = self._zeros()
        self._previous = self._zeros()
        self._current_rows = 0
        self._previous_rows = 0
        #: Rows counted since start (all of them, not only the window's).
        self.total = 0

    def _zeros(self) -> list[Counts]:
        return [np.zeros(b.bins, dtype=np.int64) for b in self.binners]

    def note(self, rows: Sequence[Any]) -> None:
        """Keep one request's validated rows, to be counted (the request path: read now,
        while the rows are in the processor's cache)."""
        if len(rows) == 1:
            row = rows[0]
            self._numbers.extend(self._numbers_of(row))
            self._labels.extend(self._labels_of(row))
        else:
            self._numbers.extend(chain.from_iterable(map(self._numbers_of, rows)))
            self._labels.extend(chain.from_iterable(map(self._labels_of, rows)))
        self._pending_rows += len(rows)
        if self._pending_rows >= self._fold_at:
            self.fold()

    def fold(self) -> None:
        """Count the rows noted so far."""
        n = self._pending_rows
        if not n:
            return
        try:
            flat = np.fromiter(self._numbers, dtype=float, count=len(self._numbers))
        except TypeError:  # a missing value (None): the slower way reads it as NaN
            flat = np.array(self._numbers, dtype=float)
        numbers = flat.reshape(n, len(self._numeric))
        labels, kc = self._labels, len(self._values)
        start = 0
        while start < n:
            # Never past what is left of the epoch: the window's bound holds exactly.
            take = min(n - start, self._epoch - self._current_rows)
            chunk = labels[start * kc : (start + take) * kc] if take < n else labels
            self._count(numbers[start : start + take], chunk)
            start += take
            self._advance(take)
        self._numbers, self._labels, self._pending_rows = [], [], 0
        self.total += n

    def _advance(self, n: int) -> None:
        self._current_rows += n
        if self._current_rows >= self._epoch:
            self._previous, self._previous_rows = self._current, self._current_rows
            self._current, self._current_rows = self._zeros(), 0

    def _count(self, numbers: np.ndarray[Any, Any], labels: list[Any]) -> None:
        """Count a chunk of rows: a row of numbers each, and their categories, row after
        row."""
        current = self._current
        if self._numeric:
            # One bincount for every numeric feature: each feature's bins at its offset.
            found = np.bincount(
                np.concatenate(
                    [
                        np.searchsorted(edges, column, side="right") + offset
                        for edges, column, offset in zip(
                            self._edges, numbers.T, self._offsets, strict=True
                        )
                    ]
                ),
                minlength=self._numeric_bins,
            )
            for i, offset in zip(self._numeric, self._offsets, strict=True):
                current[i] += found[offset : offset + len(current[i])]
        kc = len(self._values)
        for j, i in enumerate(self._values):
            binner = self.binners[i]
            index, other, counts = binner.index, binner.other, current[i]
            # A few distinct values: count them at C speed, then place each once.
            for value, times in Counter(labels[j::kc]).items():
                counts[index.get(value, other)] += times

    @property
    def rows(self) -> int:
        """Rows in the window, everything noted counted first."""
        self.fold()
        return self._current_rows + self._previous_rows

    def counts(self) -> list[Counts]:
        """The window's counts per feature, everything noted counted first."""
        self.fold()
        return [a + b for a, b in zip(self._current, self._previous, strict=True)]

    def report(self, others: Sequence[tuple[int, Sequence[Counts]]] = ()) -> DriftReport:
        """The drift of this window, plus ``others``' (rows, counts) merged in: every
        worker's window is one sample of the server's traffic."""
        counts = self.counts()
        rows = self._current_rows + self._previous_rows
        for extra_rows, extra in others:
            rows += extra_rows
            counts = [a + np.asarray(b, dtype=np.int64) for a, b in zip(counts, extra, strict=True)]
        window = self.window * (1 + len(others))
        return drift_of(self.profile, counts, rows, window=window)


def _getter(names: list[str]) -> Any:
    """A callable that reads ``names`` of a row as a tuple (itemgetter of one name returns
    the value alone)."""
    if not names:
        return lambda row: ()  # never called: the sketch counts no feature of this sort
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return itemgetter(*names)
