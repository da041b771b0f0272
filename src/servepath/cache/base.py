"""The Cache protocol the service talks to, and the canonical cache key."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

#: Called with the number of entries a background store lost, and why.
StoreErrorHook = Callable[[int, str], None]


@dataclass(frozen=True)
class CacheStatus:
    backend: str  # "memory", "redis", "off"
    healthy: bool
    detail: str = ""
    #: False while the cache answers lookups but refuses to store (a full Redis).
    writable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "healthy": self.healthy,
            "detail": self.detail,
            "writable": self.writable,
        }


@dataclass(frozen=True)
class CacheStats:
    """What an in-process cache holds, counted as the process's allocator sees it."""

    entries: int
    bytes: int
    max_bytes: int

    def to_json(self) -> dict[str, int]:
        return {"entries": self.entries, "bytes": self.bytes, "max_bytes": self.max_bytes}


class Cache(Protocol):
    """A response cache keyed by :func:`cache_key`. Values are opaque bytes.

    Implementations may raise on failure; the service bounds every call with its cache
    timeout and serves uncached when a call fails, so a cache can never cause a 5xx.

    ``enabled`` is false for a cache that never holds anything: the service then skips
    computing keys at all. ``blocking`` is true when a call may wait on I/O: the service
    bounds such lookups by its cache timeout and stores in the background; a non-blocking
    cache answers without suspending, so it is called inline and stores before the
    response goes out (no window in which an identical request would miss).
    """

    name: str
    enabled: bool
    blocking: bool

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None: ...

    def store_later(
        self,
        items: Sequence[tuple[str, bytes]],
        ttl: float,
        on_error: StoreErrorHook | None = None,
    ) -> None:
        """Store without waiting. A blocking cache writes in the background (gathering the
        stores of one loop iteration into one round trip) and reports a failed write to
        ``on_error(entries, reason)``; a non-blocking one stores at once."""

    def status(self) -> CacheStatus: ...

    def stats(self) -> CacheStats | None:
        """Entries and bytes held in this process; None for a cache that lives elsewhere."""


def _canonical(value: Any) -> Any:
    # 1, 1.0 and 1e0 are the same feature value; booleans stay booleans.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            f = float(value)
        except OverflowError:
            return str(value)
        return f if math.isfinite(f) else repr(f)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return str(value)


def canonical_instance(instance: Mapping[str, Any]) -> bytes:
    """A byte encoding of one instance that ignores key order and number formatting."""
    return orjson.dumps(_canonical(instance), option=orjson.OPT_SORT_KEYS)


def cache_key(prefix: str, model_name: str, model_version: str, instance: Mapping[str, Any]) -> str:
    """``prefix:model:version:digest``; equal instances (as :func:`canonical_instance` sees
    them) share a key, so a new model version never reads an old answer."""
    if all(type(v) is float or type(v) is str for v in instance.values()):
        # Validated rows hold only floats and strings: already canonical but for key order.
        encoded = orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)
    else:
        encoded = canonical_instance(instance)
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    return f"{prefix}:{model_name}:{model_version}:{digest}"


class NoCache:
    """`--cache off`: every lookup misses and nothing is stored."""

    name = "off"
    enabled = False
    blocking = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        return None

    def store_later(
        self,
        items: Sequence[tuple[str, bytes]],
        ttl: float,
        on_error: StoreErrorHook | None = None,
    ) -> None:
        return None

    def status(self) -> CacheStatus:
        return CacheStatus(backend="off", healthy=True, detail="caching disabled")

    def stats(self) -> CacheStats | None:
        return None
