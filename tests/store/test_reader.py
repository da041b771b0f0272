"""Reading the log back: `--since` parsing, percentiles, and stats identical on both backends."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from servepath.errors import ConfigError
from servepath.store.reader import NO_DECISION, parse_since, percentile
from tests.store.conftest import Backend, make_record

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        (" 10M ", NOW - 600),
        ("2027-01-15T08:00:00+00:00", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()),
        ("2027-01-15T08:00:00Z", datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()),
    ],
)
def test_since_accepts_durations_and_iso_times(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


def test_since_without_an_offset_is_local_time() -> None:
    assert parse_since("2027-01-15T08:00:00", NOW) == datetime(2027, 1, 15, 8).timestamp()


@pytest.mark.parametrize("text", ["", "yesterday", "10", "5y", "-1h", "2027-13-01"])
def test_since_refuses_anything_else_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"30s, 10m, 2h, 1d, 1w"):
        parse_since(text, NOW)


def test_percentile_interpolates_like_percentile_cont() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.9) == pytest.approx(7.6)
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 10.0
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([], 0.5) is None


async def test_stats_count_decisions_hits_and_request_latency_per_version(
    backend: Backend,
) -> None:
    base = time.time() - 100
    records = []
    # v1: ten one-instance requests with latencies 1..10 ms, every third one a cache hit.
    for i in range(10):
        records.append(
            make_record(
                f"v1-{i}",
                0,
                ts=base + i,
                latency_ms=float(i + 1),
                cache_hit=i % 3 == 0,
                output={"decision": "approve" if i < 7 else "decline", "probability": 0.5},
            )
        )
    # v2: one request of 100 instances (latency 50 ms) must count as one request latency,
    # plus one request of 1 instance at 10 ms; one output without a decision.
    for j in range(100):
        records.append(
            make_record(
                "v2-batch", j, ts=base + 50, model_version="v2", latency_ms=50.0, cache_hit=True
            )
        )
    records.append(
        make_record(
            "v2-one", 0, ts=base + 60, model_version="v2", latency_ms=10.0, output={"score": 3}
        )
    )
    log = backend.log()
    await log.start()
    await log.record_durable(records)
    await log.close()

    with backend.reader() as reader:
        stats = reader.stats()
        recent_v2 = reader.stats(since=base + 55)
    assert stats.predictions == 111 and stats.requests == 12
    v1, v2 = stats.versions
    assert (v1.model_version, v1.predictions, v1.requests, v1.cache_hits) == ("v1", 10, 10, 4)
    assert v1.decisions == {"approve": 7, "decline": 3}
    assert v1.latency_ms.p50 == pytest.approx(5.5)
    assert v1.latency_ms.p90 == pytest.approx(9.1)
    assert v1.latency_ms.p99 == pytest.approx(9.91)
    assert (v2.predictions, v2.requests, v2.cache_hits) == (101, 2, 100)
    assert v2.decisions == {"approve": 100, NO_DECISION: 1}
    assert v2.latency_ms.p50 == pytest.approx(30.0)
    assert v1.first_ts == pytest.approx(base, abs=1e-5)
    assert v2.last_ts == pytest.approx(base + 60, abs=1e-5)
    assert stats.cache_hit_rate == pytest.approx(104 / 111)
    assert [(v.model_version, v.predictions) for v in recent_v2.versions] == [("v2", 1)]


async def test_recent_returns_the_newest_oldest_first_and_honours_since(
    backend: Backend,
) -> None:
    base = time.time() - 1000
    records = [make_record(f"r-{i:02d}", ts=base + i * 10) for i in range(30)]
    log = backend.log()
    await log.start()
    log.record(records)
    await log.close()
    with backend.reader() as reader:
        assert [r.request_id for r in reader.recent(limit=3)] == ["r-27", "r-28", "r-29"]
        since = [r.request_id for r in reader.recent(limit=100, since=base + 255)]
        assert since == ["r-26", "r-27", "r-28", "r-29"]
        assert reader.recent(limit=5, since=time.time() + 60) == []
