"""The statistics of drift, as pure functions on arrays: two-sample tests, distances, PSI, and
the rule that picks a test for a feature.

The rule and every formula are Evidently's defaults (``evidently.legacy.calculations.
stattests``, version 0.7), so that a verdict here is the verdict Evidently gives:

* the reference's size (its non-missing values) picks the family: up to 1,000 values, tests
  (Kolmogorov–Smirnov for a numeric feature, chi-squared for a categorical one, a two-sample
  z-test on proportions when there are only two values); above 1,000, distances (Wasserstein
  normalised by the reference's standard deviation for a numeric feature, Jensen–Shannon for a
  categorical one);
* a numeric feature with at most 5 distinct values (reference and current together) is
  compared as categories;
* a p-value drifts below 0.05 (Kolmogorov–Smirnov: at or below), a distance at or above 0.1.

The distances on binned data take arrays of counts, so that a sketch kept elsewhere (a
histogram per feature) can be compared with the same functions.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LARGE_REFERENCE",
    "THRESHOLDS",
    "TestName",
    "chi_square",
    "choose_test",
    "drifted",
    "histogram_counts",
    "jensen_shannon",
    "ks",
    "psi",
    "shares",
    "wasserstein",
    "wasserstein_norm",
    "z_test",
]

Floats = NDArray[np.float64]
Counts = NDArray[np.float64] | NDArray[np.int64]

#: ``ks``: Kolmogorov–Smirnov p-value; ``chisquare``: chi-squared p-value; ``z``: two-sample
#: z-test on proportions, p-value; ``wasserstein``: Wasserstein distance over the reference's
#: standard deviation; ``jensenshannon``: Jensen–Shannon distance (natural logarithm).
TestName = Literal["ks", "chisquare", "z", "wasserstein", "jensenshannon"]

#: Above this many reference values, distances replace tests (a p-value on a large sample
#: flags differences too small to matter).
LARGE_REFERENCE: Final = 1000
#: A numeric feature with at most this many distinct values is compared as categories.
FEW_VALUES: Final = 5
#: A numeric feature with more distinct reference values than this is binned for
#: Jensen–Shannon and PSI; with fewer, each value is its own bin.
BIN_VALUES: Final = 20
#: Evidently's default threshold per test.
THRESHOLDS: Final[dict[TestName, float]] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
}
#: The tests whose statistic is a p-value (drift when small); the others are distances.
P_VALUES: Final = frozenset({"ks", "chisquare", "z"})
#: The smallest standard deviation Wasserstein is divided by (a constant reference).
_MIN_STD: Final = 0.001


def choose_test(
    kind: Literal["numeric", "categorical"], reference_size: int, n_values: int
) -> TestName:
    """The test Evidently applies by default to a feature of ``kind`` whose reference holds
    ``reference_size`` values, with ``n_values`` distinct values on both sides together."""
    if reference_size <= LARGE_REFERENCE:
        if kind == "numeric" and n_values > FEW_VALUES:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if kind == "numeric" and n_values > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def drifted(test: TestName, statistic: float, threshold: float) -> bool:
    """The verdict of ``test``: Kolmogorov–Smirnov drifts at p ≤ threshold, the other tests
    at p < threshold, the distances at ≥ threshold (Evidently's comparisons, kept exactly)."""
    if test == "ks":
        return statistic <= threshold
    if test in P_VALUES:
        return statistic < threshold
    return statistic >= threshold


def ks(reference: Floats, current: Floats) -> float:
    """Two-sided two-sample Kolmogorov–Smirnov p-value."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, current).pvalue)


def wasserstein_norm(reference: Floats, current: Floats) -> float:
    """First Wasserstein distance over the reference's standard deviation (population)."""
    scale = max(float(np.std(reference)), _MIN_STD)
    return wasserstein(reference, current) / scale


def wasserstein(u: Floats, v: Floats) -> float:
    """First Wasserstein distance of two samples: the area between their distribution
    functions. scipy's formula, on sorted copies rather than argsorts (a third of its time
    at a million values)."""
    u, v = np.sort(u), np.sort(v)
    values = np.concatenate([u, v])
    values.sort(kind="mergesort")  # two sorted runs: merged, not re-sorted
    deltas = np.diff(values)
    u_cdf = np.searchsorted(u, values[:-1], side="right") / u.size
    v_cdf = np.searchsorted(v, values[:-1], side="right") / v.size
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


def chi_square(reference: Counts, current: Counts) -> float:
    """Chi-squared goodness-of-fit p-value of the current counts against the reference's
    counts scaled to the current total (one entry per value, both arrays aligned). A value
    the reference never had makes the statistic infinite and the p-value 0."""
    from scipy.stats import chisquare

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        p = float(chisquare(cur, expected).pvalue)
    return 0.0 if math.isnan(p) and np.any((expected == 0) & (cur > 0)) else p


def z_test(reference: Counts, current: Counts) -> float:
    """Two-sided z-test p-value for the difference of two proportions: the share of the first
    value in reference against current (counts of at most two values, aligned)."""
    from scipy.stats import norm

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    n1, n2 = float(ref.sum()), float(cur.sum())
    if np.count_nonzero(ref) == 1 and np.array_equal(ref > 0, cur > 0):
        return 1.0  # one and the same value on both sides
    # Evidently counts the rows that are not the first value.
    p1, p2 = (n1 - float(ref[0])) / n1, (n2 - float(cur[0])) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def shares(counts: Counts) -> Floats:
    """Counts as shares of their total (zeros when there is nothing)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total else array


def jensen_shannon(reference: Counts, current: Counts) -> float:
    """Jensen–Shannon distance (the square root of the divergence, natural logarithm) between
    two binned distributions given as aligned counts or shares."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(shares(reference), shares(current)))


def psi(reference: Counts, current: Counts) -> float:
    """Population Stability Index of two aligned binned distributions. An empty bin on one
    side takes a small share (a ten-thousandth, or a millionth of the smallest share when that
    is smaller), as Evidently does, so that the logarithm stays finite."""
    p, q = _filled(shares(reference)), _filled(shares(current))
    return float(np.sum((p - q) * np.log(p / q)))


def _filled(share: Floats) -> Floats:
    out = share.copy()
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def histogram_counts(
    reference: Floats, current: Floats
) -> tuple[Floats, NDArray[np.int64], NDArray[np.int64]]:
    """Bin edges (Sturges' rule over both samples together) and each side's counts."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    ref_counts = np.histogram(reference, edges)[0].astype(np.int64)
    cur_counts = np.histogram(current, edges)[0].astype(np.int64)
    return edges.astype(np.float64), ref_counts, cur_counts
