"""The response cache as callers see it: X-Cache, answers computed once, batches computed
only for the instances not seen before, failures never cached, versions never mixed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import httpx
import pytest

from servepath.cache.memory import MemoryCache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel, Output, Row
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio


def applicant(i: int) -> dict[str, object]:
    return {**EXAMPLE_APPLICANT, "income": 30_000.0 + i}


class Counting:
    """The real model, with a count of the rows it was asked to predict."""

    def __init__(self, model: LoadedModel, version: str | None = None) -> None:
        self.rows = 0
        self._predict = model.predict_rows
        self.model = dataclasses.replace(
            model, predict_rows=self._count, version=version or model.version
        )

    def _count(self, rows: Sequence[Row]) -> list[Output]:
        self.rows += len(rows)
        return self._predict(rows)


def make_app(
    model: LoadedModel, cache: MemoryCache, counting: Counting | None = None
) -> ServepathApp:
    app = ServepathApp(Settings(store_url="off"), model=model, cache=cache, store=NoLog())
    if counting is not None:
        counting.rows = 0  # the app times the model on its example once it is installed
    return app


async def post(app: ServepathApp, body: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post("/decisions", json=body)


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache(max_entries=10_000, max_bytes=1 << 24)


async def test_a_repeated_instance_is_answered_from_the_cache_without_the_model(
    example_model: LoadedModel, cache: MemoryCache
) -> None:
    counting = Counting(example_model)
    app = make_app(counting.model, cache, counting)
    first = await post(app, applicant(1))
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert (
        "cache;dur=" in first.headers["server-timing"]
        and 'desc="miss"' in (first.headers["server-timing"])
    )
    # Stored before the response went out: the very next identical request is a hit.
    assert len(cache) == 1
    # The same instance, keys in another order and the income written as an integer.
    same = dict(reversed(list(applicant(1).items())))
    same["income"] = 30_001
    second = await post(app, same)
    assert second.headers["x-cache"] == "HIT" and 'desc="hit"' in second.headers["server-timing"]
    assert second.json() == first.json()
    assert counting.rows == 1


async def test_a_batch_computes_only_the_instances_not_seen_before(
    example_model: LoadedModel, cache: MemoryCache
) -> None:
    counting = Counting(example_model)
    app = make_app(counting.model, cache, counting)
    seen = [applicant(i) for i in range(60)]
    assert (await post(app, {"instances": seen})).status_code == 200
    counting.rows = 0
    batch = [applicant(i) for i in range(100)]  # 60 known, 40 new, in one request
    r = await post(app, {"instances": batch})
    assert r.status_code == 200
    assert counting.rows == 40
    assert r.headers["x-cache"] == "MISS" and r.headers["x-cache-hits"] == "60/100"
    # The answers are in request order, and each is what the model says for that instance.
    uncached = await post(
        make_app(example_model, MemoryCache(max_entries=1, max_bytes=1 << 20)), {"instances": batch}
    )
    assert r.json()["predictions"] == uncached.json()["predictions"]


async def test_rejected_input_is_never_cached(
    example_model: LoadedModel, cache: MemoryCache
) -> None:
    app = make_app(example_model, cache)
    bad = {**applicant(1), "income": "a lot"}
    assert (await post(app, bad)).status_code == 422
    assert len(cache) == 0


async def test_a_new_model_version_never_answers_from_the_old_versions_entries(
    example_model: LoadedModel, cache: MemoryCache
) -> None:
    old = Counting(example_model, version="aaaaaaaaaaaa")
    new = Counting(example_model, version="bbbbbbbbbbbb")
    assert (await post(make_app(old.model, cache, old), applicant(7))).headers["x-cache"] == "MISS"
    r = await post(make_app(new.model, cache, new), applicant(7))
    assert r.headers["x-cache"] == "MISS" and r.json()["model_version"] == "bbbbbbbbbbbb"
    assert new.rows == 1
