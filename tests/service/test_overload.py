"""Admission control on real sockets, with a model slow enough to queue behind: past the bound
a prediction gets 503 + Retry-After at once, liveness never waits behind predictions, and no
prediction is computed for a request whose deadline passed or whose caller hung up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from servepath.config import Settings
from servepath.model.loaded import LoadedModel, load_model
from tests.helpers.slowmodel import write_slow_model
from tests.service.live import LiveServer, live_server, post

pytestmark = pytest.mark.anyio

CALL = 0.05  # seconds per model call; with max_batch=1, 20 requests a second at most
MAX_WAIT = 0.2


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = tmp_path_factory.mktemp("slow") / "slow.joblib"
    write_slow_model(path, delay=CALL)
    return load_model(path)


@pytest.fixture(scope="module")
def server(slow_model: LoadedModel) -> Iterator[LiveServer]:
    settings = Settings(store_url="off", cache_url="off", max_batch=1, max_queue_wait=MAX_WAIT)
    with live_server(settings, slow_model) as live:
        yield live


async def exchange(
    port: int, request: bytes, timeout: float = 20
) -> tuple[int, dict, bytes, float]:
    """One request on its own connection: status, headers, body, seconds."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, body, time.perf_counter() - started


def predict(i: int, extra: str = "") -> bytes:
    return post("/decisions", {"x": float(i), "y": 1.0}, extra)


def count(server: LiveServer, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_past_the_bound_a_prediction_gets_503_with_retry_after_at_once(
    server: LiveServer,
) -> None:
    results = await asyncio.gather(*(exchange(server.port, predict(i)) for i in range(60)))
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, statuses
    shed = [r for r in results if r[0] == 503]
    served = [r for r in results if r[0] == 200]
    assert shed and served
    for _, headers, body, took in shed:
        assert int(headers["retry-after"]) >= 1
        payload = orjson.loads(body)
        assert payload["reason"] == "overloaded" and payload["retry_after"] >= 1
        assert "x-request-id" in headers
        assert took < 1.0, "a shed request waited"
    # The building held about MAX_WAIT of work: what got in waited about that, not the
    # 60 x 50 ms (3 s) an unbounded queue would have made the last one wait.
    assert max(r[3] for r in served) < MAX_WAIT + 10 * CALL + 1.0
    assert server.app.plane.admission.in_flight == 0


async def test_liveness_answers_at_once_while_the_model_is_saturated(server: LiveServer) -> None:
    load = asyncio.gather(*(exchange(server.port, predict(i)) for i in range(40)))
    await asyncio.sleep(0.1)
    took = []
    for _ in range(10):
        status, _, _, seconds = await exchange(
            server.port, b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert status == 200
        took.append(seconds)
    health = httpx.get(server.url + "/", timeout=5)
    await load
    assert max(took) < 0.5, took
    assert health.status_code == 200  # busy is not unhealthy: readiness stays up
    assert "saturated" in health.json()["load"]


async def test_a_request_whose_deadline_passes_in_the_queue_never_reaches_the_model(
    slow_model: LoadedModel,
) -> None:
    # A generous wait bound, so that nothing is shed and the queue really forms.
    settings = Settings(store_url="off", cache_url="off", max_batch=1, max_queue_wait=30.0)
    with live_server(settings, slow_model) as live:
        assert live.app.plane.batcher is not None
        ahead = [asyncio.ensure_future(exchange(live.port, predict(i))) for i in range(10)]
        await asyncio.sleep(0.05)
        calls_before = live.app.plane.batcher.calls
        status, headers, body, _ = await exchange(
            live.port, predict(99, "X-Request-Timeout: 0.1\r\n")
        )
        results = await asyncio.gather(*ahead)
        calls = live.app.plane.batcher.calls - calls_before
    assert status == 503, body
    assert orjson.loads(body)["reason"] == "deadline"
    assert "retry-after" in headers
    assert {r[0] for r in results} == {200}
    assert calls <= len(ahead), "the expired request was computed"


async def test_a_caller_that_hangs_up_while_queued_costs_no_model_call(
    slow_model: LoadedModel,
) -> None:
    settings = Settings(store_url="off", cache_url="off", max_batch=1, max_queue_wait=30.0)
    with live_server(settings, slow_model) as live:
        assert live.app.plane.batcher is not None
        writers = []
        for i in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", live.port)
            writer.write(predict(i))
            writers.append(writer)
        await asyncio.sleep(0.2)
        for writer in writers:  # every caller gives up: all but the first few are queued
            writer.close()
        deadline = time.monotonic() + 10
        while live.app.plane.admission.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        calls = live.app.plane.batcher.calls
        dropped = count(live, 'servepath_requests_dropped_total{reason="gone"}')
    assert calls < 10, f"{calls} model calls for callers that had gone"
    assert dropped >= 20 - calls - 1


async def test_shed_requests_are_counted_and_the_state_is_in_the_metrics(
    server: LiveServer,
) -> None:
    await asyncio.gather(*(exchange(server.port, predict(i)) for i in range(40)))
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'servepath_requests_shed_total{reason="wait"}' in text
    for name in (
        "servepath_requests_in_flight",
        "servepath_admission_expected_wait_seconds",
        "servepath_admission_max_wait_seconds",
        "servepath_event_loop_lag_seconds",
        "servepath_model_queued_rows",
    ):
        assert name in text
    assert 'status="500"' not in text


async def test_the_count_bound_holds_whatever_the_wait(slow_model: LoadedModel) -> None:
    settings = Settings(
        store_url="off", cache_url="off", max_batch=1, max_queue_wait=30.0, max_in_flight=3
    )
    with live_server(settings, slow_model) as live:
        results = await asyncio.gather(*(exchange(live.port, predict(i)) for i in range(12)))
        shed = count(live, 'servepath_requests_shed_total{reason="in_flight"}')
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) >= 3 and statuses.count(503) >= 6, statuses
    assert shed == statuses.count(503)


def test_the_model_queue_predicts_the_wait_from_the_models_own_calls(tmp_path: Path) -> None:
    # A pure check beside the socket tests: the fit the admission controller makes of these
    # very calls predicts them.
    from servepath.service.admission import CallFit

    fit = CallFit()
    for rows in (1, 1, 2, 3, 1, 4):
        fit.observe(rows, CALL)  # the slow model costs per call, not per row
    a, b = fit.coefficients()
    assert a == pytest.approx(CALL, rel=1e-6) and b == pytest.approx(0.0, abs=1e-9)


async def test_refusals_on_the_head_reach_the_live_pages_ring_and_its_error_rate(
    server: LiveServer,
) -> None:
    results = await asyncio.gather(
        *(exchange(server.port, predict(i, f"x-request-id: page-{i}\r\n")) for i in range(60))
    )
    refused = {f"page-{i}" for i, r in enumerate(results) if r[0] == 503}
    assert refused, [r[0] for r in results]
    data = httpx.get(server.url + "/_ui/data", timeout=10).json()
    seen = {e["request_id"]: e["status"] for e in data["requests"]}
    assert {rid for rid, status in seen.items() if status == 503} >= refused
    assert data["stats"]["errors_5xx"] >= len(refused), data["stats"]
