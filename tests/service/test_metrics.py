"""Metrics noted on the request path reach the Prometheus exposition exactly."""

from __future__ import annotations

import re

from servepath.service.metrics import FOLD_AT, Metrics


def _value(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    assert match, f"{name}{{{labels}}} not in\n{text}"
    return float(match.group(1))


def test_counts_and_observations_noted_between_scrapes_are_all_reported() -> None:
    m = Metrics()
    for _ in range(3):
        m.observe_request("/decisions", "POST", 200, 0.0007)
    m.observe_request("/decisions", "POST", 422, 0.0001)
    m.count_prediction("loan", "approve", "hit")
    m.count_cache("hit", 5)
    m.count_cache("miss", 2)
    text = m.render().decode()
    requests = "servepath_http_requests_total"
    assert _value(text, requests, 'method="POST",route="/decisions",status="200"') == 3
    assert _value(text, requests, 'method="POST",route="/decisions",status="422"') == 1
    latency = "servepath_http_request_duration_seconds"
    assert _value(text, latency + "_count", 'method="POST",route="/decisions"') == 4
    assert _value(text, latency + "_bucket", 'le="0.0005",method="POST",route="/decisions"') == 1
    assert _value(text, latency + "_bucket", 'le="0.001",method="POST",route="/decisions"') == 4
    assert _value(text, "servepath_cache_lookups_total", 'result="hit"') == 5
    assert _value(text, "servepath_cache_lookups_total", 'result="miss"') == 2
    assert (
        _value(text, "servepath_predictions_total", 'cache="hit",decision="approve",model="loan"')
        == 1
    )
    # A second scrape reports the same totals (nothing counted twice), then what came since.
    assert m.render().decode() == text
    m.observe_request("/decisions", "POST", 200, 0.0007)
    again = m.render().decode()
    assert _value(again, requests, 'method="POST",route="/decisions",status="200"') == 4


def test_unscraped_observations_are_folded_in_before_they_pile_up() -> None:
    m = Metrics()
    for _ in range(FOLD_AT + 10):
        m.observe_request("/", "GET", 200, 0.0001)
    assert len(m._observed) < FOLD_AT
    text = m.render().decode()
    assert _value(text, "servepath_http_requests_total", 'method="GET",route="/",status="200"') == (
        FOLD_AT + 10
    )
