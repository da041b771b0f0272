"""The trace id in the prediction log (schema version 5), on SQLite and PostgreSQL: a log of
the schema before it reads as untraced and is migrated in place; a traced request's records
keep their trace id, which `servepath log --json` shows."""

from __future__ import annotations

import sqlite3
import time

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.store import schema
from servepath.store.schema import migrate_postgres, migrate_sqlite
from tests.store.conftest import Backend, make_record

pytestmark = pytest.mark.anyio
runner = CliRunner()

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_REQUEST = (
    "INSERT INTO requests (record_id, request_id, ts, route, model_name, model_version, "
    "latency_ms) VALUES ('before', 'before', {ts}, 'decisions', 'decision', 'v1', 2.5)"
)
_PREDICTION = (
    "INSERT INTO predictions (record_id, idx, instance, output, cache_hit) "
    """VALUES ('before', 0, '{{"age": 38}}', '{{"decision": "approve"}}', {hit})"""
)


async def _log_before_traces(backend: Backend) -> None:
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.location, isolation_level=None)
        assert migrate_sqlite(conn) == 4
        conn.execute(_REQUEST.format(ts=time.time() - 60))
        conn.execute(_PREDICTION.format(hit=0))
        conn.close()
        return
    async with await psycopg.AsyncConnection.connect(backend.location, autocommit=True) as aconn:
        assert await migrate_postgres(aconn) == 4
        await aconn.execute(_REQUEST.format(ts="now() - interval '1 minute'"))  # type: ignore[arg-type]
        await aconn.execute(_PREDICTION.format(hit="false"))  # type: ignore[arg-type]


async def test_a_traced_request_keeps_its_trace_id_and_an_older_log_reads_as_untraced(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, started
) -> None:
    # A log as version 4 left it, with one request in it.
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:4])
        await _log_before_traces(backend)
    with backend.reader() as reader:
        [old] = reader.recent(limit=10)
        assert old.request_id == "before" and old.trace_id is None

    log = await started(backend.log())
    log.record([make_record("traced", trace_id=TRACE), make_record("traced", 1, trace_id=TRACE)])
    log.record([make_record("untraced")])
    await log.close()
    with backend.reader() as reader:
        rows = {(r.request_id, r.index): r.trace_id for r in reader.recent(limit=10)}
    assert rows == {("before", 0): None, ("traced", 0): TRACE, ("traced", 1): TRACE,
                    ("untraced", 0): None}  # fmt: skip

    url = f"sqlite://{backend.location}" if backend.kind == "sqlite" else backend.location
    result = runner.invoke(app, ["log", "--store", url, "--json", "-n", "10"])
    assert result.exit_code == 0, result.output
    listed = {r["request_id"]: r["trace_id"] for r in orjson.loads(result.stdout)}
    assert listed == {"before": None, "traced": TRACE, "untraced": None}
