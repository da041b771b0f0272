"""One feature's values on one side of a drift comparison: finite numbers, or counts per
category, and how many were missing.

Values arrive in chunks (rows of the prediction log parsed from JSON, or a column of a
reference file) and are kept compact as they come: a numeric feature as float arrays, a
categorical one as counts, so that a million logged rows never become a million Python
objects per feature at once. A feature's kind is the schema's when there is one; otherwise
it is read off the values as Evidently reads a column's type: strings and booleans are
categories, numbers are numeric, except whole numbers with at most 5 distinct values, which
are categories (Evidently's rule for an integer column). Pure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import orjson
from numpy.typing import NDArray

__all__ = ["ColumnBuilder", "Kind", "Sample", "category_key"]

Kind = Literal["numeric", "categorical"]
Floats = NDArray[np.float64]

#: Whole numbers with at most this many distinct values are categories (an integer column
#: in Evidently's type inference).
INTEGER_CATEGORIES: Final = 5
_NUMBER_TYPES: Final = frozenset({int, float, type(None)})


def category_key(value: Any) -> str | None:
    """The category a value counts as: strings as they are, booleans as ``true``/``false``,
    whole numbers without a decimal point (``3`` and ``3.0`` are one category), other numbers
    as Python writes them; None (and NaN) is missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class Sample:
    """One feature on one side: ``rows`` rows, ``missing`` of them without a usable value
    (null, absent, NaN, infinite, or not of the feature's kind), and the rest as ``numbers``
    (numeric) or ``counts`` (categorical)."""

    kind: Kind
    rows: int
    missing: int
    numbers: Floats = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def values(self) -> int:
        """How many values the statistics compare."""
        return int(self.numbers.size) if self.kind == "numeric" else sum(self.counts.values())

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


class ColumnBuilder:
    """Collects one feature's values chunk by chunk; :meth:`sample` gives the :class:`Sample`.

    ``kind`` is the feature's kind when known (from the schema or the reference); otherwise
    each chunk of numbers is kept as numbers, and :meth:`sample` decides. A numeric
    feature's chunk goes to numpy as it is, so a boolean or a numeric string in it (which
    the server's validation refuses before anything is logged) reads as its number; any
    other value of the wrong type counts as missing.
    """

    def __init__(self, kind: Kind | None = None) -> None:
        self.kind = kind
        self.rows = 0
        self._numbers: list[Floats] = []
        self._counts: Counter[Any] = Counter()
        self._wrong = 0  # values not of a numeric feature's kind
        self._whole = True  # every number seen was a JSON integer

    def add(self, values: Sequence[Any] | Floats) -> None:
        """Add one chunk: JSON values (None for null or absent), or a float array."""
        self.rows += len(values)
        if isinstance(values, np.ndarray):
            if self.kind == "categorical":
                self._counts.update(values.tolist())
            else:
                self._numbers.append(values.astype(np.float64, copy=False))
                self._whole = self._whole and bool(np.all(np.isnan(values) | (values % 1 == 0)))
            return
        if self.kind == "numeric":
            try:  # the usual chunk: numbers and nulls, converted in C without a look first
                self._numbers.append(np.array(values, dtype=np.float64))
                self._whole = False
                return
            except (TypeError, ValueError):
                pass
        types = set(map(type, values))
        if self.kind != "categorical" and types <= _NUMBER_TYPES:
            self._numbers.append(np.array(values, dtype=np.float64))
            self._whole = self._whole and float not in types
            return
        if self.kind == "numeric":
            numbers = [v if type(v) in _NUMBER_TYPES else None for v in values]
            self._wrong += sum(1 for v in values if type(v) not in _NUMBER_TYPES)
            self._numbers.append(np.array(numbers, dtype=np.float64))
            self._whole = False
            return
        try:
            self._counts.update(values)
        except TypeError:  # an object or array as a value: counted by its JSON text
            self._counts.update(
                category_key(v) if isinstance(v, dict | list) else v for v in values
            )

    def sample(self) -> Sample:
        """The feature's sample, its kind decided if it was not given."""
        numbers = np.concatenate(self._numbers) if self._numbers else np.empty(0, np.float64)
        kind = self.kind or self._inferred(numbers)
        if kind == "numeric":
            finite = numbers[np.isfinite(numbers)]
            return Sample("numeric", self.rows, self.rows - int(finite.size), numbers=finite)
        counts: dict[str, int] = {}
        missing = 0
        if numbers.size:
            uniques, tally = np.unique(numbers, return_counts=True)
            for value, count in zip(uniques.tolist(), tally.tolist(), strict=True):
                self._counts[value] += count
        for value, count in self._counts.items():
            key = category_key(value)
            if key is None:
                missing += count
            else:
                counts[key] = counts.get(key, 0) + count
        return Sample("categorical", self.rows, missing, counts=counts)

    def _inferred(self, numbers: Floats) -> Kind:
        if self._counts and any(v is not None for v in self._counts):
            return "categorical"  # strings or booleans
        if self._whole and numbers.size:
            finite = numbers[np.isfinite(numbers)]
            if np.unique(finite).size <= INTEGER_CATEGORIES:
                return "categorical"
        return "numeric"
