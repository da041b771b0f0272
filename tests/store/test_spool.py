"""The on-disk spool on its own: order, torn writes, locks between processes, rotation."""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servepath.store.base import PredictionRecord
from servepath.store.spool import Spool, decode, encode
from tests.store.conftest import make_record
from tests.support import need_binary, need_root


def ids(records: list[PredictionRecord]) -> list[str]:
    return [r.request_id for r in records]


def test_claimed_files_come_back_oldest_first_and_done_deletes_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_records_per_file=3)
    records = [make_record() for _ in range(7)]
    spool.append(records[:2])
    spool.append(records[2:5])  # the first file holds 5 now: rotation happens before a batch
    spool.append(records[5:])
    assert spool.pending == 7
    assert len(list(tmp_path.glob("spool-*.jsonl"))) == 2
    replayed = []
    while (claimed := spool.claim_next()) is not None:
        replayed += claimed.records
        claimed.done()
    assert ids(replayed) == ids(records)
    assert spool.pending == 0
    assert list(tmp_path.iterdir()) == []


def test_appends_after_a_claim_go_to_a_newer_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first, second = make_record(), make_record()
    spool.append([first])
    claimed = spool.claim_next()
    assert claimed is not None
    claimed.release()  # the database failed again: the file stays
    spool.append([second])
    order = []
    while (claimed := spool.claim_next()) is not None:
        order += claimed.records
        claimed.done()
    assert ids(order) == [first.request_id, second.request_id]


def test_a_torn_last_line_is_dropped_and_the_rest_kept() -> None:
    records = [make_record() for _ in range(3)]
    data = encode(records) + encode([make_record()])[:40]
    assert ids(decode(data)) == ids(records)


def test_a_spooled_request_keeps_its_traffic_mark_and_an_older_line_reads_as_ordinary() -> None:
    marked = [make_record("by-load", i, traffic="load") for i in range(2)]
    assert [r.traffic for r in decode(encode(marked))] == ["load", "load"]
    # A line of a servepath before the mark has no such field.
    old = encode([make_record("before")]).replace(b',"traffic":null', b"")
    assert b"traffic" not in old
    assert [r.traffic for r in decode(old)] == [None]


def test_a_file_another_process_holds_is_left_alone(tmp_path: Path) -> None:
    other = Spool(tmp_path)
    other.append([make_record()])  # other's file is open and locked while it appends
    mine = Spool(tmp_path)
    assert mine.scan() == 0
    assert mine.claim_next() is None
    other.close()  # as when that process exits, or dies: the lock goes with it
    assert mine.scan() == 1
    claimed = mine.claim_next()
    assert claimed is not None and len(claimed.records) == 1
    claimed.done()


def test_a_claimed_file_is_locked_against_other_spools(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([make_record()])
    first.close()
    claimed = first.claim_next()
    assert claimed is not None
    (path,) = tmp_path.glob("spool-*.jsonl")
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the claimed file was not locked")
        except BlockingIOError:
            pass
    assert Spool(tmp_path).claim_next() is None
    claimed.done()


def test_scan_removes_empty_files_left_by_a_crash(tmp_path: Path) -> None:
    (tmp_path / "spool-00000000000000000001-1-1.jsonl").touch()
    assert Spool(tmp_path).scan() == 0
    assert list(tmp_path.iterdir()) == []


def test_rejected_records_are_kept_with_their_error_and_never_claimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    path = spool.reject(make_record(), "invalid input")
    assert path.name.startswith("rejected-")
    assert spool.claim_next() is None
    assert b'"error":"invalid input"' in path.read_bytes()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real disk that fills up."""
    need_root()
    need_binary("mount")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_fails_the_batch_without_corrupting_the_spool(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool", max_records_per_file=1_000_000)
    stored: list[str] = []
    with pytest.raises(OSError):
        for _ in range(1000):
            batch = [make_record(instance={"pad": "x" * 2000}) for _ in range(10)]
            spool.append(batch)
            stored += ids(batch)
    assert stored and spool.pending == len(stored)
    # Exactly the acknowledged batches: none of the failed batch's lines that did fit.
    replayed: list[str] = []
    while (claimed := spool.claim_next()) is not None:
        replayed += ids(claimed.records)
        claimed.done()
    assert replayed == stored
    # Replaying freed the disk: the spool works again.
    after = [make_record()]
    spool.append(after)
    claimed = spool.claim_next()
    assert claimed is not None and ids(claimed.records) == ids(after)
    claimed.done()
