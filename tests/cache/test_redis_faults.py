"""Redis killed, restarted, hanging or flushed: the cache fails fast and recovers by itself."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from servepath.cache import cache_key
from servepath.cache.redis import BACKOFF_MAX, PROBE_INTERVAL, RedisCache
from servepath.errors import CacheUnavailable
from tests.cache.conftest import OwnRedis

pytestmark = pytest.mark.anyio

TIMEOUT = 0.1
#: Scheduling slack on a busy 2-core machine on top of the cache timeout.
MARGIN = 0.1


def k(i: int) -> str:
    return cache_key("sptest", "decision", "v1", {"i": i})


async def test_killed_redis_fails_fast_then_the_same_cache_recovers(own_redis: OwnRedis) -> None:
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    await cache.start()
    try:
        for i in range(50):
            await cache.set_many([(k(i), b"v%d" % i)], ttl=60)
            assert await cache.get_many([k(i)]) == [b"v%d" % i]
        assert cache.status().healthy

        own_redis.kill()
        failures, slowest = 0, 0.0
        for i in range(200):
            started = time.perf_counter()
            try:
                if i % 2:
                    await cache.set_many([(k(i), b"x")], ttl=60)
                else:
                    await cache.get_many([k(i)])
            except CacheUnavailable:
                failures += 1
            slowest = max(slowest, time.perf_counter() - started)
        assert failures == 200
        assert slowest < TIMEOUT + MARGIN
        status = cache.status()
        assert not status.healthy
        assert f"127.0.0.1:{own_redis.port}" in status.detail

        own_redis.start()
        deadline = time.monotonic() + BACKOFF_MAX + 5
        while True:
            try:
                await cache.set_many([(k(1000), b"back")], ttl=60)
                break
            except CacheUnavailable:
                assert time.monotonic() < deadline, "the cache never reconnected"
                await asyncio.sleep(0.05)
        # A fresh server: old entries are gone, new ones work, status is healthy again.
        assert await cache.get_many([k(1), k(1000)]) == [None, b"back"]
        assert cache.status().healthy
    finally:
        await cache.close()


async def test_restart_while_idle_costs_no_failed_call(own_redis: OwnRedis) -> None:
    # Pooled connections died with the server; the first call after the restart replaces
    # its dead connection and succeeds.
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    await cache.start()
    try:
        await cache.set_many([(k(1), b"v")], ttl=60)
        own_redis.kill()
        own_redis.start()
        assert await cache.get_many([k(1)]) == [None]
        assert cache.status().healthy
    finally:
        await cache.close()


async def test_hanging_redis_times_out_within_the_cache_timeout(silent_port: int) -> None:
    cache = RedisCache(f"redis://127.0.0.1:{silent_port}/0", timeout=TIMEOUT)
    try:
        started = time.perf_counter()
        with pytest.raises(CacheUnavailable, match="no answer"):
            await cache.get_many([k(1)])
        assert time.perf_counter() - started < TIMEOUT + MARGIN
        assert not cache.status().healthy
        assert "within 100 ms" in cache.status().detail

        # While backing off, calls fail at once instead of costing another timeout each.
        started = time.perf_counter()
        with pytest.raises(CacheUnavailable, match="retrying in"):
            await cache.set_many([(k(1), b"v")], ttl=60)
        assert time.perf_counter() - started < 0.01
    finally:
        await cache.close()


async def test_start_against_an_unreachable_redis_degrades_instead_of_raising(
    own_redis: OwnRedis,
) -> None:
    own_redis.kill()
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    try:
        await cache.start()
        assert not cache.status().healthy
    finally:
        await cache.close()


async def test_flushed_redis_answers_misses_not_errors(own_redis: OwnRedis) -> None:
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    await cache.start()
    try:
        await cache.set_many([(k(i), b"v") for i in range(10)], ttl=60)
        admin = redis.Redis.from_url(own_redis.url)
        admin.flushall()
        admin.close()
        assert await cache.get_many([k(i) for i in range(10)]) == [None] * 10
        assert cache.status().healthy
    finally:
        await cache.close()


async def test_degraded_cache_turns_healthy_without_traffic_when_redis_returns(
    own_redis: OwnRedis,
) -> None:
    cache = RedisCache(own_redis.url, timeout=TIMEOUT)
    await cache.start()
    try:
        own_redis.kill()
        with pytest.raises(CacheUnavailable):
            await cache.get_many([k(1)])
        assert not cache.status().healthy
        own_redis.start()
        deadline = time.monotonic() + PROBE_INTERVAL * 3 + BACKOFF_MAX
        while not cache.status().healthy:
            assert time.monotonic() < deadline, "the background probe never saw Redis return"
            await asyncio.sleep(0.05)
    finally:
        await cache.close()
