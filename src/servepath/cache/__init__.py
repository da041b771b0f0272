"""Response caches: in-process (LRU + TTL) by default, Redis when configured."""

from __future__ import annotations

from servepath.cache.base import Cache, CacheStatus, NoCache, cache_key, canonical_instance
from servepath.cache.factory import open_cache

__all__ = ["Cache", "CacheStatus", "NoCache", "cache_key", "canonical_instance", "open_cache"]
