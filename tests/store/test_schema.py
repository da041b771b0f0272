"""Migrations: versioned, idempotent, and safe when several workers start at once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from servepath.store.schema import LATEST_VERSION, MIGRATIONS, migrate_postgres, migrate_sqlite

pytestmark = pytest.mark.anyio


def test_migrations_are_numbered_one_up_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_sqlite_migration_runs_once_however_often_it_is_called(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "log.sqlite3", isolation_level=None)
    assert migrate_sqlite(conn) == LATEST_VERSION
    assert migrate_sqlite(conn) == LATEST_VERSION
    versions = conn.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(m.version,) for m in MIGRATIONS]
    requests = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    assert requests == [
        "record_id", "request_id", "ts", "route", "model_name", "model_version", "latency_ms",
        "client_addr", "client_ip", "forwarded", "api_key", "truncated", "traffic",
        "model_label", "role", "shadow_of", "trace_id",
    ]  # fmt: skip
    columns = [row[1] for row in conn.execute("PRAGMA table_info(predictions)")]
    assert columns == ["record_id", "idx", "instance", "output", "cache_hit", "truncated"]
    conn.close()


def test_sqlite_workers_migrating_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            barrier.wait()
            migrate_sqlite(conn)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (len(MIGRATIONS),)
    conn.close()


async def test_postgres_workers_migrating_at_once_all_succeed(pg_url: str) -> None:
    async def worker() -> int:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            return await migrate_postgres(conn)

    assert await asyncio.gather(*(worker() for _ in range(6))) == [LATEST_VERSION] * 6
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert rows == [(m.version,) for m in MIGRATIONS]
        kinds: dict[str, str] = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, data_type "
                "FROM information_schema.columns WHERE table_name IN ('predictions', 'requests')"
            ).fetchall()
        )
    assert kinds["requests.ts"] == "timestamp with time zone"
    assert kinds["predictions.instance"] == kinds["predictions.output"] == "jsonb"
