"""Both cache backends against the same specification: memory, and the machine's Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from servepath.cache import Cache, cache_key, open_cache
from servepath.config import Settings
from tests.cache.conftest import SHARED_REDIS

pytestmark = pytest.mark.anyio

INSTANCE = {"income": 52000.0, "age": 38, "purpose": "car"}


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "redis":
        request.getfixturevalue("redis_prefix")
        settings = Settings(cache_url=SHARED_REDIS, cache_timeout=0.5)
    else:
        settings = Settings(cache_url="memory")
    cache = open_cache(settings)
    await cache.start()
    try:
        yield cache
    finally:
        await cache.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    # On Redis, the test-owned prefix (its keys are deleted afterwards); memory needs none.
    if "redis_prefix" in request.fixturenames:
        return str(request.getfixturevalue("redis_prefix"))
    return "sptest-memory"


def key(prefix: str, version: str = "v1", **changes: object) -> str:
    return cache_key(prefix, "decision", version, {**INSTANCE, **changes})


async def test_miss_then_hit(cache: Cache, prefix: str) -> None:
    k = key(prefix)
    assert await cache.get_many([k]) == [None]
    await cache.set_many([(k, b'{"decision":"approve"}')], ttl=60)
    assert await cache.get_many([k]) == [b'{"decision":"approve"}']
    assert cache.status().healthy


async def test_get_many_answers_in_key_order_with_gaps_for_misses(
    cache: Cache, prefix: str
) -> None:
    keys = [key(prefix, age=age) for age in range(20, 30)]
    stored = [(k, f"value-{i}".encode()) for i, k in enumerate(keys) if i % 3 != 1]
    await cache.set_many(stored, ttl=60)
    expected = [f"value-{i}".encode() if i % 3 != 1 else None for i in range(10)]
    assert await cache.get_many(keys) == expected
    assert await cache.get_many(list(reversed(keys))) == list(reversed(expected))
    assert await cache.get_many([]) == []


async def test_entries_expire_after_the_ttl(cache: Cache, prefix: str) -> None:
    short, long = key(prefix, age=1), key(prefix, age=2)
    await cache.set_many([(short, b"s")], ttl=0.2)
    await cache.set_many([(long, b"l")], ttl=60)
    assert await cache.get_many([short, long]) == [b"s", b"l"]
    await asyncio.sleep(0.35)
    assert await cache.get_many([short, long]) == [None, b"l"]


async def test_a_new_model_version_never_sees_the_old_answer(cache: Cache, prefix: str) -> None:
    await cache.set_many([(key(prefix, "v1"), b"old answer")], ttl=60)
    assert await cache.get_many([key(prefix, "v2")]) == [None]
    assert await cache.get_many([key(prefix, "v1")]) == [b"old answer"]


async def test_the_same_instance_written_differently_is_one_key(cache: Cache, prefix: str) -> None:
    await cache.set_many([(key(prefix), b"answer")], ttl=60)
    reordered = cache_key(prefix, "decision", "v1", {"purpose": "car", "age": 38.0, "income": 52e3})
    assert await cache.get_many([reordered]) == [b"answer"]


async def test_prefixes_do_not_see_each_other(cache: Cache, prefix: str) -> None:
    await cache.set_many([(key(prefix), b"mine")], ttl=60)
    assert await cache.get_many([key(prefix + "-other")]) == [None]


async def test_set_many_overwrites(cache: Cache, prefix: str) -> None:
    k = key(prefix)
    await cache.set_many([(k, b"first")], ttl=60)
    await cache.set_many([(k, b"second")], ttl=60)
    assert await cache.get_many([k]) == [b"second"]
