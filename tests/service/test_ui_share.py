"""The live page's list shared between workers: snapshots written only when the ring changed,
read whole, merged newest first and bounded; a gone worker's or an oversized file is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from servepath.net.forwarded import TrustedProxies
from servepath.service.ui import SeenRing
from servepath.service.ui_share import MAX_FILE_BYTES, RingShare, merge, shared_directory


def _note(ring: SeenRing, request_id: str) -> None:
    # The page shows times in milliseconds: each note waits for the next one, so that
    # the order of the list is the order of the notes.
    start = round(time.time(), 3)
    while round(time.time(), 3) <= start:
        pass
    ring.note(200, 0.001, "/decisions", request_id, ("127.0.0.1", 5000), [], [])


def _gone_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_one_worker_shares_nothing() -> None:
    assert shared_directory(1, "/tmp/metrics") is None
    assert shared_directory(2, None) is None
    assert shared_directory(2, "/tmp/metrics") == Path("/tmp/metrics/ui-rings")


def test_a_snapshot_is_written_only_when_the_ring_changed(tmp_path: Path) -> None:
    ring = SeenRing(capacity=3)
    share = RingShare(tmp_path, ring, TrustedProxies.parse(""), pid=101)
    _note(ring, "a")
    assert share.publish() and not share.publish()
    for rid in ("b", "c", "d"):  # a full ring that moves on keeps its length
        _note(ring, rid)
        assert share.publish()
    kept = json.loads(share.path.read_text())
    assert kept["pid"] == 101
    assert [r["request_id"] for r in kept["requests"]] == ["d", "c", "b"]
    assert not list(tmp_path.glob(".*.tmp"))  # renamed into place, nothing left half-written


def test_the_page_merges_every_living_workers_rows_newest_first(tmp_path: Path) -> None:
    import os

    trusted = TrustedProxies.parse("")
    mine, theirs = SeenRing(), SeenRing()
    here = RingShare(tmp_path, mine, trusted)  # this process: alive
    there = RingShare(tmp_path, theirs, trusted, pid=os.getppid())  # alive too
    _note(theirs, "there-1")
    _note(mine, "here-1")
    _note(theirs, "there-2")
    there.publish()
    gone = RingShare(tmp_path, SeenRing(), trusted, pid=_gone_pid())
    _note(gone.ring, "from-a-dead-worker")
    gone.publish()
    (tmp_path / "ring-1.json").write_bytes(b"x" * (MAX_FILE_BYTES + 1))  # pid 1 lives
    rows = here.merged(limit=10)
    assert [r["request_id"] for r in rows] == ["there-2", "here-1", "there-1"]
    assert {r["request_id"]: r["pid"] for r in rows} == {
        "there-2": os.getppid(),
        "here-1": os.getpid(),
        "there-1": os.getppid(),
    }
    assert [r["request_id"] for r in here.merged(limit=2)] == ["there-2", "here-1"]


def test_merge_is_bounded_and_ordered() -> None:
    own = [{"time": 3.0, "request_id": "c"}, {"time": 1.0, "request_id": "a"}]
    others = [[{"time": 2.0, "request_id": "b"}], [{"time": 4.0, "request_id": "d"}]]
    assert [r["request_id"] for r in merge(own, others, 3)] == ["d", "c", "b"]
