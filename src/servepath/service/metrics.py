"""Prometheus metrics. With several worker processes, values go through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `servepath serve --workers N`) so that one
scrape of any worker reports the sum over all of them."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


class Metrics:
    def __init__(self, *, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "servepath_http_requests_total",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "servepath_http_request_duration_seconds",
            "Server time per HTTP request, by route.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "servepath_predictions_total",
            "Predictions served, by outcome (the decision, or the predicted value's class).",
            ["model", "decision", "cache"],
            registry=r,
        )
        self.model_latency = Histogram(
            "servepath_model_call_duration_seconds",
            "Duration of one model call (one micro-batch).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "servepath_model_batch_rows",
            "Rows per model call.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.cache = Counter(
            "servepath_cache_lookups_total",
            "Cache lookups per instance: hit, miss, or error (served uncached).",
            ["result"],
            registry=r,
        )

        # labels() hashes and locks on every call; the hot path keeps the children it uses.
        self._children: dict[tuple[str, ...], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = ("r", route, method, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        child[0].inc()
        child[1].observe(seconds)

    def count_prediction(self, model: str, decision: str, cache: str) -> None:
        key = ("p", model, decision, cache)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(model, decision, cache)
        child.inc()

    def count_cache(self, result: str, n: int) -> None:
        key = ("c", result)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.cache.labels(result)
        child.inc(n)

    def observe_model_call(self, model: str, seconds: float, rows: int) -> None:
        key = ("m", model)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.model_latency.labels(model),
                self.batch_size.labels(model),
            )
        child[0].observe(seconds)
        child[1].observe(rows)

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
