"""The OpenAPI document, the predict route and V2 metadata follow each model: typed outputs,
the schema's optional and nullable fields, an example that the model itself answers."""

from __future__ import annotations

import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel, load_model
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import zoomodels  # noqa: E402

MODELS = ("dropped_column", "extra_trees", "xgboost", "logistic_3class", "forest_regressor")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    import joblib

    folder = tmp_path_factory.mktemp("openapi-zoo")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODELS:
            estimator, _ = zoomodels.fit(zoomodels.by_name(name), "test", n=500)
            path = folder / f"{name}.joblib"
            joblib.dump(estimator, path)
            out[name] = load_model(path, race_budget_s=0.05)
    return out


@pytest.fixture
async def clients(models: dict[str, LoadedModel]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    apps = {
        name: ServepathApp(Settings(), model=model, cache=NoCache(), store=NoLog())
        for name, model in models.items()
    }
    out = {}
    for name, app in apps.items():
        await app.startup()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
        out[name] = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    yield out
    for name, app in apps.items():
        await out[name].aclose()
        await app.shutdown()


def _spec(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    schemas = doc["components"]["schemas"]
    example = doc["paths"]["/decisions"]["post"]["requestBody"]["content"]["application/json"][
        "example"
    ]
    return schemas["Instance"], schemas["Prediction"], example


@pytest.mark.anyio
@pytest.mark.parametrize("name", MODELS)
async def test_the_openapi_example_is_answered_and_matches_the_output_schema(
    clients: dict[str, httpx.AsyncClient], models: dict[str, LoadedModel], name: str
) -> None:
    client = clients[name]
    doc = (await client.get("/openapi.json")).json()
    instance, prediction, example = _spec(doc)
    assert set(instance["required"]) <= set(example)
    r = await client.post("/decisions", json=example)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(prediction["required"]) == set(body)
    kinds = {"string": str, "integer": int, "boolean": bool, "number": float}
    for key, value in body.items():
        declared = prediction["properties"][key]
        if "type" in declared and declared["type"] in kinds:
            assert isinstance(value, kinds[declared["type"]]), (key, value)
        if "enum" in declared:
            assert value in declared["enum"]


@pytest.mark.anyio
async def test_a_dropped_column_may_be_sent_or_left_out(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    client = clients["dropped_column"]
    doc = (await client.get("/openapi.json")).json()
    instance, _, example = _spec(doc)
    assert "home" not in instance["required"] and "home" not in example
    without = (await client.post("/decisions", json=example)).json()
    with_it = (await client.post("/decisions", json={**example, "home": "castle"})).json()
    assert without == with_it


@pytest.mark.anyio
async def test_null_where_the_model_imputes_and_422_where_it_cannot(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    client = clients["logistic_3class"]
    example = _spec((await client.get("/openapi.json")).json())[2]
    r = await client.post("/decisions", json={**example, "income": None, "purpose": None})
    assert r.status_code == 200
    client = clients["xgboost"]
    example = _spec((await client.get("/openapi.json")).json())[2]
    r = await client.post("/decisions", json={**example, "home": "castle"})
    assert r.status_code == 200  # one-hot with handle_unknown="ignore"


@pytest.mark.anyio
async def test_integer_and_boolean_decisions_keep_their_json_type(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    for name, kind in (("xgboost", int), ("extra_trees", bool)):
        example = _spec((await clients[name].get("/openapi.json")).json())[2]
        r = await clients[name].post("/decisions", json={"instances": [example, example]})
        assert all(type(p["decision"]) is kind for p in r.json()["predictions"])


@pytest.mark.anyio
async def test_v2_metadata_over_http_matches_the_model(
    clients: dict[str, httpx.AsyncClient], models: dict[str, LoadedModel]
) -> None:
    model = models["forest_regressor"]
    meta = (await clients["forest_regressor"].get(f"/v2/models/{model.name}")).json()
    assert meta["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    example = model.schema.example()
    tensors = [
        {
            "name": f.name,
            "datatype": "BYTES" if f.kind == "category" else "FP64",
            "shape": [1],
            "data": [example[f.name]],
        }
        for f in model.schema.used
    ]
    r = await clients["forest_regressor"].post(
        f"/v2/models/{model.name}/infer", json={"inputs": tensors}
    )
    assert r.status_code == 200
    out = r.json()["outputs"][0]
    assert out["datatype"] == "FP64"
    assert out["data"] == [model.predict_rows([example])[0]["prediction"]]
