"""The database missing, stopped mid-run, refusing a record, or the writer killed by SIGKILL:
nothing acknowledged is lost and nothing is duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from servepath.store.postgres import PostgresSink
from servepath.store.spool import Spool
from servepath.store.writer import BatchedLog
from tests.store.conftest import (
    Backend,
    OwnPostgres,
    create_database,
    database_url,
    drop_database,
    make_record,
)

pytestmark = pytest.mark.anyio

Start = Callable[[Any], Any]
REPO = Path(__file__).resolve().parents[2]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def ids_in_commit_order(url: str) -> list[str]:
    """Request ids in the order PostgreSQL committed them (transaction id, then position)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT record_id FROM predictions ORDER BY xmin::text::bigint, ctid"
        ).fetchall()
    return [row[0] for row in rows]


async def test_missing_database_spools_then_replays_in_order_once_created(
    pg_name: str, tmp_path: Path, started: Start
) -> None:
    url = database_url(pg_name)
    log = await started(
        BatchedLog(
            PostgresSink(url), spool=Spool(tmp_path / "spool"), retry_initial=0.1, retry_max=0.3
        )
    )
    status = log.status()
    assert not status.healthy
    assert f'database "{pg_name}" does not exist' in status.detail

    ids: list[str] = []
    for burst in range(6):
        records = [make_record() for _ in range(200)]
        ids += [r.request_id for r in records]
        if burst % 2:
            started_at = time.perf_counter()
            await log.record_durable(records)  # acknowledged once fsynced to the spool
            assert time.perf_counter() - started_at < 1.0
        else:
            for r in records:
                log.record([r])
        await asyncio.sleep(0.02)
    await wait_until(lambda: log.status().queued == 0, 5, "the queue to drain to the spool")
    assert log.status().spooled == 1200

    create_database(pg_name)
    await wait_until(
        lambda: log.status().healthy and log.status().spooled == 0, 10, "the spool to replay"
    )
    await log.close()
    assert ids_in_commit_order(url) == ids
    assert list((tmp_path / "spool").glob("spool-*.jsonl")) == []


async def test_postgres_stopped_mid_run_loses_and_duplicates_nothing(
    own_postgres: OwnPostgres, tmp_path: Path, started: Start
) -> None:
    name = f"sp_test_{uuid.uuid4().hex[:12]}"
    create_database(name, own_postgres.admin_url)
    url = database_url(name, own_postgres.port)
    log = await started(
        BatchedLog(
            PostgresSink(url, connect_timeout=2),
            spool=Spool(tmp_path / "spool"),
            linger=0.01,
            retry_initial=0.1,
            retry_max=0.3,
        )
    )
    ids: list[str] = []

    async def burst(n: int) -> None:
        for _ in range(n):
            record = make_record()
            ids.append(record.request_id)
            log.record([record])
            await asyncio.sleep(0.001)

    try:
        await burst(300)
        await asyncio.to_thread(own_postgres.stop, "immediate")
        await burst(300)
        await wait_until(lambda: log.status().spooled > 0, 5, "records to spool")
        assert not log.status().healthy
        durable = make_record()
        await log.record_durable([durable])  # the spool acknowledges while the server is down
        ids.append(durable.request_id)
        await asyncio.to_thread(own_postgres.start)
        await burst(300)
        await wait_until(lambda: log.status().healthy and log.status().spooled == 0, 15, "recovery")
        await log.close()
        assert ids_in_commit_order(url) == ids
    finally:
        await asyncio.to_thread(own_postgres.start_if_stopped)
        drop_database(name, own_postgres.admin_url)


async def test_unwritable_sqlite_location_spools_until_it_is_fixed(
    tmp_path: Path, started: Start
) -> None:
    blocker = tmp_path / "db"
    blocker.write_text("a file where the database directory should be")
    backend = Backend("sqlite", str(blocker / "predictions.sqlite3"), tmp_path / "spool")
    log = await started(backend.log())
    records = [make_record() for _ in range(50)]
    await log.record_durable(records)
    assert not log.status().healthy and log.status().spooled == 50
    blocker.unlink()
    await wait_until(lambda: log.status().spooled == 0, 5, "the spool to replay")
    await log.close()
    assert [r.request_id for r in backend.rows()] == [r.request_id for r in records]


async def test_a_record_the_database_refuses_is_kept_aside_and_the_rest_written(
    pg_url: str, tmp_path: Path, started: Start
) -> None:
    spool_dir = tmp_path / "spool"
    log = await started(BatchedLog(PostgresSink(pg_url), spool=Spool(spool_dir)))
    records = [make_record() for _ in range(10)]
    # jsonb cannot hold a NUL character, though it is valid JSON.
    poison = make_record(instance={"purpose": "car\u0000"})
    await log.record_durable([*records[:5], poison, *records[5:]])
    await log.close()
    assert ids_in_commit_order(pg_url) == [r.request_id for r in records]
    assert log.stats().rejected == 1
    assert log.status().healthy and log.status().spooled == 0
    (rejected,) = spool_dir.glob("rejected-*.jsonl")
    kept = orjson.loads(rejected.read_bytes())
    assert kept["record"]["request_id"] == poison.request_id
    assert "Unicode" in kept["error"]


# --- a writer process killed by SIGKILL ---------------------------------------------------

CHILD = """
import asyncio, sys, time
from pathlib import Path
from servepath.store.base import PredictionRecord
from servepath.store.postgres import PostgresSink
from servepath.store.spool import Spool
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog

kind, location, spool_dir, mode, count = sys.argv[1:]

def record(i):
    return PredictionRecord(
        request_id=f"k-{i:06d}", index=0, ts=time.time(), route="decisions",
        model_name="decision", model_version="v1", instance={"i": i},
        output={"decision": "approve"}, latency_ms=1.0, cache_hit=False,
        client_addr=None, forwarded=None,
    )

async def main():
    durable = mode == "durable"
    if kind == "sqlite":
        sink = SQLiteSink(Path(location), durable=durable)
    else:
        sink = PostgresSink(location)
    log = BatchedLog(sink, spool=Spool(Path(spool_dir)), retry_initial=60, retry_max=60)
    await log.start()
    i = 0
    while count == "forever" or i < int(count):
        if durable:
            await log.record_durable([record(i)])
            print(f"acked k-{i:06d}", flush=True)
        else:
            log.record([record(i)])
            if i % 100 == 99:
                await asyncio.sleep(0)
        i += 1
    if not durable:
        while log.status().queued:
            await asyncio.sleep(0.01)
    print("committed", flush=True)
    if not durable:
        # More records that are still queued when the kill arrives: these may be lost.
        for j in range(i, i + 1000):
            log.record([record(j)])
        print("queued more", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def run_child(
    backend: Backend, mode: str, count: str, stop_after: Callable[[str], bool]
) -> list[str]:
    """Run a writer process, read its lines until ``stop_after`` says so, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend.kind, backend.location, str(backend.spool_dir),
         mode, count],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if stop_after(line.strip()):
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return lines


async def test_sigkill_loses_no_acknowledged_record_in_durable_mode(backend: Backend) -> None:
    lines = run_child(backend, "durable", "forever", lambda line: line == "acked k-000400")
    acked = [line.split()[1] for line in lines if line.startswith("acked")]
    assert len(acked) == 401
    stored = [r.request_id for r in backend.rows()]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored)


async def test_sigkill_in_default_mode_loses_at_most_what_was_still_queued(
    backend: Backend,
) -> None:
    lines = run_child(backend, "plain", "2000", lambda line: line == "queued more")
    assert lines[-2:] == ["committed", "queued more"]
    stored = {r.request_id for r in backend.rows()}
    assert {f"k-{i:06d}" for i in range(2000)} <= stored
    assert stored <= {f"k-{i:06d}" for i in range(3000)}


async def test_spool_survives_sigkill_and_the_next_start_replays_it(
    pg_name: str, tmp_path: Path, started: Start
) -> None:
    backend = Backend("postgresql", database_url(pg_name), tmp_path / "spool")
    lines = run_child(backend, "durable", "500", lambda line: line == "committed")
    assert len([line for line in lines if line.startswith("acked")]) == 500
    assert sum(1 for _ in backend.spool_dir.glob("spool-*.jsonl")) >= 1

    create_database(pg_name)
    log = await started(backend.log())
    assert log.status().spooled == 500  # found at start, left by the killed process
    await wait_until(lambda: log.status().spooled == 0, 10, "the orphaned spool to replay")
    await log.close()
    assert ids_in_commit_order(backend.location) == [f"k-{i:06d}" for i in range(500)]


async def test_a_server_restarted_between_batches_costs_only_a_detour_through_the_spool(
    own_postgres: OwnPostgres, tmp_path: Path, started: Start
) -> None:
    name = f"sp_test_{uuid.uuid4().hex[:12]}"
    create_database(name, own_postgres.admin_url)
    url = database_url(name, own_postgres.port)
    try:
        log = await started(
            BatchedLog(PostgresSink(url), spool=Spool(tmp_path / "spool"), retry_initial=5.0)
        )
        first = make_record()
        await log.record_durable([first])
        await asyncio.to_thread(own_postgres.stop, "fast")
        await asyncio.to_thread(own_postgres.start)
        # The pooled connection died with the old server: the write fails at once, the
        # batch is spooled, and the writer reconnects and replays without waiting out the
        # (deliberately long) retry back-off.
        second = make_record()
        started_at = time.perf_counter()
        await log.record_durable([second])
        assert time.perf_counter() - started_at < 1.0
        await wait_until(lambda: log.status().spooled == 0, 2.0, "the detour to replay")
        assert log.status().healthy
        assert (log.stats().spooled, log.stats().replayed) == (1, 1)
        await log.close()
        assert ids_in_commit_order(url) == [first.request_id, second.request_id]
    finally:
        await asyncio.to_thread(own_postgres.start_if_stopped)
        drop_database(name, own_postgres.admin_url)
