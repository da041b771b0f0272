"""`open_cache`: which backend a cache URL selects, and the URLs it refuses."""

from __future__ import annotations

import pytest

from servepath.cache import NoCache, open_cache
from servepath.cache.memory import MemoryCache
from servepath.cache.redis import RedisCache, redact_url
from servepath.config import Settings
from servepath.errors import ConfigError


def test_memory_is_the_default_and_takes_its_bounds_from_settings() -> None:
    cache = open_cache(Settings(cache_max_entries=7, cache_max_bytes=4096))
    assert isinstance(cache, MemoryCache)
    assert (cache.max_entries, cache.max_bytes) == (7, 4096)


def test_off_disables_caching() -> None:
    assert isinstance(open_cache(Settings(cache_url="off")), NoCache)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.internal:6380/1",
        "unix:///run/redis/redis.sock",
        "REDIS://127.0.0.1",
    ],
)
def test_redis_urls_select_redis_with_the_cache_timeout(url: str) -> None:
    cache = open_cache(Settings(cache_url=url, cache_timeout=0.25))
    assert isinstance(cache, RedisCache)
    assert cache.timeout == 0.25


def test_redis_target_is_described_without_the_password() -> None:
    cache = open_cache(Settings(cache_url="redis://app:s3cret@127.0.0.1:6390/2"))
    assert isinstance(cache, RedisCache)
    assert cache.target == "127.0.0.1:6390 db 2"
    assert "s3cret" not in cache.status().detail


@pytest.mark.parametrize("url", ["memcached://127.0.0.1", "redis", "", "http://127.0.0.1:6379"])
def test_unknown_cache_urls_are_a_config_error_naming_the_choices(url: str) -> None:
    with pytest.raises(ConfigError, match="memory, off, redis://"):
        open_cache(Settings(cache_url=url))


def test_a_malformed_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot use cache URL"):
        open_cache(Settings(cache_url="redis://127.0.0.1:notaport/0"))


def test_error_messages_hide_passwords() -> None:
    assert redact_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert redact_url("redis://:pw@host") == "redis://***@host"
    with pytest.raises(ConfigError) as info:
        open_cache(Settings(cache_url="mongodb://user:hunter2@db"))
    assert "hunter2" not in str(info.value)
