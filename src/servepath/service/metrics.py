"""Prometheus metrics. With several worker processes, values go through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `servepath serve --workers N`) so that one
scrape of any worker reports the sum over all of them."""

from __future__ import annotations

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

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
