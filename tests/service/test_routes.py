"""The HTTP contract of DESIGN.md, exercised in-process through the ASGI app."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel, load_model
from servepath.service.app import ServepathApp
from servepath.service.routes import closest_route
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio

SERVER_TIMING = re.compile(r'^(\w+;dur=[\d.]+(;desc="[^"]*")?)(, \w+;dur=[\d.]+(;desc="[^"]*")?)*$')


async def test_health_answers_200_with_model_name_and_version(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model"]["name"] == example_model.name
    assert body["model"]["version"] == example_model.version


async def test_health_is_503_until_the_model_has_loaded(example_model_path: Path) -> None:
    release = threading.Event()

    def slow_loader() -> LoadedModel:
        release.wait(10)
        return load_model(example_model_path)

    app = ServepathApp(Settings(), model_loader=slow_loader, cache=NoCache(), store=NoLog())
    app._loader = slow_loader
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        loading = await c.get("/")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert (await c.post("/decisions", json={})).status_code == 503
        assert (await c.get("/v2/health/ready")).status_code == 503
        assert (await c.get("/v2/health/live")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 503
        release.set()
        for _ in range(200):
            if (await c.get("/")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await c.get("/")).status_code == 200
    await app.shutdown()


async def test_a_loaded_model_is_hidden_from_full_garbage_collections(
    example_model_path: Path,
) -> None:
    gc.unfreeze()
    app = ServepathApp(
        Settings(),
        model_loader=lambda: load_model(example_model_path),
        cache=NoCache(),
        store=NoLog(),
    )
    try:
        await app.startup()
        for _ in range(200):
            if app.plane.state == "ready":
                break
            await asyncio.sleep(0.02)
        assert app.plane.model is not None
        # What the model is made of no longer counts toward (or is walked by) a collection.
        assert gc.get_freeze_count() > 10_000
        schema = app.plane.model.schema
        assert not any(o is schema for o in gc.get_objects())
    finally:
        await app.shutdown()
        gc.unfreeze()


async def test_model_that_fails_to_load_keeps_health_503_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a pickle")
    app = ServepathApp(Settings(model_path=broken), cache=NoCache(), store=NoLog())
    await app.startup()
    for _ in range(100):
        if app.plane.state != "loading":
            break
        await asyncio.sleep(0.02)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/")
    assert r.status_code == 503
    assert r.json()["status"] == "failed"
    assert "not a joblib file" in r.json()["error"]
    await app.shutdown()


async def test_single_instance_gets_one_decision(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    r = await client.post("/decisions", json=example_model.schema.example())
    assert r.status_code == 200
    body = r.json()
    assert body["decision"] in ("approve", "decline")
    assert 0.5 <= body["probability"] <= 1.0
    assert body["model_version"] == example_model.version
    assert r.headers["x-cache"] == "MISS"


async def test_vertex_form_answers_one_prediction_per_instance_in_order(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    rich = {**example_model.schema.example(), "income": 250000.0, "debt_to_income": 0.05}
    poor = {
        **example_model.schema.example(),
        "income": 9000.0,
        "past_defaults": 3,
        "debt_to_income": 0.95,
        "loan_amount": 90000.0,
    }
    r = await client.post("/decisions", json={"instances": [rich, poor, rich], "parameters": {}})
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert [p["decision"] for p in predictions] == ["approve", "decline", "approve"]
    direct = example_model.predict_rows(
        [example_model.schema.validate(x)[0] for x in (rich, poor, rich)]  # type: ignore[misc]
    )
    assert predictions == direct


async def test_every_response_has_request_id_and_server_timing(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    for method, path, kwargs in (
        ("GET", "/", {}),
        ("POST", "/decisions", {"json": example_model.schema.example()}),
        ("POST", "/decisions", {"content": b"{"}),
        ("GET", "/no/such/route", {}),
        ("GET", "/metrics", {}),
    ):
        r = await client.request(method, path, **kwargs)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), path
        assert SERVER_TIMING.match(r.headers["server-timing"]), r.headers["server-timing"]
        assert "total;dur=" in r.headers["server-timing"]


async def test_caller_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers={"X-Request-ID": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    junk = await client.get("/", headers={"X-Request-ID": "bad id with spaces"})
    assert junk.headers["x-request-id"] != "bad id with spaces"


async def test_made_request_ids_are_uuid7_in_time_order(client: httpx.AsyncClient) -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = []
    for _ in range(3):
        ids.append((await client.get("/")).headers["x-request-id"])
        await asyncio.sleep(0.002)
    after_ms = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(before_ms <= int(i[:12], 16) <= after_ms for i in ids)


async def test_prediction_server_timing_names_cache_and_model(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    r = await client.post("/decisions", json=example_model.schema.example())
    timing = r.headers["server-timing"]
    assert timing.startswith("cache;dur=")
    assert 'desc="miss"' in timing
    assert "model;dur=" in timing


async def test_unknown_route_is_404_listing_the_routes_that_exist(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/predict")
    assert r.status_code == 404
    body = r.json()
    assert "/predict" in body["error"]
    assert "POST /decisions" in body["routes"]
    assert "GET /" in body["routes"]


async def test_unknown_route_leads_with_the_closest_route_of_its_method(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.post("/predict", json={})).json()
    assert body["error"] == "no route POST /predict: did you mean POST /decisions?"
    assert body["did_you_mean"] == "POST /decisions"
    near = (await client.get("/metric")).json()
    assert near["did_you_mean"] == "GET /metrics"
    v2 = (await client.post("/v2/model/m/infer", json={})).json()
    assert v2["did_you_mean"] == "POST /v2/models/{name}/infer"


async def test_unknown_route_far_from_every_route_suggests_none(client: httpx.AsyncClient) -> None:
    body = (await client.get("/zzzzzzzz")).json()
    assert "did_you_mean" not in body
    assert body["error"] == "no route GET /zzzzzzzz"


async def test_unknown_route_lists_no_static_assets(client: httpx.AsyncClient) -> None:
    routes = (await client.get("/predict")).json()["routes"]
    assert not [r for r in routes if r.endswith((".css", ".js"))], routes
    assert {"GET /openapi.json", "GET /docs", "GET /metrics"} <= set(routes)


def test_closest_route_prefers_the_callers_method() -> None:
    routes = ["GET /decision-log", "POST /decisions"]
    assert closest_route("POST", "/decision", routes) == "POST /decisions"
    assert closest_route("GET", "/decision", routes) == "GET /decision-log"
    assert closest_route("HEAD", "/decision", routes) == "GET /decision-log"
    assert closest_route("GET", "/decisions/", ["POST /decisions"]) == "POST /decisions"


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    r = await client.get("/decisions")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_head_on_health_has_no_body(client: httpx.AsyncClient) -> None:
    r = await client.head("/")
    assert r.status_code == 200
    assert r.content == b""


async def test_openapi_carries_real_schema_and_example(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    spec = (await client.get("/openapi.json")).json()
    content = spec["paths"]["/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert content["example"] == example_model.schema.example()
    instance = spec["components"]["schemas"]["Instance"]
    assert set(instance["required"]) == set(example_model.schema.names)
    assert instance["properties"]["home_ownership"]["enum"] == ["rent", "mortgage", "own", "other"]
    assert instance["properties"]["income"]["type"] == "number"
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


async def test_metrics_count_requests_predictions_and_model_latency(
    client: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    for _ in range(3):
        await client.post("/decisions", json=example_model.schema.example())
    await client.get("/nope")
    text = (await client.get("/metrics")).text
    assert (
        'servepath_http_requests_total{method="POST",route="/decisions",status="200"} 3.0' in text
    )
    assert 'route="unknown",status="404"' in text
    assert "servepath_http_request_duration_seconds_bucket" in text
    assert re.search(
        r'servepath_predictions_total\{cache="miss",decision="approve",model="\w+",'
        r'version="[0-9a-f]{12}"\} 3\.0',
        text,
    )
    assert "servepath_model_call_duration_seconds_count" in text


async def test_path_echo_reports_peer_socket_host_and_forwarded_chain(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(
        "/_path",
        headers={
            "Host": "api.example.test:8443",
            "X-Forwarded-For": "198.51.100.9, 10.0.0.2",
            "X-Forwarded-Proto": "https",
            "Via": "1.1 nginx",
        },
    )
    body = r.json()
    assert body["peer"] == {"address": "203.0.113.7", "port": 51515, "kind": "reserved"}
    assert body["host_header"] == "api.example.test:8443"
    assert body["chain"] == ["198.51.100.9", "10.0.0.2"]
    # No proxy is trusted by default: the chain is claimed, the client is the TCP peer.
    assert body["original_client"] == "203.0.113.7"
    assert body["client"]["address"] == "203.0.113.7" and body["client"]["source"] == "peer"
    assert [hop["entry"] for hop in body["claimed"]] == ["198.51.100.9", "10.0.0.2"]
    assert body["forwarded_trust"]["trusted"] is False
    assert body["via"] == ["1.1 nginx"]
    assert body["proxies_seen"] == 2
    assert body["bound"] == {"host": "0.0.0.0", "port": 8080}
    assert isinstance(body["container"]["in_container"], bool)
    text = r.text.lower()
    for secret_word in ("password", "secret", "environ", "path="):
        assert secret_word not in text


BOTH = {"Forwarded": 'for=192.0.2.60;proto=http, for="[2001:db8::1]"', "X-Forwarded-For": "1.1.1.1"}


async def test_x_forwarded_for_is_the_chain_and_forwarded_a_claim_by_default(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/_path", headers=BOTH)).json()
    assert body["chain"] == ["1.1.1.1"]
    assert "192.0.2.60" in [hop["entry"] for hop in body["claimed"]]


async def test_forwarded_takes_precedence_when_trusted(example_model: LoadedModel) -> None:
    settings = Settings(trust_forwarded=True)
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51515))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        body = (await c.get("/_path", headers=BOTH)).json()
    assert body["chain"] == ["192.0.2.60", "[2001:db8::1]"]


async def test_path_echo_can_be_switched_off(example_model: LoadedModel) -> None:
    app = ServepathApp(
        Settings(path_echo_route=None), model=example_model, cache=NoCache(), store=NoLog()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/_path")).status_code == 404


async def test_vertex_routes_from_aip_variables_work(example_model: LoadedModel) -> None:
    settings = Settings.from_env(
        {
            "AIP_HTTP_PORT": "7080",
            "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
            "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
            "AIP_MODE": "PREDICTION",
        }
    )
    assert settings.port == 7080
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/v1/endpoints/1/deployedModels/2")).status_code == 200
        r = await c.post(
            "/v1/endpoints/1/deployedModels/2:predict",
            json={"instances": [example_model.schema.example()]},
        )
        assert r.status_code == 200
        assert len(r.json()["predictions"]) == 1
        spec = (await c.get("/openapi.json")).json()
        assert "/v1/endpoints/1/deployedModels/2:predict" in spec["paths"]
