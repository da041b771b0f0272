"""Live drift's sketch (pure): rows counted in the profile's bins over a window of the latest
rows, and the stability index and Jensen–Shannon distance of those counts, on seeded data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from servepath.model.profile import NumericProfile, Profile, build_profile
from servepath.model.schema import Feature, InputSchema
from servepath.service.sketch import (
    MIN_ROWS,
    Binner,
    Sketch,
    reference_shares,
)

SCHEMA = InputSchema(
    (
        Feature("income", "number", nullable=True),
        Feature("purpose", "category", ("car", "home", "boat"), closed=False),
        Feature("first", "boolean"),
    )
)


def _rows(n: int, seed: int, *, shift: float = 1.0, car: float = 0.6) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.7, 0.4, n) * shift
    rest = (1 - car) / 2
    purpose = rng.choice(["car", "home", "boat"], n, p=[car, rest, rest])
    first = rng.random(n) < 0.25
    return [
        {"income": float(i), "purpose": str(p), "first": bool(f)}
        for i, p, f in zip(income, purpose, first, strict=True)
    ]


@pytest.fixture(scope="module")
def profile() -> Profile:
    frame = pd.DataFrame(_rows(20_000, seed=1))
    return build_profile(SCHEMA, frame, model_name="m", model_version="v1")


def _sketch(profile: Profile, rows: list[dict[str, Any]], **kw: Any) -> Sketch:
    sketch = Sketch(profile, **kw)
    for i in range(0, len(rows), 3):  # requests of a few rows each, as traffic comes
        sketch.note(rows[i : i + 3])
    return sketch


def test_unchanged_traffic_reads_as_stable_on_every_feature(profile: Profile) -> None:
    report = _sketch(profile, _rows(5_000, seed=2)).report()
    assert report.rows == 5_000 and report.enough
    assert all(f.psi < 0.02 and f.js < 0.05 for f in report.features), report.to_json()
    assert report.drifted == ()


def test_shifted_traffic_reads_as_drifted_on_the_shifted_features_only(profile: Profile) -> None:
    report = _sketch(profile, _rows(5_000, seed=3, shift=1.6, car=0.1)).report()
    by_name = {f.name: f for f in report.features}
    assert by_name["income"].psi > 1.0 and by_name["income"].drifted
    assert by_name["purpose"].psi > 0.5 and by_name["purpose"].drifted
    assert not by_name["first"].drifted
    # The most drifted first.
    assert [f.name for f in report.features][-1] == "first"
    assert report.features[0].psi >= report.features[1].psi


def test_the_window_forgets_old_traffic(profile: Profile) -> None:
    sketch = _sketch(profile, _rows(3_000, seed=4, shift=2.0), window=2_000)
    assert sketch.report().features[0].drifted
    for i, row in enumerate(_rows(2_000, seed=5)):
        sketch.note([row])
        if i % 97 == 0:
            sketch.fold()  # reads in between change nothing
    report = sketch.report()
    assert 1_000 <= report.rows <= 2_000
    assert report.drifted == ()
    assert sketch.total == 5_000


def test_too_few_rows_report_no_statistic(profile: Profile) -> None:
    report = _sketch(profile, _rows(MIN_ROWS - 1, seed=6)).report()
    assert not report.enough and report.features == ()


def test_out_of_range_and_missing_values_have_bins_of_their_own(profile: Profile) -> None:
    income = profile.features[0]
    assert isinstance(income, NumericProfile)
    low, high = income.min, income.max
    sketch = Sketch(profile)
    for value in (low - 1, low, high, high + 1, None):
        sketch.note([{"income": value, "purpose": "car", "first": False}])
    counts = sketch.counts()[0]
    assert counts[0] == 1 and counts[1] == 1  # below min; min is the first bin's
    assert counts[-3] == 1 and counts[-2] == 1 and counts[-1] == 1  # max; above; missing
    assert len(reference_shares(income)) == len(counts) == Binner(income).bins
    sketch = _sketch(profile, [{**r, "income": None} for r in _rows(400, seed=8)])
    assert next(f for f in sketch.report().features if f.name == "income").psi > 5


def test_an_unseen_category_counts_as_other(profile: Profile) -> None:
    sketch = Sketch(profile)
    for value in ("car", "yacht", None, "boat"):
        sketch.note([{"income": 50_000.0, "purpose": value, "first": True}])
    counts = sketch.counts()[1]
    assert counts.tolist()[-2:] == [1, 1] and counts.sum() == 4


def test_merged_counts_read_as_one_window(profile: Profile) -> None:
    a = _sketch(profile, _rows(150, seed=9))
    b = _sketch(profile, _rows(150, seed=10))
    assert not a.report().enough
    merged = a.report([(b.rows, b.counts())])
    assert merged.rows == 300 and merged.enough


def test_a_profile_of_numbers_only_or_categories_only_counts_its_rows() -> None:
    frame = pd.DataFrame(_rows(1_000, seed=12))
    for kept in (["income"], ["purpose", "first"]):
        schema = InputSchema(tuple(f for f in SCHEMA.features if f.name in kept))
        profile = build_profile(schema, frame[kept], model_name="m", model_version="v")
        sketch = _sketch(profile, [{k: r[k] for k in kept} for r in _rows(300, seed=13)])
        assert sketch.report().rows == 300 and sketch.report().drifted == ()


def test_a_missing_number_among_others_leaves_the_rows_in_step() -> None:
    schema = InputSchema((Feature("a", "number"), Feature("b", "number", nullable=True)))
    frame = pd.DataFrame({"a": np.arange(1_000.0), "b": np.arange(1_000.0)})
    profile = build_profile(schema, frame, model_name="m", model_version="v")
    sketch = Sketch(profile)
    sketch.note([{"a": 5.0, "b": None}, {"a": 995.0, "b": 995.0}] * 150)
    a, b = sketch.counts()
    assert a[1] == 150 and a[-3] == 150  # the first bin, the last: nothing shifted
    assert b[-1] == 150 and b[-3] == 150  # missing, the last bin
