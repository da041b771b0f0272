"""The data plane: one model's lifecycle and everything the endpoints ask of it, with no ASGI.

It owns the model's state (loading → ready, or failed), installs a loaded model behind the
micro-batcher and the predict pipeline, answers readiness and health, runs admission control
(and installs it into the server's :class:`~servepath.service.gate.Gate`, so that the HTTP
layer sheds on the head with the same decision), and owns the background tasks: the event
loop's lag sampler, the workers' state publisher, the pipeline's deferred writes. Each
endpoint family (:mod:`servepath.service.endpoints`) is a thin delegate to these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

from servepath import __version__
from servepath.cache.base import Cache
from servepath.config import Settings
from servepath.errors import ModelNotReady, Overloaded, PayloadTooLarge, TooManyInstances
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel, Row, engines_dir, load_model
from servepath.service.admission import (
    Admission,
    AdmissionLimits,
    AdmissionSnapshot,
    Decision,
    Diagnostics,
    Ticket,
)
from servepath.service.gate import Gate
from servepath.service.metrics import Metrics, Sample
from servepath.service.predict import Prediction, PredictPipeline
from servepath.service.request import RequestMeta
from servepath.service.state import state_samples
from servepath.store.base import PredictionLog, Route

log = logging.getLogger(__name__)

ModelState = Literal["loading", "ready", "failed"]
#: How often the event loop's lag is sampled, seconds.
LAG_INTERVAL = 0.01
#: How often a worker writes its state (log, cache, admission) where every worker's scrape
#: reads it, seconds.
PUBLISH_INTERVAL = 1.0
#: What a caller from elsewhere without a key reads where the server's own details would be.
WITHHELD = "withheld from callers without an API key; the server's log has it"


class DataPlane:
    """See the module docstring. ``model_loader`` loads the configured model (in a thread)."""

    def __init__(
        self,
        settings: Settings,
        *,
        gate: Gate,
        cache: Cache,
        store: PredictionLog,
        model: LoadedModel | None = None,
        model_loader: Callable[[], LoadedModel] | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.cache = cache
        self.store = store
        self.metrics: Metrics = gate.metrics
        self.metrics.watch(self._samples)
        self.admission = Admission(
            AdmissionLimits(
                max_in_flight=settings.max_in_flight,
                max_body_bytes=max(64 * 1024 * 1024, 4 * settings.max_body_bytes),
                max_wait=settings.max_queue_wait,
            ),
            max_batch=settings.max_batch,
        )
        #: The live page's data and the path echo: a budget of their own.
        self.diagnostics = Diagnostics(self.admission)
        self._loader = model_loader or (lambda: load_configured_model(settings))
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.pipeline: PredictPipeline | None = None
        self.state: ModelState = "loading"
        self.load_error: str | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Task[None]] = []
        #: Called with each model installed (the OpenAPI document is rebuilt for it).
        self.on_install: list[Callable[[LoadedModel], None]] = []
        if model is not None:
            self.install(model)
        gate.install(self.admit_early)

    @property
    def draining(self) -> bool:
        return self.gate.draining

    # --- the model's lifecycle ---------------------------------------------------------

    def install(self, model: LoadedModel, *, calibrate: bool = True) -> None:
        """Serve ``model`` from now on: a batcher and a pipeline of its own."""
        name = model.name
        admission = self.admission
        if calibrate:
            calibrate_admission(admission, model)

        def on_call(ms: float, rows: int) -> None:
            self.metrics.observe_model_call(name, ms / 1000, rows)
            admission.observe_call(rows, ms / 1000)

        s = self.settings
        self.batcher = MicroBatcher(
            model.predict_rows,
            max_batch=s.max_batch,
            on_call=on_call,
            on_drop=lambda reason, rows: self.metrics.count_dropped(reason),
            inline=model.inline,
        )
        self.pipeline = PredictPipeline(
            model=model,
            batcher=self.batcher,
            cache=self.cache,
            store=self.store,
            metrics=self.metrics,
            spawn=self.spawn,
            cache_prefix=s.cache_prefix,
            cache_ttl=s.cache_ttl,
            cache_timeout=s.cache_timeout,
            durable=s.durable,
        )
        self.model = model
        self.state = "ready"
        for callback in self.on_install:
            callback(model)

    async def load(self) -> None:
        """Load the configured model off the event loop; a failure is the state, not a crash."""
        try:
            model = await asyncio.to_thread(self._loader)
        except Exception as exc:
            self.state = "failed"
            self.load_error = str(exc)
            log.error("model failed to load: %s", exc)
            if self.settings.on_model_failure == "exit":
                self.gate.fail(str(exc))
            else:
                log.error("serving on, unready (--on-model-failure stay): health answers 503")
            return
        # Timed off the event loop: a slow model's calls would stall it.
        await asyncio.to_thread(calibrate_admission, self.admission, model)
        self.install(model, calibrate=False)
        settle_heap()
        log.info(
            "model %s version %s ready: %s, served with %s",
            model.name,
            model.version,
            model.format,
            model.engine_note or model.engine,
        )

    async def startup(self) -> None:
        await self.cache.start()
        await self.store.start()
        self._watchers.append(asyncio.create_task(self._watch_lag(), name="servepath-lag"))
        if self.metrics.multiprocess:
            self._watchers.append(
                asyncio.create_task(self._publish_state(), name="servepath-publish")
            )
        if self.model is None:
            if self.settings.workers > 1:
                # Workers share one listening socket: a worker that accepted connections while
                # loading would answer 503 to requests a ready sibling could serve. Load first;
                # uvicorn starts accepting only once startup returns.
                await self.load()
            else:
                # One process listens at once so that health answers 503 "loading" meanwhile.
                self.spawn(self.load())

    async def shutdown(self) -> None:
        self.gate.draining = True
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        await self.cache.close()
        for task in self._watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()
        if self.metrics.multiprocess:
            self.metrics.publish()
            self.metrics.forget_process()
        if self.batcher is not None:
            self.batcher.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_lag(self) -> None:
        """Sample how late the event loop runs a timer: the wait every request shares."""
        loop = asyncio.get_running_loop()
        observe = self.admission.observe_lag
        while True:
            due = loop.time() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            observe(loop.time() - due)

    async def _publish_state(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            self.metrics.publish()

    # --- readiness and health ----------------------------------------------------------

    def serving(self) -> tuple[bool, str]:
        """Whether predictions can be answered now, and if not, why (for readiness)."""
        if self.state != "ready":
            return False, self.state
        if self.draining:
            return False, "draining"
        if self.settings.durable:
            status = self.store.status()
            if not status.accepting:
                return False, f"the prediction log cannot keep records: {status.detail}"
        return True, "ok"

    def health(self, *, full: bool = True) -> dict[str, Any]:
        """The health document; ``full`` false withholds the server's own details."""
        status = {"ready": "ok", "loading": "loading", "failed": "failed"}[self.state]
        if self.draining and self.state == "ready":
            status = "draining"
        return {
            "status": status,
            "model": self.model.describe() if self.model else None,
            "error": self.load_error if full or not self.load_error else WITHHELD,
            "cache": told(self.cache.status().to_json(), full),
            "store": told(self.store.status().to_json(), full),
            "load": self.load_snapshot().to_json(),
            "version": __version__,
        }

    def ready_model(self) -> LoadedModel:
        if self.model is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return self.model

    def _samples(self) -> list[Sample]:
        """The state a scrape reports: prediction log, cache, admission."""
        batcher = self.batcher
        return state_samples(
            self.store,
            self.cache,
            self.load_snapshot(),
            batcher.queued_rows if batcher is not None else 0,
        )

    # --- admission -----------------------------------------------------------------------

    def _observe_model(self) -> None:
        """Tell admission control what the model's queue holds now."""
        batcher = self.batcher
        if batcher is not None:
            self.admission.observe_queue(
                batcher.queued_rows,
                batcher.queued_requests,
                batcher.busy_rows,
                batcher.busy_requests,
                batcher.busy_since,
            )

    def load_snapshot(self) -> AdmissionSnapshot:
        self._observe_model()
        return self.admission.snapshot(time.perf_counter())

    def _decide(self, body_bytes: int) -> tuple[float, Decision]:
        self._observe_model()
        now = time.perf_counter()
        return now, self.admission.decide(now, body_bytes=body_bytes)

    def admit(self, body_bytes: int = 0) -> Ticket:
        """Let one prediction request into the building, or raise :class:`Overloaded` (or
        :class:`PayloadTooLarge`). Whoever holds the ticket gives it back to :meth:`leave`."""
        limit = self.settings.max_body_bytes
        if body_bytes > limit:
            # Refused for its size (413: do not retry), not for the load (503: retry).
            raise PayloadTooLarge(limit, body_bytes)
        now, decision = self._decide(body_bytes)
        if not decision.admitted:
            self.metrics.count_shed(decision.reason or "overloaded")
            raise Overloaded(decision.detail, decision.retry_after)
        return self.admission.enter(now, body_bytes)

    def admit_early(self, body_bytes: int = 0) -> Ticket | Decision | None:
        """For the HTTP layer, as soon as a prediction request's head has arrived: a ticket
        (hand it to the app with the request), the refusal to answer 503 at once, or None
        when there is nothing to decide yet (no model: the app says so)."""
        if self.model is None or body_bytes > self.settings.max_body_bytes:
            return None  # the app answers (503 loading, 413 too large)
        now, decision = self._decide(body_bytes)
        if decision.admitted:
            return self.admission.enter(now, body_bytes)
        self.metrics.count_shed(decision.reason or "overloaded")
        return decision

    def leave(self, ticket: Ticket) -> None:
        self.admission.leave(time.perf_counter(), ticket)

    def admit_diagnostic(self, route: str) -> None:
        """Let one request to a diagnostic route in, or raise :class:`Overloaded` (503 with
        Retry-After) and count it."""
        self._observe_model()
        decision = self.diagnostics.decide(time.perf_counter())
        if not decision.admitted:
            self.metrics.count_diagnostic_refused(route, decision.reason or "rate")
            raise Overloaded(decision.detail, decision.retry_after)

    # --- prediction ----------------------------------------------------------------------

    def check_count(self, count: int) -> None:
        if count > self.settings.max_instances:
            raise TooManyInstances(count, self.settings.max_instances)

    async def predict(self, rows: Sequence[Row], route: Route, meta: RequestMeta) -> Prediction:
        """Predict validated ``rows`` through the cache, the batcher and the log."""
        pipeline = self.pipeline
        if pipeline is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return await pipeline.run(rows, route, meta)


def load_configured_model(settings: Settings) -> LoadedModel:
    """The model the settings name (see :mod:`servepath.model.source`), loaded and verified."""
    path = settings.model_source.local_path(
        settings.data_dir,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
        sha256=settings.model_sha256,
        allow_http=settings.allow_http_model,
    )
    return load_model(
        path,
        settings.model_name,
        cache_dir=engines_dir(settings.data_dir),
        schema_path=settings.model_schema,
        probabilities=settings.probabilities,
    )


def calibrate_admission(admission: Admission, model: LoadedModel, batch: int = 8) -> None:
    """Time the model on its example instance, alone and in a small batch, so that admission
    control knows its service time before the first burst (the fit then follows real calls)."""
    try:
        row = model.schema.example()
        for rows in ([row], [row] * batch):
            started = time.perf_counter()
            model.predict_rows(rows)
            admission.observe_call(len(rows), time.perf_counter() - started)
    except Exception as exc:  # an example the model refuses: learn from real calls instead
        log.debug("could not time the model on its example: %s", exc)


def settle_heap() -> None:
    """Hide what is alive once the model has loaded from the cyclic garbage collector.

    The model, its libraries and their modules are a few hundred thousand objects that live
    as long as the process. A full collection walks all of them: about 50 ms on the example
    model, a stall every request in flight waits out, and the prediction log and the
    response cache keep enough objects alive long enough to set one off every few seconds
    under load. Frozen objects are skipped by every collection (refcounting still frees
    them), so a full collection then costs well under a millisecond.
    """
    gc.collect()
    gc.freeze()


def told(status: dict[str, Any], full: bool) -> dict[str, Any]:
    """A backend's status as a caller may see it: its detail (addresses, paths, a database's
    error text) only for an insider, and only when there is one."""
    if full or not status.get("detail"):
        return status
    return {**status, "detail": WITHHELD}
