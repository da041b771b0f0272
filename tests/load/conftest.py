"""Real servers for the load tests: `servepath serve`, and small servers of known behaviour."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def service_url(
    tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[str]:
    """A real `servepath serve` on loopback (memory cache, no prediction log)."""
    tmp = tmp_path_factory.mktemp("serve")
    with serve(tmp, model=example_model_path, args=["--store", "off"]) as server:
        yield server.url


@contextlib.contextmanager
def known_server(kind: str, *args: str) -> Iterator[str]:
    """One of tests/load/servers.py as its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.load.servers", kind, "--port", str(port), *args],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"test server {kind} did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
