"""The on-disk spool: where records wait, in order, while their database is unreachable.

Layout: ``<directory>/spool-<ns>-<pid>.jsonl``, append-only JSON Lines, one line per
request (its shared fields once, its instances in ``items``; a line of an older servepath,
one record, is read too), one ``fsync`` per appended batch. Each process holds an
exclusive ``flock`` on the file it is appending to, so a live process never replays
another's file in the middle of an append; a process that died (even by SIGKILL) lost its
locks, so its files are claimed and replayed by the next process using the same store.
File names sort by creation time: replay order is append order.

Records the database rejects for their content (PostgreSQL refuses a NUL character in
``jsonb``) are kept in ``rejected-<ns>-<pid>.jsonl`` with the error, never replayed.

Every method of :class:`Spool` does blocking file I/O: callers run them in a worker thread.
A claimed file's records are decoded batch by batch (:meth:`SpoolFile.batches`), where the
replay commits them: decoding costs about 16 µs a record, and a whole file of 10,000 decoded
at once, even in a worker thread, holds the interpreter for a sixth of a second, which the
requests in flight wait out.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from servepath.store.base import PredictionRecord

log = logging.getLogger(__name__)

#: A spool file is closed and a new one started after this many records, so that replay
#: reads a bounded amount at a time.
MAX_RECORDS_PER_FILE = 10_000
#: A staging file (created, not yet renamed) older than this was left by a dead process.
STAGING_MAX_AGE = 60.0


#: The fields of one instance; every other field of a record is its request's.
_INSTANCE_FIELDS = ("index", "instance", "output", "cache_hit", "truncated")


def encode(records: Sequence[PredictionRecord]) -> bytes:
    """One line per request: its shared fields once, then its instances (``items``)."""
    lines: list[bytes] = []
    i = 0
    while i < len(records):
        first = records[i]
        j = i + 1
        while j < len(records) and records[j].key == first.key:
            j += 1
        request = first.to_json()
        for name in _INSTANCE_FIELDS:
            request.pop(name)
        items = [[r.index, r.instance, r.output, r.cache_hit, r.truncated] for r in records[i:j]]
        lines.append(orjson.dumps({"request": request, "items": items}) + b"\n")
        i = j
    return b"".join(lines)


def _decode_line(line: bytes) -> list[PredictionRecord]:
    data = orjson.loads(line)
    if "request" not in data:  # a line of an older servepath: one record
        return [PredictionRecord(**data)]
    request = data["request"]
    return [
        PredictionRecord(**request, **dict(zip(_INSTANCE_FIELDS, item, strict=True)))
        for item in data["items"]
    ]


def decode(data: bytes, *, name: str = "spool") -> list[PredictionRecord]:
    """Records from spool bytes. A torn last line (a write cut short) is dropped."""
    return [record for batch in decode_batches(data, 1, name=name) for record in batch]


def decode_batches(
    data: bytes, size: int, *, name: str = "spool"
) -> Iterator[list[PredictionRecord]]:
    """Records from spool bytes, decoded as they are taken, in lists of at least ``size``
    (a request's instances stay together) but the last."""
    lines = data.split(b"\n")
    # The last element is b"" after a complete final line, or the torn tail of a batch whose
    # fsync never returned: that batch was never acknowledged.
    if lines[-1]:
        log.warning("%s: dropping a torn last line of %d bytes", name, len(lines[-1]))
    records: list[PredictionRecord] = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line:
            continue
        try:
            records.extend(_decode_line(line))
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            log.error("%s line %d is not a prediction record (%s); skipped", name, number, exc)
        if len(records) >= size:
            yield records
            records = []
    if records:
        yield records


@dataclass
class SpoolFile:
    """A spool file claimed for replay: locked by this process until ``done`` or ``release``."""

    path: Path
    data: bytes = field(repr=False)
    _handle: IO[bytes] = field(repr=False)
    _spool: Spool = field(repr=False)

    @property
    def records(self) -> list[PredictionRecord]:
        """Every record of the file, decoded at once."""
        return decode(self.data, name=self.path.name)

    def batches(self, size: int) -> Iterator[list[PredictionRecord]]:
        """The file's records in lists of at least ``size``, each decoded when it is taken."""
        return decode_batches(self.data, size, name=self.path.name)

    def done(self) -> None:
        """Every record is in the database: delete the file."""
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self._handle.close()
        self._spool._count(self.path, None)

    def release(self) -> None:
        """Keep the file for a later replay."""
        self._handle.close()


class Spool:
    """The spool directory of one store, shared by every process that logs to that store."""

    def __init__(self, directory: Path, *, max_records_per_file: int = MAX_RECORDS_PER_FILE):
        self.directory = directory
        self.max_records_per_file = max_records_per_file
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._active_count = 0
        self._active_ns = 0
        self._seq = 0
        # Records known to be spooled, per file: this process's own and unclaimed orphans.
        # Written by the writer's worker thread, read by status() on the event loop.
        self._counts: dict[Path, int] = {}
        self._counts_lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._counts_lock:
            return sum(self._counts.values())

    def _count(self, path: Path, records: int | None) -> None:
        with self._counts_lock:
            if records is None:
                self._counts.pop(path, None)
            else:
                self._counts[path] = records

    def _forget_all(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    def scan(self) -> int:
        """Count records in files no live process holds (left by a crash); returns the total."""
        if not self.directory.is_dir():
            return self.pending
        for staging in self.directory.glob(".spool-*.new"):
            # Left by a process that died between creating and renaming its file: empty.
            # A young one may belong to a live process that is about to lock it.
            handle = _try_lock(staging)
            if handle is not None:
                if time.time() - os.fstat(handle.fileno()).st_mtime > STAGING_MAX_AGE:
                    staging.unlink(missing_ok=True)
                handle.close()
        for path in self._files():
            with self._counts_lock:
                known = path == self._active_path or path in self._counts
            if known:
                continue
            handle = _try_lock(path)
            if handle is None:
                continue
            try:
                data = handle.read()
                # Records, not lines: a line holds one request's instances.
                lines = len(decode(data, name=path.name)) or data.count(b"\n")
                if lines == 0:
                    # From a process killed before its first batch reached the disk.
                    path.unlink(missing_ok=True)
            finally:
                handle.close()
            if lines:
                self._count(path, lines)
        return self.pending

    def append(self, records: Sequence[PredictionRecord], born_ns: int | None = None) -> None:
        """Append one batch and fsync it: once this returns, a crash cannot lose it.

        ``born_ns`` (``time.time_ns()`` when the batch was taken from the queue): when the
        file being appended to was started after that, the batch goes to a file of its own
        named for that time, so that replay, in name order, still runs it first.
        """
        if not records:
            return
        if born_ns is not None and self._active_path is not None and born_ns < self._active_ns:
            self._append_born(records, born_ns)
            return
        if self._active is None or self._active_count >= self.max_records_per_file:
            self._open_new()
        assert self._active is not None and self._active_path is not None
        fd = self._active.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            _write_all(fd, encode(records))
            os.fsync(fd)
        except OSError:
            # Disk full or failing: cut the torn batch off, so that it cannot run into the
            # next one and corrupt its first line, and start a new file next time.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            self._close_active()
            raise
        self._active_count += len(records)
        self._count(self._active_path, self._active_count)

    def claim_next(self) -> SpoolFile | None:
        """The oldest file no live process holds, locked and read; None when there is none.

        This process's own file is closed first, so that it can be replayed too; later
        appends start a new file, which sorts after it.
        """
        self._close_active()
        if not self.directory.is_dir():
            self._forget_all()
            return None
        for path in self._files():
            handle = _try_lock(path)
            if handle is None:
                continue
            if os.fstat(handle.fileno()).st_nlink == 0:
                # Replayed and deleted by another process between listing and locking.
                handle.close()
                self._count(path, None)
                continue
            data = handle.read()
            with self._counts_lock:
                known = path in self._counts
            if not known:
                # Appeared since the last scan: counted by its lines (requests), decoded later.
                self._count(path, data.count(b"\n"))
            return SpoolFile(path=path, data=data, _handle=handle, _spool=self)
        # Whatever is left is being replayed by another live process, or already gone.
        self._forget_all()
        return None

    def reject(self, record: PredictionRecord, error: str) -> Path:
        """Keep a record the database refuses for its content, with the reason, for a person."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"rejected-{time.time_ns():020d}-{os.getpid()}.jsonl"
        line = orjson.dumps({"error": error, "record": record.to_json()}) + b"\n"
        with path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def close(self) -> None:
        self._close_active()

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.jsonl"))

    def _open_new(self) -> None:
        self._close_active()
        ns = time.time_ns()
        handle, path = self._create(ns)
        self._active, self._active_path, self._active_count = handle, path, 0
        self._active_ns = ns

    def _create(self, ns: int) -> tuple[IO[bytes], Path]:
        """A new spool file named for ``ns``, locked by this process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"spool-{ns:020d}-{os.getpid()}-{self._seq}.jsonl"
        # Locked under a name no claimer looks for, then renamed: another process can never
        # claim (and delete) the file between its creation and this process's lock.
        staging = self.directory / f".{name}.new"
        handle = staging.open("ab", buffering=0)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        path = self.directory / name
        staging.rename(path)
        _fsync_dir(self.directory)
        return handle, path

    def _append_born(self, records: Sequence[PredictionRecord], born_ns: int) -> None:
        handle, path = self._create(born_ns)
        try:
            try:
                _write_all(handle.fileno(), encode(records))
                os.fsync(handle.fileno())
            except OSError:
                handle.close()
                path.unlink(missing_ok=True)
                raise
            self._count(path, len(records))
        finally:
            handle.close()

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.close()
        self._active, self._active_path, self._active_count = None, None, 0


def _try_lock(path: Path) -> IO[bytes] | None:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
