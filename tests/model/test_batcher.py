"""The micro-batcher: a lone request runs at once; concurrent ones share a model call."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from servepath.errors import PredictionFailed
from servepath.model.batcher import MicroBatcher

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, rows):
        with self.lock:
            self.calls.append(len(rows))
        time.sleep(self.delay)
        if self.fail_on is not None and any(r.get("tag") == self.fail_on for r in rows):
            raise ValueError("bad row")
        return [{"echo": r["tag"]} for r in rows]


async def test_lone_request_is_dispatched_without_waiting() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec)
    start = time.perf_counter()
    out, _ = await batcher.predict([{"tag": "a"}])
    assert out == [{"echo": "a"}]
    assert time.perf_counter() - start < 0.05
    batcher.close()


async def test_requests_queued_while_busy_share_the_next_call_in_order() -> None:
    rec = Recorder(delay=0.1)
    batcher = MicroBatcher(rec)
    first = asyncio.ensure_future(batcher.predict([{"tag": "first"}]))
    await asyncio.sleep(0.02)  # the first call is running now
    rest = [
        asyncio.ensure_future(batcher.predict([{"tag": f"r{i}"}, {"tag": f"s{i}"}]))
        for i in range(10)
    ]
    results = await asyncio.gather(first, *rest)
    assert rec.calls == [1, 20]
    assert results[0][0] == [{"echo": "first"}]
    for i, (out, _) in enumerate(results[1:]):
        assert out == [{"echo": f"r{i}"}, {"echo": f"s{i}"}]
    batcher.close()


async def test_batches_are_bounded_by_max_batch() -> None:
    rec = Recorder(delay=0.05)
    batcher = MicroBatcher(rec, max_batch=4)
    first = asyncio.ensure_future(batcher.predict([{"tag": "x"}]))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(batcher.predict([{"tag": str(i)}])) for i in range(10)]
    await asyncio.gather(first, *rest)
    assert rec.calls == [1, 4, 4, 2]
    batcher.close()


async def test_one_failing_request_does_not_fail_its_batch_neighbours() -> None:
    rec = Recorder(delay=0.05, fail_on="bad")
    batcher = MicroBatcher(rec)
    first = asyncio.ensure_future(batcher.predict([{"tag": "warm"}]))
    await asyncio.sleep(0.01)
    good = asyncio.ensure_future(batcher.predict([{"tag": "good"}]))
    bad = asyncio.ensure_future(batcher.predict([{"tag": "bad"}]))
    await first
    assert (await good)[0] == [{"echo": "good"}]
    with pytest.raises(PredictionFailed, match="bad row"):
        await bad
    batcher.close()


async def test_inline_mode_still_batches_what_queued_before_the_call() -> None:
    rec = Recorder(delay=0.05)
    batcher = MicroBatcher(rec, inline=True)
    first = asyncio.ensure_future(batcher.predict([{"tag": "first"}]))
    rest = [asyncio.ensure_future(batcher.predict([{"tag": str(i)}])) for i in range(5)]
    results = await asyncio.gather(first, *rest)
    # all six were queued before the drain task first ran: one call serves them all
    assert rec.calls == [6]
    assert [out for out, _ in results][1:] == [[{"echo": str(i)}] for i in range(5)]
    batcher.close()


async def test_inline_failure_is_isolated_like_the_threaded_one() -> None:
    rec = Recorder(fail_on="bad")
    batcher = MicroBatcher(rec, inline=True)
    good = asyncio.ensure_future(batcher.predict([{"tag": "good"}]))
    bad = asyncio.ensure_future(batcher.predict([{"tag": "bad"}]))
    assert (await good)[0] == [{"echo": "good"}]
    with pytest.raises(PredictionFailed, match="bad row"):
        await bad
    batcher.close()
