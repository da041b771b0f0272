"""The in-process cache on its own: LRU order, byte accounting, TTL with an injected clock."""

from __future__ import annotations

import pytest

from servepath.cache.memory import ENTRY_OVERHEAD, MemoryCache
from servepath.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_entry_goes_first_when_entries_overflow() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=1 << 20)
    for key in "abc":
        cache.set(key, key.encode(), ttl=60)
    assert cache.get("a") == b"a"  # a is now the most recently used
    cache.set("d", b"d", ttl=60)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    assert len(cache) == 3


def test_bytes_bound_evicts_until_the_new_entry_fits() -> None:
    cost = len("k0") + 100 + ENTRY_OVERHEAD
    cache = MemoryCache(max_entries=1000, max_bytes=3 * cost)
    for i in range(3):
        cache.set(f"k{i}", bytes(100), ttl=60)
    assert cache.size_bytes == 3 * cost
    cache.set("k3", bytes(100), ttl=60)
    assert cache.get("k0") is None
    assert cache.size_bytes == 3 * cost
    # A value larger than the whole cache is not stored and evicts nothing.
    cache.set("huge", bytes(4 * cost), ttl=60)
    assert cache.get("huge") is None
    assert [cache.get(f"k{i}") is not None for i in (1, 2, 3)] == [True, True, True]


def test_replacing_a_value_keeps_the_byte_count_exact() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20)
    cache.set("k", bytes(500), ttl=60)
    cache.set("k", bytes(10), ttl=60)
    assert cache.size_bytes == len("k") + 10 + ENTRY_OVERHEAD
    assert cache.get("k") == bytes(10)


def test_entry_expires_after_its_ttl_and_frees_its_bytes() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, clock=clock)
    cache.set("k", b"v", ttl=5)
    clock.now += 4.99
    assert cache.get("k") == b"v"
    clock.now += 0.02
    assert cache.get("k") is None
    assert cache.size_bytes == 0
    assert len(cache) == 0


def test_zero_ttl_keeps_the_entry_until_evicted() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20, clock=clock)
    cache.set("k", b"v", ttl=0)
    clock.now += 10**9
    assert cache.get("k") == b"v"


def test_status_reports_entries_and_bytes() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=10_000)
    cache.set("k", b"v", ttl=1)
    status = cache.status()
    assert status.backend == "memory" and status.healthy
    assert status.detail == f"1 entry, {2 + ENTRY_OVERHEAD} of 10000 bytes"


@pytest.mark.parametrize(("entries", "size"), [(0, 100), (10, 0)])
def test_bounds_below_one_are_refused(entries: int, size: int) -> None:
    with pytest.raises(ConfigError):
        MemoryCache(max_entries=entries, max_bytes=size)


def test_the_byte_count_is_what_the_entries_really_cost() -> None:
    import tracemalloc

    import orjson

    from servepath.cache.base import cache_key

    # Values as the service stores them: orjson output, which keeps a 4 KB buffer unless
    # copied. The count must match what the allocator sees, or the byte bound never binds.
    cache = MemoryCache(max_entries=100_000, max_bytes=1 << 30)
    answer = {"decision": "approve", "probability": 0.93113}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            key = cache_key("servepath", "decision", "c30a278a5722", {"income": float(i)})
            cache.set(key, orjson.dumps(answer), ttl=60)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.size_bytes == pytest.approx(held, rel=0.15)
    assert cache.stats().bytes == cache.size_bytes and cache.stats().entries == 20_000
