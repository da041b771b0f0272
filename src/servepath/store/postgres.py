"""The PostgreSQL prediction log: psycopg 3 with an async pool, one INSERT per batch."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from servepath.errors import ConfigError
from servepath.net.endpoints import host_port
from servepath.store.base import PredictionRecord
from servepath.store.rows import first_of_each_request, split_truncated
from servepath.store.schema import migrate_postgres
from servepath.traffic import traffic_kind

DEFAULT_CONNECT_TIMEOUT = 5.0
#: A batch that takes longer than this is treated as a lost connection (spool and retry).
#: It bounds how long a durable request waits on a database that stopped answering.
DEFAULT_WRITE_TIMEOUT = 5.0

# Two statements per batch whatever its size: a request's fields once, in the requests
# table, then one row per instance; the columns travel as arrays.
INSERT_REQUEST = """
INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version,
                      latency_ms, client_addr, client_ip, forwarded, api_key, truncated,
                      traffic)
SELECT k, r, to_timestamp(t), ro, mn, mv, l, ca, ci, fw, ak, tr, tf
FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::text[])
     AS u(k, r, t, ro, mn, mv, l, ca, ci, fw, ak, tr, tf)
ON CONFLICT (record_id) DO NOTHING
"""
INSERT = """
INSERT INTO predictions (record_id, idx, instance, output, cache_hit, truncated)
SELECT k, i, inst::jsonb, outp::jsonb, c, tr
FROM unnest(%s::text[], %s::integer[], %s::text[], %s::text[], %s::boolean[], %s::text[])
     AS u(k, i, inst, outp, c, tr)
ON CONFLICT (record_id, idx) DO NOTHING
"""


def request_params(records: Sequence[PredictionRecord]) -> tuple[list[Any], ...]:
    """The column arrays of :data:`INSERT_REQUEST`: one row per request of ``records``."""
    firsts = first_of_each_request(records)
    return (
        [r.key for r in firsts],
        [r.request_id for r in firsts],
        [r.ts for r in firsts],
        [r.route for r in firsts],
        [r.model_name for r in firsts],
        [r.model_version for r in firsts],
        [r.latency_ms for r in firsts],
        [r.client_addr for r in firsts],
        [r.client_ip for r in firsts],
        [r.forwarded for r in firsts],
        [r.api_key for r in firsts],
        [split_truncated(r.truncated)[0] for r in firsts],
        [traffic_kind(r.traffic) for r in firsts],
    )


def insert_params(records: Sequence[PredictionRecord]) -> tuple[list[Any], ...]:
    """The column arrays of :data:`INSERT` for ``records``, in record order."""
    return (
        [r.key for r in records],
        [r.index for r in records],
        [orjson.dumps(r.instance).decode() for r in records],
        [orjson.dumps(r.output).decode() for r in records],
        [r.cache_hit for r in records],
        [split_truncated(r.truncated)[1] for r in records],
    )


def parse_conninfo(url: str) -> dict[str, str]:
    """The connection parameters of ``url``; a malformed URL is a :class:`ConfigError`."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"store URL is not a valid PostgreSQL URL: {exc}") from None
    return {k: str(v) for k, v in params.items() if v is not None}


def describe_conninfo(url: str) -> str:
    """``postgresql://user@host:port/dbname`` for ``url``, without its password."""
    p = parse_conninfo(url)
    user = p.get("user", "")
    host = p.get("host", "") or "localhost"
    port = p.get("port", "5432")
    dbname = p.get("dbname", user)
    return f"postgresql://{user + '@' if user else ''}{host_port(host, port)}/{dbname}"


class PostgresSink:
    """Each batch is one transaction of two ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO
    NOTHING`` statements (the requests, then their instances).

    ``open`` migrates the schema on a dedicated connection, which also surfaces the real
    reason a database is unreachable (a pool only reports that it timed out), then opens a
    one-connection pool: the single writer task needs no more.

    The pool does not check a connection before lending it: a dead one fails the write at
    once, the batch goes to the spool, and the writer reconnects straight away (and replays)
    if the server is up. Checking would instead hold the writer for up to the connect
    timeout while the pool reconnected in the background.
    """

    backend = "postgresql"

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        parse_conninfo(conninfo)
        self.conninfo = conninfo
        self.target = describe_conninfo(conninfo)
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        # libpq's own connect_timeout is whole seconds and at least 2.
        libpq_timeout = max(2, math.ceil(self.connect_timeout))
        async with asyncio.timeout(self.connect_timeout):
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=libpq_timeout
            )
        async with conn:
            await migrate_postgres(conn)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]] = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=1,
            open=False,
            timeout=self.connect_timeout,
            kwargs={"autocommit": True, "connect_timeout": libpq_timeout},
            name="servepath-prediction-log",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        pool = self._pool
        if pool is None:
            raise psycopg.OperationalError(f"{self.target} is not open")
        requests = request_params(records)
        params = insert_params(records)
        async with asyncio.timeout(self.write_timeout), pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(INSERT_REQUEST, requests)
                cur = await conn.execute(INSERT, params)
            return cur.rowcount

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=1.0)

    def rejects_content(self, exc: BaseException) -> bool:
        # Class 22 (data exception) is about a value, e.g. a NUL character jsonb refuses;
        # TypeError/ValueError come from encoding a record. Anything else is the database.
        return isinstance(exc, psycopg.DataError | TypeError | ValueError)
