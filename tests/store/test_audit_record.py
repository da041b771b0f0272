"""An audit record no caller can forge, on real SQLite and PostgreSQL.

The server owns each record's identity (a caller's X-Request-ID is stored beside it, never
used as a key), a request's shared fields are stored once, every field a caller controls is
bounded, and what was cut is marked. Logs made by an older servepath keep working.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from servepath.cli import app as cli
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.store.bounds import MAX_INSTANCE_BYTES, TRUNCATED_KEY, bounded_json, bounded_text
from servepath.store.spool import Spool, decode, encode
from tests.service.live import live_server
from tests.store.conftest import Backend, make_record

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]
runner = CliRunner()

#: Schema version 1 as servepath created it before server-owned record ids
#: (``git show HEAD:src/servepath/store/schema.py`` at the time of the change).
V1_SQLITE = (
    """
    CREATE TABLE schema_version (
        version     INTEGER PRIMARY KEY,
        description TEXT NOT NULL,
        applied_at  REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    )
    """,
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
    "INSERT INTO schema_version (version, description) VALUES (1, 'predictions table')",
)
V1_POSTGRES = (
    """
    CREATE TABLE schema_version (
        version     integer PRIMARY KEY,
        description text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )
    """,
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
    "INSERT INTO schema_version (version, description) VALUES (1, 'predictions table')",
)
#: Version 1 rows: a request of two instances and one of one, as an old server wrote them.
V1_ROWS = [
    ("old-batch", 0, 1_700_000_000.0, "vertex", '{"age": 30}', '{"decision": "approve"}',
     4.0, True, "203.0.113.9:1000", "198.51.100.1"),
    ("old-batch", 1, 1_700_000_000.0, "vertex", '{"age": 31}', '{"decision": "decline"}',
     4.0, False, "203.0.113.9:1000", "198.51.100.1"),
    ("old-one", 0, 1_700_000_100.0, "decisions", '{"age": 40}', '{"decision": "approve"}',
     2.0, False, None, None),
]  # fmt: skip


def store_url(backend: Backend) -> str:
    return f"sqlite://{backend.location}" if backend.kind == "sqlite" else backend.location


def serving(backend: Backend, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=tmp_path, store_url=store_url(backend), durable=True, **changes
    )  # durable: an answered prediction is committed, so the test can count rows at once


def count_rows(backend: Backend) -> tuple[int, int]:
    """(requests, predictions) rows in the database."""
    sql = "SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM predictions)"
    if backend.kind == "sqlite":
        with sqlite3.connect(backend.location) as conn:
            row = conn.execute(sql).fetchone()
    else:
        with psycopg.connect(backend.location) as pg:
            row = pg.execute(sql).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_reused_request_id_gives_one_record_per_request(
    backend: Backend, tmp_path: Path, example_model: LoadedModel
) -> None:
    with (
        live_server(serving(backend, tmp_path), example_model) as live,
        httpx.Client(base_url=live.url, timeout=30, trust_env=False) as client,
    ):
        answers = [
            client.post("/decisions", json=EXAMPLE_APPLICANT, headers={"X-Request-ID": "same"})
            for _ in range(5)
        ]
        batch = client.post(
            "/decisions",
            json={"instances": [EXAMPLE_APPLICANT] * 3},
            headers={"X-Request-ID": "same"},
        )
        anonymous = client.post("/decisions", json=EXAMPLE_APPLICANT)
        assert [r.status_code for r in [*answers, batch, anonymous]] == [200] * 7
        committed = live.app.plane.store.stats()
    assert committed is not None and committed.committed == 5 + 3 + 1
    assert count_rows(backend) == (7, 9)  # the committed counter equals the rows
    with backend.reader() as reader:
        same = reader.recent(limit=100, request_id="same")
        own_id = anonymous.headers["x-request-id"]
        mine = reader.recent(limit=100, request_id=own_id)
    assert len(same) == 8 and {r.request_id for r in same} == {"same"}
    assert len({r.record_id for r in same}) == 6  # five requests of one, one of three
    assert all(r.record_id not in ("", "same") for r in same)
    # Without a caller's id, the id the response carried is the record's own.
    assert [(r.request_id, r.record_id) for r in mine] == [(own_id, own_id)]


def test_a_megabyte_forwarded_header_on_a_thousand_instances_writes_a_bounded_amount(
    backend: Backend, tmp_path: Path, example_model: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = serving(backend, tmp_path, max_header_bytes=2_000_000)
    body = {"instances": [{**EXAMPLE_APPLICANT, "age": 18 + i % 60} for i in range(1000)]}
    header = ", ".join(f"198.51.{i // 256 % 256}.{i % 256}" for i in range(70_000))[:1_000_000]
    header = header.rsplit(",", 1)[0]
    written: dict[str, int] = {}
    with (
        live_server(settings, example_model) as live,
        httpx.Client(base_url=live.url, timeout=60, trust_env=False) as client,
    ):
        for name, headers in [
            ("plain", {"X-Request-ID": "plain"}),
            ("1 MB X-Forwarded-For", {"X-Request-ID": "big", "X-Forwarded-For": header}),
        ]:
            before = bytes_written(backend)
            r = client.post("/decisions", json=body, headers=headers)
            assert r.status_code == 200, r.text[:200]
            written[name] = bytes_written(backend) - before
    with capsys.disabled():
        print(f"\n{backend.kind}: bytes written for 1,000 instances: {written}")
    # Before: the header stored on each of the 1,000 rows, ~1 GB. Now: once, cut to 1 KB.
    assert written["1 MB X-Forwarded-For"] < 4_000_000
    assert written["1 MB X-Forwarded-For"] - written["plain"] < 512 * 1024
    with backend.reader() as reader:
        big = reader.recent(limit=2000, request_id="big")
    assert len(big) == 1000 and len({r.record_id for r in big}) == 1
    record = big[0]
    assert record.truncated == "forwarded"
    assert record.forwarded is not None and record.forwarded.startswith("…")
    assert len(record.forwarded.encode()) <= 1024
    assert record.client_ip == "127.0.0.1"  # the spoofed chain was never believed


def bytes_written(backend: Backend) -> int:
    """Bytes the log's writes cost: for SQLite, what this process (the in-process server)
    passed to write(); for PostgreSQL, the size of the test database's log tables."""
    if backend.kind == "sqlite":
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise AssertionError("no wchar in /proc/self/io")
    with psycopg.connect(backend.location) as pg:
        row = pg.execute(
            "SELECT pg_total_relation_size('requests') + pg_total_relation_size('predictions')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_servepath_log_finds_records_by_the_callers_request_id(backend: Backend) -> None:
    now = time.time()
    records = [
        make_record("shared", 0, record_id="rec-a", ts=now - 3),
        make_record("shared", 0, record_id="rec-b", ts=now - 2),
        make_record("other", 0, record_id="rec-c", ts=now - 1),
    ]

    async def write() -> None:
        log = backend.log()
        await log.start()
        await log.record_durable(records)
        await log.close()

    asyncio.run(write())
    base = ["log", "--store", store_url(backend)]
    result = runner.invoke(cli, [*base, "--request-id", "shared", "--json"])
    assert result.exit_code == 0, result.output
    rows = orjson.loads(result.stdout)
    assert [(r["request_id"], r["record_id"]) for r in rows] == [
        ("shared", "rec-a"),
        ("shared", "rec-b"),
    ]
    by_record = orjson.loads(runner.invoke(cli, [*base, "--request-id", "rec-c", "--json"]).stdout)
    assert [r["request_id"] for r in by_record] == ["other"]
    table = runner.invoke(cli, [*base, "--request-id", "shared"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and table.output.count("shared") >= 2, table.output
    none = runner.invoke(cli, [*base, "--request-id", "nobody"])
    assert none.exit_code == 0 and "no predictions with request id nobody" in none.output


def create_v1(backend: Backend) -> None:
    """A log as servepath created it before version 2, with V1_ROWS in it."""
    if backend.kind == "sqlite":
        conn = sqlite3.connect(backend.location)
        for statement in V1_SQLITE:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, ?, 'decision', 'v0', ?, ?, ?, ?, ?, ?)",
            V1_ROWS,
        )
        conn.commit()
        conn.close()
        return
    with psycopg.connect(backend.location) as pg:
        for statement in V1_POSTGRES:
            pg.execute(statement)
        with pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO predictions VALUES (%s, %s, to_timestamp(%s), %s, 'decision', "
                "'v0', %s::jsonb, %s::jsonb, %s, %s, %s, %s)",
                V1_ROWS,
            )


def test_a_log_of_the_old_schema_is_read_as_it_is_until_migrated(backend: Backend) -> None:
    create_v1(backend)
    with backend.reader() as reader:
        rows = reader.recent(limit=10)
        stats = reader.stats()
        found = reader.recent(limit=10, request_id="old-batch")
    assert [(r.request_id, r.index) for r in rows] == [
        ("old-batch", 0),
        ("old-batch", 1),
        ("old-one", 0),
    ]
    assert rows[0].record_id == "old-batch" and rows[0].forwarded == "198.51.100.1"
    assert (stats.predictions, stats.requests) == (3, 2)
    assert len(found) == 2


async def test_the_old_schema_is_migrated_on_start_and_keeps_its_records(
    backend: Backend,
) -> None:
    create_v1(backend)
    log = backend.log()
    await log.start()  # migrates
    reused = make_record("old-batch", 0, record_id="new-record", model_version="v1")
    await log.record_durable([reused])
    await log.close()
    assert count_rows(backend) == (3, 4)
    with backend.reader() as reader:
        old = [r for r in reader.recent(limit=10) if r.model_version == "v0"]
        again = reader.recent(limit=10, request_id="old-batch")
        stats = reader.stats()
    assert [(r.record_id, r.index, r.instance, r.cache_hit) for r in old] == [
        ("old-batch", 0, {"age": 30}, True),
        ("old-batch", 1, {"age": 31}, False),
        ("old-one", 0, {"age": 40}, False),
    ]
    assert old[0].ts == pytest.approx(1_700_000_000.0)
    assert old[0].client_addr == "203.0.113.9:1000" and old[0].forwarded == "198.51.100.1"
    assert old[0].client_ip is None  # never decided by the old servepath
    assert old[0].latency_ms == 4.0 and old[0].route == "vertex"
    # The reused id is a separate record beside the old one.
    assert sorted(r.record_id for r in again) == ["new-record", "old-batch", "old-batch"]
    assert (stats.predictions, stats.requests) == (4, 3)
    with backend.reader() as reader:
        assert reader.stats().versions[0].latency_ms.p50 is not None


def test_a_request_is_spooled_with_its_shared_fields_once(tmp_path: Path) -> None:
    forwarded = "…(+9000) " + ", ".join(["198.51.100.7"] * 70)
    now = time.time()
    records = [
        make_record(
            "spooled", i, ts=now, record_id="rec-s", forwarded=forwarded, truncated="forwarded"
        )
        for i in range(1000)
    ]
    data = encode(records)
    assert len(data) < 1000 * 200  # the 1 KB chain once, not 1,000 times
    assert data.count(b"\n") == 1
    assert decode(data) == records
    spool = Spool(tmp_path / "spool")
    spool.append(records)
    assert spool.pending == 1000
    fresh = Spool(tmp_path / "spool")
    spool.close()
    assert fresh.scan() == 1000  # records, though the file has one line


def test_a_spool_line_of_an_older_servepath_is_replayed(tmp_path: Path) -> None:
    old = make_record("old-spool").to_json()
    for key in ("record_id", "client_ip", "truncated"):
        del old[key]
    [record] = decode(orjson.dumps(old) + b"\n")
    assert record.key == "old-spool" and record.record_id == "" and record.client_ip is None


def test_an_instance_too_large_is_cut_and_says_so() -> None:
    instance = {"purpose": "car" * 100_000, "age": 38}
    kept, cut = bounded_json(instance, MAX_INSTANCE_BYTES)
    assert cut and kept["age"] == 38
    assert kept[TRUNCATED_KEY] == {"bytes": len(orjson.dumps(instance))}
    assert kept["purpose"].startswith("carcar") and kept["purpose"].endswith("chars)")
    assert len(orjson.dumps(kept)) <= MAX_INSTANCE_BYTES
    many = {f"f{i}": "x" * 200 for i in range(1000)}
    kept, cut = bounded_json(many, MAX_INSTANCE_BYTES)
    assert cut and set(kept) == {TRUNCATED_KEY, "prefix"}
    assert len(orjson.dumps(kept)) <= MAX_INSTANCE_BYTES
    small = {"age": 38}
    assert bounded_json(small, MAX_INSTANCE_BYTES) == (small, False)


def test_text_is_cut_to_its_bound_in_bytes_with_a_marker() -> None:
    assert bounded_text("short", 64) == ("short", False)
    text, cut = bounded_text("é" * 1000, 64)
    assert cut and text is not None and len(text.encode()) <= 64 and text.endswith("bytes)")
    assert bounded_text(None, 64) == (None, False)


async def test_truncated_instances_are_marked_in_the_record(backend: Backend) -> None:
    log = backend.log()
    await log.start()
    kept, _ = bounded_json({"purpose": "x" * 10_000}, MAX_INSTANCE_BYTES)
    await log.record_durable(
        [make_record("cut", 0, instance=kept, truncated="forwarded,instance", forwarded="…")]
    )
    await log.close()
    [row] = backend.rows()
    assert row.truncated == "forwarded,instance" and TRUNCATED_KEY in row.instance
    assert os.path.exists(backend.location) or backend.kind == "postgresql"
