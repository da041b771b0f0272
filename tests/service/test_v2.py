"""Open Inference Protocol V2, in-process and with the standard client against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from servepath.model.loaded import LoadedModel
from tests.support import serve


def _tensors(model: LoadedModel, rows: list[dict]) -> list[dict]:
    out = []
    for f in model.schema.features:
        out.append(
            {
                "name": f.name,
                "shape": [len(rows)],
                "datatype": "BYTES" if f.kind == "category" else "FP64",
                "data": [r[f.name] for r in rows],
            }
        )
    return out


@pytest.mark.anyio
async def test_v2_server_health_and_metadata(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    assert (await client.get("/v2")).json()["name"] == "servepath"
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    meta = (await client.get(f"/v2/models/{example_model.name}")).json()
    assert meta["versions"] == [example_model.version]
    inputs = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert inputs["purpose"] == "BYTES" and inputs["income"] == "FP64"
    assert [o["name"] for o in meta["outputs"]] == ["decision", "probability"]
    ready = await client.get(f"/v2/models/{example_model.name}/ready")
    assert ready.json() == {"name": example_model.name, "ready": True}
    versioned = await client.get(
        f"/v2/models/{example_model.name}/versions/{example_model.version}"
    )
    assert versioned.status_code == 200


@pytest.mark.anyio
async def test_v2_infer_matches_the_decisions_route(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    rows = [example_model.schema.example(), {**example_model.schema.example(), "past_defaults": 4}]
    r = await client.post(
        f"/v2/models/{example_model.name}/infer",
        json={"id": "req-1", "inputs": _tensors(example_model, rows)},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == "req-1" and body["model_version"] == example_model.version
    outputs = {o["name"]: o for o in body["outputs"]}
    vertex = (await client.post("/decisions", json={"instances": rows})).json()["predictions"]
    assert outputs["decision"]["data"] == [p["decision"] for p in vertex]
    assert outputs["probability"]["data"] == [p["probability"] for p in vertex]
    assert outputs["probability"]["datatype"] == "FP64" and outputs["decision"]["shape"] == [2]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda t: t[:-1], "purpose"),
        (lambda t: [{**t[0], "data": ["x"]}, *t[1:]], "income"),
        (lambda t: [{**t[0], "shape": [5]}, *t[1:]], "shape"),
        (lambda t: [{**t[0], "datatype": "FP128"}, *t[1:]], "datatype"),
        (lambda t: "nope", "inputs"),
    ],
)
async def test_v2_bad_requests_are_400_with_error(
    client: httpx.AsyncClient, example_model: LoadedModel, mutate, needle: str
) -> None:
    tensors = _tensors(example_model, [example_model.schema.example()])
    r = await client.post(
        f"/v2/models/{example_model.name}/infer", json={"inputs": mutate(tensors)}
    )
    assert r.status_code == 400
    assert needle in r.json()["error"]


@pytest.mark.anyio
async def test_v2_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v2/models/other/infer", json={"inputs": []})
    assert r.status_code == 404
    assert "other" in r.json()["error"]


def test_standard_v2_client_works_against_a_real_server(
    tmp_path: Path, example_model_path: Path
) -> None:
    import tritonclient.http as triton

    with serve(tmp_path, model=example_model_path, args=["--store", "off"]) as server:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        assert client.is_server_live()
        assert client.is_server_ready()
        name = httpx.get(server.url + "/").json()["model"]["name"]
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        inputs = []
        example = httpx.get(server.url + "/openapi.json").json()["paths"]["/decisions"]["post"][
            "requestBody"
        ]["content"]["application/json"]["example"]
        for spec in meta["inputs"]:
            value = example[spec["name"]]
            if spec["datatype"] == "BYTES":
                arr = np.array([value, value], dtype=object)
            else:
                arr = np.array([value, value], dtype=np.float64)
            inp = triton.InferInput(spec["name"], [2], spec["datatype"])
            inp.set_data_from_numpy(arr, binary_data=False)
            inputs.append(inp)
        outputs = [
            triton.InferRequestedOutput(n, binary_data=False) for n in ("decision", "probability")
        ]
        result = client.infer(name, inputs, outputs=outputs)
        decisions = result.as_numpy("decision")
        assert [d.decode() if isinstance(d, bytes) else d for d in decisions] == [
            "approve",
            "approve",
        ]
        assert result.as_numpy("probability").shape == (2,)
        client.close()
