"""`LogReader.instances`: the window's instances and outputs as stored, in chunks, answered
requests of ordinary traffic only — the same on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from servepath.store.writer import BatchedLog
from tests.store.conftest import Backend, make_record

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


async def test_instances_of_a_window_come_in_chunks_without_shadows_or_synthetic_traffic(
    backend: Backend, started: Callable[[BatchedLog], Any]
) -> None:
    log = await started(backend.log())
    records = [
        make_record(
            ts=NOW + i,
            instance={"x": i},
            output={"decision": "a"},
            model_version="v1",
            model_label="1",
        )
        for i in range(250)
    ]
    records += [
        make_record(ts=NOW + 10, instance={"x": -1}, traffic="load"),
        make_record(ts=NOW + 11, instance={"x": -2}, role="shadow", shadow_of="req-x"),
    ]
    log.record(records)
    await log.close()
    with backend.reader() as reader:
        chunks = list(reader.instances(since=NOW + 50, until=NOW + 200, chunk=40))
        everything = [row for c in reader.instances(traffic="all") for row in c]
    assert [len(c) for c in chunks] == [40, 40, 40, 30]
    rows = [row for c in chunks for row in c]
    assert {row[:3] for row in rows} == {("decision", "v1", "1")}
    xs = sorted(orjson.loads(row[3])["x"] for row in rows)
    assert xs == list(range(50, 200))  # since included, until excluded
    assert orjson.loads(rows[0][4]) == {"decision": "a"}
    # all traffic takes the load test's request in; a shadow's copy is never an answer
    assert sorted(orjson.loads(r[3])["x"] for r in everything)[:2] == [-1, 0]
