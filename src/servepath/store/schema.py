"""Versioned, idempotent schema migrations for the SQLite and PostgreSQL prediction logs.

``schema_version`` holds one row per applied migration. Applying is safe when several
worker processes start at once: PostgreSQL serialises them on an advisory lock, SQLite on
``BEGIN IMMEDIATE``; the second process finds the work done and applies nothing.

Column types (documented in docs/prediction-log.md):

* ``ts``: SQLite ``REAL`` (unix seconds, exact); PostgreSQL ``timestamptz`` (microsecond
  precision), so that SQL users can write ``WHERE ts > now() - interval '1 hour'``.
* ``instance``/``output``: SQLite JSON text; PostgreSQL ``jsonb``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)

#: Key of the PostgreSQL advisory lock that serialises migrations ("servepath" in ASCII, trimmed).
ADVISORY_LOCK_KEY = 0x7365727665706174


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="predictions table",
        sqlite=(
            """
            CREATE TABLE predictions (
                request_id    TEXT    NOT NULL,
                idx           INTEGER NOT NULL,
                ts            REAL    NOT NULL,
                route         TEXT    NOT NULL,
                model_name    TEXT    NOT NULL,
                model_version TEXT    NOT NULL,
                instance      TEXT    NOT NULL,
                output        TEXT    NOT NULL,
                latency_ms    REAL    NOT NULL,
                cache_hit     INTEGER NOT NULL,
                client_addr   TEXT,
                forwarded     TEXT,
                PRIMARY KEY (request_id, idx)
            )
            """,
            "CREATE INDEX predictions_ts ON predictions (ts)",
        ),
        postgres=(
            """
            CREATE TABLE predictions (
                request_id    text             NOT NULL,
                idx           integer          NOT NULL,
                ts            timestamptz      NOT NULL,
                route         text             NOT NULL,
                model_name    text             NOT NULL,
                model_version text             NOT NULL,
                instance      jsonb            NOT NULL,
                output        jsonb            NOT NULL,
                latency_ms    double precision NOT NULL,
                cache_hit     boolean          NOT NULL,
                client_addr   text,
                forwarded     text,
                PRIMARY KEY (request_id, idx)
            )
            """,
            "CREATE INDEX predictions_ts ON predictions (ts)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_SQLITE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
)
"""

_POSTGRES_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def pending(current: int) -> list[Migration]:
    """The migrations to apply to a database at ``current``, in order."""
    return [m for m in MIGRATIONS if m.version > current]


def migrate_sqlite(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` (autocommit mode) to the latest schema; returns the version it is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SQLITE_VERSION_TABLE)
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0])
        for migration in pending(current):
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                (migration.version, migration.description),
            )
            log.info("sqlite prediction log migrated to version %d", migration.version)
            current = migration.version
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    _warn_if_newer(current)
    return current


async def migrate_postgres(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int:
    """Bring the database behind ``conn`` to the latest schema; returns the version it is at."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        await conn.execute(_POSTGRES_VERSION_TABLE)
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for migration in pending(current):
            for statement in migration.postgres:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
            log.info("postgresql prediction log migrated to version %d", migration.version)
            current = migration.version
    _warn_if_newer(current)
    return current


def _warn_if_newer(current: int) -> None:
    if current > LATEST_VERSION:
        log.warning(
            "prediction log schema is at version %d, newer than this servepath knows (%d)",
            current,
            LATEST_VERSION,
        )
