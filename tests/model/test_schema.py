"""The input schema is derived from the model, and validation names every offending field."""

from __future__ import annotations

import math

import pytest

from servepath.errors import FieldError, InvalidInput
from servepath.model.example import CATEGORICAL_FEATURES, EXAMPLE_APPLICANT, NUMERIC_FEATURES
from servepath.model.loaded import LoadedModel
from servepath.model.schema import Feature, InputSchema, schema_from_json


def test_schema_from_the_example_pipeline_has_types_and_categories(
    example_model: LoadedModel,
) -> None:
    schema = example_model.schema
    assert schema.names == NUMERIC_FEATURES + CATEGORICAL_FEATURES
    kinds = {f.name: f.kind for f in schema.features}
    assert all(kinds[n] == "number" for n in NUMERIC_FEATURES)
    purpose = next(f for f in schema.features if f.name == "purpose")
    assert purpose.kind == "category" and "car" in (purpose.categories or ())
    assert schema.example() == EXAMPLE_APPLICANT


def test_scaler_means_become_the_example_when_the_model_has_none() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from servepath.model.sklearn_schema import schema_from_sklearn

    frame = pd.DataFrame({"a": [1.0, 3.0, 5.0, 7.0], "c": ["x", "y", "x", "y"]})
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("n", StandardScaler(), ["a"]),
                        ("c", OneHotEncoder(handle_unknown="ignore"), ["c"]),
                    ]
                ),
            ),
            ("m", LogisticRegression()),
        ]
    ).fit(frame, [0, 1, 0, 1])
    schema = schema_from_sklearn(pipe)
    assert schema.example() == {"a": 4.0, "c": "x"}
    # handle_unknown="ignore" accepts any string: the learned categories are not enforced
    assert schema.features[1].categories == ("x", "y") and not schema.features[1].closed
    assert schema.validate({"a": 1.0, "c": "zzz"})[1] == []


def test_a_model_fitted_on_an_array_is_refused_with_the_fix() -> None:
    from sklearn.linear_model import LogisticRegression

    from servepath.model.sklearn_schema import schema_from_sklearn

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match=r"without column names.*pd\.DataFrame"):
        schema_from_sklearn(model)


def test_the_loader_refuses_an_array_fitted_model_naming_the_fix(tmp_path: object) -> None:
    from pathlib import Path

    import joblib
    from sklearn.ensemble import RandomForestClassifier

    from servepath.errors import ModelLoadError
    from servepath.model.loaded import load_model

    path = Path(str(tmp_path)) / "array.joblib"
    joblib.dump(RandomForestClassifier(3).fit([[0.0], [1.0]], [0, 1]), path)
    with pytest.raises(ModelLoadError, match="fit it on a pandas DataFrame"):
        load_model(path)


def test_boolean_and_integer_coded_categories_keep_their_type() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from servepath.model.sklearn_schema import inspect_sklearn

    frame = pd.DataFrame(
        {"flag": [True, False, True, False], "grade": [1, 2, 3, 1], "x": [0.1, 0.2, 0.3, 0.4]}
    )
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("oh", OneHotEncoder(), ["flag", "grade"])], remainder="passthrough"
                ),
            ),
            ("m", LogisticRegression()),
        ]
    ).fit(frame, [0, 1, 0, 1])
    schema, plan = inspect_sklearn(pipe)
    kinds = {f.name: (f.kind, f.categories) for f in schema.features}
    assert kinds["flag"] == ("boolean", (False, True))
    assert kinds["grade"] == ("number", (1, 2, 3))
    assert kinds["x"] == ("number", None)
    assert dict(zip(plan.columns, plan.dtypes, strict=True))["grade"] == "int"
    assert [e.type for e in schema.validate({"flag": True, "grade": 4, "x": 1.0})[1]] == ["enum"]
    assert schema.validate({"flag": "yes", "grade": 1, "x": 1.0})[1][0].type == "type"


SCHEMA = InputSchema(
    (
        Feature("n", "number", None, 1.0),
        Feature("c", "category", ("a", "b"), "a"),
    )
)
OPTIONAL = InputSchema(
    (
        Feature("n", "number", None, 1.0, nullable=True),
        Feature("b", "boolean", None, False),
        Feature("o", "category", ("a", "b"), "a", closed=False, nullable=True),
        Feature("dropped", "any", None, None),
    )
)


@pytest.mark.parametrize(
    ("instance", "errors"),
    [
        ({"n": 1, "c": "a"}, []),
        ({"n": 1.5e3, "c": "b"}, []),
        ({"c": "a"}, [(("n",), "missing")]),
        ({"n": "1", "c": "a"}, [(("n",), "type")]),
        ({"n": True, "c": "a"}, [(("n",), "type")]),
        ({"n": math.inf, "c": "a"}, [(("n",), "finite")]),
        ({"n": math.nan, "c": "a"}, [(("n",), "finite")]),
        ({"n": None, "c": "a"}, [(("n",), "type")]),
        ({"n": 1, "c": "z"}, [(("c",), "enum")]),
        ({"n": 1, "c": 1}, [(("c",), "type")]),
        ({"n": 1, "c": "a", "extra": 0}, [(("extra",), "extra")]),
        ([1, 2], [((), "type")]),
    ],
)
def test_validation_names_each_field(instance: object, errors: list[tuple[tuple, str]]) -> None:
    row, found = SCHEMA.validate(instance)
    assert [(e.loc, e.type) for e in found] == errors
    assert (row is None) == bool(errors)
    if row is not None:
        assert isinstance(row["n"], float)


def test_validate_many_prefixes_the_instance_index() -> None:
    with pytest.raises(InvalidInput) as info:
        SCHEMA.validate_many([{"n": 1, "c": "a"}, {"n": "x", "c": "q"}])
    assert [e.loc for e in info.value.errors] == [("instances", 1, "n"), ("instances", 1, "c")]


def test_schema_round_trips_through_json() -> None:
    assert schema_from_json(SCHEMA.to_json()) == SCHEMA


@pytest.mark.parametrize(
    ("instance", "errors"),
    [
        ({"n": None, "b": True, "o": None}, []),
        ({"n": 2, "b": False, "o": "never-seen", "dropped": [1, {"x": 2}]}, []),
        ({"n": 2, "b": 1, "o": "a"}, [(("b",), "type")]),
        ({"n": 2, "b": None, "o": "a"}, [(("b",), "type")]),
        ({"n": 2, "o": "a"}, [(("b",), "missing")]),
    ],
)
def test_nullable_boolean_open_and_dropped_fields(
    instance: dict[str, object], errors: list[tuple[tuple, str]]
) -> None:
    row, found = OPTIONAL.validate(instance)
    assert [(e.loc, e.type) for e in found] == errors
    if row is not None:
        assert "dropped" not in row  # never reaches the model, nor the cache key


def test_json_schema_of_nullable_open_and_dropped_fields() -> None:
    schema = OPTIONAL.json_schema()
    assert schema["required"] == ["n", "b", "o"]
    assert schema["properties"]["n"]["type"] == ["number", "null"]
    assert schema["properties"]["o"]["examples"] == ["a", "b"]
    assert "enum" not in schema["properties"]["o"]
    assert "type" not in schema["properties"]["dropped"]
    assert SCHEMA.json_schema()["properties"]["c"]["enum"] == ["a", "b"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "x"}, "non-empty JSON list"),
        ([{"kind": "number"}], "string 'name'"),
        ([{"name": "x", "kind": "tensor"}], "kind 'tensor'"),
        ([{"name": "x", "kind": "category"}], "needs 'categories' or an 'example'"),
        ([{"name": "x", "kind": "category", "categories": "ab"}], "must be a list"),
    ],
)
def test_a_bad_schema_file_names_the_item(items: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schema_from_json(items)


def test_an_error_about_the_whole_body_reads_without_a_dangling_colon() -> None:
    whole = InvalidInput([FieldError((), "expected a JSON object", "type")])
    assert str(whole) == "invalid input: expected a JSON object"
    both = InvalidInput(
        [FieldError(("instances", 0, "age"), "expected a number", "type"), *whole.errors]
    )
    assert str(both) == "invalid input: instances.0.age: expected a number; expected a JSON object"


def _categorical_frame(n: int = 400) -> tuple[object, object]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": rng.normal(3000, 500, n).round(),
            "city": pd.Categorical(rng.choice(["north", "south", "west"], n)),
        }
    )
    return frame, ((frame.income > 3000) ^ (frame.city == "south")).astype(int)


def test_xgboost_with_a_categorical_column_gives_numbers_their_median_split() -> None:
    import numpy as np
    from xgboost import XGBClassifier

    from servepath.model.sklearn_schema import examples_from_splits, inspect_sklearn

    frame, y = _categorical_frame()
    model = XGBClassifier(enable_categorical=True, n_estimators=10, tree_method="hist")
    model.fit(frame, y)
    schema, plan = inspect_sklearn(model)
    schema = examples_from_splits(model, schema, plan)
    income = next(f for f in schema.features if f.name == "income")
    splits = model.get_booster().trees_to_dataframe()
    learned = splits[splits.Feature == "income"].Split.astype(float)
    assert income.example == pytest.approx(float(np.median(learned)), rel=1e-2)
    assert 2500 < float(income.example or 0) < 3500
    city = next(f for f in schema.features if f.name == "city")
    assert set(city.categories or ()) == {"north", "south", "west"} and not city.closed
