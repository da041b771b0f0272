"""Fixtures for the prediction-log tests: databases created and dropped per test, a
PostgreSQL server a test can stop and start, and record factories."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from servepath.store.base import PredictionRecord
from servepath.store.postgres import PostgresSink
from servepath.store.reader import LogReader, PostgresReader, SQLiteReader
from servepath.store.spool import Spool
from servepath.store.sqlite import SQLiteSink
from servepath.store.writer import BatchedLog
from tests.support import free_port, need, need_root

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_answers(url: str = ADMIN_URL) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def create_database(name: str, admin_url: str = ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str, admin_url: str = ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str, port: int = 5432) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{name}"


@pytest.fixture
def pg_name() -> Iterator[str]:
    """The name of a database this test owns; it is not created, only dropped afterwards."""
    need(postgres_answers(), "PostgreSQL at 127.0.0.1:5432 (user postgres, trust)")
    name = f"sp_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def pg_url(pg_name: str) -> str:
    """A fresh, empty database owned by this test."""
    create_database(pg_name)
    return database_url(pg_name)


_counter = 0


def make_record(request_id: str | None = None, index: int = 0, **changes: Any) -> PredictionRecord:
    global _counter
    _counter += 1
    fields: dict[str, Any] = {
        "request_id": request_id or f"req-{_counter:08d}",
        "index": index,
        "ts": time.time(),
        "route": "decisions",
        "model_name": "decision",
        "model_version": "v1",
        "instance": {"income": 52000.0, "age": 38, "purpose": "car", "n": _counter},
        "output": {"decision": "approve", "probability": 0.91},
        "latency_ms": 1.25,
        "cache_hit": False,
        "client_addr": "127.0.0.1:50000",
        "forwarded": None,
    }
    fields.update(changes)
    # One request id, one request, as a server that drew no id of its own would have it.
    fields.setdefault("record_id", fields["request_id"])
    return PredictionRecord(**fields)


def same_record(a: PredictionRecord, b: PredictionRecord) -> bool:
    """Equal, allowing PostgreSQL's microsecond timestamps."""
    return abs(a.ts - b.ts) < 2e-6 and a.to_json() | {"ts": 0} == b.to_json() | {"ts": 0}


@dataclass
class Backend:
    """One log backend under test: how to build its writer and its reader."""

    kind: str
    location: str  # SQLite path or PostgreSQL URL
    spool_dir: Path

    def log(self, **options: Any) -> BatchedLog:
        sink: Any
        if self.kind == "sqlite":
            sink = SQLiteSink(Path(self.location), durable=options.pop("durable", False))
        else:
            options.pop("durable", None)
            sink = PostgresSink(self.location, connect_timeout=options.pop("connect_timeout", 5))
        options.setdefault("retry_initial", 0.1)
        options.setdefault("retry_max", 0.5)
        return BatchedLog(sink, spool=Spool(self.spool_dir), **options)

    def reader(self) -> LogReader:
        if self.kind == "sqlite":
            return SQLiteReader(Path(self.location))
        return PostgresReader(self.location)

    def rows(self) -> list[PredictionRecord]:
        with self.reader() as reader:
            return reader.recent(limit=1_000_000)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "predictions.sqlite3"), tmp_path / "spool")
    url = request.getfixturevalue("pg_url")
    return Backend("postgresql", url, tmp_path / "spool")


@pytest.fixture
async def started() -> AsyncIterator[Callable[[BatchedLog], Any]]:
    """Start logs and make sure each is closed when the test ends, whatever happens."""
    logs: list[BatchedLog] = []

    async def start(log: BatchedLog) -> BatchedLog:
        await log.start()
        logs.append(log)
        return log

    yield start
    for log in logs:
        await log.close()


@dataclass
class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory, run as the postgres user."""

    bindir: Path
    directory: Path
    port: int

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    @property
    def admin_url(self) -> str:
        return database_url("postgres", self.port)

    def init(self) -> None:
        self._as_postgres(
            str(self.bindir / "initdb"),
            "-D", str(self.directory / "data"),
            "-U", "postgres",
            "--auth=trust",
            "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.directory / "data"),
            "-o", options,
            "-l", str(self.directory / "server.log"),
            "-w", "-t", "30",
            "start",
        )  # fmt: skip

    def running(self) -> bool:
        status = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"),
             "-D", str(self.directory / "data"), "status"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return status.returncode == 0

    def start_if_stopped(self) -> None:
        if not self.running():
            self.start()

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(
            str(self.bindir / "pg_ctl"), "-D", str(self.directory / "data"),
            "-m", mode, "-w", "stop",
        )  # fmt: skip


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server this module owns and may stop and restart (initdb costs ~2 s)."""
    need_root()
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    need(bool(bins) and shutil.which("runuser") is not None, "PostgreSQL server binaries")
    directory = Path(tempfile.mkdtemp(prefix="servepath-pg-"))
    os.chmod(directory, 0o755)
    shutil.chown(directory, "postgres", "postgres")
    server = OwnPostgres(Path(bins[-1]).parent, directory, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
