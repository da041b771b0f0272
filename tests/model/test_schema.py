"""The input schema is derived from the model, and validation names every offending field."""

from __future__ import annotations

import math

import pytest

from servepath.errors import InvalidInput
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

    from servepath.model.schema import schema_from_sklearn

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
    # handle_unknown="ignore" accepts any string, so no closed category list is enforced
    assert schema.features[1].categories is None


def test_plain_estimator_without_feature_names_is_rejected() -> None:
    from sklearn.linear_model import LogisticRegression

    from servepath.model.schema import schema_from_sklearn

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match="feature_names_in_"):
        schema_from_sklearn(model)


SCHEMA = InputSchema(
    (
        Feature("n", "number", None, 1.0),
        Feature("c", "category", ("a", "b"), "a"),
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
