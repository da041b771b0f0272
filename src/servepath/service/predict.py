"""The predict pipeline: response cache → micro-batcher → prediction log, on plain values.

Nothing here knows ASGI. A request reaches the pipeline as validated rows, the route it came
by and a :class:`RequestMeta` (its id, when it arrived, who sent it, its deadline, and a way
to ask whether its caller is still there); it leaves as a :class:`Prediction` the HTTP edge
turns into a body, ``Server-Timing`` and ``X-Cache``. Tests drive it without a server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from servepath.cache.base import Cache, cache_key
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel, Output, Row
from servepath.ratelog import RateLimitedWarning
from servepath.service.metrics import Metrics
from servepath.service.request import RequestMeta
from servepath.service.tracecontext import current as current_trace
from servepath.store.base import PredictionLog, PredictionRecord, Route
from servepath.store.bounds import (
    MAX_INSTANCE_BYTES,
    MAX_OUTPUT_BYTES,
    bounded_json,
    new_record_id,
)

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Batcher(Protocol):
    """What the pipeline asks of its batcher (:class:`MicroBatcher`, or one that wraps it)."""

    async def predict(
        self,
        rows: Sequence[Row],
        *,
        deadline: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> tuple[list[Output], float]: ...


@dataclass(slots=True)
class Prediction:
    """The answers for one request's rows, in order, and where they came from."""

    outputs: list[Output]
    hits: int  # rows answered by the cache
    cache_ms: float  # time spent looking the rows up
    model_ms: float | None  # the model call the other rows were in; None if there was none
    started: float = 0.0  # when the cache lookup began (perf_counter seconds)

    @property
    def cache_desc(self) -> str:
        n = len(self.outputs)
        return "hit" if self.hits == n else ("miss" if self.hits == 0 else f"{self.hits}/{n} hit")

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": self.outputs,
            "hits": self.hits,
            "cache_ms": self.cache_ms,
            "model_ms": self.model_ms,
        }


class PredictPipeline:
    """One model's predictions through the cache, the batcher and the log.

    ``spawn`` runs a coroutine in the background, owned by whoever closes the service (so
    that a background cache store finishes, or is awaited, before shutdown).
    """

    def __init__(
        self,
        *,
        model: LoadedModel,
        batcher: MicroBatcher,
        cache: Cache,
        store: PredictionLog,
        metrics: Metrics,
        spawn: Spawn,
        cache_prefix: str,
        cache_ttl: float,
        cache_timeout: float,
        durable: bool,
        label: str = "",
        role: str = "primary",
    ) -> None:
        self.model = model
        self.batcher: Batcher = batcher
        self.cache = cache
        self.store = store
        self.metrics = metrics
        self._spawn = spawn
        self.cache_prefix = cache_prefix
        self.cache_ttl = cache_ttl
        self.cache_timeout = cache_timeout
        self.durable = durable
        #: The version's label (a repository folder, else the 12-hex version) and its role.
        self.label = label or model.version
        self.role = role
        #: A lookup that takes this long has failed, whatever the cache says.
        self._backstop = max(1.0, 20 * cache_timeout)
        self._lookup_failed = RateLimitedWarning(log, "cache lookups failing, serving uncached")
        self._store_failed = RateLimitedWarning(log, "cache stores failing")

    async def run(self, rows: Sequence[Row], route: Route, meta: RequestMeta) -> Prediction:
        """Predict ``rows`` through the cache and the batcher; record and count them."""
        model = self.model
        n = len(rows)
        cache = self.cache
        keys: list[str] = []
        outputs: list[Output | None]
        t0 = time.perf_counter()
        if cache.enabled:
            prefix, name, version = self.cache_prefix, model.name, model.version
            keys = [cache_key(prefix, name, version, row) for row in rows]
            cached = await self._cache_get(keys)
            outputs = [orjson.loads(value) if value is not None else None for value in cached]
        else:
            outputs = [None] * n
        cache_ms = (time.perf_counter() - t0) * 1000
        missing = [i for i, out in enumerate(outputs) if out is None]
        hits = n - len(missing)
        model_ms: float | None = None
        if missing:
            computed, model_ms = await self.batcher.predict(
                [rows[i] for i in missing], deadline=meta.deadline, gone=meta.gone
            )
            for i, out in zip(missing, computed, strict=True):
                outputs[i] = out
            if cache.enabled:
                items = [
                    (keys[i], orjson.dumps(out)) for i, out in zip(missing, computed, strict=True)
                ]
                # A non-blocking cache stores now, before the response goes out (no window
                # in which an identical request would miss); a blocking one in the background.
                cache.store_later(items, self.cache_ttl, self._store_error)
        done: list[Output] = [out for out in outputs if out is not None]
        miss = set(missing)
        count = self.metrics.count_prediction
        label = self.label
        for i, out in enumerate(done):
            count(model.name, label, str(out.get("decision", "value")),
                  "miss" if i in miss else "hit")  # fmt: skip
        if self.store.enabled:
            await self._log(route, rows, done, miss, meta)
        return Prediction(done, hits, cache_ms, model_ms, t0)

    async def _cache_get(self, keys: list[str]) -> list[bytes | None]:
        cache = self.cache
        try:
            if cache.blocking:
                # The cache bounds its own calls by the cache timeout (measured on the backend,
                # not on a busy event loop); this is only a backstop against a broken backend.
                async with asyncio.timeout(self._backstop):
                    values = await cache.get_many(keys)
            else:
                values = await cache.get_many(keys)
        except Exception as exc:  # a cache must never fail a prediction
            self._lookup_failed.note(repr(exc))
            self.metrics.count_cache("error", len(keys))
            return [None] * len(keys)
        hits = sum(v is not None for v in values)
        if hits:
            self.metrics.count_cache("hit", hits)
        if hits < len(keys):
            self.metrics.count_cache("miss", len(keys) - hits)
        return values

    def log_shadow(
        self,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        meta: RequestMeta,
        latency_ms: float,
    ) -> None:
        """Record a shadow's answers to a copy of a request, linked to the request's own
        record (never durable: a shadow's record is worth no caller's wait)."""
        records = self._records(
            route, rows, outputs, meta, record_id=new_record_id(), latency_ms=latency_ms
        )
        for record in records:
            record.role = "shadow"
            record.shadow_of = meta.record_id or None
            record.forwarded = None
        self.store.record(records)

    def _store_error(self, entries: int, reason: str) -> None:
        self._store_failed.note(reason)
        self.metrics.count_cache("store_error", entries)

    def _records(
        self,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        meta: RequestMeta,
        *,
        record_id: str,
        latency_ms: float,
        miss: set[int] | None = None,
    ) -> list[PredictionRecord]:
        """One record per instance, within the log's bounds (``miss``: the rows the model
        computed; None: all of them)."""
        model = self.model
        now = time.time()
        request_truncated = ",".join(meta.truncated)
        label = self.label
        role = None if self.role == "primary" else self.role
        records = []
        for i, (row, out) in enumerate(zip(rows, outputs, strict=True)):
            instance, cut_instance = bounded_json(row, MAX_INSTANCE_BYTES)
            output, cut_output = bounded_json(out, MAX_OUTPUT_BYTES)
            truncated = request_truncated
            if cut_instance or cut_output:
                cut = ("instance",) * cut_instance + ("output",) * cut_output
                truncated = ",".join(filter(None, (truncated, *cut)))
            records.append(
                PredictionRecord(
                    request_id=meta.request_id,
                    index=i,
                    ts=now,
                    route=route,
                    model_name=model.name,
                    model_version=model.version,
                    instance=instance,
                    output=output,
                    latency_ms=round(latency_ms, 3),
                    cache_hit=miss is not None and i not in miss,
                    client_addr=meta.client,
                    forwarded=meta.forwarded,
                    record_id=record_id,
                    client_ip=meta.client_ip,
                    truncated=truncated or None,
                    api_key=meta.api_key,
                    traffic=meta.traffic,
                    model_label=label,
                    role=role,
                )
            )
        return records

    async def _log(
        self,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        miss: set[int],
        meta: RequestMeta,
    ) -> None:
        latency = (time.perf_counter() - meta.start) * 1000
        # The server owns the record's identity: a caller's X-Request-ID is stored beside
        # it, never used as a key, so reusing one cannot merge or suppress records.
        record_id = meta.record_id
        if not record_id:
            # Drawn here when nobody drew one; kept on the request so that a shadow's
            # records can name the record they copy.
            record_id = meta.record_id = new_record_id()
        records = self._records(
            route, rows, outputs, meta, record_id=record_id, latency_ms=latency, miss=miss
        )
        if self.durable:
            await self.store.record_durable(records)
        else:
            self.store.record(records)


class TracedPipeline(PredictPipeline):
    """The pipeline when tracing is on: :meth:`PredictPipeline.run`, with each step's moments
    noted on a sampled request's :class:`~servepath.service.tracecontext.Trace` (and its id
    on the log's records). A variant chosen when the version is deployed, so that without
    tracing the request path pays nothing for it; a request not sampled runs the plain
    steps. The moments come from what the plain run measures anyway (the lookup's start
    and duration, the model call's), plus the batcher's and the log's ends, timed here."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        model = self.model
        #: The version's attributes on its spans, made once.
        self.traced_as = (model.name, model.version, self.label, model.engine)
        self.batcher = _TimedBatcher(self.batcher)

    async def run(self, rows: Sequence[Row], route: Route, meta: RequestMeta) -> Prediction:
        trace = current_trace.get()
        if trace is None:
            return await super().run(rows, route, meta)
        trace.model = self.traced_as
        trace.request_id = meta.request_id
        prediction = await super().run(rows, route, meta)
        trace.cache_start = prediction.started
        if self.cache.enabled:
            trace.cache_end = prediction.started + prediction.cache_ms / 1000
        trace.rows, trace.hits = len(prediction.outputs), prediction.hits
        if prediction.model_ms is not None:
            trace.model_ms = prediction.model_ms
        return prediction

    async def _log(
        self,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        miss: set[int],
        meta: RequestMeta,
    ) -> None:
        trace = current_trace.get()
        if trace is None:
            await super()._log(route, rows, outputs, miss, meta)
            return
        trace.log_start = time.perf_counter()
        await super()._log(route, rows, outputs, miss, meta)
        trace.log_end = time.perf_counter()

    def _records(
        self,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        meta: RequestMeta,
        *,
        record_id: str,
        latency_ms: float,
        miss: set[int] | None = None,
    ) -> list[PredictionRecord]:
        records = super()._records(
            route, rows, outputs, meta, record_id=record_id, latency_ms=latency_ms, miss=miss
        )
        trace = current_trace.get()
        if trace is not None:
            trace_id = trace.trace_hex
            for record in records:
                record.trace_id = trace_id
        return records


class _TimedBatcher:
    """A batcher whose answers note, on a traced request, when they came (the end of the
    request's queue and model spans)."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher

    async def predict(
        self,
        rows: Sequence[Row],
        *,
        deadline: float | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> tuple[list[Output], float]:
        answer = await self._batcher.predict(rows, deadline=deadline, gone=gone)
        trace = current_trace.get()
        if trace is not None:
            trace.batch_end = time.perf_counter()
        return answer
