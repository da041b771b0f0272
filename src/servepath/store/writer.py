"""Group commit for prediction logs: the request path enqueues, one task writes in batches.

``record()`` appends to an in-memory queue and returns (microseconds). A single writer
task takes what has queued, up to ``batch_size`` records, and commits it in one
transaction. When nothing is urgent it lingers up to ``linger`` seconds for company;
a ``record_durable()`` waiter or a full batch makes it write at once. While the database
is unreachable, batches go to the on-disk :class:`~servepath.store.spool.Spool`; from the
first spooled batch on, every batch goes there too, so that a periodic replay (with
back-off) brings them to the database in the order they were recorded. Inserts are
idempotent on ``(record_id, idx)``, an identity the server draws for each request (never a
caller's id): replaying a file twice duplicates nothing, and callers that reuse an
``X-Request-ID`` still get a record each.

Under pressure:

* **a hung database** (a write that neither commits nor fails) makes the log unhealthy as
  soon as the write has waited past the sink's ``write_timeout``; only a committed write
  makes it healthy again (a reconnect alone does not: a database that accepts connections
  and then hangs every write is not healthy). Retries back off, doubling to ``retry_max``.
* **the in-memory queue is bounded**: past ``max_queued`` records while a write is in
  progress, the oldest queued records spill to the spool (one file named for when they
  were taken, so replay order stays recording order); past ``hard_max_queued`` a record is
  refused and counted lost (a durable request gets 503). Memory stays bounded whatever the
  database does.
* **a full or read-only data directory**: when neither the database nor the spool takes a
  record, the log says so (``accepting`` false, the reason in ``detail``), durable requests
  are refused with :class:`~servepath.errors.LogUnavailable` (503), and what is lost is
  counted. When the spool fails but the database answers, records go straight to the
  database rather than being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from servepath.errors import StoreClosed, StoreError
from servepath.ratelog import RateLimitedWarning
from servepath.store.base import PredictionRecord, StoreStatus, WriterStats
from servepath.store.spool import Spool

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
DEFAULT_LINGER = 0.05
DEFAULT_RETRY_INITIAL = 0.5
DEFAULT_RETRY_MAX = 15.0
#: Records queued in memory past which the oldest spill to the spool while a write hangs.
DEFAULT_MAX_QUEUED = 10_000
#: How many times ``max_queued`` may wait before new records are refused (counted lost).
HARD_FACTOR = 4


class Sink(Protocol):
    """A database the writer commits batches to. ``open`` and ``write`` raise on failure."""

    backend: str  # "sqlite", "postgresql"
    target: str  # where it writes, without credentials
    write_timeout: float  # a write that has waited this long means the database is unwell

    async def open(self) -> None:
        """Connect and migrate the schema."""

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        """Insert ``records`` in one transaction, skipping any already present."""

    async def close(self) -> None: ...

    def rejects_content(self, exc: BaseException) -> bool:
        """Whether ``exc`` is about the records' content (not worth retrying) rather than
        about reaching the database."""


class _Chunk:
    __slots__ = ("future", "records")

    def __init__(
        self, records: Sequence[PredictionRecord], future: asyncio.Future[None] | None
    ) -> None:
        self.records = records
        self.future = future


class BatchedLog:
    """A :class:`~servepath.store.base.PredictionLog` that group-commits to a :class:`Sink`."""

    def __init__(
        self,
        sink: Sink,
        *,
        spool: Spool,
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger: float = DEFAULT_LINGER,
        retry_initial: float = DEFAULT_RETRY_INITIAL,
        retry_max: float = DEFAULT_RETRY_MAX,
        max_queued: int = DEFAULT_MAX_QUEUED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = sink.backend
        self.enabled = True
        self.sink = sink
        self.spool = spool
        self.batch_size = batch_size
        self.linger = linger
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_queued = max(batch_size, max_queued)
        self.hard_max_queued = HARD_FACTOR * self.max_queued
        self._clock = clock
        self._queue: deque[_Chunk] = deque()
        self._queued = 0
        self._waiters = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._open = False
        self._error = ""
        self._backoff = retry_initial
        self._retry_at = 0.0
        self._transactions = 0
        self._committed = 0
        self._spooled = 0
        self._replayed = 0
        self._rejected = 0
        self._lost = 0
        # The batch being written (still only in memory), and since when.
        self._inflight = 0
        self._write_started: float | None = None
        self._spool_error = ""
        self._spool_lock = asyncio.Lock()
        self._spill: asyncio.Task[None] | None = None
        self._error_log = RateLimitedWarning(log, "prediction log")

    # --- the request path -------------------------------------------------------------

    def record(self, records: Sequence[PredictionRecord]) -> None:
        if self._closing:
            raise StoreClosed()
        if not records:
            return
        if self._queued + len(records) > self.hard_max_queued:
            self._lost += len(records)
            self._error_log.note(
                f"{len(records)} records lost: {self._queued} wait in memory already "
                f"(the bound) while {self._error or 'a write is in progress'}"
            )
            return
        self._queue.append(_Chunk(records, None))
        self._queued += len(records)
        if self._queued >= self.batch_size:
            self._urgent.set()
            if self._queued > self.max_queued:
                self._start_spill()
        self._wake.set()

    async def record_durable(self, records: Sequence[PredictionRecord]) -> None:
        """Return once ``records`` are committed to the database or fsynced to the spool."""
        if self._closing:
            raise StoreClosed()
        if self._task is None:
            raise StoreError("the prediction log is not started: no writer would commit this")
        if not records:
            return
        if self._error and self._spool_error and self._clock() < self._retry_at:
            # Neither the database nor the spool took the last records, and the next try is
            # not due: refuse at once rather than queue for a failure. Past the back-off,
            # requests go through again, and the first that is kept clears this.
            raise StoreError(self._why_not_accepting())
        if self._queued + len(records) > self.hard_max_queued:
            raise StoreError(f"{self._queued} records wait in memory already (the bound)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Chunk(records, future))
        self._queued += len(records)
        self._waiters += 1
        self._urgent.set()
        if self._queued > self.max_queued:
            self._start_spill()
        self._wake.set()
        await future

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Find spool files left by a crash, connect, and start the writer.

        An unreachable database does not fail the start: records spool until it answers.
        """
        if self._task is not None:
            return
        orphans = await asyncio.to_thread(self.spool.scan)
        if orphans:
            log.warning(
                "%d prediction records wait in %s; replaying them", orphans, self.spool.directory
            )
        await self._ensure_open()
        self._task = asyncio.create_task(self._run(), name=f"servepath-{self.name}-writer")

    async def close(self) -> None:
        """Write every queued record (to the database, or else the spool), then disconnect."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._urgent.set()
        if self._task is not None:
            await self._task
        else:
            await self._drain()
        self._closed = True
        if self._spill is not None:
            await asyncio.gather(self._spill, return_exceptions=True)
        async with self._spool_lock:
            await asyncio.to_thread(self.spool.close)
        with contextlib.suppress(Exception):
            await self.sink.close()
        if self.spool.pending:
            log.warning(
                "%d prediction records remain in %s; the next start replays them",
                self.spool.pending,
                self.spool.directory,
            )

    def status(self) -> StoreStatus:
        queued = self._queued + self._inflight
        wait = 0.0 if self._write_started is None else self._clock() - self._write_started
        accepting = not (self._error and self._spool_error)
        if self._error or wait > self.sink.write_timeout:
            if self._error:
                retry = max(0.0, self._retry_at - self._clock())
                detail = f"{self._error}; spooling to {self.spool.directory}, retry in {retry:.1f}s"
            else:
                detail = (
                    f"{self.sink.target}: a write has waited {wait:.1f} s (timeout "
                    f"{self.sink.write_timeout:g} s)"
                )
            if self._spool_error:
                detail += f"; the spool fails too: {self._spool_error}"
            return StoreStatus(
                backend=self.name,
                healthy=False,
                detail=detail,
                queued=queued,
                spooled=self.spool.pending,
                accepting=accepting,
                write_wait=wait,
            )
        detail = self.sink.target
        if self._spool_error:
            detail += f"; the spool fails: {self._spool_error}"
        return StoreStatus(
            backend=self.name,
            healthy=True,
            detail=detail,
            queued=queued,
            spooled=self.spool.pending,
            accepting=accepting,
            write_wait=wait,
        )

    def _why_not_accepting(self) -> str:
        return f"the database fails ({self._error}) and so does the spool ({self._spool_error})"

    def stats(self) -> WriterStats:
        return WriterStats(
            transactions=self._transactions,
            committed=self._committed,
            spooled=self._spooled,
            replayed=self._replayed,
            rejected=self._rejected,
            lost=self._lost,
        )

    # --- the writer task --------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if not self._queue:
                    if self._closing:
                        await self._drain()
                        return
                    await self._idle()
                    continue
                if not self._closing and not self._urgent.is_set():
                    # Linger so that a trickle of records shares one transaction.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.linger):
                            await self._urgent.wait()
                await self._write_batch()
            except StoreError as exc:
                self._error_log.note(str(exc))
            except Exception:
                # The writer must outlive any surprise, or records would pile up unseen.
                log.exception("prediction log writer error")
                await asyncio.sleep(self.retry_initial)

    async def _idle(self) -> None:
        self._wake.clear()
        timeout = None
        if self.spool.pending:
            timeout = max(0.0, self._retry_at - self._clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        if not self._queue and self.spool.pending and self._clock() >= self._retry_at:
            await self._replay()

    async def _drain(self) -> None:
        while self._queue:
            await self._write_batch()
        if self.spool.pending and not self._error:
            await self._replay()

    def _take_batch(self) -> tuple[list[PredictionRecord], list[asyncio.Future[None]]]:
        batch: list[PredictionRecord] = []
        futures: list[asyncio.Future[None]] = []
        while self._queue and len(batch) < self.batch_size:
            chunk = self._queue[0]
            room = self.batch_size - len(batch)
            if len(chunk.records) > room:
                # Split: the chunk's waiter resolves with the batch that holds its last record.
                batch.extend(chunk.records[:room])
                chunk.records = chunk.records[room:]
                break
            self._queue.popleft()
            batch.extend(chunk.records)
            if chunk.future is not None:
                futures.append(chunk.future)
                self._waiters -= 1
        self._queued -= len(batch)
        if self._waiters == 0 and self._queued < self.batch_size:
            self._urgent.clear()
        return batch, futures

    # --- spilling the queue while a write hangs -------------------------------------

    def _start_spill(self) -> None:
        if self._spill is None or self._spill.done():
            self._spill = asyncio.get_running_loop().create_task(self._spill_queue())

    async def _spill_queue(self) -> None:
        """Move the oldest queued records to the spool until the queue is back in bounds."""
        while self._queued > self.max_queued and self._write_started is not None:
            born = time.time_ns()
            batch, futures = self._take_batch()
            if not batch:
                return
            try:
                await self._to_spool(batch, born_ns=born)
            except StoreError as exc:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def _write_batch(self) -> None:
        born = time.time_ns()
        batch, futures = self._take_batch()
        self._inflight = len(batch)
        try:
            await self._deliver(batch, born)
        except BaseException as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(str(exc))
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            raise
        finally:
            self._inflight = 0
        for future in futures:
            if not future.done():
                future.set_result(None)

    async def _deliver(self, batch: list[PredictionRecord], born: int) -> None:
        if self.spool.pending and self._clock() >= self._retry_at:
            await self._replay()
        if self.spool.pending or not await self._ensure_open():
            # Behind spooled records, or no database: keep the order, spool this one too.
            try:
                await self._to_spool(batch)
            except StoreError:
                # The spool refuses (a full or read-only disk); the database may still take
                # them, out of order rather than lost.
                if self._error or not await self._ensure_open() or await self._commit(batch):
                    raise
                self._lost -= len(batch)
            return
        remaining = await self._commit(batch)
        if remaining:
            # Records spilled while this batch was being written sort after it.
            await self._to_spool(remaining, born_ns=born)

    async def _commit(self, batch: list[PredictionRecord]) -> list[PredictionRecord]:
        """Write ``batch``; returns the records that must go to the spool (none on success)."""
        self._write_started = self._clock()
        try:
            await self.sink.write(batch)
        except Exception as exc:
            self._write_started = None
            if not self.sink.rejects_content(exc):
                await self._failed(exc)
                return batch
            return await self._commit_one_by_one(batch, exc)
        self._write_started = None
        self._succeeded()
        self._transactions += 1
        self._committed += len(batch)
        return []

    async def _commit_one_by_one(
        self, batch: list[PredictionRecord], first: BaseException
    ) -> list[PredictionRecord]:
        # One record's content sank the batch: find it, keep it aside, write the rest.
        log.warning("a batch of %d records was refused (%s); isolating", len(batch), first)
        for i, record in enumerate(batch):
            try:
                await self.sink.write([record])
            except Exception as exc:
                if not self.sink.rejects_content(exc):
                    await self._failed(exc)
                    return batch[i:]
                path = await asyncio.to_thread(self.spool.reject, record, str(exc))
                self._rejected += 1
                log.error(
                    "prediction %s/%d refused by %s: %s; kept in %s",
                    record.key,
                    record.index,
                    self.name,
                    exc,
                    path,
                )
                continue
            self._transactions += 1
            self._committed += 1
        self._succeeded()
        return []

    async def _to_spool(self, batch: list[PredictionRecord], born_ns: int | None = None) -> None:
        try:
            async with self._spool_lock:
                await asyncio.to_thread(self.spool.append, batch, born_ns)
        except OSError as exc:
            self._lost += len(batch)
            self._spool_error = f"{self.spool.directory}: {exc.strerror or exc}"
            self._error_log.note(
                f"{len(batch)} prediction records lost: the database is unreachable and the "
                f"spool at {self.spool.directory} failed: {exc}"
            )
            raise StoreError(f"cannot spool prediction records: {exc}") from exc
        self._spool_error = ""
        self._spooled += len(batch)

    async def _replay(self) -> None:
        """Move spool files to the database, oldest first; stop at the first failure."""
        if not await self._ensure_open():
            return
        while True:
            async with self._spool_lock:
                claimed = await asyncio.to_thread(self.spool.claim_next)
            if claimed is None:
                return
            replayed = 0
            # Decoded a batch at a time, here on the loop between commits: a whole file at
            # once would hold the interpreter long enough for requests in flight to queue.
            for records in claimed.batches(self.batch_size):
                for start in range(0, len(records), self.batch_size):
                    chunk = records[start : start + self.batch_size]
                    remaining = await self._commit(chunk)
                    if remaining:
                        await asyncio.to_thread(claimed.release)
                        return
                    self._replayed += len(chunk)
                    replayed += len(chunk)
            await asyncio.to_thread(claimed.done)
            log.info("replayed %d prediction records from %s", replayed, claimed.path.name)

    async def _ensure_open(self) -> bool:
        if self._open:
            return True
        if self._error and self._clock() < self._retry_at:
            return False
        try:
            await self.sink.open()
        except Exception as exc:
            await self._failed(exc)
            return False
        self._open = True
        if not self._error:
            self._backoff = self.retry_initial
        # A database that answers a connection may still hang every write: only a commit
        # makes the log healthy again (see _succeeded).
        return True

    async def _failed(self, exc: BaseException) -> None:
        first = not self._error
        self._error = f"{self.sink.target}: {_one_line(exc)}"
        if first:
            # Often a connection that died while the server lives on (a restart, an idle
            # timeout): reconnect at once; back off only if that fails too.
            self._retry_at = self._clock()
            self._error_log.note(f"unavailable ({self._error}); spooling")
        else:
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, self.retry_max)
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                await self.sink.close()

    def _succeeded(self) -> None:
        if self._error:
            log.info("prediction log %s reachable again", self.sink.target)
        self._error = ""
        self._backoff = self.retry_initial


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
