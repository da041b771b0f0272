"""The Redis response cache: pooled async client, every call bounded, degraded rather than raised.

A cache must never slow the service down more than its timeout, nor hold requests while
Redis is away. Each call is bounded by ``timeout``; after a failure the cache stays *open*
(calls fail at once with :class:`CacheUnavailable`) for a short, growing back-off, then lets
calls through again. Connections that died with the server are replaced by the pool on the
next call, so the same object recovers by itself when Redis returns.

Under load, two things made a healthy Redis look dead and halve the service's capacity:

* **the timeout measured the event loop, not Redis.** A reply that arrived in time waited
  unread while the loop ran everything else that was ready, and the timer (which runs before
  the loop reads its sockets) fired first. Now, when the timer fires late, the call gets the
  time the loop was late by (at most :data:`MAX_LAG_ALLOWANCE`): it fails only when Redis
  has had ``timeout`` of the loop's attention and still not answered.
* **one round trip per request.** Lookups (and stores) made in the same loop iteration are
  gathered into one ``MGET`` (and one pipeline of stores): at saturation, tens of requests
  share a round trip, and the client library's per-call cost is paid once for them.

A **full** Redis (``maxmemory`` reached with the ``noeviction`` policy) refuses writes with
``OOM`` and still answers reads: that is not an outage, and it opens no breaker for lookups,
which go on being served as hits. Writes alone are skipped for a growing back-off
(:data:`WRITE_BACKOFF_MIN` doubling to :data:`WRITE_BACKOFF_MAX`: keys expire, memory may
free), each skipped store counted as a store error; the health body says ``writes refused:
redis full``, and a warning is logged at most every 10 s.

Failures are logged at most every 10 s, with a count.
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
from redis.exceptions import OutOfMemoryError

from servepath.cache.base import CacheStats, CacheStatus, StoreErrorHook
from servepath.errors import CacheUnavailable, ConfigError
from servepath.net.endpoints import host_port
from servepath.ratelog import RateLimitedWarning

log = logging.getLogger(__name__)

#: Back-off after the first failure; doubles per consecutive failure up to BACKOFF_MAX.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
DEFAULT_MAX_CONNECTIONS = 64
#: How often a degraded cache checks, on its own, whether Redis is back.
PROBE_INTERVAL = 1.0
#: The most a call's timeout is extended by for the event loop's lateness, seconds.
MAX_LAG_ALLOWANCE = 0.5
#: Keys in one gathered MGET, at most (a larger gathering is split).
MAX_KEYS_PER_CALL = 4096
#: Writes are skipped this long after Redis refused one for memory; doubles per refusal.
WRITE_BACKOFF_MIN = 1.0
WRITE_BACKOFF_MAX = 30.0


class RedisCache:
    """Cache on a Redis server: MGET for lookups, one pipelined round trip of SETs for stores."""

    name = "redis"
    enabled = True
    blocking = True

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
            # are not retried; the outer deadline would not allow it anyway. The client's own
            # timeouts are only a backstop: they measure the event loop as much as Redis, and
            # the call's bound (see _within) is the one that judges Redis.
            backstop = timeout + MAX_LAG_ALLOWANCE + 1.0
            self._pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=backstop,
                socket_timeout=backstop,
                socket_connect_timeout=backstop,
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
        self._degraded_log = RateLimitedWarning(log, "redis cache degraded")
        # Writes refused for memory in a row, and until when writes are skipped.
        self._full = 0
        self._full_since = 0.0
        self._writes_open_until = 0.0
        self._full_log = RateLimitedWarning(log, "redis cache full, writes refused")
        # Lookups and stores waiting for this loop iteration's round trip.
        self._gets: list[tuple[Sequence[str], asyncio.Future[list[bytes | None]]]] = []
        self._sets: list[tuple[Sequence[tuple[str, bytes]], float, StoreErrorHook | None]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        #: Round trips made, and the lookups and stores they carried (for the benchmark).
        self.round_trips = 0
        self.lookups = 0

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
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes | None]] = loop.create_future()
        if not self._gets:
            loop.call_soon(self._flush_gets)
        self._gets.append((keys, future))
        return await future

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        px = max(1, round(ttl * 1000)) if ttl > 0 else None
        for key, value in items:
            pipe.set(key, value, px=px)
        await self._call(pipe.execute(), write=True)

    def store_later(
        self,
        items: Sequence[tuple[str, bytes]],
        ttl: float,
        on_error: StoreErrorHook | None = None,
    ) -> None:
        if not items:
            return
        if not self._sets:
            asyncio.get_running_loop().call_soon(self._flush_sets)
        self._sets.append((items, ttl, on_error))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    def _flush_gets(self) -> None:
        gets, self._gets = self._gets, []
        # One MGET for every lookup of this iteration (split if it is very large).
        group: list[tuple[Sequence[str], asyncio.Future[list[bytes | None]]]] = []
        size = 0
        for entry in gets:
            if group and size + len(entry[0]) > MAX_KEYS_PER_CALL:
                self._spawn(self._mget(group))
                group, size = [], 0
            group.append(entry)
            size += len(entry[0])
        if group:
            self._spawn(self._mget(group))

    async def _mget(
        self, group: list[tuple[Sequence[str], asyncio.Future[list[bytes | None]]]]
    ) -> None:
        keys = [key for entry in group for key in entry[0]]
        self.round_trips += 1
        self.lookups += len(group)
        try:
            values: list[bytes | None] = await self._call(self._client.mget(keys))
        except BaseException as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(
                        exc
                        if isinstance(exc, Exception)
                        else CacheUnavailable("redis", "cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for entry_keys, future in group:
            n = len(entry_keys)
            if not future.done():
                future.set_result(values[offset : offset + n])
            offset += n

    def _flush_sets(self) -> None:
        sets, self._sets = self._sets, []
        self._spawn(self._store(sets))

    async def _store(
        self, sets: list[tuple[Sequence[tuple[str, bytes]], float, StoreErrorHook | None]]
    ) -> None:
        pipe = self._client.pipeline(transaction=False)
        count = 0
        for items, ttl, _ in sets:
            px = max(1, round(ttl * 1000)) if ttl > 0 else None
            for key, value in items:
                pipe.set(key, value, px=px)
                count += 1
        try:
            await self._call(pipe.execute(), write=True)
        except Exception as exc:
            for items, _, on_error in sets:
                if on_error is not None:
                    on_error(len(items), repr(exc))

    async def _call(self, op: Any, *, write: bool = False) -> Any:
        # ``op`` is an un-awaited coroutine; close it when the breaker refuses the call.
        now = self._clock()
        if now < self._open_until:
            op.close()
            raise CacheUnavailable(
                "redis",
                f"{self._last_error}; retrying in {self._open_until - now:.2f}s",
            )
        if write and now < self._writes_open_until:
            op.close()
            raise CacheUnavailable(
                "redis", f"{self._full_detail()}; retrying in {self._writes_open_until - now:.2f}s"
            )
        loop = asyncio.get_running_loop()
        task = loop.create_task(op)
        try:
            if not await _within(task, self.timeout, loop):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                self._failed(f"no answer from {self.target} within {self.timeout * 1000:.0f} ms")
                raise CacheUnavailable("redis", self._last_error)
            result = task.result()
        except asyncio.CancelledError:
            # The caller's own deadline fired first; the connection in use was dropped.
            task.cancel()
            self._failed(f"call to {self.target} cancelled by its caller")
            raise
        except OutOfMemoryError as exc:
            # Redis answered: it is full, not away. Reads go on; writes wait (see the module
            # docstring). The message is Redis's own, without the pipeline's key and value.
            self._refused_write()
            raise CacheUnavailable("redis", self._full_detail()) from exc
        except (aioredis.RedisError, OSError) as exc:
            self._failed(f"{self.target}: {str(exc).rstrip('.')}")
            raise CacheUnavailable("redis", self._last_error) from exc
        if self._failures:
            log.info("redis cache at %s answers again", self.target)
        self._failures = 0
        if write and self._full:
            log.info("redis cache at %s takes writes again", self.target)
            self._full = 0
        return result

    def _refused_write(self) -> None:
        # An answer, so not a failure of Redis: the breaker for reads stays as it was.
        if self._failures:
            log.info("redis cache at %s answers again", self.target)
        self._failures = 0
        if not self._full:
            self._full_since = self._clock()
        self._full += 1
        backoff = min(WRITE_BACKOFF_MIN * 2 ** (self._full - 1), WRITE_BACKOFF_MAX)
        self._writes_open_until = self._clock() + backoff
        self._full_log.note(
            f"{self.target} is full (maxmemory with the noeviction policy): responses are "
            f"not cached, lookups still served; next write in {backoff:g} s"
        )

    def _full_detail(self) -> str:
        return f"writes refused: redis full at {self.target} (OOM, maxmemory reached)"

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self._last_error = reason
        backoff = min(BACKOFF_MIN * 2 ** (self._failures - 1), BACKOFF_MAX)
        self._open_until = self._clock() + backoff
        if self._failures == 1:
            self._degraded_log.note(reason)

    def status(self) -> CacheStatus:
        if self._failures:
            return CacheStatus(
                backend="redis",
                healthy=False,
                detail=f"{self._last_error} ({self._failures} consecutive failures)",
            )
        if self._full:
            since = self._clock() - self._full_since
            return CacheStatus(
                backend="redis",
                healthy=False,
                detail=f"degraded: {self._full_detail()} for {since:.0f} s; lookups served",
                writable=False,
            )
        return CacheStatus(backend="redis", healthy=True, detail=self.target)

    def stats(self) -> CacheStats | None:
        return None  # the entries live in Redis, and its INFO says what they cost


async def _within(task: asyncio.Task[Any], timeout: float, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``task`` finishes within ``timeout`` of the loop's attention.

    Each time the deadline passes, the task gets as much more time as the loop was late in
    noticing (it was busy with other work while the answer may have waited unread), up to
    :data:`MAX_LAG_ALLOWANCE` in all.
    """
    due = loop.time() + timeout
    allowance = MAX_LAG_ALLOWANCE
    while True:
        await asyncio.wait((task,), timeout=max(0.0, due - loop.time()))
        if task.done():
            return True
        late = loop.time() - due
        if late <= 0.001 or allowance <= 0:
            return False
        # At least 2 ms: the loop reads its sockets once more before the next look.
        extra = min(allowance, max(late, 0.002))
        allowance -= extra
        due = loop.time() + extra


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
