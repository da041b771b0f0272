"""Fresh instances drawn from a model's input schema: categories, spreads, bounds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from servepath.load.sampling import InstanceSpace, instance_schema

EXAMPLE = {
    "income": 52000.0,
    "age": 38,
    "debt_to_income": 0.28,
    "past_defaults": 0,
    "home_ownership": "mortgage",
    "purpose": "car",
}
INSTANCE_SCHEMA = {
    "type": "object",
    "properties": {
        "income": {"type": "number", "example": 52000.0},
        "age": {"type": "number", "example": 38},
        "debt_to_income": {"type": "number", "example": 0.28},
        "past_defaults": {"type": "number", "example": 0},
        "home_ownership": {"type": "string", "enum": ["rent", "mortgage", "own", "other"]},
        "purpose": {"type": "string", "enum": ["car", "education", "medical"]},
    },
}
# The shape servepath's own OpenAPI document has: one instance or the Vertex form.
SPEC: dict[str, Any] = {
    "paths": {
        "/decisions": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/VertexRequest"},
                                    {"$ref": "#/components/schemas/Instance"},
                                ]
                            },
                            "example": EXAMPLE,
                        }
                    }
                }
            }
        }
    },
    "components": {
        "schemas": {
            "Instance": INSTANCE_SCHEMA,
            "VertexRequest": {
                "type": "object",
                "properties": {
                    "instances": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Instance"},
                    }
                },
            },
        }
    },
}


def _draws(space: InstanceSpace, n: int = 500) -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [space.draw(rng) for _ in range(n)]


def test_the_instance_schema_is_found_behind_refs_and_the_vertex_form() -> None:
    assert instance_schema(SPEC, "/decisions") == INSTANCE_SCHEMA
    assert instance_schema(SPEC, "/other") is None
    assert instance_schema({"paths": {}}, "/decisions") is None


def test_every_category_of_the_schema_is_drawn() -> None:
    draws = _draws(InstanceSpace.from_schema(INSTANCE_SCHEMA, EXAMPLE))
    assert {d["home_ownership"] for d in draws} == {"rent", "mortgage", "own", "other"}
    assert {d["purpose"] for d in draws} == {"car", "education", "medical"}


def test_numbers_spread_around_the_example_keep_their_type_and_sign() -> None:
    draws = _draws(InstanceSpace.from_schema(INSTANCE_SCHEMA, EXAMPLE))
    incomes = sorted(d["income"] for d in draws)
    assert incomes[0] >= 52000 / 5 and incomes[-1] <= 52000 * 5
    assert incomes[len(incomes) // 2] == pytest.approx(52000, rel=0.15)  # centred on it
    assert len(set(incomes)) > 450
    assert all(isinstance(d["age"], int) and d["age"] >= 0 for d in draws)
    assert all(0 < d["debt_to_income"] < 2 for d in draws)
    counts = [d["past_defaults"] for d in draws]
    assert all(isinstance(c, int) and c >= 0 for c in counts)
    assert counts.count(0) > len(counts) / 2 and max(counts) >= 1  # mostly none, some


def test_schema_bounds_are_kept() -> None:
    schema = {
        "properties": {
            "score": {"type": "integer", "minimum": 300, "maximum": 850},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "flag": {"type": "boolean"},
        }
    }
    draws = _draws(InstanceSpace.from_schema(schema, {}))
    assert all(300 <= d["score"] <= 850 and isinstance(d["score"], int) for d in draws)
    assert all(0 <= d["ratio"] <= 1 for d in draws)
    assert {d["flag"] for d in draws} == {True, False}


def test_without_a_schema_the_space_is_read_from_the_instances() -> None:
    given = [{"x": 1.0, "kind": "a", "tag": "same"}, {"x": 3.0, "kind": "b", "tag": "same"}]
    space = InstanceSpace.from_instances(given)
    assert space.source == "instances" and space.varies
    draws = _draws(space)
    assert {d["kind"] for d in draws} == {"a", "b"}
    assert {d["tag"] for d in draws} == {"same"}
    assert all(0.7 <= d["x"] <= 3.3 for d in draws)  # between the values seen, a little wider


def test_a_space_says_how_many_instances_it_holds() -> None:
    only_categories = {"properties": {"k": {"enum": ["a", "b"]}, "f": {"type": "boolean"}}}
    assert InstanceSpace.from_schema(only_categories, {}).distinct == 4
    assert InstanceSpace.from_schema(INSTANCE_SCHEMA, EXAMPLE).distinct == float("inf")
    fixed = InstanceSpace.from_instances([{"purpose": "car"}])
    assert not fixed.varies


def test_the_description_names_what_varies() -> None:
    text = InstanceSpace.from_schema(INSTANCE_SCHEMA, EXAMPLE).describe()
    assert text == (
        "fresh instances drawn from the server's input schema (4 numbers around the example; "
        "2 categories: home_ownership of 4, purpose of 3)"
    )
    given = InstanceSpace.from_instances([{"x": 1.0, "k": "a"}, {"x": 2.0, "k": "a"}])
    assert given.describe() == (
        "fresh instances drawn from the instances given (1 number within their bounds; 1 fixed)"
    )


def test_an_open_category_varies_over_the_values_the_model_learned() -> None:
    import warnings

    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from servepath.model.sklearn_schema import schema_from_sklearn

    frame = pd.DataFrame({"city": ["north", "south", "west", "east"] * 10})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
        model.fit(frame, [0, 1, 1, 0] * 10)
    schema = schema_from_sklearn(model)
    city = schema.json_schema()["properties"]["city"]
    assert "enum" not in city  # unknown cities stay accepted
    space = InstanceSpace.from_schema(schema.json_schema(), schema.example())
    drawn = {d["city"] for d in _draws(space, 200)}
    assert drawn == {"north", "south", "west", "east"}


def test_a_nullable_open_category_varies_too() -> None:
    prop = {"type": ["string", "null"], "examples": ["a", "b", "c"], "example": "a"}
    space = InstanceSpace.from_schema({"properties": {"c": prop}}, {"c": "a"})
    assert {d["c"] for d in _draws(space, 100)} == {"a", "b", "c"}
