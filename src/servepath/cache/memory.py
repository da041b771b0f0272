"""The in-process response cache: LRU + TTL, bounded by entry count and by bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from servepath.cache.base import CacheStats, CacheStatus, StoreErrorHook
from servepath.errors import ConfigError

#: What one entry costs beyond the characters of its key and the bytes of its value, as
#: tracemalloc measures it (CPython 3.11, 64-bit): the str and bytes object headers, the
#: (value, expires_at) tuple and its float, the OrderedDict's slot and link.
ENTRY_OVERHEAD = 256


class MemoryCache:
    """A per-process LRU cache whose entries also expire after their TTL.

    Every operation is O(1) per key and never awaits, so under one event loop a call
    runs to completion without interleaving: no lock is needed. ``max_bytes`` counts
    key and value lengths plus :data:`ENTRY_OVERHEAD` per entry, which is what the entries
    really cost: values are copied on the way in, because a ``bytes`` object made by
    orjson keeps the 4 KB buffer it was serialised into (a 44-byte answer would hold
    4,097 bytes, and the byte bound would never bind).
    """

    name = "memory"
    enabled = True
    blocking = False

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"cache_max_entries must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ConfigError(f"cache_max_bytes must be at least 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (value, expires_at); expires_at is +inf for entries stored without a TTL.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        self.store_many(items, ttl)

    def store_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """``set_many`` without the coroutine, for callers on the event loop."""
        for key, value in items:
            self.set(key, value, ttl)

    def store_later(
        self,
        items: Sequence[tuple[str, bytes]],
        ttl: float,
        on_error: StoreErrorHook | None = None,
    ) -> None:
        self.store_many(items, ttl)

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= self._clock():
            self._remove(key, value)
            return None
        self._entries.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value``; ``ttl`` <= 0 keeps it until it is evicted."""
        # An exact-size copy: see the class docstring.
        value = bytes(memoryview(value))
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _cost(key, old[0])
        cost = _cost(key, value)
        if cost > self.max_bytes:
            # Storing it would evict everything else and still not fit.
            return
        expires_at = self._clock() + ttl if ttl > 0 else float("inf")
        self._entries[key] = (value, expires_at)
        self._bytes += cost
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest, (old_value, _) = self._entries.popitem(last=False)
            self._bytes -= _cost(oldest, old_value)

    def _remove(self, key: str, value: bytes) -> None:
        del self._entries[key]
        self._bytes -= _cost(key, value)

    def status(self) -> CacheStatus:
        return CacheStatus(
            backend="memory",
            healthy=True,
            detail=f"{len(self._entries)} entr{'y' if len(self._entries) == 1 else 'ies'}, "
            f"{self._bytes} of {self.max_bytes} bytes",
        )

    def stats(self) -> CacheStats:
        return CacheStats(entries=len(self._entries), bytes=self._bytes, max_bytes=self.max_bytes)


def _cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD
