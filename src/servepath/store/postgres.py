"""The PostgreSQL prediction log: psycopg 3 with an async pool, two INSERTs per batch."""

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
# table, then one row per instance. Each statement takes its rows as one JSON document (one
# text parameter, serialised by orjson in C) rather than as one array per column: psycopg
# dumps arrays element by element in Python, about 190 µs per record on the event loop, so
# that a backlog of a few thousand records (a replay after a stall) held the loop for
# seconds and shed requests; the document costs about 1 µs per record.
INSERT_REQUEST = """
INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version,
                      latency_ms, client_addr, client_ip, forwarded, api_key, truncated,
                      traffic, model_label, role, shadow_of, trace_id)
SELECT k, r, to_timestamp(t), ro, mn, mv, l, ca, ci, fw, ak, tr, tf, lb, rl, so, ti
FROM json_to_recordset(%s::json)
     AS u(k text, r text, t float8, ro text, mn text, mv text, l float8, ca text, ci text,
          fw text, ak text, tr text, tf text, lb text, rl text, so text, ti text)
ON CONFLICT (record_id) DO NOTHING
"""
INSERT = """
INSERT INTO predictions (record_id, idx, instance, output, cache_hit, truncated)
SELECT k, i, inst, outp, c, tr
FROM json_to_recordset(%s::json)
     AS u(k text, i integer, inst jsonb, outp jsonb, c boolean, tr text)
ON CONFLICT (record_id, idx) DO NOTHING
"""


def request_document(records: Sequence[PredictionRecord]) -> str:
    """The rows of :data:`INSERT_REQUEST`, one per request of ``records``, as JSON."""
    return orjson.dumps(
        [
            {
                "k": r.key,
                "r": r.request_id,
                "t": r.ts,
                "ro": r.route,
                "mn": r.model_name,
                "mv": r.model_version,
                "l": r.latency_ms,
                "ca": r.client_addr,
                "ci": r.client_ip,
                "fw": r.forwarded,
                "ak": r.api_key,
                "tr": split_truncated(r.truncated)[0],
                "tf": traffic_kind(r.traffic),
                "lb": r.model_label,
                "rl": r.role,
                "so": r.shadow_of,
                "ti": r.trace_id,
            }
            for r in first_of_each_request(records)
        ]
    ).decode()


def insert_document(records: Sequence[PredictionRecord]) -> str:
    """The rows of :data:`INSERT` for ``records``, in record order, as JSON."""
    return orjson.dumps(
        [
            {
                "k": r.key,
                "i": r.index,
                "inst": r.instance,
                "outp": r.output,
                "c": r.cache_hit,
                "tr": split_truncated(r.truncated)[1],
            }
            for r in records
        ]
    ).decode()


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
    """Each batch is one transaction of two ``INSERT … SELECT FROM json_to_recordset(…) ON
    CONFLICT DO NOTHING`` statements (the requests, then their instances).

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
        requests = request_document(records)
        rows = insert_document(records)
        async with asyncio.timeout(self.write_timeout), pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(INSERT_REQUEST, (requests,))
                cur = await conn.execute(INSERT, (rows,))
            return cur.rowcount

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=1.0)

    def rejects_content(self, exc: BaseException) -> bool:
        # Class 22 (data exception) is about a value, e.g. a NUL character jsonb refuses;
        # TypeError/ValueError come from encoding a record. Anything else is the database.
        return isinstance(exc, psycopg.DataError | TypeError | ValueError)
