from __future__ import annotations

import orjson
import pytest

from servepath.errors import ConfigError
from servepath.load.payloads import (
    PayloadError,
    PayloadSource,
    example_from_openapi,
    is_unique,
    parse_instances,
    unique_feature,
)

EXAMPLE = {"income": 52000.0, "age": 38, "home_ownership": "rent", "past_defaults": 0}


def test_data_files_may_be_an_object_a_vertex_body_an_array_or_json_lines() -> None:
    one = orjson.dumps(EXAMPLE).decode()
    assert parse_instances(one, "f") == [EXAMPLE]
    assert parse_instances(f'{{"instances": [{one}, {one}]}}', "f") == [EXAMPLE, EXAMPLE]
    assert parse_instances(f"[{one}]", "f") == [EXAMPLE]
    assert parse_instances(f"{one}\n\n{one}\n", "f") == [EXAMPLE, EXAMPLE]


@pytest.mark.parametrize("text", ["", "[1, 2]", '"x"', '{"a": 1}\nnot json'])
def test_data_without_instances_is_refused_with_where(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_instances(text, "data.jsonl")


def test_the_example_comes_from_the_predict_routes_request_body() -> None:
    doc = {
        "paths": {
            "/decisions": {
                "post": {"requestBody": {"content": {"application/json": {"example": EXAMPLE}}}}
            }
        }
    }
    assert example_from_openapi(doc, "/decisions") == EXAMPLE
    with pytest.raises(PayloadError):
        example_from_openapi(doc, "/predict")


def test_a_bare_origin_takes_the_example_of_the_servers_own_predict_route() -> None:
    vertex = {"instances": [EXAMPLE, {**EXAMPLE, "age": 1}], "parameters": {}}
    doc = {
        "x-servepath": {"predict_route": "/v1:predict"},
        "paths": {
            "/v1:predict": {
                "post": {"requestBody": {"content": {"application/json": {"example": vertex}}}}
            }
        },
    }
    assert example_from_openapi(doc, "") == EXAMPLE
    assert example_from_openapi(doc, "/") == EXAMPLE
    assert example_from_openapi(doc, "/typo") == EXAMPLE  # a wrong route still gets a body


def test_an_example_that_is_no_instance_is_refused_with_the_route() -> None:
    doc = {
        "paths": {
            "/decisions": {
                "post": {"requestBody": {"content": {"application/json": {"example": [1, 2]}}}}
            }
        }
    }
    with pytest.raises(PayloadError, match="POST /decisions"):
        example_from_openapi(doc, "/decisions")


def test_unique_share_is_exact_over_any_run_length() -> None:
    for n in (10, 100, 1000):
        assert sum(is_unique(i, 0.25) for i in range(n)) == n // 4
    assert not any(is_unique(i, 0.0) for i in range(100))
    assert all(is_unique(i, 1.0) for i in range(100))


def test_the_varied_feature_is_a_float_when_one_exists() -> None:
    assert unique_feature(EXAMPLE) == "income"
    assert unique_feature({"age": 38, "past_defaults": 0, "flag": True}) == "age"
    assert unique_feature({"purpose": "car"}) is None


def test_fresh_instances_differ_only_slightly_in_one_feature() -> None:
    source = PayloadSource([EXAMPLE], unique=0.5, salt=1000)
    bodies = [source.body(i) for i in range(200)]
    fresh = [orjson.loads(b) for b, u in bodies if u]
    repeated = {b for b, u in bodies if not u}
    assert len(fresh) == 100
    assert len({f["income"] for f in fresh}) == 100
    assert all(f["income"] != EXAMPLE["income"] for f in fresh)
    assert all(abs(f["income"] - 52000.0) < 52000.0 * 1e-6 for f in fresh)
    assert all(
        {k: v for k, v in f.items() if k != "income"}
        == {k: v for k, v in EXAMPLE.items() if k != "income"}
        for f in fresh
    )
    assert repeated == {orjson.dumps(EXAMPLE)}


def test_batches_use_the_vertex_form_and_cycle_the_instances() -> None:
    a, b, c = ({"x": float(i)} for i in range(3))
    source = PayloadSource([a, b, c], batch=2)
    body, fresh = source.body(0)
    assert not fresh
    assert orjson.loads(body) == {"instances": [a, b]}
    assert orjson.loads(source.body(1)[0]) == {"instances": [c, a]}


def test_unique_needs_something_numeric_to_vary() -> None:
    with pytest.raises(ConfigError):
        PayloadSource([{"purpose": "car"}], unique=0.1)
