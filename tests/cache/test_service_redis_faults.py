"""The service on a Redis that dies mid-burst: every request still answered, never a 5xx,
the degraded cache in the health body, and cache hits again once Redis is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from servepath.cache import open_cache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog
from tests.cache.conftest import OwnRedis

pytestmark = pytest.mark.anyio


def applicant(i: int) -> dict[str, object]:
    return {**EXAMPLE_APPLICANT, "income": 30_000.0 + i}


@pytest.fixture
async def client(
    own_redis: OwnRedis, example_model: LoadedModel
) -> AsyncIterator[httpx.AsyncClient]:
    # A generous timeout: a refused connection fails at once anyway, and a loaded CI machine
    # must not turn slow answers into misses.
    # And a generous queue bound: the bursts below are about Redis, not about shedding.
    settings = Settings(
        cache_url=own_redis.url, cache_timeout=1.0, store_url="off", max_queue_wait=10.0
    )
    app = ServepathApp(settings, model=example_model, cache=open_cache(settings), store=NoLog())
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://servepath") as c:
            yield c
    finally:
        await app.shutdown()


async def post_until_hit(client: httpx.AsyncClient, instance: dict[str, object]) -> None:
    # The service stores computed answers in the background: the hit may take a moment.
    deadline = time.monotonic() + 10
    while True:
        r = await client.post("/decisions", json=instance)
        assert r.status_code == 200
        if r.headers["x-cache"] == "HIT":
            return
        assert time.monotonic() < deadline, "never served from the cache"
        await asyncio.sleep(0.05)


async def test_redis_killed_mid_burst_costs_no_5xx_and_is_used_again_after_restart(
    client: httpx.AsyncClient, own_redis: OwnRedis
) -> None:
    await post_until_hit(client, applicant(0))

    async def one(i: int) -> httpx.Response:
        return await client.post("/decisions", json=applicant(i % 20))

    first = await asyncio.gather(*(one(i) for i in range(40)))
    own_redis.kill()
    during = await asyncio.gather(*(one(i) for i in range(40, 200)))
    statuses = {r.status_code for r in first + during}
    assert statuses == {200}
    assert all(r.headers["x-cache"] == "MISS" for r in during[-40:])

    health = await client.get("/")
    assert health.status_code == 200
    assert health.json()["cache"]["healthy"] is False

    own_redis.start()
    await post_until_hit(client, applicant(999))
    health = await client.get("/")
    assert health.json()["cache"] == {
        "backend": "redis",
        "healthy": True,
        "detail": f"127.0.0.1:{own_redis.port} db 0",
        "writable": True,
    }
