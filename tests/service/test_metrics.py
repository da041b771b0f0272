"""Metrics noted on the request path reach the Prometheus exposition exactly."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.service.metrics import FOLD_AT, Metrics
from servepath.store import open_log
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio


def _value(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    assert match, f"{name}{{{labels}}} not in\n{text}"
    return float(match.group(1))


def test_counts_and_observations_noted_between_scrapes_are_all_reported() -> None:
    m = Metrics()
    for _ in range(3):
        m.observe_request("/decisions", "POST", 200, 0.0007)
    m.observe_request("/decisions", "POST", 422, 0.0001)
    m.count_prediction("loan", "3", "approve", "hit")
    m.count_cache("hit", 5)
    m.count_cache("miss", 2)
    text = m.render().decode()
    requests = "servepath_http_requests_total"
    assert _value(text, requests, 'method="POST",route="/decisions",status="200"') == 3
    assert _value(text, requests, 'method="POST",route="/decisions",status="422"') == 1
    latency = "servepath_http_request_duration_seconds"
    assert _value(text, latency + "_count", 'method="POST",route="/decisions"') == 4
    assert _value(text, latency + "_bucket", 'le="0.0005",method="POST",route="/decisions"') == 1
    assert _value(text, latency + "_bucket", 'le="0.001",method="POST",route="/decisions"') == 4
    assert _value(text, "servepath_cache_lookups_total", 'result="hit"') == 5
    assert _value(text, "servepath_cache_lookups_total", 'result="miss"') == 2
    assert (
        _value(
            text,
            "servepath_predictions_total",
            'cache="hit",decision="approve",model="loan",version="3"',
        )
        == 1
    )
    # A second scrape reports the same totals (nothing counted twice), then what came since.
    assert m.render().decode() == text
    m.observe_request("/decisions", "POST", 200, 0.0007)
    again = m.render().decode()
    assert _value(again, requests, 'method="POST",route="/decisions",status="200"') == 4


def test_unscraped_observations_are_folded_in_before_they_pile_up() -> None:
    m = Metrics()
    for _ in range(FOLD_AT + 10):
        m.observe_request("/", "GET", 200, 0.0001)
    assert len(m._observed) < FOLD_AT
    text = m.render().decode()
    assert _value(text, "servepath_http_requests_total", 'method="GET",route="/",status="200"') == (
        FOLD_AT + 10
    )


async def test_the_prediction_log_reports_its_queue_and_what_became_of_its_records(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    settings = Settings(data_dir=tmp_path)
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=open_log(settings))
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            example = example_model.schema.example()
            for i in range(3):
                r = await c.post("/decisions", json={**example, "income": 50_000.0 + i})
                assert r.status_code == 200
            r = await c.post("/decisions", json={"instances": [example, example]})
            assert r.status_code == 200
            for _ in range(100):
                text = (await c.get("/metrics")).text
                if _value(text, LOG + "records_total", COMMITTED) == 5:
                    break
                await asyncio.sleep(0.02)
    finally:
        await app.shutdown()
    assert _value(text, LOG + "records_total", COMMITTED) == 5
    assert _value(text, LOG + "records_total", 'backend="sqlite",outcome="lost"') == 0
    assert _value(text, LOG + "queued", 'backend="sqlite"') == 0
    assert _value(text, LOG + "healthy", 'backend="sqlite"') == 1
    assert _value(text, LOG + "transactions_total", 'backend="sqlite"') >= 1


def test_with_the_log_off_only_its_state_is_reported(example_model: LoadedModel) -> None:
    app = ServepathApp(Settings(), model=example_model, cache=NoCache(), store=NoLog())
    text = app.metrics.render().decode()
    assert _value(text, LOG + "healthy", 'backend="off"') == 1
    assert LOG + "records" not in text


LOG = "servepath_prediction_log_"
COMMITTED = 'backend="sqlite",outcome="committed"'
