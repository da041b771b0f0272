"""The reference profile (pure): bins from the training columns, the file, and the check
against a model's schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servepath.model.profile import (
    FORMAT,
    MAX_CATEGORIES,
    CategoryProfile,
    NumericProfile,
    Profile,
    ProfileError,
    ProfileMismatch,
    build_profile,
    check_against,
    numeric_profile,
    read_csv,
    read_profile,
    version_note,
    write_profile,
)
from servepath.model.schema import Feature, InputSchema

SCHEMA = InputSchema(
    (
        Feature("income", "number"),
        Feature("term", "number"),
        Feature("purpose", "category", ("car", "home"), closed=False),
        Feature("first", "boolean"),
        Feature("note", "any"),
    )
)


def _frame(n: int = 2_000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.7, 0.4, n)
    income[:20] = np.nan
    return pd.DataFrame(
        {
            "income": income,
            "term": rng.choice([12, 24, 36], n, p=[0.5, 0.3, 0.2]),
            "purpose": rng.choice(["car", "home", "boat"], n, p=[0.6, 0.3, 0.1]),
            "first": rng.random(n) < 0.25,
            "label": rng.random(n),
        }
    )


def _profile(frame: pd.DataFrame | None = None) -> Profile:
    return build_profile(SCHEMA, _frame() if frame is None else frame, model_name="m",
                         model_version="abc123def456")  # fmt: skip


def test_a_numeric_column_is_cut_at_its_quantiles_into_bins_of_about_equal_share() -> None:
    values = np.random.default_rng(1).normal(0, 1, 10_000)
    p = numeric_profile("x", values, 10)
    assert len(p.cuts) == 9 and len(p.shares) == 10
    assert p.min == values.min() and p.max == values.max()
    assert all(0.09 < s < 0.11 for s in p.shares)
    assert sum(p.shares) == pytest.approx(1.0)


def test_a_column_with_few_values_gets_one_bin_per_value_and_the_missing_share() -> None:
    profile = _profile()
    term = next(f for f in profile.features if f.name == "term")
    assert isinstance(term, NumericProfile)
    assert term.cuts == (24.0, 36.0)
    assert term.shares[0] == pytest.approx(0.5, abs=0.04)
    income = next(f for f in profile.features if f.name == "income")
    assert income.missing == pytest.approx(20 / 2_000)
    assert sum(income.shares) + income.missing == pytest.approx(1.0)


def test_categories_keep_their_shares_most_common_first_and_the_rarest_go_to_other() -> None:
    profile = _profile()
    purpose = next(f for f in profile.features if f.name == "purpose")
    assert isinstance(purpose, CategoryProfile)
    assert purpose.categories == ("car", "home", "boat")  # seen in training, not the schema's
    assert purpose.shares[0] == pytest.approx(0.6, abs=0.04)
    many = pd.Series([f"c{i % (MAX_CATEGORIES + 10)}" for i in range(10_000)])
    frame = _frame(10_000).assign(purpose=many)
    wide = next(f for f in _profile(frame).features if f.name == "purpose")
    assert len(wide.categories) == MAX_CATEGORIES and wide.other > 0


def test_booleans_are_profiled_as_true_and_false_and_unused_columns_are_left_out() -> None:
    profile = _profile()
    first = next(f for f in profile.features if f.name == "first")
    assert set(first.categories) == {True, False}
    assert [f.name for f in profile.features] == ["income", "term", "purpose", "first"]


def test_the_training_data_must_have_every_input_of_the_right_kind() -> None:
    with pytest.raises(ProfileError, match="no column 'term'"):
        _profile(_frame().drop(columns=["term"]))
    with pytest.raises(ProfileError, match=r"'income' is a number .* 'lots'"):
        _profile(_frame().assign(income=["lots"] * 2_000))


def test_the_file_round_trips_and_names_its_format_and_model(tmp_path: Path) -> None:
    profile = _profile()
    path = tmp_path / "profile.json"
    write_profile(profile, path)
    back = read_profile(path)
    assert back.to_json() == profile.to_json()
    assert back.to_json()["format"] == FORMAT and back.model_version == "abc123def456"
    assert back.digest == profile.digest


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b'{"format": "other/9", "features": []}', "format"),
        (b'{"format": "servepath-profile/1", "features": []}', "no feature"),
        (
            b'{"format": "servepath-profile/1", "features": [{"name": "x", "kind": "number",'
            b' "min": 0, "max": 1, "cuts": [0.5], "shares": [1.0]}]}',
            "2 shares",
        ),
    ],
)
def test_a_file_that_is_no_profile_is_refused_saying_why(
    tmp_path: Path, body: bytes, says: str
) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(body)
    with pytest.raises(ProfileError, match=says):
        read_profile(path)


def test_a_profile_of_other_inputs_is_refused_naming_the_feature() -> None:
    profile = _profile()
    check_against(profile, SCHEMA)
    more = InputSchema((*SCHEMA.features, Feature("age", "number")))
    with pytest.raises(ProfileMismatch, match="'age' is an input of the model but not in"):
        check_against(profile, more)
    fewer = InputSchema(tuple(f for f in SCHEMA.features if f.name != "term"))
    with pytest.raises(ProfileMismatch, match="'term' is in the profile but not an input"):
        check_against(profile, fewer)
    kinds = InputSchema(
        tuple(
            Feature("term", "category", ("12",)) if f.name == "term" else f for f in SCHEMA.features
        )
    )
    with pytest.raises(ProfileMismatch, match="'term' is a category for the model but a number"):
        check_against(profile, kinds)


def test_a_profile_of_another_version_is_only_warned_of() -> None:
    profile = _profile()
    assert version_note(profile, "m", "abc123def456") is None
    assert "built for m version abc123def456" in (version_note(profile, "m", "999") or "")


def test_a_csv_keeps_category_codes_as_text(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("income,term,purpose,first\n1.5,12,007,true\n2.5,24,car,false\n")
    frame = read_csv(path, SCHEMA)
    assert frame["purpose"].tolist() == ["007", "car"]
    assert read_csv(path, SCHEMA)["income"].dtype == float
