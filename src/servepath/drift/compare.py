"""One feature compared: the current sample against the reference, with the test Evidently
would choose, its verdict, PSI, the missing and out-of-range shares and the categories the
reference never had; and the dataset's verdict over its features.

Evidently's handling is kept: missing values (null, absent, NaN, infinite) are left out of
the tests and counted apart; the reference's size after that picks the test
(:func:`servepath.drift.stats.choose_test`); Jensen–Shannon and PSI bin a numeric feature with
more than 20 distinct reference values by Sturges' rule over both samples, and otherwise count
each value. Pure.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from servepath.drift import stats
from servepath.drift.columns import Kind, Sample
from servepath.drift.stats import TestName

__all__ = [
    "DEFAULT_FAIL_SHARE",
    "Distribution",
    "FeatureDrift",
    "Role",
    "compare_feature",
    "drifted_share",
]

#: Evidently's dataset rule: the dataset drifts when at least half its features drift.
DEFAULT_FAIL_SHARE: Final = 0.5
#: Unseen categories a result names (the most frequent); the share counts them all.
UNSEEN_SHOWN: Final = 10
#: Categories a distribution shows (the rest are summed as one bar).
CATEGORIES_SHOWN: Final = 12
OTHERS: Final = "(others)"

#: ``feature``: an input of the model; ``prediction``: a field of its answer.
Role = Literal["feature", "prediction"]


@dataclass(frozen=True)
class Distribution:
    """Both sides' shares over the same bins: numeric ranges (``edges``) or categories."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    edges: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "reference": list(self.reference),
            "current": list(self.current),
            "edges": list(self.edges) if self.edges is not None else None,
        }


@dataclass(frozen=True)
class Summary:
    """A numeric side at a glance."""

    mean: float
    std: float
    min: float
    max: float

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature (or field of the prediction): the test, its statistic and threshold, the
    verdict, and what else moved."""

    name: str
    role: Role
    kind: Kind
    #: None when a side has no value to compare.
    test: TestName | None
    #: A p-value (ks, chisquare, z) or a distance (wasserstein, jensenshannon).
    statistic: float | None
    threshold: float | None
    drifted: bool
    psi: float | None
    reference_values: int
    current_values: int
    reference_missing: float
    current_missing: float
    #: Numeric: the share of current values outside the reference's [min, max].
    out_of_range: float | None
    #: Categorical: the share of current values the reference never had, and the most
    #: frequent of them with their counts.
    unseen_share: float | None
    unseen: tuple[tuple[str, int], ...]
    distribution: Distribution
    reference_summary: Summary | None = None
    current_summary: Summary | None = None
    note: str | None = None

    @property
    def statistic_name(self) -> str:
        if self.test is None:
            return "none"
        return "p_value" if self.test in stats.P_VALUES else "distance"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "kind": self.kind,
            "test": self.test,
            "statistic": self.statistic,
            "statistic_name": self.statistic_name,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "psi": self.psi,
            "reference_values": self.reference_values,
            "current_values": self.current_values,
            "missing": {"reference": self.reference_missing, "current": self.current_missing},
            "out_of_range": self.out_of_range,
            "unseen_share": self.unseen_share,
            "unseen": [{"value": v, "count": c} for v, c in self.unseen],
            "summary": {
                "reference": self.reference_summary.to_json() if self.reference_summary else None,
                "current": self.current_summary.to_json() if self.current_summary else None,
            },
            "distribution": self.distribution.to_json(),
            "note": self.note,
        }


def drifted_share(features: Sequence[FeatureDrift]) -> float:
    """The share of drifted features (0 when there are none)."""
    return sum(f.drifted for f in features) / len(features) if features else 0.0


def compare_feature(name: str, role: Role, reference: Sample, current: Sample) -> FeatureDrift:
    """Compare one feature's current sample against its reference sample (of one kind)."""
    ref_n, cur_n = reference.values, current.values
    if ref_n == 0 or cur_n == 0:
        empty = "reference" if ref_n == 0 else "current window"
        return FeatureDrift(
            name=name,
            role=role,
            kind=reference.kind,
            test=None,
            statistic=None,
            threshold=None,
            # Values that stop arriving are drift; a reference without any says nothing.
            drifted=ref_n > 0,
            psi=None,
            reference_values=ref_n,
            current_values=cur_n,
            reference_missing=reference.missing_share,
            current_missing=current.missing_share,
            out_of_range=None,
            unseen_share=None,
            unseen=(),
            distribution=Distribution((), (), ()),
            note=f"no value in the {empty}",
        )
    if reference.kind == "numeric":
        return _numeric(name, role, reference, current)
    return _categorical(name, role, reference, current)


def _numeric(name: str, role: Role, reference: Sample, current: Sample) -> FeatureDrift:
    ref, cur = reference.numbers, current.numbers
    ref_unique = np.unique(ref)
    n_values = int(ref_unique.size)
    if n_values <= stats.FEW_VALUES:
        n_values = int(np.union1d(ref_unique, np.unique(cur)).size)
    test = stats.choose_test("numeric", int(ref.size), n_values)
    # Bins for Jensen–Shannon, PSI and the picture: ranges, or each value when few.
    if ref_unique.size > stats.BIN_VALUES:
        edges, ref_counts, cur_counts = stats.histogram_counts(ref, cur)
        labels = tuple(f"{a:.4g}–{b:.4g}" for a, b in itertools.pairwise(edges))
        edge_tuple: tuple[float, ...] | None = tuple(edges.tolist())
    else:
        keys = np.union1d(ref_unique, np.unique(cur))
        ref_counts = _value_counts(ref, keys)
        cur_counts = _value_counts(cur, keys)
        labels = tuple(f"{v:g}" for v in keys.tolist())
        edge_tuple = None
    if test == "ks":
        statistic = stats.ks(ref, cur)
    elif test == "wasserstein":
        statistic = stats.wasserstein_norm(ref, cur)
    else:
        statistic = _on_counts(test, ref_counts, cur_counts)
    threshold = stats.THRESHOLDS[test]
    low, high = float(ref_unique[0]), float(ref_unique[-1])
    outside = int(np.count_nonzero((cur < low) | (cur > high)))
    return FeatureDrift(
        name=name,
        role=role,
        kind="numeric",
        test=test,
        statistic=statistic,
        threshold=threshold,
        drifted=stats.drifted(test, statistic, threshold),
        psi=stats.psi(ref_counts, cur_counts),
        reference_values=int(ref.size),
        current_values=int(cur.size),
        reference_missing=reference.missing_share,
        current_missing=current.missing_share,
        out_of_range=outside / cur.size,
        unseen_share=None,
        unseen=(),
        distribution=Distribution(
            labels,
            tuple(stats.shares(ref_counts).tolist()),
            tuple(stats.shares(cur_counts).tolist()),
            edge_tuple,
        ),
        reference_summary=_summary(ref),
        current_summary=_summary(cur),
    )


def _categorical(name: str, role: Role, reference: Sample, current: Sample) -> FeatureDrift:
    ref, cur = reference.counts, current.counts
    # The reference's categories by frequency, then the ones it never had.
    keys = sorted(ref, key=lambda k: (-ref[k], k))
    unseen = sorted((k for k in cur if k not in ref), key=lambda k: (-cur[k], k))
    keys += unseen
    ref_counts = np.array([ref.get(k, 0) for k in keys], dtype=np.int64)
    cur_counts = np.array([cur.get(k, 0) for k in keys], dtype=np.int64)
    ref_n, cur_n = int(ref_counts.sum()), int(cur_counts.sum())
    test = stats.choose_test("categorical", ref_n, len(keys))
    statistic = _on_counts(test, ref_counts, cur_counts)
    threshold = stats.THRESHOLDS[test]
    ref_shares, cur_shares = stats.shares(ref_counts), stats.shares(cur_counts)
    return FeatureDrift(
        name=name,
        role=role,
        kind="categorical",
        test=test,
        statistic=statistic,
        threshold=threshold,
        drifted=stats.drifted(test, statistic, threshold),
        psi=stats.psi(ref_counts, cur_counts),
        reference_values=ref_n,
        current_values=cur_n,
        reference_missing=reference.missing_share,
        current_missing=current.missing_share,
        out_of_range=None,
        unseen_share=sum(cur[k] for k in unseen) / cur_n,
        unseen=tuple((k, cur[k]) for k in unseen[:UNSEEN_SHOWN]),
        distribution=_shown(keys, ref_shares, cur_shares),
    )


def _on_counts(test: TestName, ref_counts: NDArray[Any], cur_counts: NDArray[Any]) -> float:
    if test == "chisquare":
        return stats.chi_square(ref_counts, cur_counts)
    if test == "z":
        return stats.z_test(ref_counts, cur_counts)
    return stats.jensen_shannon(ref_counts, cur_counts)


def _value_counts(values: NDArray[np.float64], keys: NDArray[np.float64]) -> NDArray[np.int64]:
    uniques, counts = np.unique(values, return_counts=True)
    out = np.zeros(keys.size, dtype=np.int64)
    out[np.searchsorted(keys, uniques)] = counts
    return out


def _summary(values: NDArray[np.float64]) -> Summary:
    return Summary(
        float(values.mean()), float(values.std()), float(values.min()), float(values.max())
    )


def _shown(keys: Sequence[str], ref: NDArray[np.float64], cur: NDArray[np.float64]) -> Distribution:
    """The most frequent categories of either side; the rest as one bar."""
    if len(keys) <= CATEGORIES_SHOWN:
        return Distribution(tuple(keys), tuple(ref.tolist()), tuple(cur.tolist()))
    order = np.argsort(-np.maximum(ref, cur), kind="stable")[: CATEGORIES_SHOWN - 1]
    order.sort()
    rest = np.ones(len(keys), dtype=bool)
    rest[order] = False
    return Distribution(
        (*(keys[i] for i in order), OTHERS),
        (*ref[order].tolist(), float(ref[rest].sum())),
        (*cur[order].tolist(), float(cur[rest].sum())),
    )
