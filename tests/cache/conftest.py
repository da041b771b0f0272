"""Fixtures for the cache tests: the machine's Redis, and Redis servers the tests own."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support import free_port, need, need_binary, silent_listener

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix owned by one test on the shared Redis; its keys are deleted afterwards."""
    need(redis_answers(SHARED_REDIS), "Redis at 127.0.0.1:6379")
    prefix = f"sptest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class OwnRedis:
    """A redis-server process owned by one test, on a fixed port, that can die and return."""

    binary: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None)
    #: More redis-server options (``--maxmemory 2mb``…).
    options: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not redis_answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(need_binary("redis-server"), free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers a byte: a Redis that hangs."""
    with silent_listener() as port:
        yield port
