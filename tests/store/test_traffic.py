"""Synthetic traffic in the prediction log, on SQLite and PostgreSQL: a log of the schema
before the mark is migrated and its rows read as ordinary, statistics leave marked requests
out and say how many, and a listing filters by kind."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.store import schema
from servepath.store.schema import LATEST_VERSION, migrate_postgres, migrate_sqlite
from tests.store.conftest import Backend, make_record

pytestmark = pytest.mark.anyio
runner = CliRunner()

#: The schema version before requests carried the mark.
UNMARKED_VERSION = 2


async def _old_log(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log as a servepath without the mark left it: schema version 2, one request in it."""
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:UNMARKED_VERSION])
        if backend.kind == "sqlite":
            conn = sqlite3.connect(backend.location, isolation_level=None)
            assert migrate_sqlite(conn) == UNMARKED_VERSION
            conn.execute(
                "INSERT INTO requests (record_id, request_id, ts, route, model_name, "
                "model_version, latency_ms) VALUES ('old-1', 'old-1', ?, 'decisions', "
                "'decision', 'v1', 2.5)",
                (time.time() - 60,),
            )
            conn.execute(
                "INSERT INTO predictions (record_id, idx, instance, output, cache_hit) "
                """VALUES ('old-1', 0, '{"age": 38}', '{"decision": "approve"}', 0)"""
            )
            conn.close()
        else:
            async with await psycopg.AsyncConnection.connect(
                backend.location, autocommit=True
            ) as aconn:
                assert await migrate_postgres(aconn) == UNMARKED_VERSION
                await aconn.execute(
                    "INSERT INTO requests (record_id, request_id, ts, route, model_name, "
                    "model_version, latency_ms) VALUES ('old-1', 'old-1', "
                    "now() - interval '1 minute', 'decisions', 'decision', 'v1', 2.5)"
                )
                await aconn.execute(
                    "INSERT INTO predictions (record_id, idx, instance, output, cache_hit) "
                    """VALUES ('old-1', 0, '{"age": 38}', '{"decision": "approve"}', false)"""
                )


def _version(backend: Backend) -> int:
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.location) as conn:
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])
    with psycopg.connect(backend.location) as conn:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row is not None
        return int(row[0])


async def test_a_log_of_the_old_schema_is_migrated_and_its_rows_read_as_ordinary(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, started
) -> None:
    await _old_log(backend, monkeypatch)
    # Read as it is, before any server migrates it: all of it ordinary.
    with backend.reader() as reader:
        [old] = reader.recent(limit=10)
        assert old.traffic is None
        assert reader.stats().predictions == 1 and reader.stats().left_out == ()
        assert reader.recent(limit=10, traffic="doctor") == []

    log = await started(backend.log())
    log.record([make_record("new-doctor", traffic="doctor")])
    await log.close()

    assert _version(backend) == LATEST_VERSION
    with backend.reader() as reader:
        rows = {r.request_id: r.traffic for r in reader.recent(limit=10)}
        stats = reader.stats()
    assert rows == {"old-1": None, "new-doctor": "doctor"}
    assert stats.predictions == 1 and stats.versions[0].decisions == {"approve": 1}
    assert stats.left_out_predictions == 1


async def test_stats_leave_marked_traffic_out_and_say_how_much(backend: Backend, started) -> None:
    records = [make_record(f"ordinary-{i}") for i in range(3)]
    # The doctor's large request: one request of three instances, all declined.
    decline = {"decision": "decline", "probability": 0.2}
    records += [make_record("doctor-large", i, traffic="doctor", output=decline) for i in range(3)]
    records += [make_record("doctor-1", traffic="doctor", output=decline)]
    records += [make_record("load-1", traffic="load", output=decline)]
    log = await started(backend.log())
    log.record(records)
    await log.close()

    with backend.reader() as reader:
        ordinary = reader.stats()
        everything = reader.stats(traffic="all")
        doctor = reader.stats(traffic="doctor")
        synthetic = reader.stats(traffic="synthetic")

    assert ordinary.traffic == "ordinary"
    assert (ordinary.predictions, ordinary.requests) == (3, 3)
    assert ordinary.versions[0].decisions == {"approve": 3}
    assert [(x.traffic, x.requests, x.predictions) for x in ordinary.left_out] == [
        ("doctor", 2, 4),
        ("load", 1, 1),
    ]
    assert ordinary.to_json()["left_out"] == {
        "predictions": 5,
        "requests": 3,
        "by_traffic": {
            "doctor": {"requests": 2, "predictions": 4},
            "load": {"requests": 1, "predictions": 1},
        },
    }
    assert (everything.predictions, everything.requests, everything.left_out) == (8, 6, ())
    assert (doctor.predictions, doctor.requests) == (4, 2)
    assert {x.traffic: x.predictions for x in doctor.left_out} == {"ordinary": 3, "load": 1}
    assert synthetic.predictions == 5 and synthetic.left_out_predictions == 3


async def test_a_listing_filters_by_kind_of_traffic(backend: Backend, started) -> None:
    log = await started(backend.log())
    log.record([
        make_record("plain"),
        make_record("by-doctor", traffic="doctor"),
        make_record("by-monitor", traffic="monitor"),
    ])  # fmt: skip
    await log.close()
    with backend.reader() as reader:
        every = reader.recent(limit=10)
        assert {r.request_id: r.traffic for r in every} == {
            "plain": None,
            "by-doctor": "doctor",
            "by-monitor": "monitor",
        }
        assert [r.request_id for r in reader.recent(limit=10, traffic="ordinary")] == ["plain"]
        assert [r.request_id for r in reader.recent(limit=10, traffic="monitor")] == ["by-monitor"]
        synthetic = reader.recent(limit=10, traffic="synthetic")
        assert sorted(r.request_id for r in synthetic) == ["by-doctor", "by-monitor"]


async def test_a_value_outside_the_vocabulary_is_stored_as_other(backend: Backend, started) -> None:
    # A record built by other code than the HTTP layer (or read from a spool file) still
    # cannot put arbitrary text in the column.
    log = await started(backend.log())
    log.record([make_record("odd", traffic="\x1b[31m" + "x" * 5000)])  # type: ignore[arg-type]
    await log.close()
    [row] = backend.rows()
    assert row.traffic == "other"


def _store_url(backend: Backend) -> str:
    return f"sqlite://{backend.location}" if backend.kind == "sqlite" else backend.location


@pytest.fixture
def mixed(backend: Backend) -> Backend:
    records = [make_record(f"real-{i}") for i in range(2)]
    records += [make_record(f"doc-{i}", traffic="doctor") for i in range(5)]

    async def write() -> None:
        log = backend.log()
        await log.start()
        log.record(records)
        await log.close()

    asyncio.run(write())
    return backend


def test_log_stats_says_what_it_left_out_and_how_to_count_it(mixed: Backend) -> None:
    table = runner.invoke(app, ["log", "stats", "--store", _store_url(mixed)])
    assert table.exit_code == 0, table.output
    assert "2 predictions in 2 requests" in table.output
    assert "left out: 5 predictions in 5 requests of synthetic traffic (doctor 5)" in table.output
    assert "--traffic all" in table.output

    data = orjson.loads(
        runner.invoke(app, ["log", "stats", "--store", _store_url(mixed), "--json"]).stdout
    )
    assert data["traffic"] == "ordinary" and data["predictions"] == 2
    assert data["left_out"]["by_traffic"] == {"doctor": {"requests": 5, "predictions": 5}}

    every = runner.invoke(
        app, ["log", "stats", "--store", _store_url(mixed), "--traffic", "all", "--json"]
    )
    assert orjson.loads(every.stdout)["predictions"] == 7
    assert (
        "left out"
        not in runner.invoke(
            app, ["log", "stats", "--store", _store_url(mixed), "--traffic", "all"]
        ).output
    )


def test_log_lists_every_request_with_its_mark_and_filters_by_it(mixed: Backend) -> None:
    listing = runner.invoke(app, ["log", "--store", _store_url(mixed)])
    assert listing.exit_code == 0, listing.output
    assert "traffic" in listing.output and "doctor" in listing.output
    only = runner.invoke(
        app, ["log", "--store", _store_url(mixed), "--traffic", "doctor", "--json"]
    )
    rows = orjson.loads(only.stdout)
    assert len(rows) == 5 and {r["traffic"] for r in rows} == {"doctor"}
    ordinary = runner.invoke(
        app, ["log", "--store", _store_url(mixed), "--traffic", "ordinary", "--json"]
    )
    assert sorted(r["request_id"] for r in orjson.loads(ordinary.stdout)) == ["real-0", "real-1"]


def test_an_unknown_traffic_filter_is_bad_usage(tmp_path: Path) -> None:
    result = runner.invoke(app, ["log", "stats", "--store", "sqlite", "--traffic", "robots"])
    assert result.exit_code == 2
