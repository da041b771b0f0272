"""The Redis response cache: pooled async client, every call bounded, degraded rather than raised.

A cache must never slow the service down more than its timeout, nor hold requests while
Redis is away. Each call is bounded by ``timeout`` (socket timeouts and an outer deadline);
after a failure the cache stays *open* (calls fail at once with :class:`CacheUnavailable`)
for a short, growing back-off, then lets calls through again. Connections that died with
the server are replaced by the pool on the next call, so the same object recovers by
itself when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from servepath.cache.base import CacheStatus
from servepath.errors import ConfigError, ServepathError
from servepath.net.endpoints import host_port

log = logging.getLogger(__name__)

#: Back-off after the first failure; doubles per consecutive failure up to BACKOFF_MAX.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
DEFAULT_MAX_CONNECTIONS = 64
#: How often a degraded cache checks, on its own, whether Redis is back.
PROBE_INTERVAL = 1.0


class CacheUnavailable(ServepathError):
    """The cache could not answer within its timeout, or is backing off after failures."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} cache unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class RedisCache:
    """Cache on a Redis server: MGET for lookups, one pipelined round trip of SETs for stores."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ConfigError(f"cache_timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._clock = clock
        try:
            # One immediate retry on a connection error: a pooled connection that died with
            # a restarted server is replaced without the caller seeing the failure. Timeouts
            # are not retried; the outer deadline would not allow it anyway.
            self._pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError as exc:
            raise ConfigError(f"cannot use cache URL {redact_url(url)!r}: {exc}") from exc
        self._client = aioredis.Redis(connection_pool=self._pool)
        self.target = describe_target(self._pool.connection_kwargs)
        self._failures = 0
        self._last_error = ""
        self._open_until = 0.0
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check that Redis answers; a failure degrades the cache, it does not stop the service.

        While degraded, a background probe pings Redis, so that the health body turns healthy
        again when Redis returns even if no request comes to try it.
        """
        try:
            await self._call(self._client.ping())
        except CacheUnavailable as exc:
            log.warning("%s; serving uncached until it answers", exc)
        if self._probe is None:
            self._probe = asyncio.create_task(self._probe_while_degraded(), name="redis-probe")

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        await self._client.aclose()
        await self._pool.aclose()

    async def _probe_while_degraded(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            if self._failures and self._clock() >= self._open_until:
                with contextlib.suppress(CacheUnavailable):
                    await self._call(self._client.ping())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self._call(self._client.mget(keys))
        return values

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        if not items:
            return
        px = max(1, round(ttl * 1000)) if ttl > 0 else None
        pipe = self._client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, px=px)
        await self._call(pipe.execute())

    async def _call(self, op: Any) -> Any:
        # ``op`` is an un-awaited coroutine; close it when the breaker refuses the call.
        now = self._clock()
        if now < self._open_until:
            op.close()
            raise CacheUnavailable(
                "redis",
                f"{self._last_error}; retrying in {self._open_until - now:.2f}s",
            )
        try:
            async with asyncio.timeout(self.timeout):
                result = await op
        except TimeoutError:
            self._failed(f"no answer from {self.target} within {self.timeout * 1000:.0f} ms")
            raise CacheUnavailable("redis", self._last_error) from None
        except asyncio.CancelledError:
            # The caller's own deadline fired first; the connection in use was dropped.
            self._failed(f"call to {self.target} cancelled by its caller")
            raise
        except (aioredis.RedisError, OSError) as exc:
            self._failed(f"{self.target}: {str(exc).rstrip('.')}")
            raise CacheUnavailable("redis", self._last_error) from exc
        if self._failures:
            log.info("redis cache at %s answers again", self.target)
        self._failures = 0
        return result

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self._last_error = reason
        backoff = min(BACKOFF_MIN * 2 ** (self._failures - 1), BACKOFF_MAX)
        self._open_until = self._clock() + backoff
        if self._failures == 1:
            log.warning("redis cache degraded: %s", reason)

    def status(self) -> CacheStatus:
        if self._failures:
            return CacheStatus(
                backend="redis",
                healthy=False,
                detail=f"{self._last_error} ({self._failures} consecutive failures)",
            )
        return CacheStatus(backend="redis", healthy=True, detail=self.target)


def describe_target(kwargs: dict[str, Any]) -> str:
    """Where the pool connects, without credentials."""
    if kwargs.get("path"):
        return f"unix:{kwargs['path']} db {kwargs.get('db', 0)}"
    where = host_port(str(kwargs.get("host", "localhost")), kwargs.get("port", 6379))
    return f"{where} db {kwargs.get('db', 0)}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced, fit for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if user else f"{scheme}://***@{hostpart}"
