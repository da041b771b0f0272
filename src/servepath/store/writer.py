"""Group commit for prediction logs: the request path enqueues, one task writes in batches.

``record()`` appends to an in-memory queue and returns (microseconds). A single writer
task takes what has queued, up to ``batch_size`` records, and commits it in one
transaction. When nothing is urgent it lingers up to ``linger`` seconds for company;
a ``record_durable()`` waiter or a full batch makes it write at once. While the database
is unreachable, batches go to the on-disk :class:`~servepath.store.spool.Spool`; from the
first spooled batch on, every batch goes there too, so that a periodic replay (with
back-off) brings them to the database in the order they were recorded. Inserts are
idempotent on ``(request_id, idx)``: replaying a file twice duplicates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from servepath.errors import ServepathError
from servepath.store.base import PredictionRecord, StoreStatus
from servepath.store.spool import Spool

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
DEFAULT_LINGER = 0.05
DEFAULT_RETRY_INITIAL = 0.5
DEFAULT_RETRY_MAX = 15.0


class StoreError(ServepathError):
    """The prediction log could not keep a record: neither the database nor the spool took it."""


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("the prediction log is closed")


class Sink(Protocol):
    """A database the writer commits batches to. ``open`` and ``write`` raise on failure."""

    backend: str  # "sqlite", "postgresql"
    target: str  # where it writes, without credentials

    async def open(self) -> None:
        """Connect and migrate the schema."""

    async def write(self, records: Sequence[PredictionRecord]) -> int:
        """Insert ``records`` in one transaction, skipping any already present."""

    async def close(self) -> None: ...

    def rejects_content(self, exc: BaseException) -> bool:
        """Whether ``exc`` is about the records' content (not worth retrying) rather than
        about reaching the database."""


@dataclass(frozen=True)
class WriterStats:
    """Counters since start: what the writer has done with the records it was given."""

    transactions: int  # batches committed to the database (live and replayed)
    committed: int  # records those transactions carried
    spooled: int  # records written to the spool
    replayed: int  # records moved from the spool to the database
    rejected: int  # records the database refused for their content (kept in rejected-*.jsonl)
    lost: int  # records neither the database nor the spool would take

    def to_json(self) -> dict[str, int]:
        return {
            "transactions": self.transactions,
            "committed": self.committed,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "lost": self.lost,
        }


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = sink.backend
        self.sink = sink
        self.spool = spool
        self.batch_size = batch_size
        self.linger = linger
        self.retry_initial = retry_initial
        self.retry_max = retry_max
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

    # --- the request path -------------------------------------------------------------

    def record(self, records: Sequence[PredictionRecord]) -> None:
        if self._closing:
            raise StoreClosed()
        if not records:
            return
        self._queue.append(_Chunk(records, None))
        self._queued += len(records)
        if self._queued >= self.batch_size:
            self._urgent.set()
        self._wake.set()

    async def record_durable(self, records: Sequence[PredictionRecord]) -> None:
        """Return once ``records`` are committed to the database or fsynced to the spool."""
        if self._closing:
            raise StoreClosed()
        if self._task is None:
            raise StoreError("the prediction log is not started: no writer would commit this")
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Chunk(records, future))
        self._queued += len(records)
        self._waiters += 1
        self._urgent.set()
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
        if self._error:
            retry = max(0.0, self._retry_at - self._clock())
            detail = f"{self._error}; spooling to {self.spool.directory}, retry in {retry:.1f}s"
            return StoreStatus(
                backend=self.name,
                healthy=False,
                detail=detail,
                queued=self._queued,
                spooled=self.spool.pending,
            )
        return StoreStatus(
            backend=self.name,
            healthy=True,
            detail=self.sink.target,
            queued=self._queued,
            spooled=self.spool.pending,
        )

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
                log.error("prediction log writer: %s", exc)
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

    async def _write_batch(self) -> None:
        batch, futures = self._take_batch()
        try:
            await self._deliver(batch)
        except BaseException as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(str(exc))
            for future in futures:
                if not future.done():
                    future.set_exception(error)
            raise
        for future in futures:
            if not future.done():
                future.set_result(None)

    async def _deliver(self, batch: list[PredictionRecord]) -> None:
        if self.spool.pending and self._clock() >= self._retry_at:
            await self._replay()
        if self.spool.pending or not await self._ensure_open():
            # Behind spooled records, or no database: keep the order, spool this one too.
            await self._to_spool(batch)
            return
        remaining = await self._commit(batch)
        if remaining:
            await self._to_spool(remaining)

    async def _commit(self, batch: list[PredictionRecord]) -> list[PredictionRecord]:
        """Write ``batch``; returns the records that must go to the spool (none on success)."""
        try:
            await self.sink.write(batch)
        except Exception as exc:
            if not self.sink.rejects_content(exc):
                await self._failed(exc)
                return batch
            return await self._commit_one_by_one(batch, exc)
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
                    record.request_id,
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

    async def _to_spool(self, batch: list[PredictionRecord]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, batch)
        except OSError as exc:
            self._lost += len(batch)
            log.error(
                "%d prediction records lost: the database is unreachable and the spool "
                "at %s failed: %s",
                len(batch),
                self.spool.directory,
                exc,
            )
            raise StoreError(f"cannot spool prediction records: {exc}") from exc
        self._spooled += len(batch)

    async def _replay(self) -> None:
        """Move spool files to the database, oldest first; stop at the first failure."""
        if not await self._ensure_open():
            return
        while True:
            claimed = await asyncio.to_thread(self.spool.claim_next)
            if claimed is None:
                return
            records = claimed.records
            start = 0
            while start < len(records):
                chunk = records[start : start + self.batch_size]
                remaining = await self._commit(chunk)
                if remaining:
                    await asyncio.to_thread(claimed.release)
                    return
                self._replayed += len(chunk)
                start += len(chunk)
            await asyncio.to_thread(claimed.done)
            log.info("replayed %d prediction records from %s", len(records), claimed.path.name)

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
        self._succeeded()
        return True

    async def _failed(self, exc: BaseException) -> None:
        first = not self._error
        self._error = f"{self.sink.target}: {_one_line(exc)}"
        if first:
            # Often a connection that died while the server lives on (a restart, an idle
            # timeout): reconnect at once; back off only if that fails too.
            self._retry_at = self._clock()
            log.warning("prediction log unavailable (%s); spooling", self._error)
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
