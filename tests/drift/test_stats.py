"""Drift's statistics agree with Evidently's: on seeded shifts (a mean shift, a scale change,
new categories, a binary share moving, a feature unchanged), at both sizes (a reference of at
most 1,000 values, where tests decide, and above, where distances do), each feature gets
Evidently's test, statistic, threshold, verdict and PSI; and the dataset rule is its own."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from servepath.drift import stats
from servepath.drift.columns import ColumnBuilder, Sample, category_key
from servepath.drift.compare import compare_feature, drifted_share
from tests.drift.evidently_reference import column_drift, dataset_drift

# Evidently's chi-squared divides by the zero expected count of a new category.
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")

Maker = Callable[[np.random.Generator, int], tuple[list[Any], list[Any], bool]]


def _mean_shift(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    return rng.normal(50, 10, n).tolist(), rng.normal(56, 10, n).tolist(), True


def _scale_change(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    return rng.normal(0, 1, n).tolist(), rng.normal(0, 2.5, n).tolist(), True


def _unchanged_numeric(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    return rng.lognormal(10, 0.5, n).tolist(), rng.lognormal(10, 0.5, n).tolist(), False


def _new_categories(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    ref = rng.choice(["rent", "mortgage", "own", "other"], n, p=[0.45, 0.38, 0.12, 0.05])
    cur = rng.choice(["rent", "mortgage", "own", "lease", "boat"], n, p=[0.4, 0.3, 0.1, 0.1, 0.1])
    return ref.tolist(), cur.tolist(), True


def _unchanged_categories(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    values, p = ["car", "home", "education", "business"], [0.4, 0.3, 0.2, 0.1]
    return rng.choice(values, n, p=p).tolist(), rng.choice(values, n, p=p).tolist(), False


def _binary_shift(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    return (rng.random(n) < 0.3).tolist(), (rng.random(n) < 0.6).tolist(), True


def _few_integers(rng: np.random.Generator, n: int) -> tuple[list[Any], list[Any], bool]:
    # a numeric feature with four values: compared as categories (chi-squared, or JS)
    terms = [12, 24, 36, 60]
    ref = rng.choice(terms, n, p=[0.1, 0.2, 0.5, 0.2]).astype(float).tolist()
    cur = rng.choice(terms, n, p=[0.4, 0.3, 0.2, 0.1]).astype(float).tolist()
    return ref, cur, True


NUMERIC: dict[str, Maker] = {
    "mean_shift": _mean_shift,
    "scale_change": _scale_change,
    "unchanged": _unchanged_numeric,
    "few_integers": _few_integers,
}
CATEGORICAL: dict[str, Maker] = {
    "new_categories": _new_categories,
    "unchanged": _unchanged_categories,
    "binary_shift": _binary_shift,
}
#: (reference size, current size): tests decide up to 1,000 reference values, distances above.
SIZES = [(600, 400), (1000, 1000), (1500, 1200), (4000, 3000)]


def _seed(case: str, size: int) -> int:
    # A test at p < 0.05 flags an unchanged feature once in twenty draws, as it should; these
    # seeds draw none of those (the verdicts must still agree with Evidently's on any seed).
    return zlib.crc32(f"seed1:{case}:{size}".encode())  # the same in every process


def _sample(values: list[Any], kind: str) -> Sample:
    builder = ColumnBuilder(kind)  # type: ignore[arg-type]
    builder.add(values)
    return builder.sample()


def _agree(ref: list[Any], cur: list[Any], kind: str, expect_drift: bool) -> str:
    ours = compare_feature("x", "feature", _sample(ref, kind), _sample(cur, kind))
    series = (pd.Series(ref), pd.Series(cur))
    if kind == "categorical":  # as Evidently reads a column of strings or booleans
        series = (series[0].astype(object), series[1].astype(object))
    theirs = column_drift(*series, kind)
    assert ours.test == theirs.test
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9, abs=1e-12)
    assert ours.threshold == theirs.threshold
    assert ours.drifted is theirs.drifted
    assert ours.psi == pytest.approx(theirs.psi, rel=1e-9)
    # and the seeded shift is what both see: the cases test something
    assert ours.drifted is expect_drift
    return theirs.test


@pytest.mark.parametrize(("ref_n", "cur_n"), SIZES)
@pytest.mark.parametrize("case", list(NUMERIC))
def test_numeric_features_get_evidentlys_test_statistic_and_verdict(
    case: str, ref_n: int, cur_n: int
) -> None:
    rng = np.random.default_rng(_seed(case, ref_n))
    ref, _, expect = NUMERIC[case](rng, ref_n)
    _, cur, _ = NUMERIC[case](rng, cur_n)
    test = _agree(ref, cur, "numeric", expect)
    if case == "few_integers":
        assert test == ("chisquare" if ref_n <= 1000 else "jensenshannon")
    else:
        assert test == ("ks" if ref_n <= 1000 else "wasserstein")


@pytest.mark.parametrize(("ref_n", "cur_n"), SIZES)
@pytest.mark.parametrize("case", list(CATEGORICAL))
def test_categorical_features_get_evidentlys_test_statistic_and_verdict(
    case: str, ref_n: int, cur_n: int
) -> None:
    rng = np.random.default_rng(_seed(case, ref_n))
    ref, _, expect = CATEGORICAL[case](rng, ref_n)
    _, cur, _ = CATEGORICAL[case](rng, cur_n)
    test = _agree(ref, cur, "categorical", expect)
    if ref_n > 1000:
        assert test == "jensenshannon"
    else:
        assert test == ("z" if case == "binary_shift" else "chisquare")


def test_missing_values_are_left_out_of_the_test_and_counted_apart() -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(0, 1, 800).tolist()
    cur: list[Any] = rng.normal(0.4, 1, 800).tolist()
    for i in range(0, 800, 4):
        cur[i] = None
    cur[1] = float("inf")
    ours = compare_feature("x", "feature", _sample(ref, "numeric"), _sample(cur, "numeric"))
    theirs = column_drift(pd.Series(ref), pd.Series(cur, dtype=float), "numeric")
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-9)
    assert ours.drifted is theirs.drifted is True
    assert ours.current_missing == pytest.approx(201 / 800)
    assert ours.reference_missing == 0
    assert ours.current_values == 599


def test_a_category_the_reference_never_had_is_named_with_its_share() -> None:
    ref = ["a"] * 500 + ["b"] * 500
    cur = ["a"] * 400 + ["b"] * 400 + ["c"] * 150 + ["d"] * 50
    ours = compare_feature("x", "feature", _sample(ref, "categorical"), _sample(cur, "categorical"))
    assert ours.unseen == (("c", 150), ("d", 50))
    assert ours.unseen_share == pytest.approx(0.2)
    assert ours.test == "chisquare" and ours.statistic == 0.0 and ours.drifted


def test_numeric_values_outside_the_references_range_are_counted() -> None:
    ref = np.linspace(0, 10, 2000).tolist()
    cur = np.linspace(5, 15, 2000).tolist()
    ours = compare_feature("x", "feature", _sample(ref, "numeric"), _sample(cur, "numeric"))
    assert ours.out_of_range == pytest.approx(0.5, abs=0.001)
    assert ours.reference_summary is not None and ours.reference_summary.max == 10


def test_a_feature_whose_values_stop_arriving_drifts_without_a_test() -> None:
    ours = compare_feature(
        "x", "feature", _sample([1.0, 2.0, 3.0], "numeric"), _sample([None, None], "numeric")
    )
    assert ours.test is None and ours.drifted and ours.current_missing == 1.0


@pytest.mark.parametrize(
    "verdicts",
    [[True, False], [True, False, False], [True, True, False], [False] * 4, [True]],
)
def test_the_dataset_drifts_as_evidently_decides_at_half_the_features(
    verdicts: list[bool],
) -> None:
    # Evidently's rule is share >= 0.5: exactly half drifts the dataset.
    share = sum(verdicts) / len(verdicts)
    assert (share >= 0.5) is dataset_drift(verdicts)
    features = [
        compare_feature(
            str(i),
            "feature",
            _sample([1.0] * 50 + [2.0] * 50, "numeric"),
            _sample([2.0] * 100 if drifted else [1.0] * 50 + [2.0] * 50, "numeric"),
        )
        for i, drifted in enumerate(verdicts)
    ]
    assert [f.drifted for f in features] == verdicts
    assert drifted_share(features) == share


def test_distances_on_counts_match_scipy() -> None:
    rng = np.random.default_rng(5)
    u, v = rng.gamma(2, 1, 5000), rng.normal(2, 1, 3000)
    assert stats.wasserstein(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12)
    ref, cur = np.array([10, 0, 30, 60]), np.array([5, 5, 40, 50])
    assert stats.jensen_shannon(ref, cur) == pytest.approx(jensenshannon(ref / 100, cur / 100))
    # PSI fills an empty bin with a ten-thousandth, so that it stays finite
    expected = sum(
        (p - q) * np.log(p / q)
        for p, q in zip([0.1, 0.0001, 0.3, 0.6], [0.05, 0.05, 0.4, 0.5], strict=True)
    )
    assert stats.psi(ref, cur) == pytest.approx(expected)


def test_kinds_are_read_off_the_values_as_evidently_reads_a_columns_type() -> None:
    def kind(values: list[Any]) -> str:
        builder = ColumnBuilder()
        builder.add(values)
        return builder.sample().kind

    assert kind([1, 2, 3, 2, 1, None]) == "categorical"  # whole numbers, at most 5 values
    assert kind(list(range(6))) == "numeric"
    assert kind([1.5, 2.5, 1.5]) == "numeric"  # floats stay numeric however few
    assert kind(["a", "b"]) == "categorical"
    assert kind([True, False]) == "categorical"
    assert category_key(3) == category_key(3.0) == "3"
    assert category_key(True) == "true" and category_key(float("nan")) is None


def test_choose_test_follows_the_reference_size_and_the_number_of_values() -> None:
    assert stats.choose_test("numeric", 1000, 6) == "ks"
    assert stats.choose_test("numeric", 1001, 6) == "wasserstein"
    assert stats.choose_test("numeric", 1000, 5) == "chisquare"
    assert stats.choose_test("numeric", 1000, 2) == "z"
    assert stats.choose_test("categorical", 1001, 2) == "jensenshannon"
    # Kolmogorov–Smirnov drifts at p == threshold, chi-squared does not
    assert stats.drifted("ks", 0.05, 0.05) and not stats.drifted("chisquare", 0.05, 0.05)
