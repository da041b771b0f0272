"""Prometheus metrics. With several worker processes, values go through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `servepath serve --workers N`) so that one
scrape of any worker reports every worker: request counters and histograms summed, and each
worker's state (its prediction log, cache, admission) labelled with its ``pid``.

State is read from its owner when it is needed: with one process, at every scrape; with
workers, each worker writes its own to the shared files every second and when it is scraped
(a worker cannot ask its siblings), so a scrape shows the others' state at most a second old.

The scaling signal, ``servepath_saturation``, is the exception: one series, not one per
worker, and the maximum over the living workers exactly, whichever worker answers the scrape.
Each worker writes its own value into its shared file as it changes (a ``livemax`` gauge),
rather than at scrape time: a value computed by the worker that answers would be that
worker's, not the maximum.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class Sample(NamedTuple):
    """One value of the state a scrape reports (a counter is named without ``_total``)."""

    name: str
    help: str
    kind: Literal["gauge", "counter"]
    labels: tuple[tuple[str, str], ...]
    value: float


#: What an owner of state reports when asked.
Sampler = Callable[[], list[Sample]]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: The methods labelled by name; the dozens of others llhttp parses (WebDAV's and more) are
#: all ``other``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

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


_LIVE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")
#: Any worker's file of values in the multiprocess directory, and the bytes of its header.
_PID_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")
_HEADER_BYTES = 8


def forget_dead_workers(directory: str | None) -> list[int]:
    """Remove the per-pid series of workers that are gone (killed, crashed, restarted by
    SIGHUP) from the multiprocess directory; the pids removed.

    A worker that stops cleanly forgets itself, but one killed with SIGKILL cannot, and
    prometheus_client keeps a ``liveall`` gauge's file until someone says its process died:
    without this, every restart would leave a worker reported healthy in every scrape.
    """
    if not directory:
        return []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    gone: dict[int, bool] = {}
    dead: set[int] = set()
    for name in names:
        match = _PID_FILE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid not in gone:
            gone[pid] = not process_alive(pid)
        if not gone[pid]:
            continue
        if _LIVE_FILE.match(name):
            dead.add(pid)
        else:
            # A worker killed while it created a file leaves it without even its header:
            # every scrape would fail reading it. It holds nothing; summed files are kept.
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                if os.path.getsize(path) < _HEADER_BYTES:
                    os.remove(path)
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return sorted(dead)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this machine's; anyone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return True


class Metrics:
    def __init__(self, *, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self._forgotten = False
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
            "Predictions served, by outcome (the decision, or the predicted value's class) and "
            "the version that answered (its label: a repository folder, or the 12-hex version).",
            ["model", "version", "decision", "cache"],
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
        self.shed = Counter(
            "servepath_requests_shed_total",
            "Prediction requests answered 503 (or 429, --shed-status) at once because the work "
            "in the building was at its bound: in_flight (count), body_bytes, or wait "
            "(expected queueing).",
            ["reason"],
            registry=r,
        )
        self.diagnostic_refused = Counter(
            "servepath_diagnostic_refused_total",
            "Requests to the live page's data or the path echo answered 503 (or 429) at once: "
            "overloaded (predictions at their bound) or rate (past the route's budget).",
            ["route", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            "servepath_requests_dropped_total",
            "Prediction requests dropped before the model ran them: their deadline passed, or "
            "their caller hung up (gone).",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter(
            "servepath_http_rejected_total",
            "Connections the HTTP layer answered (or closed) on its own: header, body, idle "
            "and send timeouts, request line and header limits, malformed requests, pipelining "
            "past its bound, and connections past the connection limit.",
            ["reason"],
            registry=r,
        )

        self.shadow = Counter(
            "servepath_shadow_total",
            "Copies of requests for the shadow version, per instance: agree or disagree with "
            "the answer the caller got, error (the shadow failed), or skipped (not sent: the "
            "server was busy, and shadow work is the first to go).",
            ["version", "outcome"],
            registry=r,
        )
        self.shadow_seconds = Counter(
            "servepath_shadow_model_seconds_total",
            "Model time of the compared pairs, by role (primary, shadow): the ratio of their "
            "rates is how much slower (or faster) the shadow answers.",
            ["role"],
            registry=r,
        )
        self.saturation = Gauge(
            "servepath_saturation",
            "The expected wait of a new prediction over the bound past which it is shed, 0 to "
            "1 (1: shedding); with workers, the busiest worker's. The signal to scale on.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self._saturation = 0.0
        self.callers = Counter(
            "servepath_api_key_requests_total",
            "Requests to routes that need an API key, by the key's name (never the key) and "
            "outcome: accepted, missing or invalid (these two with an empty key label).",
            ["key", "outcome"],
            registry=r,
        )
        self.trace_spans_exported = Counter(
            "servepath_trace_spans_exported_total",
            "Trace spans the OTLP receiver (--otlp-endpoint) took.",
            registry=r,
        )
        self.trace_spans_dropped = Counter(
            "servepath_trace_spans_dropped_total",
            "Trace spans never sent: queue_full (the export queue was at its bound, the request "
            "did not wait), export_failed (the receiver refused them or could not be reached "
            "in time), encode_failed.",
            ["reason"],
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
        self._samplers: list[Sampler] = []
        #: Samplers of the whole server's state, reported by the worker scraped (see watch_whole).
        self._whole: list[Sampler] = []
        if not multiprocess:
            self.registry.register(_StateCollector(self._samplers))
        # Multiprocess: the Gauge/Counter each published sample goes to, and the value each
        # counter had when last published (the shared files hold increments).
        self._published: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._last_counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """``route`` is a route template (never a caller's path); a method outside the
        common few is labelled ``other``, so the labels a caller can add are bounded."""
        if method not in _METHODS:
            method = "other"
        self._inc(("r", route, method, str(status)))
        self._observe(("l", route, method), seconds)

    def count_prediction(self, model: str, version: str, decision: str, cache: str) -> None:
        self._inc(("p", model, version, decision, cache))

    def count_shadow(self, version: str, outcome: str, n: int = 1) -> None:
        self._inc(("sh", version, outcome), n)

    def add_shadow_seconds(self, primary: float, shadow: float) -> None:
        self._inc(("ss", "primary"), primary)
        self._inc(("ss", "shadow"), shadow)

    def count_cache(self, result: str, n: int) -> None:
        self._inc(("c", result), n)

    def count_shed(self, reason: str) -> None:
        self._inc(("s", reason))

    def count_dropped(self, reason: str) -> None:
        self._inc(("d", reason))

    def count_diagnostic_refused(self, route: str, reason: str) -> None:
        self._inc(("g", route, reason))

    def count_rejected(self, reason: str) -> None:
        self._inc(("x", reason))

    def count_caller(self, key_name: str, outcome: str) -> None:
        """One request to a protected route: which key (by name) and whether it passed.
        The label set is bounded by the key file and three outcomes."""
        self._inc(("k", key_name, outcome))

    def set_saturation(self, value: float) -> None:
        """The scaling signal now (0 to 1); written only when it changes (with workers, each
        write goes to the shared file)."""
        if value != self._saturation and not self._forgotten:
            self._saturation = value
            self.saturation.set(value)

    def observe_model_call(self, model: str, seconds: float, rows: int) -> None:
        # Called once per model call, from the model's thread as often as not: written at once.
        self._child(("ml", model)).observe(seconds)
        self._child(("mb", model)).observe(rows)

    def count_trace_spans(self, outcome: str, reason: str, n: int) -> None:
        """Spans exported, or dropped for ``reason``: called from the export thread (and
        from the request path when the queue is full), so written at once."""
        if outcome == "exported":
            self.trace_spans_exported.inc(n)
        else:
            self._child(("td", reason)).inc(n)

    def fold(self) -> None:
        """Bring the Prometheus objects up to date with what the request path noted."""
        counts, self._counts = self._counts, {}
        for key, n in counts.items():
            self._child(key).inc(n)
        observed, self._observed = self._observed, []
        for key, value in observed:
            self._child(key).observe(value)

    def watch(self, sampler: Sampler) -> None:
        """Report what ``sampler`` returns at every scrape (see the module docstring)."""
        self._samplers.append(sampler)

    def watch_whole(self, sampler: Sampler) -> None:
        """Report what ``sampler`` returns at every scrape, as the whole server's value: with
        workers it is asked by the worker scraped (it merges every worker's state itself) and
        never written to the shared files, so each series is one value, not one per pid."""
        if self.multiprocess:
            self._whole.append(sampler)
        else:
            self._samplers.append(sampler)

    def publish(self) -> None:
        """Multiprocess: write this worker's state where every worker's scrape reads it."""
        if not self.multiprocess or self._forgotten:
            return  # a worker that said goodbye must not write its series back
        for sampler in self._samplers:
            for sample in sampler():
                self._publish(sample)

    def _publish(self, sample: Sample) -> None:
        names = tuple(k for k, _ in sample.labels)
        values = [v for _, v in sample.labels]
        key = (sample.name, names)
        metric: Any = self._published.get(key)
        if metric is None:
            if sample.kind == "counter":
                metric = Counter(sample.name, sample.help, names, registry=None)
            else:
                metric = Gauge(
                    sample.name, sample.help, names, registry=None, multiprocess_mode="liveall"
                )
            self._published[key] = metric
        child: Any = metric.labels(*values) if names else metric
        if sample.kind == "counter":
            last_key = (sample.name, sample.labels)
            delta = sample.value - self._last_counts.get(last_key, 0.0)
            if delta > 0:
                child.inc(delta)
                self._last_counts[last_key] = sample.value
        else:
            child.set(sample.value)

    def forget_process(self) -> None:
        """Multiprocess: this worker is stopping; its state leaves the scrapes with it."""
        if self.multiprocess:
            self._forgotten = True
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def request_families(self) -> list[Any]:
        """The HTTP request counter as metric families, summed over every worker: what the
        live page counts, without rendering the scrape's text and parsing it back."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return list(registry.collect())
        self.fold()
        return list(self.requests.collect())

    def render(self) -> bytes:
        if self.multiprocess:
            self.publish()
            registry = CollectorRegistry()
            collector = multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            forget_dead_workers(getattr(collector, "_path", None))
            if self._whole:
                registry.register(_StateCollector(self._whole))
            return bytes(generate_latest(registry))
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
                "s": self.shed,
                "d": self.dropped,
                "g": self.diagnostic_refused,
                "x": self.rejected,
                "k": self.callers,
                "sh": self.shadow,
                "ss": self.shadow_seconds,
                "ml": self.model_latency,
                "mb": self.batch_size,
                "td": self.trace_spans_dropped,
            }[kind]
            child = self._children[key] = metric.labels(*labels)
        return child


class _StateCollector(Collector):
    """One process: ask each sampler at scrape time."""

    def __init__(self, samplers: list[Sampler]) -> None:
        self.samplers = samplers

    def collect(self) -> Iterator[Any]:
        families: dict[str, Any] = {}
        for sampler in self.samplers:
            for sample in sampler():
                family = families.get(sample.name)
                if family is None:
                    cls = CounterMetricFamily if sample.kind == "counter" else GaugeMetricFamily
                    family = families[sample.name] = cls(
                        sample.name, sample.help, labels=[k for k, _ in sample.labels]
                    )
                family.add_metric([v for _, v in sample.labels], sample.value)
        yield from families.values()
