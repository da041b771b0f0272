"""Versioned, idempotent schema migrations for the SQLite and PostgreSQL prediction logs.

``schema_version`` holds one row per applied migration. Applying is safe when several
worker processes start at once: PostgreSQL serialises them on an advisory lock, SQLite on
``BEGIN IMMEDIATE``; the second process finds the work done and applies nothing.

Column types (documented in docs/prediction-log.md):

* ``ts``: SQLite ``REAL`` (unix seconds, exact); PostgreSQL ``timestamptz`` (microsecond
  precision), so that SQL users can write ``WHERE ts > now() - interval '1 hour'``.
* ``instance``/``output``: SQLite JSON text; PostgreSQL ``jsonb``.

Version 2 splits version 1's ``predictions`` (one row per instance, keyed by the caller's
``(request_id, idx)``) into ``requests`` (one row per request, keyed by the server's
``record_id``, the caller's ``request_id`` beside it) and ``predictions`` (one row per
instance, keyed by ``(record_id, idx)``), copying the rows over.

Version 3 adds ``requests.traffic``: the synthetic traffic a request was marked as
(``X-Servepath-Traffic``: ``doctor``, ``load``, ``monitor``, ``test``, ``other``), NULL for
ordinary traffic, so every row written before it reads as ordinary. Adding a nullable
column with no default rewrites no row in either database.

Version 4 adds ``requests.model_label`` (the version's label: a repository folder, or its
content version), ``requests.role`` (NULL for the primary, ``candidate`` or ``shadow``) and
``requests.shadow_of`` (a shadow's record names the ``record_id`` of the request it copies).
Rows written before it answered as the primary, under no label.

Version 5 adds ``requests.trace_id``: the W3C trace id of the request's trace when the server
traced it (``--otlp-endpoint``), NULL otherwise, so a record leads to its spans and back.
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
    Migration(
        version=2,
        description="server-owned record ids: requests once, predictions per instance",
        sqlite=(
            "DROP INDEX IF EXISTS predictions_ts",
            "ALTER TABLE predictions RENAME TO predictions_v1",
            """
            CREATE TABLE requests (
                record_id     TEXT    NOT NULL PRIMARY KEY,
                request_id    TEXT    NOT NULL,
                ts            REAL    NOT NULL,
                route         TEXT    NOT NULL,
                model_name    TEXT    NOT NULL,
                model_version TEXT    NOT NULL,
                latency_ms    REAL    NOT NULL,
                client_addr   TEXT,
                client_ip     TEXT,
                forwarded     TEXT,
                api_key       TEXT,
                truncated     TEXT
            )
            """,
            """
            CREATE TABLE predictions (
                record_id     TEXT    NOT NULL,
                idx           INTEGER NOT NULL,
                instance      TEXT    NOT NULL,
                output        TEXT    NOT NULL,
                cache_hit     INTEGER NOT NULL,
                truncated     TEXT,
                PRIMARY KEY (record_id, idx)
            )
            """,
            # Version 1 keyed rows by the caller's id, so each id is one request there.
            # SQLite takes the bare columns from the row holding min(idx).
            """
            INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version,
                                  latency_ms, client_addr, forwarded)
            SELECT request_id, request_id, ts, route, model_name, model_version, latency_ms,
                   client_addr, forwarded
            FROM (SELECT *, min(idx) FROM predictions_v1 GROUP BY request_id)
            """,
            """
            INSERT INTO predictions (record_id, idx, instance, output, cache_hit)
            SELECT request_id, idx, instance, output, cache_hit FROM predictions_v1
            """,
            "DROP TABLE predictions_v1",
            "CREATE INDEX requests_ts ON requests (ts)",
            "CREATE INDEX requests_request_id ON requests (request_id)",
        ),
        postgres=(
            "DROP INDEX IF EXISTS predictions_ts",
            "ALTER TABLE predictions RENAME TO predictions_v1",
            "ALTER INDEX predictions_pkey RENAME TO predictions_v1_pkey",
            """
            CREATE TABLE requests (
                record_id     text             NOT NULL PRIMARY KEY,
                request_id    text             NOT NULL,
                ts            timestamptz      NOT NULL,
                route         text             NOT NULL,
                model_name    text             NOT NULL,
                model_version text             NOT NULL,
                latency_ms    double precision NOT NULL,
                client_addr   text,
                client_ip     text,
                forwarded     text,
                api_key       text,
                truncated     text
            )
            """,
            """
            CREATE TABLE predictions (
                record_id     text             NOT NULL,
                idx           integer          NOT NULL,
                instance      jsonb            NOT NULL,
                output        jsonb            NOT NULL,
                cache_hit     boolean          NOT NULL,
                truncated     text,
                PRIMARY KEY (record_id, idx)
            )
            """,
            """
            INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version,
                                  latency_ms, client_addr, forwarded)
            SELECT DISTINCT ON (request_id) request_id, request_id, ts, route, model_name,
                   model_version, latency_ms, client_addr, forwarded
            FROM predictions_v1 ORDER BY request_id, idx
            """,
            """
            INSERT INTO predictions (record_id, idx, instance, output, cache_hit)
            SELECT request_id, idx, instance, output, cache_hit FROM predictions_v1
            """,
            "DROP TABLE predictions_v1",
            "CREATE INDEX requests_ts ON requests (ts)",
            "CREATE INDEX requests_request_id ON requests (request_id)",
        ),
    ),
    Migration(
        version=3,
        description="requests.traffic: synthetic traffic marked by its sender",
        sqlite=("ALTER TABLE requests ADD COLUMN traffic TEXT",),
        postgres=("ALTER TABLE requests ADD COLUMN traffic text",),
    ),
    Migration(
        version=4,
        description="requests.model_label, role, shadow_of: which version answered, in which "
        "role, and which request a shadow's answers copy",
        sqlite=(
            "ALTER TABLE requests ADD COLUMN model_label TEXT",
            "ALTER TABLE requests ADD COLUMN role TEXT",
            "ALTER TABLE requests ADD COLUMN shadow_of TEXT",
            "CREATE INDEX requests_shadow_of ON requests (shadow_of)",
        ),
        postgres=(
            "ALTER TABLE requests ADD COLUMN model_label text",
            "ALTER TABLE requests ADD COLUMN role text",
            "ALTER TABLE requests ADD COLUMN shadow_of text",
            "CREATE INDEX requests_shadow_of ON requests (shadow_of)",
        ),
    ),
    Migration(
        version=5,
        description="requests.trace_id: the request's W3C trace, when it was traced",
        sqlite=("ALTER TABLE requests ADD COLUMN trace_id TEXT",),
        postgres=("ALTER TABLE requests ADD COLUMN trace_id text",),
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
