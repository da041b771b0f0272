"""The prediction log under pressure: a database whose writes hang (a lock held in the test's own
database), a full and a read-only data directory (a tmpfs the test mounts). The log says what
is wrong, memory stays bounded, retries back off, durable requests get 503 naming the cause,
and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from servepath.cache.base import NoCache
from servepath.config import Settings
from servepath.errors import StoreError
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store import open_log
from servepath.store.postgres import PostgresSink
from servepath.store.spool import Spool
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog
from tests.store.conftest import make_record
from tests.support import need_binary, need_root

pytestmark = pytest.mark.anyio

Start = Callable[[Any], Any]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def table_locked(url: str) -> Iterator[None]:
    """Hold an exclusive lock on the predictions table: every INSERT waits behind it."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


async def test_a_database_whose_writes_hang_is_unhealthy_and_the_queue_stays_bounded(
    pg_url: str, tmp_path: Path, started: Start
) -> None:
    log = await started(
        BatchedLog(
            PostgresSink(pg_url, write_timeout=0.5),
            spool=Spool(tmp_path / "spool"),
            batch_size=50,
            max_queued=200,
            retry_initial=0.2,
            retry_max=1.0,
        )
    )
    first = [make_record() for _ in range(10)]
    await log.record_durable(first)  # the table exists now
    assert log.status().healthy
    written = list(first)
    with table_locked(pg_url):
        # Traffic keeps coming while the database hangs: 3,000 records over ~2 s.
        peak = 0
        for _ in range(60):
            batch = [make_record() for _ in range(50)]
            written += batch
            log.record(batch)
            peak = max(peak, log.status().queued)
            await asyncio.sleep(0.03)
        status = log.status()
        assert not status.healthy, status
        assert "postgresql://" in status.detail
        # Bounded: the oldest queued records spilled to the spool instead of piling up.
        assert peak <= log.hard_max_queued
        assert log.stats().spooled > 0
        assert log.stats().lost == 0
        # A reconnect does not make it healthy again while writes still hang.
        await asyncio.sleep(1.0)
        assert not log.status().healthy
    await wait_until(lambda: log.status().healthy, 15, "a committed write after the lock")
    await wait_until(lambda: log.status().spooled == 0, 15, "the spool to replay")
    await log.close()
    with psycopg.connect(pg_url) as conn:
        ids = [row[0] for row in conn.execute("SELECT record_id FROM predictions")]
    assert sorted(ids) == sorted(r.request_id for r in written), "a record lost or duplicated"


async def test_retries_back_off_while_the_database_stays_away(
    pg_name: str, tmp_path: Path, started: Start
) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"  # never created
    opens: list[float] = []

    class CountingSink(PostgresSink):
        async def open(self) -> None:
            opens.append(time.monotonic())
            await super().open()

    log = await started(
        BatchedLog(
            CountingSink(url), spool=Spool(tmp_path / "spool"), retry_initial=0.1, retry_max=0.8
        )
    )
    for _ in range(40):
        log.record([make_record()])
        await asyncio.sleep(0.05)
    # Wait for attempts, not for a time: a busy machine only spaces them further apart.
    deadline = time.monotonic() + 60
    while len(opens) < 7 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    gaps = [b - a for a, b in itertools.pairwise(opens)]
    assert len(gaps) >= 6, opens
    # After the first retry, each wait at least doubles from retry_initial, up to retry_max
    # (a little slack for the clock): never a tight loop of attempts.
    for i, gap in enumerate(gaps[1:6]):
        assert gap >= 0.9 * min(0.1 * 2**i, 0.8), gaps
    assert log.stats().lost == 0 and log.stats().spooled == 40


# --- a full or read-only data directory ------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    need_root()
    need_binary("mount")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system ``directory`` is on; returns the file to delete to free it."""
    ballast = directory / "ballast"
    with ballast.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return ballast


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "mnt") as path:
        yield path


async def post_many(app: ServepathApp, n: int, start: int = 0) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [
            await client.post(
                "/decisions",
                json={**EXAMPLE_APPLICANT, "income": 40_000.0 + i},
                headers={"x-request-id": f"disk-{i}"},
            )
            for i in range(start, start + n)
        ]


async def test_a_full_disk_is_said_in_health_and_durable_requests_get_503_naming_it(
    tmpfs: Path, example_model: LoadedModel
) -> None:
    settings = Settings(data_dir=tmpfs, durable=True, cache_url="off")
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=open_log(settings))
    await app.startup()
    try:
        ok = await post_many(app, 5)
        assert {r.status_code for r in ok} == {200}
        ballast = fill(tmpfs)
        during = await post_many(app, 30, start=5)
        codes = {r.status_code for r in during}
        assert 500 not in codes, [r.text for r in during if r.status_code == 500][:1]
        refused = [r for r in during if r.status_code == 503]
        assert refused, codes
        body = refused[-1].json()
        assert body["reason"] == "log_unavailable"
        assert "space" in body["error"].lower() or "full" in body["error"].lower(), body
        assert refused[-1].headers["retry-after"].isdigit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            health = await client.get("/")
            ready = await client.get("/v2/health/ready")
        assert health.status_code == 503 and ready.status_code == 503
        store = health.json()["store"]
        assert store["healthy"] is False and store["accepting"] is False
        # Space again: the next requests are kept and answered.
        ballast.unlink()
        deadline = time.monotonic() + 15
        while True:
            after = await post_many(app, 1, start=100 + int(time.monotonic() * 10) % 1000)
            if after[0].status_code == 200:
                break
            assert time.monotonic() < deadline, after[0].text
            await asyncio.sleep(0.2)
    finally:
        await app.shutdown()
    answered = {r.headers["x-request-id"] for r in [*ok, *during, *after] if r.status_code == 200}
    import sqlite3

    with sqlite3.connect(tmpfs / "predictions.sqlite3") as conn:
        stored = {row[0] for row in conn.execute("SELECT request_id FROM requests")}
    assert answered <= stored, answered - stored


async def test_a_read_only_data_directory_refuses_durable_requests_with_503_not_500(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    with small_tmpfs(tmp_path / "ro", size="1m") as directory:
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        settings = Settings(data_dir=directory, durable=True, cache_url="off")
        store = open_log(settings)
        app = ServepathApp(settings, model=example_model, cache=NoCache(), store=store)
        await app.startup()
        try:
            during = await post_many(app, 10)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                health = await client.get("/")
        finally:
            await app.shutdown()
    codes = [r.status_code for r in during]
    assert 500 not in codes, codes
    assert set(codes) == {503}, codes
    assert all(r.json()["reason"] == "log_unavailable" for r in during)
    assert "read-only" in during[-1].json()["error"].lower(), during[-1].json()
    assert health.status_code == 503
    assert "read-only" in health.json()["store"]["detail"].lower()


async def test_when_the_spool_fails_but_the_database_answers_records_go_to_the_database(
    pg_url: str, tmpfs: Path, started: Start
) -> None:
    log = await started(
        BatchedLog(PostgresSink(pg_url), spool=Spool(tmpfs / "spool"), retry_initial=0.1)
    )
    await log.record_durable([make_record()])
    fill(tmpfs)
    # The database is fine: nothing needs the spool, nothing is lost.
    records = [make_record() for _ in range(100)]
    await log.record_durable(records)
    assert log.stats().lost == 0
    assert log.status().healthy and log.status().accepting


async def test_a_log_that_can_keep_nothing_refuses_durable_records_at_once(
    tmp_path: Path, started: Start
) -> None:
    # A SQLite file in a directory that cannot exist (a file is in its way), and a spool
    # in the same impossible place: neither takes a record.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    log = await started(
        BatchedLog(
            SQLiteSink(blocker / "predictions.sqlite3"),
            spool=Spool(blocker / "spool"),
            retry_initial=0.1,
        )
    )
    with pytest.raises(StoreError):
        await log.record_durable([make_record()])
    status = log.status()
    assert not status.accepting and not status.healthy
    started_at = time.perf_counter()
    with pytest.raises(StoreError, match="spool"):
        await log.record_durable([make_record()])
    assert time.perf_counter() - started_at < 0.5
    assert log.stats().lost >= 1
