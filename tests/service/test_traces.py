"""OpenTelemetry traces (--otlp-endpoint): a caller's sampled traceparent gets the request's
spans, under that trace and parent, at a real OTLP/HTTP receiver within 5 s; an unsampled one
gets none; an invalid one starts a new trace; a receiver that is down costs the callers
nothing and its spans are counted as dropped; the trace id is in the prediction log and on
the live page. Without tracing the request path is untouched."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp, create_app
from servepath.service.tracecontext import parse_traceparent
from servepath.service.ui_assets import subroutes
from servepath.store.base import NoLog
from servepath.store.reader import SQLiteReader
from tests.service.live import LiveServer, live_server
from tests.service.otlp_receiver import OTLPReceiver, otlp_receiver

pytestmark = pytest.mark.anyio

ROW = dict(EXAMPLE_APPLICANT)
SERVER_KIND, INTERNAL_KIND, ERROR = 2, 1, 2


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced(
    receiver: OTLPReceiver, example_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real server, tracing to the receiver; it samples no trace of its own, so that
    what arrives is what callers asked for."""
    settings = Settings(
        otlp_endpoint=receiver.url,
        trace_sample=0.0,
        data_dir=tmp_path_factory.mktemp("traced"),
        store_url="sqlite",
    )
    with live_server(settings, example_model) as live:
        yield live


def traceparent(trace: str, parent: str, flags: str = "01") -> dict[str, str]:
    return {"traceparent": f"00-{trace}-{parent}-{flags}"}


def new_ids() -> tuple[str, str]:
    import secrets

    return secrets.token_hex(16), secrets.token_hex(8)


def test_a_sampled_traceparent_gets_the_request_spans_under_that_trace_and_parent(
    traced: LiveServer, receiver: OTLPReceiver
) -> None:
    trace, parent = new_ids()
    headers = {**traceparent(trace, parent), "tracestate": "vendor=abc", "x-request-id": "t-1"}
    sent = time.time_ns()
    response = httpx.post(f"{traced.url}/decisions", json=ROW, headers=headers)
    assert response.status_code == 200
    answer = parse_traceparent(response.headers["traceparent"].encode())
    assert answer is not None and answer.sampled and f"{answer.trace_id:032x}" == trace

    names = {"POST /decisions", "admission", "cache", "queue", "model", "log write"}
    receiver.wait_for(lambda _: {s.name for s in receiver.of_trace(trace)} >= names, 5.0)
    spans = {s.name: s for s in receiver.of_trace(trace)}
    server = spans["POST /decisions"]
    # The request's span is the caller's span's child and the one the answer names.
    assert server.parent_span_id == parent and server.kind == SERVER_KIND
    assert server.span_id == f"{answer.span_id:016x}"
    assert server.trace_state == "vendor=abc"
    assert server.attributes["http.route"] == "/decisions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["servepath.request_id"] == "t-1"
    assert server.resource["service.name"] == "servepath"
    assert server.resource["process.pid"] == os.getpid()  # the in-process server's
    # Every stage is the request span's child, inside it, in the order the request went.
    for name in names - {"POST /decisions"}:
        span = spans[name]
        assert span.parent_span_id == server.span_id and span.kind == INTERNAL_KIND, name
        assert server.start_ns <= span.start_ns <= span.end_ns <= server.end_ns, name
    assert spans["cache"].end_ns <= spans["queue"].start_ns
    assert spans["queue"].end_ns <= spans["model"].start_ns <= spans["log write"].start_ns
    assert sent - 2_000_000_000 < server.start_ns < time.time_ns()
    model = traced.app.plane.model
    assert model is not None
    assert spans["model"].attributes["servepath.model.version"] == model.version
    assert spans["model"].attributes["servepath.model.engine"] == model.engine
    assert server.attributes["servepath.model.engine"] == model.engine
    assert receiver.content_types[-1] == "application/x-protobuf"

    # The trace id is in the prediction log and on the live page.
    data_dir = traced.app.settings.data_dir
    deadline = time.monotonic() + 5
    while True:
        with SQLiteReader(Path(data_dir) / "predictions.sqlite3") as reader:
            logged = reader.recent(limit=50, request_id="t-1")
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [r.trace_id for r in logged] == [trace]
    page = httpx.get(traced.url + subroutes("/_ui")["data"]).json()
    shown = {r["request_id"]: r["trace_id"] for r in page["requests"]}
    assert shown["t-1"] == trace
    metrics = httpx.get(f"{traced.url}/metrics").text
    assert "servepath_trace_spans_exported_total" in metrics


def test_an_unsampled_traceparent_is_served_as_without_tracing(
    traced: LiveServer, receiver: OTLPReceiver
) -> None:
    quiet, parent = new_ids()
    response = httpx.post(
        f"{traced.url}/decisions", json=ROW, headers=traceparent(quiet, parent, "00")
    )
    # Served as if tracing were off: no span, no traceparent, no trace id in the log.
    assert response.status_code == 200 and "traceparent" not in response.headers
    # A sampled request after it: once its spans are in, the quiet one's would be too.
    loud, parent = new_ids()
    httpx.post(f"{traced.url}/decisions", json=ROW, headers=traceparent(loud, parent))
    receiver.wait_for(lambda _: any(s.name == "POST /decisions" for s in receiver.of_trace(loud)))
    assert receiver.of_trace(quiet) == []
    # Nor does a request without a traceparent, at a sampling fraction of 0.
    plain = httpx.post(f"{traced.url}/decisions", json=ROW)
    assert plain.status_code == 200 and "traceparent" not in plain.headers


async def test_an_invalid_traceparent_starts_a_new_trace(
    example_model: LoadedModel, receiver: OTLPReceiver
) -> None:
    settings = Settings(otlp_endpoint=receiver.url, trace_sample=1.0)
    app = create_app(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"  # zero trace id
            response = await client.post(
                "/decisions", json=ROW, headers={"traceparent": bad, "tracestate": "a=b"}
            )
            refused = await client.post("/decisions", json={"age": "old"})
    finally:
        await app.shutdown()
    new = parse_traceparent(response.headers["traceparent"].encode())
    assert new is not None and new.sampled and new.trace_id != 0
    trace = f"{new.trace_id:032x}"
    spans = receiver.wait_for(lambda _: len(receiver.of_trace(trace)) >= 2)
    [server] = [s for s in spans if s.trace_id == trace and s.kind == SERVER_KIND]
    assert server.parent_span_id == "" and server.trace_state == ""
    # A refused request is traced too, its status on its span.
    other = parse_traceparent(refused.headers["traceparent"].encode())
    assert other is not None
    other_trace = f"{other.trace_id:032x}"
    receiver.wait_for(lambda _: bool(receiver.of_trace(other_trace)))
    [bad_request] = receiver.of_trace(other_trace)
    assert bad_request.attributes["http.response.status_code"] == 422


async def test_a_receiver_that_is_down_costs_callers_nothing_and_drops_are_counted(
    example_model: LoadedModel,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(otlp_endpoint=f"http://127.0.0.1:{port}", trace_queue=2)
    app = create_app(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = time.perf_counter()
            statuses = [(await client.post("/decisions", json=ROW)).status_code for _ in range(20)]
            took = time.perf_counter() - started
            metrics = (await client.get("/metrics")).text
    finally:
        shutting = time.perf_counter()
        await app.shutdown()
        stopped = time.perf_counter() - shutting
    assert statuses == [200] * 20
    assert took < 2.0  # the export's retries (1 s, 2 s …) are nobody's wait
    assert stopped < 3.0
    # The queue holds 2 and the exporter took at most 2 more: the rest were dropped.
    assert app.tracer is not None and app.tracer.dropped >= 16 * 3
    line = 'servepath_trace_spans_dropped_total{reason="queue_full"}'
    assert line in metrics and float(metrics.split(line)[1].split()[0]) >= 16 * 3


async def test_without_an_endpoint_nothing_of_tracing_is_on_the_request_path(
    example_model: LoadedModel,
) -> None:
    app = create_app(Settings(), model=example_model, cache=NoCache(), store=NoLog())
    assert app.tracer is None and type(app) is ServepathApp
    assert type(app.plane.pipeline).__name__ == "PredictPipeline"
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            trace, parent = new_ids()
            response = await client.post("/decisions", json=ROW, headers=traceparent(trace, parent))
    finally:
        await app.shutdown()
    assert response.status_code == 200 and "traceparent" not in response.headers
