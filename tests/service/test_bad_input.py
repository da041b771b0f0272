"""Bad input gets a clear 4xx naming the field; nothing gets a 5xx but real server faults."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio


def _locs(r: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in r.json()["detail"]]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/decisions", content=b'{"income": 5', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]


async def test_empty_body_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/decisions", content=b"")
    assert r.status_code == 400
    assert "empty" in r.json()["error"]


async def test_missing_and_unknown_fields_are_422_each_named(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    instance = example_model.schema.example()
    del instance["age"]
    instance["favourite_colour"] = "blue"
    r = await client.post("/decisions", json=instance)
    assert r.status_code == 422
    assert ["age"] in _locs(r)
    assert ["favourite_colour"] in _locs(r)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("income", "52000", "type"),
        ("income", None, "type"),
        ("income", True, "type"),
        ("income", [1], "type"),
        ("home_ownership", 3, "type"),
        ("purpose", "yacht", "enum"),
    ],
)
async def test_wrong_types_and_unknown_categories_are_422(
    client: httpx.AsyncClient, example_model: LoadedModel, field: str, value: Any, kind: str
) -> None:
    r = await client.post("/decisions", json={**example_model.schema.example(), field: value})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail == [{"loc": [field], "msg": detail[0]["msg"], "type": kind}]
    if kind == "enum":
        assert "one of:" in detail[0]["msg"] and "car" in detail[0]["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_nan_and_infinity_are_422_naming_the_field(
    client: httpx.AsyncClient, example_model: LoadedModel, literal: str
) -> None:
    body = json.dumps(example_model.schema.example()).replace(
        '"loan_amount": 12000.0', f'"loan_amount": {literal}'
    )
    assert literal in body
    r = await client.post("/decisions", content=body.encode())
    assert r.status_code == 422
    assert _locs(r) == [["loan_amount"]]


async def test_batch_errors_name_the_instance_index(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    good = example_model.schema.example()
    r = await client.post(
        "/decisions",
        json={"instances": [good, {**good, "age": "old"}, good, {**good, "purpose": "?"}]},
    )
    assert r.status_code == 422
    assert _locs(r) == [["instances", 1, "age"], ["instances", 3, "purpose"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"instances": []}, ["instances"]),
        ({"instances": {"a": 1}}, ["instances"]),
        ({"instances": [1]}, ["instances", 0]),
    ],
)
async def test_malformed_vertex_bodies_are_422(
    client: httpx.AsyncClient, body: Any, loc: list[Any]
) -> None:
    r = await client.post("/decisions", json=body)
    assert r.status_code == 422
    assert _locs(r)[0] == loc


async def test_json_that_is_not_an_object_is_422(client: httpx.AsyncClient) -> None:
    for body in (b"[1, 2]", b'"text"', b"3", b"null"):
        r = await client.post("/decisions", content=body)
        assert r.status_code == 422, body


async def test_body_over_the_limit_is_413(example_model: LoadedModel) -> None:
    app = ServepathApp(
        Settings(max_body_bytes=2048), model=example_model, cache=NoCache(), store=NoLog()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        big = {"instances": [example_model.schema.example()] * 20}
        r = await c.post("/decisions", json=big)
        assert r.status_code == 413
        assert "2048" in r.json()["error"]

        async def chunks():  # no content-length: the limit applies while streaming
            for _ in range(10):
                yield b" " * 1000

        r = await c.post("/decisions", content=chunks())
        assert r.status_code == 413


async def test_default_body_limit_is_vertex_1_5_mb(client: httpx.AsyncClient) -> None:
    r = await client.post("/decisions", content=b" " * 1_500_001)
    assert r.status_code == 413


async def test_too_many_instances_is_413(example_model: LoadedModel) -> None:
    app = ServepathApp(
        Settings(max_instances=3), model=example_model, cache=NoCache(), store=NoLog()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/decisions", json={"instances": [example_model.schema.example()] * 4})
        assert r.status_code == 413
        assert "4 instances" in r.json()["error"]


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, ctype: str) -> None:
    r = await client.post("/decisions", content=b"{}", headers={"content-type": ctype})
    assert r.status_code == 415


async def test_json_content_type_with_charset_is_accepted(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    r = await client.post(
        "/decisions",
        content=json.dumps(example_model.schema.example()).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_bodies_never_get_a_5xx(example_model: LoadedModel, data: st.DataObject) -> None:
    import asyncio

    example = example_model.schema.example()
    body = data.draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries({k: json_values | st.just(v) for k, v in example.items()}),
            st.fixed_dictionaries(
                {
                    "instances": st.lists(
                        st.fixed_dictionaries(
                            {k: st.just(v) | json_values for k, v in example.items()}
                        ),
                        max_size=3,
                    )
                }
            ),
        )
    )
    raw = data.draw(st.booleans())
    app = _fuzz_app(example_model)

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            statuses = [(await c.post("/decisions", json=body)).status_code]
            if raw:
                junk = data.draw(st.binary(max_size=64))
                statuses.append((await c.post("/decisions", content=junk)).status_code)
            statuses.append(
                (await c.post(f"/v2/models/{example_model.name}/infer", json=body)).status_code
            )
        return statuses

    for status in asyncio.run(go()):
        assert status < 500


_apps: dict[str, ServepathApp] = {}


def _fuzz_app(model: LoadedModel) -> ServepathApp:
    if model.version not in _apps:
        _apps[model.version] = ServepathApp(Settings(), model=model, cache=NoCache(), store=NoLog())
    return _apps[model.version]


def test_nonfinite_detection_does_not_flag_finite_numbers() -> None:
    from servepath.service.asgi import parse_json

    assert parse_json(b'{"a": 1e308}') == {"a": 1e308}
    assert math.isnan(parse_json(b'{"a": NaN}')["a"])
