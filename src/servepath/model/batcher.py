"""Adaptive micro-batching: a lone request runs at once; requests that arrive while the model
is busy are predicted together in the next call.

There is no fixed wait. Per-call overhead dominates a scikit-learn pipeline (milliseconds per
call, microseconds per row), so batching what queued during the previous call raises
throughput under load without adding latency to a request that arrives alone.

A request whose caller has gone, or whose deadline passed while it queued, is dropped when
its batch is formed, before the model runs: under overload the model's time goes only to
answers someone still waits for. ``queued_rows`` and ``busy_since`` tell admission control
how much work is ahead of a new request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from servepath.errors import PredictionFailed, RequestExpired

log = logging.getLogger(__name__)

Row = dict[str, float | str | bool | None]  # as model.loaded.Row: a validated instance
Output = dict[str, Any]
PredictFn = Callable[[Sequence[Row]], list[Output]]


@dataclass(slots=True)
class _Pending:
    rows: Sequence[Row]
    future: asyncio.Future[tuple[list[Output], float]]
    queued_at: float
    deadline: float | None
    gone: Callable[[], bool] | None


class MicroBatcher:
    """Serialises model calls through one thread and merges whatever queued meanwhile."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch: int = 256,
        on_call: Callable[[float, int], None] | None = None,
        inline: bool = False,
        on_drop: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``on_call(milliseconds, rows)`` runs on the event loop after each model call;
        ``on_drop(reason, rows)`` for each request dropped before its call ("deadline",
        "gone"). ``clock`` is the clock deadlines are read on.

        ``inline``: call the model on the event loop instead of the model thread. For a model
        that answers in well under a millisecond the hand-off to a thread costs more than the
        call, and the thread buys no parallelism under the GIL; a slow model keeps the thread
        so that health checks and new connections are served while it computes.
        """
        self._predict = predict
        self._inline = inline
        self._on_call = on_call
        self._on_drop = on_drop
        self._clock = clock
        self._max_batch = max(1, max_batch)
        self._queue: deque[_Pending] = deque()
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="servepath-model")
        self.calls = 0
        self.rows = 0
        #: Rows waiting for a model call (not counting the call in progress).
        self.queued_rows = 0
        #: ``clock()`` when the model call in progress started; None while the model is idle.
        self.busy_since: float | None = None
        #: Rows, and requests, in the model call in progress.
        self.busy_rows = 0
        self.busy_requests = 0
        self.dropped = 0

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def queued_requests(self) -> int:
        """Requests waiting for a model call."""
        return len(self._queue)

    async def predict(
        self,
        rows: Sequence[Row],
        *,
        deadline: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> tuple[list[Output], float]:
        """Outputs for ``rows`` in order, and the duration (ms) of the model call they were in.

        Raises :class:`~servepath.errors.RequestExpired` instead when ``deadline`` (on the
        batcher's clock) passed, or ``gone()`` turned true, before the rows' call began.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[Output], float]] = loop.create_future()
        self._queue.append(_Pending(rows, future, self._clock(), deadline, gone))
        self.queued_rows += len(rows)
        if not self._draining:
            self._draining = True
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._take()
                if not batch:
                    continue
                rows = [row for pending in batch for row in pending.rows]
                self.busy_since = self._clock()
                self.busy_rows = len(rows)
                self.busy_requests = len(batch)
                try:
                    if self._inline:
                        outputs, ms = self._timed(rows)
                    else:
                        outputs, ms = await loop.run_in_executor(self._executor, self._timed, rows)
                except Exception as exc:
                    await self._isolate(batch, exc)
                    continue
                finally:
                    self.busy_since = None
                if self._on_call is not None:
                    self._on_call(ms, len(rows))
                offset = 0
                for pending in batch:
                    n = len(pending.rows)
                    if not pending.future.done():
                        pending.future.set_result((outputs[offset : offset + n], ms))
                    offset += n
                if self._inline:
                    # let the requests that arrived during the call queue up for the next one
                    await asyncio.sleep(0)
        finally:
            self._draining = False
            self.busy_since = None

    def _take(self) -> list[_Pending]:
        """The next batch: what fits in ``max_batch`` rows, without the requests that expired."""
        queue = self._queue
        batch: list[_Pending] = []
        size = 0
        now = self._clock()
        while queue and (not batch or size + len(queue[0].rows) <= self._max_batch):
            pending = queue.popleft()
            n = len(pending.rows)
            self.queued_rows -= n
            if pending.future.done():  # the awaiting request was cancelled
                continue
            reason = None
            if pending.gone is not None and pending.gone():
                reason = "gone"
            elif pending.deadline is not None and now >= pending.deadline:
                reason = "deadline"
            if reason is not None:
                self.dropped += 1
                pending.future.set_exception(RequestExpired(reason, now - pending.queued_at))
                if self._on_drop is not None:
                    self._on_drop(reason, n)
                continue
            batch.append(pending)
            size += n
        return batch

    def _timed(self, rows: Sequence[Row]) -> tuple[list[Output], float]:
        start = time.perf_counter()
        outputs = self._predict(rows)
        if len(outputs) != len(rows):
            raise PredictionFailed(f"model returned {len(outputs)} outputs for {len(rows)} rows")
        self.calls += 1
        self.rows += len(rows)
        return outputs, (time.perf_counter() - start) * 1000

    async def _isolate(self, batch: list[_Pending], exc: Exception) -> None:
        # One request's rows must not fail its neighbours: retry each alone.
        loop = asyncio.get_running_loop()
        if len(batch) == 1:
            log.error("model call failed: %s", exc, exc_info=exc)
            if not batch[0].future.done():
                batch[0].future.set_exception(PredictionFailed(f"{type(exc).__name__}: {exc}"))
            return
        for pending in batch:
            try:
                result = await loop.run_in_executor(self._executor, self._timed, pending.rows)
            except Exception as single:
                log.error("model call failed: %s", single, exc_info=single)
                if not pending.future.done():
                    pending.future.set_exception(
                        PredictionFailed(f"{type(single).__name__}: {single}")
                    )
            else:
                if not pending.future.done():
                    pending.future.set_result(result)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
