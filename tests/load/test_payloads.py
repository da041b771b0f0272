from __future__ import annotations

import orjson
import pytest

from servepath.errors import ConfigError, PayloadError
from servepath.load.payloads import PayloadSource, example_from_openapi, is_unique, parse_instances
from servepath.load.sampling import InstanceSpace

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


def test_fresh_instances_are_drawn_anew_and_repeated_ones_repeat_exactly() -> None:
    source = PayloadSource([EXAMPLE], unique=0.5, salt=1000)
    bodies = [source.body(i) for i in range(200)]
    fresh = [orjson.loads(b) for b, u in bodies if u]
    repeated = {b for b, u in bodies if not u}
    assert len(fresh) == 100
    assert len({orjson.dumps(f) for f in fresh}) == 100  # no two alike
    assert all(set(f) == set(EXAMPLE) for f in fresh)
    assert repeated == {orjson.dumps(EXAMPLE)}


def test_fresh_instances_are_spread_not_nudged() -> None:
    source = PayloadSource([EXAMPLE], unique=1.0, salt=7)
    fresh = [orjson.loads(source.body(i)[0]) for i in range(400)]
    incomes = sorted(f["income"] for f in fresh)
    # a realistic spread around the example, not 1e-12 steps away from it
    assert incomes[40] < 0.7 * 52000 and incomes[-40] > 1.4 * 52000
    assert all(i > 0 for i in incomes)
    assert all(isinstance(f["age"], int) and f["age"] >= 0 for f in fresh)
    assert all(isinstance(f["past_defaults"], int) and f["past_defaults"] >= 0 for f in fresh)


def test_two_processes_and_two_runs_draw_different_instances() -> None:
    def draws(salt: int, stream: int) -> set[bytes]:
        source = PayloadSource([EXAMPLE], unique=1.0, salt=salt, stream=stream)
        return {source.body(i)[0] for i in range(50)}

    assert draws(1, 0) == draws(1, 0)  # seeded: a run can be repeated
    assert not draws(1, 0) & draws(1, 1)
    assert not draws(1, 0) & draws(2, 0)


def test_categories_are_drawn_from_the_space_given() -> None:
    schema = {
        "type": "object",
        "properties": {
            "income": {"type": "number", "minimum": 1000, "maximum": 2000},
            "home_ownership": {"type": "string", "enum": ["rent", "own", "mortgage"]},
        },
    }
    space = InstanceSpace.from_schema(schema, {"income": 1500.0, "home_ownership": "rent"})
    source = PayloadSource([EXAMPLE], unique=1.0, space=space)
    fresh = [orjson.loads(source.body(i)[0]) for i in range(300)]
    assert {f["home_ownership"] for f in fresh} == {"rent", "own", "mortgage"}
    assert all(1000 <= f["income"] <= 2000 for f in fresh)


def test_batches_use_the_vertex_form_and_cycle_the_instances() -> None:
    a, b, c = ({"x": float(i)} for i in range(3))
    source = PayloadSource([a, b, c], batch=2)
    body, fresh = source.body(0)
    assert not fresh
    assert orjson.loads(body) == {"instances": [a, b]}
    assert orjson.loads(source.body(1)[0]) == {"instances": [c, a]}


def test_fresh_instances_need_something_that_varies() -> None:
    with pytest.raises(ConfigError, match="--repeat"):
        PayloadSource([{"purpose": "car"}], unique=0.1)
    # two categories seen in the data are something to vary
    PayloadSource([{"purpose": "car"}, {"purpose": "home"}], unique=0.1)
