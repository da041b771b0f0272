"""Build the cache a `Settings` asks for: ``memory`` (default), ``off``, or a Redis URL."""

from __future__ import annotations

from servepath.cache.base import Cache, NoCache
from servepath.cache.memory import MemoryCache
from servepath.config import Settings
from servepath.errors import ConfigError

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_cache(settings: Settings) -> Cache:
    """The cache for ``settings.cache_url``; nothing connects until ``start()``."""
    url = settings.cache_url.strip()
    kind = url.lower()
    if kind == "memory":
        return MemoryCache(
            max_entries=settings.cache_max_entries, max_bytes=settings.cache_max_bytes
        )
    if kind == "off":
        return NoCache()
    if kind.startswith(REDIS_SCHEMES):
        from servepath.cache.redis import RedisCache

        return RedisCache(url, timeout=settings.cache_timeout)
    from servepath.cache.redis import redact_url

    raise ConfigError(
        f"cache {redact_url(url)!r} is not one of: memory, off, redis://HOST[:PORT][/DB], "
        "rediss://HOST[:PORT][/DB], unix:///PATH/TO/redis.sock"
    )
