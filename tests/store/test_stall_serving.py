"""A real `servepath serve` logging to PostgreSQL while the database stalls: requests that do
not ask for a durable write are answered all along, because the spool takes their records, and
once the database answers again every record reaches it, replay included, without shedding
the requests that arrive meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from servepath.model.example import EXAMPLE_APPLICANT
from tests.support import serve

pytestmark = pytest.mark.anyio

REQUESTS = 200
#: Instances per request: enough records (10,000) that their replay is a long backlog.
INSTANCES = 50
#: Seconds between requests: a modest, steady stream, far below the server's capacity.
PACE = 0.02


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM predictions").fetchone()
    return int(row[0]) if row else 0


async def test_a_stalled_database_sheds_nothing_and_every_record_arrives_after_it(
    pg_url: str, tmp_path: Path, example_model_path: Path
) -> None:
    env = {"SERVEPATH_STORE_WRITE_TIMEOUT": "0.5"}
    args = ["--store", pg_url, "--cache", "off"]
    body = {"instances": [{**EXAMPLE_APPLICANT, "age": 20 + i} for i in range(INSTANCES)]}
    with serve(tmp_path, model=example_model_path, args=args, env=env) as server:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as client:
            assert (await client.post("/decisions", json=EXAMPLE_APPLICANT)).status_code == 200
            await asyncio.to_thread(wait_for, lambda: rows(pg_url) == 1, "the first record")

            async def store() -> dict[str, object]:
                health = (await client.get("/")).json()
                assert isinstance(health["store"], dict)
                return health["store"]

            statuses: Counter[int] = Counter()

            async def predict() -> None:
                statuses[(await client.post("/decisions", json=body)).status_code] += 1

            sent: list[asyncio.Task[None]] = []
            # Every INSERT waits behind this lock: a write that neither commits nor fails.
            with psycopg.connect(pg_url) as lock:
                lock.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
                for _ in range(REQUESTS // 2):
                    sent.append(asyncio.create_task(predict()))
                    await asyncio.sleep(PACE)
                while (await store())["spooled"] == 0:
                    await asyncio.sleep(0.05)
                stalled = await store()
                lock.rollback()
            # The rest of the stream arrives while the spool replays into the database.
            for _ in range(REQUESTS - REQUESTS // 2):
                sent.append(asyncio.create_task(predict()))
                await asyncio.sleep(PACE)
            await asyncio.gather(*sent)

        assert stalled["healthy"] is False, stalled
        assert statuses == {200: REQUESTS}, f"shed or failed: {statuses}"
        expected = 1 + REQUESTS * INSTANCES
        await asyncio.to_thread(wait_for, lambda: rows(pg_url) == expected, "every record")
        assert "records lost" not in server.log()
