"""The model API as a plain ASGI application.

No framework sits between the server and the routes: the hot path is a dict lookup, one JSON
parse, a validator compiled from the model's schema, admission control, and the predict
pipeline (cache → micro-batcher → log, in :mod:`servepath.service.predict`). This module is
the HTTP edge of that pipeline: it turns a request into rows and a
:class:`~servepath.service.predict.RequestMeta`, and a prediction into a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import orjson

from servepath import __version__
from servepath.cache.base import Cache
from servepath.config import Settings
from servepath.contract import DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE, OPENAPI_ROUTE
from servepath.errors import (
    ConfigError,
    FieldError,
    InvalidInput,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    TooManyInstances,
    clip,
)
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel, Row, engines_dir, load_model
from servepath.net.addresses import classify_address
from servepath.net.endpoints import host_port
from servepath.service import v2
from servepath.service.admission import (
    Admission,
    AdmissionLimits,
    AdmissionSnapshot,
    Decision,
    Ticket,
)
from servepath.service.asgi import (
    Receive,
    Response,
    Scope,
    Send,
    check_content_type,
    header,
    json_response,
    parse_json,
    read_body,
    send_response,
)
from servepath.service.auth import (
    AccessPolicy,
    challenge,
    load_key_file,
    parse_open_routes,
    presented_key,
)
from servepath.service.docs_assets import (
    ASSET_ROUTES,
    DOCS_MISSING,
    DOCS_PAGE,
    INIT_ROUTE,
)
from servepath.service.docs_assets import asset as docs_asset
from servepath.service.docs_assets import available as docs_available
from servepath.service.errors import error_response
from servepath.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from servepath.service.metrics import Metrics, Sample
from servepath.service.openapi import build_openapi
from servepath.service.pathecho import client_view, meta_for_log, path_echo
from servepath.service.predict import Prediction, PredictPipeline, RequestMeta
from servepath.service.routes import Handler, RequestContext, Router, v2_model_name
from servepath.service.security import html_headers
from servepath.service.state import state_samples
from servepath.service.ui import SeenRing, latest_from, request_totals
from servepath.service.ui_assets import ASSETS as UI_ASSETS
from servepath.service.ui_assets import DATA_SUFFIX as UI_DATA_SUFFIX
from servepath.service.ui_assets import asset as ui_asset
from servepath.service.ui_assets import page as ui_page
from servepath.service.ui_assets import subroutes as ui_subroutes
from servepath.store.base import PredictionLog, Route

log = logging.getLogger(__name__)
access_log = logging.getLogger("servepath.access")

ModelState = Literal["loading", "ready", "failed"]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
#: The V2 liveness route: answered by the HTTP layer itself when it can (never queued).
LIVE_ROUTE = "/v2/health/live"
#: How often the event loop's lag is sampled, seconds.
LAG_INTERVAL = 0.01
#: How often a worker writes its state (log, cache, admission) where every worker's scrape
#: reads it, seconds.
PUBLISH_INTERVAL = 1.0
#: The scope extension the HTTP layer puts its per-request hooks under.
EXTENSION = "servepath"


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: 48 bits of Unix milliseconds, then random bits.

    Ids made in time order land at the end of the prediction log's primary-key index rather
    than at random places in it: that makes a logged insert about 2.5x cheaper once the
    table outgrows the page cache, and sorts the ids by time for whoever reads them.
    """
    # Ids are not secrets: the random module's generator (seeded per process, reseeded in a
    # forked child) saves a getrandom() system call per request; 80 random bits within one
    # millisecond keep them unique.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    # Version 7 in bits 76-79, the RFC variant (0b10) in bits 62-63.
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def request_id_for(given: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is a sane one, else a new id."""
    return given if given and _REQUEST_ID.match(given) else new_request_id()


def caller_timeout(scope: Scope) -> float | None:
    """The caller's own deadline, seconds from now: ``X-Request-Timeout: 2.5`` (seconds) or
    Envoy's ``x-envoy-expected-rq-timeout-ms: 2500``; None when it sent neither (or junk)."""
    for key, value in scope["headers"]:
        if key == b"x-request-timeout":
            scale = 1.0
        elif key == b"x-envoy-expected-rq-timeout-ms":
            scale = 0.001
        else:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            return None
        return seconds if seconds > 0 else None
    return None


class ServepathApp:
    """ASGI app: routes, request ids, Server-Timing, metrics, admission, the model's lifecycle."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: LoadedModel | None = None,
        model_loader: Callable[[], LoadedModel] | None = None,
        cache: Cache,
        store: PredictionLog,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.store = store
        self.metrics = metrics or Metrics(multiprocess=settings.workers > 1)
        self.metrics.watch(self._samples)
        self.admission = Admission(
            AdmissionLimits(
                max_in_flight=settings.max_in_flight,
                max_body_bytes=max(64 * 1024 * 1024, 4 * settings.max_body_bytes),
                max_wait=settings.max_queue_wait,
            ),
            max_batch=settings.max_batch,
        )
        self._loader = model_loader or (lambda: _load_configured_model(settings))
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.pipeline: PredictPipeline | None = None
        self.state: ModelState = "loading"
        self.load_error: str | None = None
        self.draining = False
        self._background: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Task[None]] = []
        self._openapi: bytes | None = None
        #: The live page's ring of the last prediction requests (None: no page).
        self.ui = SeenRing() if settings.ui_route else None
        #: The route templates whose answers the ring keeps: the predict routes.
        self.ui_templates = frozenset(
            {DEFAULT_PREDICT_ROUTE, settings.predict_route, "/v2/models/{name}/infer"}
        )
        if model is not None:
            self._install(model)
        self.router = self._build_router()
        self.access = access_policy(settings)
        #: Routes an orchestrator probes: open unless --protect-health.
        self.health_routes = frozenset(
            {
                DEFAULT_HEALTH_ROUTE,
                settings.health_route,
                "/v2",
                LIVE_ROUTE,
                "/v2/health/ready",
                "/v2/models/{name}/ready",
            }
        )
        #: Paths whose POST runs the model: the HTTP layer may shed them before parsing.
        self.predict_paths = frozenset({DEFAULT_PREDICT_ROUTE, settings.predict_route})
        # The HTTP layer answers liveness itself only while it needs no key.
        self.live_path = "" if self.access.needs_key(LIVE_ROUTE, health=True) else LIVE_ROUTE

    # --- lifecycle -----------------------------------------------------------------

    def _install(self, model: LoadedModel, *, calibrate: bool = True) -> None:
        name = model.name
        admission = self.admission
        if calibrate:
            _calibrate(admission, model)

        def on_call(ms: float, rows: int) -> None:
            self.metrics.observe_model_call(name, ms / 1000, rows)
            admission.observe_call(rows, ms / 1000)

        self.batcher = MicroBatcher(
            model.predict_rows,
            max_batch=self.settings.max_batch,
            on_call=on_call,
            on_drop=lambda reason, rows: self.metrics.count_dropped(reason),
            inline=model.inline,
        )
        s = self.settings
        self.pipeline = PredictPipeline(
            model=model,
            batcher=self.batcher,
            cache=self.cache,
            store=self.store,
            metrics=self.metrics,
            spawn=self._spawn,
            cache_prefix=s.cache_prefix,
            cache_ttl=s.cache_ttl,
            cache_timeout=s.cache_timeout,
            durable=s.durable,
        )
        self.model = model
        self.state = "ready"
        self._openapi = None

    async def _load(self) -> None:
        try:
            model = await asyncio.to_thread(self._loader)
        except Exception as exc:
            self.state = "failed"
            self.load_error = str(exc)
            log.error("model failed to load: %s", exc)
            return
        # Timed off the event loop: a slow model's calls would stall it.
        await asyncio.to_thread(_calibrate, self.admission, model)
        self._install(model, calibrate=False)
        _settle_heap()
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
                await self._load()
            else:
                # One process listens at once so that health answers 503 "loading" meanwhile.
                self._spawn(self._load())

    async def shutdown(self) -> None:
        self.draining = True
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

    def begin_drain(self) -> None:
        """The server stopped accepting: readiness says so; requests in the building finish."""
        self.draining = True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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

    # --- routing -------------------------------------------------------------------

    def _build_router(self) -> Router:
        s = self.settings
        exact: dict[str, dict[str, Handler]] = {
            DEFAULT_HEALTH_ROUTE: {"GET": self._health},
            s.health_route: {"GET": self._health},
            DEFAULT_PREDICT_ROUTE: {"POST": self._predict},
            s.predict_route: {"POST": self._predict},
            "/v2": {"GET": self._v2_server},
            LIVE_ROUTE: {"GET": self._v2_live},
            "/v2/health/ready": {"GET": self._v2_ready},
            "/metrics": {"GET": self._metrics},
            OPENAPI_ROUTE: {"GET": self._openapi_json},
            "/docs": {"GET": self._docs},
            **{route: {"GET": self._docs_asset} for route in (*ASSET_ROUTES, INIT_ROUTE)},
        }
        if s.path_echo_route:
            exact[s.path_echo_route] = {"GET": self._path_echo}
        if s.ui_route:
            exact[s.ui_route] = {"GET": self._ui_page}
            exact[s.ui_route + UI_DATA_SUFFIX] = {"GET": self._ui_data}
            for suffix in UI_ASSETS:
                exact[s.ui_route + suffix] = {"GET": self._ui_asset}
        return Router(
            exact,
            {"": self._v2_metadata, "/ready": self._v2_model_ready, "/infer": self._v2_infer},
        )

    def route_list(self) -> list[str]:
        return self.router.route_list()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        hooks = scope.get("extensions", {}).get(EXTENSION)
        # The HTTP layer says when the request's first byte arrived; without it, now.
        start = hooks.arrived if hooks is not None else time.perf_counter()
        ctx = RequestContext(request_id_for(header(scope, b"x-request-id")), start)
        if hooks is not None:
            ctx.gone = hooks.gone
            # Admitted already by the HTTP layer, as soon as the head arrived.
            ctx.ticket = hooks.ticket
        method = scope["method"]
        path = scope["path"]
        handler, template, allowed = self.router.resolve(method, path)
        try:
            if handler is None:
                response = self.router.not_found(method, path, allowed)
            elif self.access.needs_key(template, health=template in self.health_routes):
                response = self._authorized(scope, receive, ctx, handler) or await handler(
                    scope, receive, ctx
                )
            else:
                response = await handler(scope, receive, ctx)
        except Exception as exc:
            response = error_response(exc, v2=template.startswith("/v2"))
        finally:
            if ctx.ticket is not None:
                self.admission.leave(time.perf_counter(), ctx.ticket)
        extra = [
            (b"x-request-id", ctx.request_id.encode()),
            (b"server-timing", ctx.server_timing()),
            *ctx.headers,
        ]
        await send_response(send, response, extra, head=method == "HEAD")
        elapsed = time.perf_counter() - start
        self.metrics.observe_request(template, method, response.status, elapsed)
        ui = self.ui
        if ui is not None and template in self.ui_templates:
            client = scope.get("client")
            ui.note(response.status, elapsed, template, ctx.request_id, client,
                    scope["headers"], ctx.timings)  # fmt: skip
        if self.settings.access_log:
            self._access(scope, ctx, response, elapsed)

    def _authorized(
        self, scope: Scope, receive: Receive, ctx: RequestContext, handler: Handler
    ) -> Response | None:
        """None when the request carries a known key (its name goes on ``ctx``), else the
        401 to answer instead; the body is never read for a caller without a key."""
        keys = self.access.keys
        assert keys is not None
        identity = keys.identify(presented_key(scope["headers"]))
        if identity.ok:
            ctx.caller = identity.name
            self.metrics.count_caller(identity.name or "", "accepted")
            return None
        self.metrics.count_caller("", identity.problem or "invalid")
        message = (
            "this route needs an API key: send Authorization: Bearer KEY or X-API-Key: KEY"
            if identity.problem == "missing"
            else "the API key is not one this server knows"
        )
        return json_response(
            401,
            {"error": message, "reason": "unauthorized"},
            [(b"www-authenticate", challenge(identity.problem))],
        )

    def reload_keys(self) -> None:
        """Read the key file again (SIGHUP); a file that no longer loads keeps the old keys."""
        if self.settings.api_key_file is None:
            return
        try:
            self.access = access_policy(self.settings)
        except ConfigError as exc:
            log.error("SIGHUP: kept the old API keys: %s", exc)
            return
        log.info("SIGHUP: %s", self.access.describe())

    def _access(
        self, scope: Scope, ctx: RequestContext, response: Response, elapsed: float
    ) -> None:
        client = scope.get("client")
        peer = host_port(str(client[0]), client[1]) if client else "-"
        query = scope.get("query_string") or b""
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        timing = " ".join(f"{name}={dur:.3f}ms" for name, dur, _ in ctx.timings)
        access_log.info(
            '%s "%s %s" %d %d id=%s%s total=%.3fms%s',
            peer,
            scope["method"],
            target,
            response.status,
            len(response.body),
            ctx.request_id,
            f" key={ctx.caller}" if ctx.caller else "",
            elapsed * 1000,
            " " + timing if timing else "",
        )

    # --- health, docs, metrics, path echo --------------------------------------------

    def insider(self, scope: Scope, ctx: RequestContext) -> bool:
        """A caller who may read the server's own details (the data directory, a database's
        error, hostname, pid): one that carried an API key, or one on this machine (as the
        server believes the client, see --forwarded-allow-ips)."""
        if ctx.caller is not None:
            return True
        keys = self.access.keys
        if keys is not None and keys.identify(presented_key(scope["headers"])).ok:
            return True  # a key on an open route (health): checked only when it is sent
        client = client_view(scope, self.settings.trusted_proxies).client
        if not client:
            return scope.get("client") is None  # a unix socket: this machine
        try:
            return classify_address(client).kind == "loopback"
        except ValueError:
            return False

    def health_body(self, *, full: bool = True) -> dict[str, Any]:
        status = {"ready": "ok", "loading": "loading", "failed": "failed"}[self.state]
        if self.draining and self.state == "ready":
            status = "draining"
        return {
            "status": status,
            "model": self.model.describe() if self.model else None,
            "error": self.load_error if full or not self.load_error else _WITHHELD,
            "cache": _told(self.cache.status().to_json(), full),
            "store": _told(self.store.status().to_json(), full),
            "load": self.load_snapshot().to_json(),
            "version": __version__,
        }

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

    def _samples(self) -> list[Sample]:
        """The state a scrape reports: prediction log, cache, admission."""
        batcher = self.batcher
        return state_samples(
            self.store,
            self.cache,
            self.load_snapshot(),
            batcher.queued_rows if batcher is not None else 0,
        )

    async def _health(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        ok, _ = self.serving()
        return json_response(200 if ok else 503, self.health_body(full=self.insider(scope, ctx)))

    async def _metrics(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)

    async def _openapi_json(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        # The document describes the model's inputs, so it exists only once the model does.
        model = self._ready_model()
        if self._openapi is None:
            self._openapi = orjson.dumps(build_openapi(self.settings, model, __version__))
        return Response(200, self._openapi)

    async def _docs(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        html = DOCS_PAGE if docs_available() else DOCS_MISSING
        return Response(200, html.encode(), b"text/html; charset=utf-8", html_headers(html))

    async def _docs_asset(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        found = docs_asset(scope["path"])
        if found is None:
            return json_response(404, {"error": "Swagger UI's assets are not installed"})
        headers = [(b"etag", found.etag), (b"cache-control", b"public, max-age=86400")]
        if header(scope, b"if-none-match") == found.etag.decode():
            return Response(304, b"", found.content_type, headers)
        return Response(200, found.body, found.content_type, headers)

    async def _path_echo(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        s = self.settings
        return json_response(
            200,
            path_echo(
                scope,
                bound_host=s.host,
                bound_port=s.port,
                request_id=ctx.request_id,
                in_kubernetes=s.in_kubernetes,
                trusted=s.trusted_proxies,
                insider=self.insider(scope, ctx),
            ),
        )

    # --- the live page ---------------------------------------------------------------

    async def _ui_page(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        assert self.settings.ui_route is not None
        html = ui_page(self.settings.ui_route)
        headers = [*html_headers(html), (b"cache-control", b"no-cache")]
        return Response(200, html.encode(), b"text/html; charset=utf-8", headers)

    async def _ui_asset(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        assert self.settings.ui_route is not None
        found = ui_asset(scope["path"].rstrip("/")[len(self.settings.ui_route) :])
        if found is None:
            return json_response(404, {"error": "no such file of the live page"})
        # Revalidated on every load: an upgraded server's page is never half old.
        headers = [(b"etag", found.etag), (b"cache-control", b"no-cache")]
        if header(scope, b"if-none-match") == found.etag.decode():
            return Response(304, b"", found.content_type, headers)
        return Response(200, found.body, found.content_type, headers)

    async def _ui_data(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(200, self.ui_data(scope, ctx), [(b"cache-control", b"no-store")])

    def ui_data(self, scope: Scope, ctx: RequestContext) -> dict[str, Any]:
        """What the live page shows: the viewer's own path, the last requests, the numbers."""
        from prometheus_client.parser import text_string_to_metric_families

        s = self.settings
        ring = self.ui
        assert ring is not None
        trusted = s.trusted_proxies
        viewer = path_echo(
            scope,
            bound_host=s.host,
            bound_port=s.port,
            request_id=ctx.request_id,
            in_kubernetes=s.in_kubernetes,
            trusted=trusted,
            insider=self.insider(scope, ctx),
        )
        entries = ring.entries(trusted)
        viewer["latest"] = latest_from(entries, viewer["client"]["address"])
        families = text_string_to_metric_families(self.metrics.render().decode())
        return {
            "generated": round(time.time(), 3),
            "server": {
                "version": __version__,
                "pid": viewer["pid"],
                "hostname": viewer["hostname"],
                "workers": s.workers,
                "predict_route": s.predict_route,
                "ring": {"capacity": ring.capacity, "size": len(entries), "scope": "worker"},
            },
            "model": self.model.describe() if self.model else None,
            "model_state": self.state,
            "viewer": viewer,
            "requests": entries,
            "stats": ring.stats().to_json(),
            # Summed over every worker (the metrics' shared files when there are several).
            "totals": request_totals(families, sorted(self.ui_templates)),
        }

    # --- prediction --------------------------------------------------------------------

    def _ready_model(self) -> LoadedModel:
        if self.model is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return self.model

    def _ready_pipeline(self) -> PredictPipeline:
        if self.pipeline is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return self.pipeline

    def _declared_length(self, scope: Scope) -> int:
        value = header(scope, b"content-length")
        return int(value) if value is not None and value.isdigit() else 0

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

    def admit(self, ctx: RequestContext, body_bytes: int = 0) -> None:
        """Let one prediction request into the building (unless the HTTP layer already
        did), or raise :class:`Overloaded`. ``_http`` releases the ticket."""
        if ctx.ticket is not None:
            return
        limit = self.settings.max_body_bytes
        if body_bytes > limit:
            # Refused for its size (413: do not retry), not for the load (503: retry).
            raise PayloadTooLarge(limit, body_bytes)
        now, decision = self._decide(body_bytes)
        if not decision.admitted:
            self.metrics.count_shed(decision.reason or "overloaded")
            raise Overloaded(decision.detail, decision.retry_after)
        ctx.ticket = self.admission.enter(now, body_bytes)

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

    async def _read_json(self, scope: Scope, receive: Receive) -> Any:
        check_content_type(scope)
        body = await read_body(scope, receive, self.settings.max_body_bytes)
        return parse_json(body)

    async def _predict(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        model = self._ready_model()
        self.admit(ctx, self._declared_length(scope))
        body = await self._read_json(scope, receive)
        if isinstance(body, dict) and "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise InvalidInput([FieldError(("instances",), "expected an array", "type")])
            if not instances:
                raise InvalidInput(
                    [FieldError(("instances",), "at least one instance required", "min_items")]
                )
            _check_vertex_envelope(body)
            self._check_count(len(instances))
            rows = model.schema.validate_many(instances)
            outputs = await self._run(rows, "vertex", scope, ctx)
            return json_response(200, {"predictions": outputs, "model_version": model.version})
        row = model.schema.validate_one(body)
        outputs = await self._run([row], "decisions", scope, ctx)
        return json_response(200, {**outputs[0], "model_version": model.version})

    def _check_count(self, count: int) -> None:
        if count > self.settings.max_instances:
            raise TooManyInstances(count, self.settings.max_instances)

    def request_meta(self, scope: Scope, ctx: RequestContext) -> RequestMeta:
        """The pipeline's view of a request: no ASGI beyond this point."""
        timeout = self.settings.request_timeout
        given = caller_timeout(scope)
        if given is not None and given < timeout:
            timeout = given
        meta = RequestMeta(ctx.request_id, ctx.start, deadline=ctx.start + timeout, gone=ctx.gone)
        if self.store.enabled:
            meta_for_log(meta, scope, ctx.request_id, self.settings.trusted_proxies)
        meta.api_key = ctx.caller
        return meta

    async def _run(
        self, rows: Sequence[Row], route: Route, scope: Scope, ctx: RequestContext
    ) -> list[dict[str, Any]]:
        """Predict through the pipeline; note its timings and cache headers on ``ctx``."""
        prediction = await self._ready_pipeline().run(rows, route, self.request_meta(scope, ctx))
        _annotate(ctx, prediction)
        return prediction.outputs

    # --- Open Inference Protocol V2 ---------------------------------------------------

    async def _v2_server(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(
            200, {"name": "servepath", "version": __version__, "extensions": list(v2.EXTENSIONS)}
        )

    async def _v2_live(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(200, {"live": True})

    async def _v2_ready(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        ready, _ = self.serving()
        return json_response(200 if ready else 503, {"ready": ready})

    def _v2_model(self, scope: Scope) -> LoadedModel:
        name, version = v2_model_name(scope["path"])
        model = self._ready_model()
        if name != model.name or (version is not None and version != model.version):
            wanted = clip(f"{name} version {version}" if version else name)
            raise _UnknownModel(
                f"model {wanted!r} not found; this server serves {model.name!r}"
                f" version {model.version!r}"
            )
        return model

    async def _v2_metadata(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        try:
            return json_response(200, v2.metadata(self._v2_model(scope)))
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})

    async def _v2_model_ready(
        self, scope: Scope, receive: Receive, ctx: RequestContext
    ) -> Response:
        try:
            model = self._v2_model(scope)
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        except ModelNotReady:
            return json_response(503, {"ready": False})
        return json_response(200, {"name": model.name, "ready": True})

    async def _v2_infer(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        try:
            model = self._v2_model(scope)
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        self.admit(ctx, self._declared_length(scope))
        check_content_type_v2(scope)
        raw = await read_body(scope, receive, self.settings.max_body_bytes)
        body = v2.parse_request(raw, header(scope, b"inference-header-content-length"))
        instances = v2.instances_from_request(body, model)
        self._check_count(len(instances))
        rows = model.schema.validate_many(instances, loc=("inputs",))
        outputs = await self._run(rows, "v2", scope, ctx)
        requested = None
        if isinstance(body.get("outputs"), list):
            requested = [
                o["name"]
                for o in body["outputs"]
                if isinstance(o, dict) and isinstance(o.get("name"), str)
            ]
        request_id = body.get("id") if isinstance(body.get("id"), str) else None
        result = v2.response(model, outputs, request_id, requested)
        payload, header_length = v2.encode_response(result, v2.binary_outputs(body))
        if header_length is None:
            return Response(200, payload)
        return Response(
            200,
            payload,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(header_length).encode())],
        )


def check_content_type_v2(scope: Scope) -> None:
    """JSON, or (with the binary tensor extension) raw bytes after a JSON header."""
    if header(scope, b"inference-header-content-length") is None:
        check_content_type(scope)


def _annotate(ctx: RequestContext, prediction: Prediction) -> None:
    n = len(prediction.outputs)
    ctx.timings.insert(0, ("cache", prediction.cache_ms, prediction.cache_desc))
    if prediction.model_ms is not None:
        ctx.timings.append(("model", prediction.model_ms, None))
    ctx.headers.append((b"x-cache", b"HIT" if prediction.hits == n else b"MISS"))
    if n > 1:
        ctx.headers.append((b"x-cache-hits", f"{prediction.hits}/{n}".encode()))


class _UnknownModel(Exception):
    pass


def _calibrate(admission: Admission, model: LoadedModel, batch: int = 8) -> None:
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


def _settle_heap() -> None:
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


def _load_configured_model(settings: Settings) -> LoadedModel:
    from servepath.model.example import ensure_example

    if settings.model_uri is not None:
        from servepath.model.storage import fetch_model

        fetched = fetch_model(
            settings.model_uri,
            settings.data_dir,
            gcs_endpoint=settings.gcs_endpoint,
            s3_endpoint=settings.s3_endpoint,
        )
        log.info("model %s: %s", settings.model_uri, "downloaded" if fetched.downloaded else
                 "cached copy")  # fmt: skip
        path = fetched.path
    else:
        path = settings.model_path or ensure_example(settings.default_model_path)
    return load_model(
        path,
        settings.model_name,
        cache_dir=engines_dir(settings.data_dir),
        schema_path=settings.model_schema,
        probabilities=settings.probabilities,
    )


#: What a caller from elsewhere without a key reads where the server's own details would be.
_WITHHELD = "withheld from callers without an API key; the server's log has it"


def _told(status: dict[str, Any], full: bool) -> dict[str, Any]:
    """A backend's status as a caller may see it: its detail (addresses, paths, a database's
    error text) only for an insider, and only when there is one."""
    if full or not status.get("detail"):
        return status
    return {**status, "detail": _WITHHELD}


def _check_vertex_envelope(body: dict[str, Any]) -> None:
    """The Vertex AI form holds ``instances`` and, optionally, an object of ``parameters``."""
    errors = [
        FieldError((clip(str(key)),), "not a field of the Vertex AI form", "extra_forbidden")
        for key in body
        if key not in ("instances", "parameters")
    ]
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        errors.append(FieldError(("parameters",), "expected an object", "type"))
    if errors:
        raise InvalidInput(errors[:20])


def access_policy(settings: Settings) -> AccessPolicy:
    """Who may call what, from the settings (the key file read now)."""
    keys = load_key_file(settings.api_key_file) if settings.api_key_file else None
    opened = parse_open_routes(settings.open_routes)
    if settings.ui_route and settings.ui_route in opened:
        # Opening the live page opens its script, stylesheet and data with it.
        opened |= frozenset(ui_subroutes(settings.ui_route).values())
    return AccessPolicy(keys, settings.protect_health, opened)


def create_app(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    cache: Cache | None = None,
    store: PredictionLog | None = None,
) -> ServepathApp:
    """The ASGI app for ``settings``; pass ``model``, ``cache`` or ``store`` to inject them."""
    if cache is None:
        from servepath.cache import open_cache

        cache = open_cache(settings)
    if store is None:
        from servepath.store import open_log

        store = open_log(settings)
    return ServepathApp(settings, model=model, cache=cache, store=store)


def app_from_env() -> ServepathApp:
    """Factory for worker processes: rebuild the parent's Settings and make the app."""
    return create_app(Settings.from_env())
