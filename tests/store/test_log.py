"""Both prediction-log backends against one specification: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from servepath.errors import StoreClosed
from tests.store.conftest import Backend, make_record, same_record

pytestmark = pytest.mark.anyio

Start = Callable[[Any], Any]


async def test_records_come_back_through_the_reader_exactly(
    backend: Backend, started: Start
) -> None:
    first = make_record("r-1", 0)
    records = [
        first,
        # A request's fields are stored once: its records share them (the time too).
        make_record("r-1", 1, ts=first.ts, output={"decision": "decline", "probability": 0.12}),
        make_record(
            "r-2",
            0,
            route="vertex",
            model_version="2026-01-31.3",
            instance={"purpose": "éducation ✓", "nested": {"a": [1, 2.5, None, True]}},
            latency_ms=0.0125,
            cache_hit=True,
            client_addr="[::1]:40000",
            forwarded="for=198.51.100.7;proto=https, for=203.0.113.9",
        ),
        make_record("r-3", 0, route="v2", client_addr=None, output={"prediction": [1.5, 2]}),
    ]
    log = await started(backend.log())
    log.record(records[:2])
    log.record(records[2:])
    await log.close()
    rows = backend.rows()
    assert len(rows) == len(records)
    by_key = {(r.request_id, r.index): r for r in rows}
    for record in records:
        assert same_record(by_key[(record.request_id, record.index)], record), record


async def test_many_records_share_few_transactions(backend: Backend, started: Start) -> None:
    log = await started(backend.log(batch_size=500, linger=0.05))
    started_at = time.perf_counter()
    for _ in range(2000):
        log.record([make_record()])
    enqueue_seconds = time.perf_counter() - started_at
    await log.close()
    stats = log.stats()
    assert stats.committed == 2000
    assert stats.transactions <= 8, stats
    assert len(backend.rows()) == 2000
    # Enqueueing is the request path: it must not wait for the database.
    assert enqueue_seconds < 0.5
    if backend.kind == "postgresql":
        # Independent of the writer's own counting: rows inserted by one transaction share xmin.
        with psycopg.connect(backend.location) as conn:
            row = conn.execute("SELECT count(DISTINCT xmin::text) FROM predictions").fetchone()
        assert row is not None and row[0] == stats.transactions


async def test_durable_record_returns_only_once_committed(backend: Backend, started: Start) -> None:
    # A long linger would hold a plain record; a durable one is written at once.
    log = await started(backend.log(linger=5.0, durable=True))
    plain, durable = make_record("plain"), make_record("durable")
    log.record([plain])
    started_at = time.perf_counter()
    await log.record_durable([durable])
    assert time.perf_counter() - started_at < 2.0
    ids = {r.request_id for r in backend.rows()}
    # Queued before the durable one, the plain record rides in the same transaction.
    assert ids == {"plain", "durable"}
    assert log.status().queued == 0


async def test_plain_records_wait_in_the_queue_for_the_linger(
    backend: Backend, started: Start
) -> None:
    log = await started(backend.log(linger=0.5))
    log.record([make_record("queued")])
    await asyncio.sleep(0.1)
    assert log.status().queued == 1
    assert backend.rows() == []
    await asyncio.sleep(0.8)
    assert [r.request_id for r in backend.rows()] == ["queued"]


async def test_a_durable_call_larger_than_a_batch_waits_for_all_of_it(
    backend: Backend, started: Start
) -> None:
    log = await started(backend.log(batch_size=7, linger=5.0))
    records = [make_record("big", i) for i in range(30)]
    await log.record_durable(records)
    assert len(backend.rows()) == 30
    assert log.stats().transactions == 5


async def test_the_same_record_twice_is_one_row(backend: Backend, started: Start) -> None:
    log = await started(backend.log())
    record = make_record("dup")
    log.record([record, record])  # within one batch
    await log.record_durable([record])  # and in a later one
    await log.close()
    rows = backend.rows()
    assert len(rows) == 1 and same_record(rows[0], record)


async def test_close_flushes_everything_queued(backend: Backend, started: Start) -> None:
    log = await started(backend.log(linger=30.0, batch_size=10_000))
    for i in range(1234):
        log.record([make_record(f"c-{i}")])
    started_at = time.perf_counter()
    await log.close()
    assert time.perf_counter() - started_at < 5
    assert len(backend.rows()) == 1234
    status = log.status()
    assert (status.queued, status.spooled, status.healthy) == (0, 0, True)
    with pytest.raises(StoreClosed):
        log.record([make_record()])


async def test_status_names_the_backend_and_where_it_writes(
    backend: Backend, started: Start
) -> None:
    log = await started(backend.log())
    status = log.status()
    assert status.backend == backend.kind
    assert status.healthy
    if backend.kind == "sqlite":
        assert status.detail == backend.location
    else:
        assert status.detail.startswith("postgresql://postgres@127.0.0.1:5432/sp_test_")
