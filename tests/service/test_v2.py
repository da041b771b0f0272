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
async def test_v2_errors_name_the_input_and_its_element_not_the_row(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    example = example_model.schema.example()
    tensors = _tensors(example_model, [example, example, example])
    j, tensor = max((j, t) for j, t in enumerate(tensors) if t["datatype"] == "FP64")
    tensor["data"][2] = "x"
    r = await client.post(f"/v2/models/{example_model.name}/infer", json={"inputs": tensors})
    assert r.status_code == 400
    body = r.json()
    name = tensor["name"]
    assert f"input '{name}', element 2: expected a number" in body["error"]
    assert f"inputs.2.{name}" not in body["error"]
    assert body["detail"][0]["loc"] == ["inputs", j, "data", 2]
    assert body["detail"][0]["where"] == f"input '{name}', element 2"


@pytest.mark.anyio
async def test_v2_missing_input_is_one_error_not_one_per_row(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    example = example_model.schema.example()
    tensors = _tensors(example_model, [example, example, example])
    missing = tensors.pop()["name"]
    r = await client.post(f"/v2/models/{example_model.name}/infer", json={"inputs": tensors})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert [(d["where"], d["type"]) for d in detail] == [(f"input '{missing}'", "missing")]


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


# --- datatypes from the model, and the binary tensor extension ---------------------------

import sys  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))


@pytest.fixture(scope="module")
def zoo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    import warnings

    import joblib
    import zoomodels

    from servepath.model.loaded import load_model

    folder = tmp_path_factory.mktemp("v2zoo")
    models = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("xgboost", "extra_trees", "dropped_column", "ridge"):
            estimator, _ = zoomodels.fit(zoomodels.by_name(name), "test", n=500)
            path = folder / f"{name}.joblib"
            joblib.dump(estimator, path)
            models[name] = load_model(path, race_budget_s=0.05, probabilities=name == "xgboost")
    return models


def test_v2_metadata_types_follow_the_model(zoo_models: dict[str, LoadedModel]) -> None:
    from servepath.service import v2_codec as v2

    def types(name: str) -> dict[str, tuple[str, list[int]]]:
        meta = v2.metadata(zoo_models[name])
        return {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}

    assert types("xgboost") == {
        "decision": ("INT64", [-1]),
        "probability": ("FP64", [-1]),
        "probabilities": ("FP64", [-1, 3]),
    }
    assert types("extra_trees")["decision"] == ("BOOL", [-1])
    assert types("ridge") == {"prediction": ("FP64", [-1])}
    inputs = {i["name"]: i["datatype"] for i in v2.metadata(zoo_models["dropped_column"])["inputs"]}
    assert "home" not in inputs and inputs["purpose"] == "BYTES" and inputs["age"] == "FP64"


def test_v2_response_tensors_carry_the_labels_own_type(zoo_models: dict[str, LoadedModel]) -> None:
    from servepath.service import v2_codec as v2

    model = zoo_models["xgboost"]
    rows = [model.schema.example(), model.schema.example()]
    result = v2.response(model, model.predict_rows(rows), "r1", None)
    tensors = {t["name"]: t for t in result["outputs"]}
    assert tensors["decision"]["datatype"] == "INT64"
    assert all(isinstance(d, int) for d in tensors["decision"]["data"])
    assert (
        tensors["probabilities"]["shape"] == [2, 3] and len(tensors["probabilities"]["data"]) == 6
    )
    flags = v2.response(
        zoo_models["extra_trees"], [{"decision": True, "probability": 0.9}], None, None
    )
    assert flags["outputs"][0] == {
        "name": "decision",
        "datatype": "BOOL",
        "shape": [1],
        "data": [True],
    }


def _triton_inputs(model: LoadedModel, rows: list[dict], binary: bool) -> list:
    import tritonclient.http as triton

    inputs = []
    for f in model.schema.used:
        values = [r[f.name] for r in rows]
        if f.kind == "category":
            arr, datatype = np.array(values, dtype=object), "BYTES"
        else:
            arr, datatype = np.array(values, dtype=np.float64), "FP64"
        inp = triton.InferInput(f.name, [len(rows)], datatype)
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    return inputs


def test_binary_tensors_from_tritonclient_decode_to_the_json_instances(
    zoo_models: dict[str, LoadedModel],
) -> None:
    import tritonclient.http as triton

    from servepath.service import v2_codec as v2

    model = zoo_models["dropped_column"]
    rows = [model.schema.example(), {**model.schema.example(), "income": 91000.0}]
    body, length = triton.InferenceServerClient.generate_request_body(
        _triton_inputs(model, rows, binary=True)
    )
    assert length is not None  # the binary form, as tritonclient sends by default
    parsed = v2.parse_request(body, str(length))
    assert v2.binary_outputs(parsed) is True  # no outputs named: all come back binary
    assert model.schema.validate_many(v2.instances_from_request(parsed, model)) == rows
    plain, none = triton.InferenceServerClient.generate_request_body(
        _triton_inputs(model, rows, binary=False)
    )
    assert none is None
    assert v2.instances_from_request(v2.parse_request(plain, None), model) == (
        v2.instances_from_request(parsed, model)
    )


def test_binary_outputs_are_read_back_by_tritonclient(zoo_models: dict[str, LoadedModel]) -> None:
    import tritonclient.http as triton

    from servepath.service import v2_codec as v2

    model = zoo_models["xgboost"]
    rows = [model.schema.example()] * 3
    outputs = model.predict_rows(rows)
    result = v2.response(model, outputs, "r2", None)
    body, length = v2.encode_response(result, True)
    assert length is not None and length < len(body)
    parsed = triton.InferenceServerClient.parse_response_body(body, header_length=length)
    assert parsed.as_numpy("decision").tolist() == [o["decision"] for o in outputs]
    assert parsed.as_numpy("probability").tolist() == [o["probability"] for o in outputs]
    assert parsed.as_numpy("probabilities").shape == (3, 3)
    labels = v2.response(
        zoo_models["dropped_column"], [{"decision": "approve", "probability": 0.5}], None, None
    )
    body, length = v2.encode_response(labels, {"decision"})
    parsed = triton.InferenceServerClient.parse_response_body(body, header_length=length)
    assert parsed.as_numpy("decision").tolist() == [b"approve"]
    assert parsed.as_numpy("probability").tolist() == [0.5]  # left in JSON
    assert v2.encode_response(labels, set())[1] is None


@pytest.mark.parametrize(
    ("header", "tail", "needle"),
    [
        ("999", b"", "does not fit"),
        ("abc", b"", "Inference-Header-Content-Length"),
        (None, b"\x00" * 4, "past the end"),
        (None, b"\x00" * 12, "bytes after the last binary tensor"),
    ],
)
def test_malformed_binary_requests_are_named(header: str | None, tail: bytes, needle: str) -> None:
    import orjson

    from servepath.errors import InvalidInput
    from servepath.service import v2_codec as v2

    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [1],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    raw = head + tail
    with pytest.raises(InvalidInput) as info:
        v2.parse_request(raw, header if header is not None else str(len(head)))
    assert needle in str(info.value.errors[0].msg)


def test_truncated_bytes_elements_are_named() -> None:
    import struct

    import orjson

    from servepath.errors import InvalidInput
    from servepath.service import v2_codec as v2

    chunk = struct.pack("<I", 10) + b"abc"
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "c",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(chunk)},
                }
            ]
        }
    )
    with pytest.raises(InvalidInput, match="invalid input") as info:
        v2.parse_request(head + chunk, str(len(head)))
    assert "truncated BYTES" in info.value.errors[0].msg


def test_tritonclient_defaults_binary_tensors_both_ways_against_a_real_server(
    tmp_path: Path, example_model_path: Path
) -> None:
    import tritonclient.http as triton

    with serve(tmp_path, model=example_model_path, args=["--store", "off"]) as server:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        name = httpx.get(server.url + "/").json()["model"]["name"]
        meta = client.get_model_metadata(name)
        example = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"][
            "Instance"
        ]["example"]
        inputs = []
        for spec in meta["inputs"]:
            value = example[spec["name"]]
            dtype = object if spec["datatype"] == "BYTES" else np.float64
            inp = triton.InferInput(spec["name"], [3], spec["datatype"])
            inp.set_data_from_numpy(np.array([value] * 3, dtype=dtype))  # binary by default
            inputs.append(inp)
        result = client.infer(name, inputs)  # no outputs named: all come back binary
        decisions = [d.decode() for d in result.as_numpy("decision")]
        probability = result.as_numpy("probability")
        client.close()
        # the same instance through the JSON route
        plain = httpx.post(server.url + "/decisions", json=example, timeout=10).json()
    assert decisions == [plain["decision"]] * 3
    assert probability.dtype == np.float64 and probability.tolist() == [plain["probability"]] * 3
