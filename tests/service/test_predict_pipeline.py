"""The predict pipeline on plain values, no ASGI: cache, batcher and log in order, the caller
recorded as the request meta says, and no model call for an expired or abandoned request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from servepath.cache.memory import MemoryCache
from servepath.errors import RequestExpired
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel
from servepath.service.metrics import Metrics
from servepath.service.predict import PredictPipeline
from servepath.service.request import RequestMeta
from servepath.store.spool import Spool
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog
from tests.store.conftest import Backend

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pipeline(
    example_model: LoadedModel, tmp_path: Path
) -> AsyncIterator[tuple[PredictPipeline, BatchedLog]]:
    log = BatchedLog(SQLiteSink(tmp_path / "p.sqlite3"), spool=Spool(tmp_path / "spool"))
    await log.start()
    background: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    batcher = MicroBatcher(example_model.predict_rows)
    p = PredictPipeline(
        model=example_model,
        batcher=batcher,
        cache=MemoryCache(max_entries=1000, max_bytes=1 << 20),
        store=log,
        metrics=Metrics(),
        spawn=spawn,
        cache_prefix="t",
        cache_ttl=60,
        cache_timeout=0.05,
        durable=False,
    )
    try:
        yield p, log
    finally:
        await log.close()
        batcher.close()


def rows(model: LoadedModel, n: int) -> list[dict[str, Any]]:
    example = model.schema.example()
    return [dict(model.schema.validate({**example, "age": 20 + i})[0] or {}) for i in range(n)]


async def test_a_miss_runs_the_model_and_a_repeat_is_a_hit(
    pipeline: tuple[PredictPipeline, BatchedLog], example_model: LoadedModel
) -> None:
    p, _ = pipeline
    meta = RequestMeta("r-1", time.perf_counter())
    first = await p.run(rows(example_model, 3), "vertex", meta)
    assert first.hits == 0 and first.model_ms is not None and first.cache_desc == "miss"
    again = await p.run(rows(example_model, 3), "vertex", RequestMeta("r-2", time.perf_counter()))
    assert again.hits == 3 and again.model_ms is None and again.cache_desc == "hit"
    assert again.outputs == first.outputs
    assert first.to_json()["hits"] == 0


async def test_the_log_records_the_caller_as_the_meta_names_it(
    pipeline: tuple[PredictPipeline, BatchedLog], example_model: LoadedModel, tmp_path: Path
) -> None:
    p, log = pipeline
    meta = RequestMeta(
        "r-caller", time.perf_counter(), client="198.51.100.7:4242", forwarded="203.0.113.1"
    )
    await p.run(rows(example_model, 2), "decisions", meta)
    await log.close()
    stored = Backend("sqlite", str(tmp_path / "p.sqlite3"), tmp_path / "spool").rows()
    assert {(r.request_id, r.index) for r in stored} == {("r-caller", 0), ("r-caller", 1)}
    assert {r.client_addr for r in stored} == {"198.51.100.7:4242"}
    assert {r.forwarded for r in stored} == {"203.0.113.1"}


async def test_a_request_past_its_deadline_never_reaches_the_model(
    pipeline: tuple[PredictPipeline, BatchedLog], example_model: LoadedModel
) -> None:
    p, _ = pipeline
    calls = p.batcher.calls
    meta = RequestMeta("late", time.perf_counter(), deadline=time.perf_counter() - 0.001)
    with pytest.raises(RequestExpired) as caught:
        await p.run(rows(example_model, 1), "decisions", meta)
    assert caught.value.reason == "deadline"
    assert p.batcher.calls == calls


async def test_a_request_whose_caller_left_never_reaches_the_model(
    pipeline: tuple[PredictPipeline, BatchedLog], example_model: LoadedModel
) -> None:
    p, _ = pipeline
    calls = p.batcher.calls
    meta = RequestMeta("gone", time.perf_counter(), gone=lambda: True)
    with pytest.raises(RequestExpired) as caught:
        await p.run(rows(example_model, 1), "decisions", meta)
    assert caught.value.reason == "gone"
    assert p.batcher.calls == calls
    assert meta.to_json()["gone"] is True
