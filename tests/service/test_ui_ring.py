"""The live page's ring and its numbers, as pure functions (no server, no clock but the
one passed in)."""

from __future__ import annotations

from typing import Any

import pytest

import servepath.net.forwarded
from servepath.net.forwarded import TrustedProxies
from servepath.service.ui import (
    RENDER_CHAIN_CHARS,
    SeenRing,
    latest_from,
    percentile,
    request_totals,
    split_of,
    stats_of,
)

PEER = ("127.0.0.1", 40001)
HOSTILE = "<img src=x onerror=alert(1)>"


def _note(ring: SeenRing, status: int = 200, **kw: Any) -> None:
    headers = kw.get("headers", [(b"x-forwarded-for", b"127.0.0.2")])
    timings = kw.get("timings", [("cache", 0.02, "miss"), ("model", 1.5, None)])
    seconds, rid, client = kw.get("seconds", 0.002), kw.get("rid", "r"), kw.get("client", PEER)
    ring.note(status, seconds, "/decisions", rid, client, headers, timings)


def test_the_ring_keeps_only_the_newest_requests_newest_first() -> None:
    ring = SeenRing(capacity=3)
    for i in range(5):
        _note(ring, rid=f"r{i}")
    assert len(ring) == 3
    assert [e["request_id"] for e in ring.entries(TrustedProxies())] == ["r4", "r3", "r2"]


def test_an_entry_carries_the_callers_fields_the_prediction_log_keeps() -> None:
    ring = SeenRing()
    _note(ring)
    [untrusted] = ring.entries(TrustedProxies())
    # Not trusted: the peer is the client and the header is only a claim, as in the log.
    assert untrusted["client_ip"] == "127.0.0.1" and untrusted["client_addr"] == "127.0.0.1:40001"
    assert untrusted["forwarded"] == "127.0.0.2" and untrusted["proxies"] == []
    [trusted] = ring.entries(TrustedProxies.parse("127.0.0.1"))
    assert trusted["client_ip"] == "127.0.0.2" and trusted["forwarded"] is None
    assert trusted["proxies"] == ["127.0.0.1"]


def test_an_entry_splits_the_server_time_into_cache_model_and_the_rest() -> None:
    split = split_of([("cache", 0.25, "miss"), ("model", 1.5, None)], total_ms=2.0)
    assert split == {"cache_ms": 0.25, "cache": "miss", "model_ms": 1.5, "other_ms": 0.25,
                     "total_ms": 2.0}  # fmt: skip
    refused = split_of([], total_ms=0.3)
    assert refused["cache"] is None and refused["model_ms"] is None
    assert refused["other_ms"] == 0.3


def test_a_hostile_forwarded_header_is_kept_as_text_bounded() -> None:
    ring = SeenRing()
    _note(ring, headers=[(b"x-forwarded-for", (HOSTILE * 200).encode())])
    [entry] = ring.entries(TrustedProxies())
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["forwarded"] is None or len(entry["forwarded"]) <= 2048


def test_each_entry_is_rendered_once_while_it_stays_in_the_ring() -> None:
    ring = SeenRing(capacity=3)
    for i in range(3):
        _note(ring, rid=f"r{i}")
    first = ring.entries(TrustedProxies())
    assert ring.entries(TrustedProxies()) == first and ring.renders == 3
    _note(ring, rid="r3")  # pushes r0 out: one new entry to render, none again
    assert [e["request_id"] for e in ring.entries(TrustedProxies())] == ["r3", "r2", "r1"]
    assert ring.renders == 4
    ring.entries(TrustedProxies.parse("127.0.0.1"))  # other proxies: another reading
    assert ring.renders == 7


def test_an_entry_reads_only_the_end_of_a_long_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    real = servepath.net.forwarded.parse_x_forwarded_for

    def counting(values: Any) -> Any:
        parsed.append(len(",".join(values)))
        return real(values)

    monkeypatch.setattr(servepath.net.forwarded, "parse_x_forwarded_for", counting)
    chain = ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(3000))  # ~36 KB
    ring = SeenRing()
    _note(ring, headers=[(b"x-forwarded-for", chain.encode())])
    [entry] = ring.entries(TrustedProxies.parse("127.0.0.1"))
    assert parsed and max(parsed) <= RENDER_CHAIN_CHARS
    # The nearest hop is still the client the trusted proxy names; the rest is marked cut.
    assert entry["client_ip"] == "10.0.11.183"
    assert entry["forwarded"].startswith("…") and len(entry["forwarded"]) <= 2048


@pytest.mark.parametrize(("q", "expected"), [(50, 50.0), (99, 99.0), (100, 100.0), (1, 1.0)])
def test_percentiles_are_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(x) for x in range(1, 101)], q) == expected


def test_a_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None


def test_stats_count_the_window_and_the_errors_by_class() -> None:
    now = 1_000_000.0
    samples = [(now - 400, 200, 0.001)]  # outside the 300 s window
    samples += [(now - 10 + i * 0.01, 200, 0.002) for i in range(97)]
    samples += [(now - 1, 422, 0.0005), (now - 1, 503, 0.0001), (now - 0.5, 500, 0.1)]
    stats = stats_of(samples, now)
    assert stats.requests == 100
    assert (stats.errors_4xx, stats.errors_5xx) == (1, 2)
    assert stats.error_rate == pytest.approx(0.03)
    assert stats.throughput_rps == pytest.approx(100 / 300)
    assert stats.p50_ms == 2.0 and stats.p99_ms == 2.0
    assert len(stats.per_second) == 60
    assert sum(n for n, _ in stats.per_second) == 100
    assert sum(e for _, e in stats.per_second) == 3


def test_marked_requests_stay_in_the_list_but_out_of_the_numbers() -> None:
    ring = SeenRing()
    _note(ring, rid="real")
    ring.note(503, 0.5, "/decisions", "probe", PEER, [(b"x-servepath-traffic", b"load")], [],
              "load")  # fmt: skip
    stats = ring.stats()
    assert stats.requests == 1 and stats.errors_5xx == 0 and stats.synthetic == 1
    assert stats.to_json()["synthetic_left_out"] == 1
    assert [(e["request_id"], e["traffic"]) for e in ring.entries(TrustedProxies())] == [
        ("probe", "load"),
        ("real", None),
    ]


def test_the_last_second_holds_the_newest_requests() -> None:
    now = 500.9
    stats = stats_of([(500.2, 200, 0.001), (500.5, 500, 0.001), (499.5, 200, 0.001)], now)
    assert stats.per_second[-1] == (2, 1)
    assert stats.per_second[-2] == (1, 0)


def test_stats_of_no_requests_are_zero_and_no_percentiles() -> None:
    stats = stats_of([], 10.0)
    assert stats.requests == 0 and stats.throughput_rps == 0.0 and stats.error_rate == 0.0
    assert stats.p50_ms is None and stats.to_json()["p99_ms"] is None


def test_the_viewers_latest_prediction_prefers_an_answered_one() -> None:
    entries = [
        {"client_ip": "10.0.0.1", "status": 200, "request_id": "other"},
        {"client_ip": "127.0.0.1", "status": 422, "request_id": "refused"},
        {"client_ip": "127.0.0.1", "status": 200, "request_id": "answered"},
    ]
    assert latest_from(entries, "127.0.0.1")["request_id"] == "answered"  # type: ignore[index]
    assert latest_from(entries[:2], "127.0.0.1")["request_id"] == "refused"  # type: ignore[index]
    assert latest_from(entries, "192.0.2.1") is None and latest_from(entries, None) is None


def test_totals_sum_the_predict_routes_by_status_from_the_metrics() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = (
        "# TYPE servepath_http_requests_total counter\n"
        'servepath_http_requests_total{route="/decisions",method="POST",status="200"} 7\n'
        'servepath_http_requests_total{route="/decisions",method="POST",status="422"} 2\n'
        'servepath_http_requests_total{route="/v2/models/{name}/infer",method="POST",'
        'status="200"} 1\n'
        'servepath_http_requests_total{route="/metrics",method="GET",status="200"} 40\n'
    )
    totals = request_totals(
        text_string_to_metric_families(text), ["/decisions", "/v2/models/{name}/infer"]
    )
    assert totals == {"requests": 10, "errors": 2, "by_status": {"200": 8, "422": 2}}
