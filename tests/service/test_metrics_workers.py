"""With several workers, a worker that is gone leaves /metrics: its per-pid series (its
log's health, its in-flight gauge) are not reported for a process that no longer exists."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servepath.service.metrics import forget_dead_workers
from tests.support import serve

pytestmark = pytest.mark.timeout(120)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


def test_the_files_of_dead_workers_go_and_the_living_stay(tmp_path: Path) -> None:
    gone, alive = dead_pid(), os.getpid()
    for pid in (gone, alive):
        (tmp_path / f"gauge_liveall_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{gone}.db").write_bytes(bytes(4096))  # summed counters are kept
    # A file its worker was killed creating: not even a header, and every scrape would fail.
    (tmp_path / f"histogram_{gone}.db").write_bytes(b"")
    (tmp_path / f"histogram_{alive}.db").write_bytes(b"")  # being created: not ours to judge
    assert forget_dead_workers(str(tmp_path)) == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{gone}.db",
        f"gauge_liveall_{alive}.db",
        f"histogram_{alive}.db",
    ]
    assert forget_dead_workers(None) == []


def pids_in(text: str) -> set[int]:
    return {int(p) for p in re.findall(r'servepath_requests_in_flight\{pid="(\d+)"\}', text)}


def test_a_killed_workers_series_leave_the_scrape(tmp_path: Path, example_model_path: Path) -> None:
    with serve(tmp_path, model=example_model_path, args=["--workers", "2", "--store", "off"]) as s:
        workers: set[int] = set()
        deadline = time.monotonic() + 30
        while len(workers) < 2:
            assert time.monotonic() < deadline
            with httpx.Client(timeout=10, trust_env=False) as c:  # a new connection each time
                workers.add(c.get(s.url + "/_path").json()["pid"])
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            with httpx.Client(timeout=10, trust_env=False) as c:
                answer = c.get(s.url + "/metrics")
            seen = pids_in(answer.text) if answer.status_code == 200 else {victim}
            if victim not in seen and len(seen) == 2:
                break  # the victim is gone, its replacement reports
            assert time.monotonic() < deadline, (victim, seen)
