"""A full Redis (``maxmemory`` reached, ``noeviction``) refuses writes and still answers reads:
the cache keeps serving hits and misses, says in health that writes are refused, counts the
stores it skips, and opens its breaker only when Redis is really away."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from servepath.cache import open_cache
from servepath.cache.redis import RedisCache
from servepath.config import Settings
from servepath.errors import CacheUnavailable
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog
from tests.cache.conftest import OwnRedis
from tests.support import free_port, need_binary

pytestmark = pytest.mark.anyio

NOEVICTION = ("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own that evicts nothing when its memory is full."""
    server = OwnRedis(need_binary("redis-server"), free_port(), tmp_path, options=NOEVICTION)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def fill(url: str) -> None:
    """Make the test's own Redis full: ballast in, then its maxmemory set below what it uses
    (filling up to the limit alone is not enough: memory freed by a closing connection lets
    the next small write in)."""
    client = redis.Redis.from_url(url)
    try:
        for i in range(16):
            client.set(f"ballast:{i}", b"\0" * 65536)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used // 2)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", b"x")
    finally:
        client.close()


def instance(i: int) -> dict[str, object]:
    return {**EXAMPLE_APPLICANT, "income": 20_000.0 + i}


async def test_a_full_redis_keeps_serving_lookups_and_refuses_only_writes(
    small_redis: OwnRedis,
) -> None:
    cache = RedisCache(small_redis.url, timeout=1.0)
    await cache.start()
    try:
        await cache.set_many([(f"hot:{i}", b"v%d" % i) for i in range(20)], ttl=600)
        fill(small_redis.url)

        with pytest.raises(CacheUnavailable) as refused:
            await cache.set_many([("new:0", b"x")], ttl=600)
        # Reads go on: hits are hits, misses are misses, nothing raises.
        for _ in range(5):
            assert await cache.get_many(["hot:3", "hot:17", "absent"]) == [b"v3", b"v17", None]

        assert "redis full" in str(refused.value)
        # Within the write back-off, a store is skipped without a round trip.
        with pytest.raises(CacheUnavailable, match=r"writes refused.*retrying in"):
            await cache.set_many([("new:1", b"x")], ttl=600)
        status = cache.status()
        assert not status.writable and not status.healthy
        assert "writes refused: redis full" in status.detail
        assert status.to_json()["writable"] is False
    finally:
        await cache.close()


async def test_a_redis_that_is_away_still_opens_the_breaker_for_lookups(
    small_redis: OwnRedis,
) -> None:
    cache = RedisCache(small_redis.url, timeout=0.5)
    await cache.start()
    try:
        await cache.set_many([("hot:0", b"v0")], ttl=600)
        assert await cache.get_many(["hot:0"]) == [b"v0"]
        small_redis.kill()
        with pytest.raises(CacheUnavailable):
            await cache.get_many(["hot:0"])
        # The breaker is open: the next lookup is refused at once, without a round trip.
        with pytest.raises(CacheUnavailable, match="retrying in"):
            await cache.get_many(["hot:0"])
        assert not cache.status().healthy and cache.status().writable
    finally:
        await cache.close()


@pytest.fixture
async def client(
    small_redis: OwnRedis, example_model: LoadedModel
) -> AsyncIterator[tuple[ServepathApp, httpx.AsyncClient]]:
    # A generous cache timeout and queue bound: this is about a full Redis, not a slow one.
    settings = Settings(
        cache_url=small_redis.url, cache_timeout=1.0, store_url="off", max_queue_wait=10.0
    )
    app = ServepathApp(settings, model=example_model, cache=open_cache(settings), store=NoLog())
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://servepath") as c:
            yield app, c
    finally:
        await app.shutdown()


def lookups(app: ServepathApp, result: str) -> float:
    text = app.metrics.render().decode()
    match = re.search(rf'servepath_cache_lookups_total{{result="{result}"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


async def test_the_service_on_a_full_redis_serves_hits_and_answers_misses(
    small_redis: OwnRedis, client: tuple[ServepathApp, httpx.AsyncClient]
) -> None:
    app, c = client
    hot = [instance(i) for i in range(10)]
    for body in hot:
        assert (await c.post("/decisions", json=body)).status_code == 200
    # The service stores computed answers in the background: the hits may take a moment.
    deadline = time.monotonic() + 10
    for body in hot:
        while (await c.post("/decisions", json=body)).headers["x-cache"] != "HIT":
            assert time.monotonic() < deadline, "the answers were never cached"
    fill(small_redis.url)

    # New instances: answered (200, computed), their stores refused by the full Redis.
    for i in range(100, 140):
        response = await c.post("/decisions", json=instance(i))
        assert response.status_code == 200 and response.headers["x-cache"] == "MISS"
    # The cached answers are still hits, every time: no breaker opened for lookups.
    for _ in range(3):
        for body in hot:
            response = await c.post("/decisions", json=body)
            assert response.status_code == 200
            assert response.headers["x-cache"] == "HIT", response.headers.get("server-timing")
    health = (await c.get("/")).json()["cache"]
    assert health["writable"] is False and "redis full" in health["detail"], health
    assert lookups(app, "error") == 0
    assert lookups(app, "store_error") > 0
