"""The SQLite prediction log: a WAL file in the data directory, written by one dedicated thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from servepath.store.base import PredictionRecord
from servepath.store.rows import first_of_each_request, split_truncated
from servepath.store.schema import migrate_sqlite
from servepath.traffic import traffic_kind

T = TypeVar("T")

DEFAULT_FILENAME = "predictions.sqlite3"
#: How long a writer waits for another process's write lock (several workers, one file).
DEFAULT_BUSY_TIMEOUT = 5.0

INSERT_REQUEST = """
INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version,
                      latency_ms, client_addr, client_ip, forwarded, api_key, truncated,
                      traffic, model_label, role, shadow_of, trace_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (record_id) DO NOTHING
"""
INSERT = """
INSERT INTO predictions (record_id, idx, instance, output, cache_hit, truncated)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (record_id, idx) DO NOTHING
"""


def sqlite_request_row(r: PredictionRecord) -> tuple[Any, ...]:
    return (
        r.key,
        r.request_id,
        r.ts,
        r.route,
        r.model_name,
        r.model_version,
        r.latency_ms,
        r.client_addr,
        r.client_ip,
        r.forwarded,
        r.api_key,
        split_truncated(r.truncated)[0],
        traffic_kind(r.traffic),
        r.model_label,
        r.role,
        r.shadow_of,
        r.trace_id,
    )


def sqlite_row(r: PredictionRecord) -> tuple[Any, ...]:
    return (
        r.key,
        r.index,
        # Text, not bytes: SQLite 3.45+ would read a BLOB as its binary JSONB format.
        orjson.dumps(r.instance).decode(),
        orjson.dumps(r.output).decode(),
        1 if r.cache_hit else 0,
        split_truncated(r.truncated)[1],
    )


class SQLiteSink:
    """Batches go to one SQLite connection owned by one thread; the event loop never waits on I/O.

    ``durable`` sets ``synchronous=FULL`` (each commit reaches the disk before it returns,
    surviving power loss); otherwise ``NORMAL``, which in WAL mode survives a crash of the
    process but may lose the last commits on power loss.
    """

    backend = "sqlite"

    def __init__(
        self, path: Path, *, durable: bool = False, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self.path = path
        self.target = str(path)
        self.durable = durable
        self.busy_timeout = busy_timeout
        #: A write blocks at most this long on another process's lock before it fails; one
        #: that has waited longer is stuck (a stalled disk), and the log says so.
        self.write_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="servepath-sqlite")
        await self._in_thread(self._open)

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        return await self._in_thread(self._write, records)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    def rejects_content(self, exc: BaseException) -> bool:
        # OperationalError (locked, disk full, I/O) is about the database, never the record.
        return isinstance(exc, sqlite3.DataError | TypeError | ValueError | OverflowError)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise sqlite3.OperationalError(f"{self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            migrate_sqlite(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _write(self, records: Sequence[PredictionRecord]) -> int:
        conn = self._conn
        if conn is None:
            raise sqlite3.OperationalError(f"{self.path} is not open")
        requests = [sqlite_request_row(r) for r in first_of_each_request(records)]
        rows = [sqlite_row(r) for r in records]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(INSERT_REQUEST, requests)
            inserted = conn.executemany(INSERT, rows).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return inserted

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
