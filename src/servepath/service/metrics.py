"""Prometheus metrics. With several worker processes, values go through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `servepath serve --workers N`) so that one
scrape of any worker reports the sum over all of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from servepath.store.base import StoreStatus
from servepath.store.writer import WriterStats

#: What the prediction log reports at a scrape: its status, and its counters if it keeps any.
LogSample = Callable[[], tuple[StoreStatus, WriterStats | None]]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: Observations noted on the request path before they are folded into the histograms.
FOLD_AT = 4096

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

        # labels() hashes and locks on every call; the children in use are kept by key.
        self._children: dict[tuple[str, ...], Any] = {}
        # One process: the request path only notes what happened (a dict update, a list
        # append) and the Prometheus objects, each with a lock per update, are brought up to
        # date when /metrics is read or FOLD_AT observations have piled up. With workers,
        # every worker's values live in shared files that any worker's scrape reads, so they
        # are written at once.
        self._deferred = not multiprocess
        self._counts: dict[tuple[str, ...], float] = {}
        self._observed: list[tuple[tuple[str, ...], float]] = []
        self._local: CollectorRegistry | None = None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._inc(("r", route, method, str(status)))
        self._observe(("l", route, method), seconds)

    def count_prediction(self, model: str, decision: str, cache: str) -> None:
        self._inc(("p", model, decision, cache))

    def count_cache(self, result: str, n: int) -> None:
        self._inc(("c", result), n)

    def observe_model_call(self, model: str, seconds: float, rows: int) -> None:
        # Called once per model call, from the model's thread as often as not: written at once.
        self._child(("ml", model)).observe(seconds)
        self._child(("mb", model)).observe(rows)

    def fold(self) -> None:
        """Bring the Prometheus objects up to date with what the request path noted."""
        counts, self._counts = self._counts, {}
        for key, n in counts.items():
            self._child(key).inc(n)
        observed, self._observed = self._observed, []
        for key, value in observed:
            self._child(key).observe(value)

    def watch_log(self, sample: LogSample) -> None:
        """Report the prediction log's queue, spool and counters at every scrape.

        These are one process's own numbers; with workers each reports its own, labelled
        with its pid, beside the summed request metrics.
        """
        collector = _LogCollector(sample, pid=os.getpid() if self.multiprocess else None)
        if self.multiprocess:
            self._local = CollectorRegistry()
            self._local.register(collector)
        else:
            self.registry.register(collector)

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            text = bytes(generate_latest(registry))
            if self._local is not None:
                text += bytes(generate_latest(self._local))
            return text
        self.fold()
        return bytes(generate_latest(self.registry))

    # --- the request path ------------------------------------------------------------

    def _inc(self, key: tuple[str, ...], n: float = 1.0) -> None:
        if self._deferred:
            counts = self._counts
            counts[key] = counts.get(key, 0.0) + n
        else:
            self._child(key).inc(n)

    def _observe(self, key: tuple[str, ...], value: float) -> None:
        if self._deferred:
            observed = self._observed
            observed.append((key, value))
            if len(observed) >= FOLD_AT:
                self.fold()
        else:
            self._child(key).observe(value)

    def _child(self, key: tuple[str, ...]) -> Any:
        child = self._children.get(key)
        if child is None:
            kind, *labels = key
            metric = {
                "r": self.requests,
                "l": self.latency,
                "p": self.predictions,
                "c": self.cache,
                "ml": self.model_latency,
                "mb": self.batch_size,
            }[kind]
            child = self._children[key] = metric.labels(*labels)
        return child


class _LogCollector(Collector):
    def __init__(self, sample: LogSample, *, pid: int | None) -> None:
        self.sample = sample
        self.pid = pid

    def collect(self) -> Iterator[Any]:
        status, stats = self.sample()
        names = ["backend"] if self.pid is None else ["backend", "pid"]
        values = [status.backend] if self.pid is None else [status.backend, str(self.pid)]
        healthy = GaugeMetricFamily(
            "servepath_prediction_log_healthy",
            "1 while the prediction log's database takes writes, 0 while records spool.",
            labels=names,
        )
        healthy.add_metric(values, 1.0 if status.healthy else 0.0)
        queued = GaugeMetricFamily(
            "servepath_prediction_log_queued",
            "Prediction records waiting in memory for the next batched write.",
            labels=names,
        )
        queued.add_metric(values, status.queued)
        spooled = GaugeMetricFamily(
            "servepath_prediction_log_spool_pending",
            "Prediction records waiting on disk for the database to come back.",
            labels=names,
        )
        spooled.add_metric(values, status.spooled)
        yield from (healthy, queued, spooled)
        if stats is None:
            return
        records = CounterMetricFamily(
            "servepath_prediction_log_records",
            "Prediction records by what became of them: committed to the database, spooled "
            "to disk, replayed from the spool, rejected for their content, or lost.",
            labels=[*names, "outcome"],
        )
        for outcome in ("committed", "spooled", "replayed", "rejected", "lost"):
            records.add_metric([*values, outcome], getattr(stats, outcome))
        transactions = CounterMetricFamily(
            "servepath_prediction_log_transactions",
            "Batched write transactions committed to the database.",
            labels=names,
        )
        transactions.add_metric(values, stats.transactions)
        yield from (records, transactions)
