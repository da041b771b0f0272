"""The Redis cache under load: lookups of one loop iteration share a round trip, a busy event
loop does not make a healthy Redis look dead, a paused Redis costs each request at most its
timeout and never an error, and the failures are logged a few times, not thousands."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from servepath.cache import cache_key, open_cache
from servepath.cache.redis import MAX_LAG_ALLOWANCE, RedisCache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog
from tests.cache.conftest import OwnRedis

pytestmark = pytest.mark.anyio

TIMEOUT = 0.05


def k(i: int) -> str:
    return cache_key("sptest-pressure", "decision", "v1", {"i": i})


async def test_concurrent_lookups_share_round_trips(own_redis: OwnRedis) -> None:
    cache = RedisCache(own_redis.url, timeout=1.0)
    await cache.start()
    try:
        await cache.set_many([(k(i), b"v%d" % i) for i in range(0, 400, 2)], ttl=60)
        before = cache.round_trips
        results = await asyncio.gather(*(cache.get_many([k(i), k(i + 1)]) for i in range(200)))
        trips = cache.round_trips - before
    finally:
        await cache.close()
    assert results[10] == [b"v10", None] and results[11] == [None, b"v12"]
    assert all(r == [b"v%d" % i if i % 2 == 0 else None, None if i % 2 == 0 else b"v%d" % (i + 1)]
               for i, r in enumerate(results))  # fmt: skip
    assert trips <= 5, f"{trips} round trips for 200 concurrent lookups"


async def test_stores_made_together_go_in_one_pipeline(own_redis: OwnRedis) -> None:
    cache = RedisCache(own_redis.url, timeout=1.0)
    await cache.start()
    errors: list[tuple[int, str]] = []
    try:
        for i in range(100):
            cache.store_later(
                [(k(1000 + i), b"s%d" % i)], 60, lambda n, why: errors.append((n, why))
            )
        await asyncio.sleep(0.2)
        got = await cache.get_many([k(1000 + i) for i in range(100)])
    finally:
        await cache.close()
    assert got == [b"s%d" % i for i in range(100)]
    assert not errors


async def test_a_busy_event_loop_does_not_make_a_healthy_redis_look_dead(
    own_redis: OwnRedis,
) -> None:
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    await cache.start()
    try:
        await cache.set_many([(k(1), b"one")], ttl=60)
        failures = 0
        for _ in range(20):
            trips = cache.round_trips
            lookup = asyncio.ensure_future(cache.get_many([k(1)]))
            while cache.round_trips == trips:  # the call to Redis has started
                await asyncio.sleep(0)
            # The loop is then busy for 4 timeouts (a burst of parsing elsewhere): the answer
            # arrives meanwhile and waits unread, and the timer runs first when it resumes.
            time.sleep(4 * TIMEOUT)
            try:
                assert await lookup == [b"one"]
            except Exception:
                failures += 1
        assert failures == 0
        assert cache.status().healthy
    finally:
        await cache.close()


@pytest.fixture
async def app_on_redis(
    own_redis: OwnRedis, example_model: LoadedModel
) -> AsyncIterator[tuple[ServepathApp, httpx.AsyncClient]]:
    # A generous queue bound: this is about the cache, not about shedding the bursts.
    settings = Settings(
        cache_url=own_redis.url, cache_timeout=TIMEOUT, store_url="off", max_queue_wait=10.0
    )
    app = ServepathApp(settings, model=example_model, cache=open_cache(settings), store=NoLog())
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client
    finally:
        await app.shutdown()


def counter(app: ServepathApp, result: str) -> float:
    import re

    text = app.metrics.render().decode()
    match = re.search(rf'servepath_cache_lookups_total{{result="{result}"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


async def test_a_paused_redis_under_load_costs_each_request_its_timeout_not_an_error(
    own_redis: OwnRedis,
    app_on_redis: tuple[ServepathApp, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, client = app_on_redis
    assert own_redis.process is not None

    async def one(i: int) -> tuple[int, float]:
        started = time.perf_counter()
        r = await client.post("/decisions", json={**EXAMPLE_APPLICANT, "income": 30_000.0 + i})
        return r.status_code, time.perf_counter() - started

    warm = await asyncio.gather(*(one(i % 10) for i in range(50)))
    assert {s for s, _ in warm} == {200}
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING):
            paused = []
            for burst in range(10):
                paused += await asyncio.gather(*(one(100 + burst * 50 + i) for i in range(50)))
        errors = counter(app, "error")
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert {s for s, _ in paused} == {200}
    # Each request waits at most the cache timeout (plus what a busy loop adds), never more.
    slowest = max(t for _, t in paused)
    assert slowest < TIMEOUT + MAX_LAG_ALLOWANCE + 1.0, slowest
    assert errors > 0
    lines = [r for r in caplog.records if "cache" in r.getMessage().lower()]
    assert len(lines) <= 4, [r.getMessage() for r in lines]
    # Redis back: answers come from the cache again.
    deadline = time.monotonic() + 10
    while True:
        r = await client.post("/decisions", json={**EXAMPLE_APPLICANT, "income": 30_003.0})
        if r.headers["x-cache"] == "HIT":
            break
        assert time.monotonic() < deadline, "the cache never came back"
        await asyncio.sleep(0.1)
