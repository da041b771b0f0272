"""The model API as a plain ASGI application.

No framework sits between the server and the routes: the hot path is a dict lookup, one JSON
parse, a validator compiled from the model's schema, a cache lookup, and the micro-batcher.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from servepath import __version__
from servepath.cache.base import Cache, cache_key
from servepath.cache.memory import MemoryCache
from servepath.config import Settings
from servepath.contract import DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE, OPENAPI_ROUTE
from servepath.errors import (
    FieldError,
    InvalidInput,
    ModelNotReady,
    TooManyInstances,
)
from servepath.model.batcher import MicroBatcher
from servepath.model.loaded import LoadedModel, Output, Row, load_model
from servepath.net.endpoints import host_port
from servepath.service import v2
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
from servepath.service.errors import error_response
from servepath.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from servepath.service.metrics import Metrics
from servepath.service.openapi import DOCS_HTML, build_openapi
from servepath.service.pathecho import forwarded_chain, path_echo
from servepath.store.base import PredictionLog, PredictionRecord, Route, StoreStatus
from servepath.store.writer import BatchedLog, WriterStats

log = logging.getLogger(__name__)

ModelState = Literal["loading", "ready", "failed"]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


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


_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")


@dataclass
class _Ctx:
    """Per-request state the handlers add timings and headers to."""

    request_id: str
    start: float
    timings: list[tuple[str, float, str | None]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def server_timing(self) -> bytes:
        total = (time.perf_counter() - self.start) * 1000
        parts = [
            f'{name};dur={dur:.3f};desc="{desc}"' if desc else f"{name};dur={dur:.3f}"
            for name, dur, desc in self.timings
        ]
        parts.append(f"total;dur={total:.3f}")
        return ", ".join(parts).encode()


Handler = Callable[[Scope, Receive, _Ctx], Any]


class ServepathApp:
    """ASGI app: routes, request ids, Server-Timing, metrics, and the model's lifecycle."""

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
        self.metrics.watch_log(self._log_sample)
        self._loader = model_loader or (lambda: _load_configured_model(settings))
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.state: ModelState = "loading"
        self.load_error: str | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._openapi: bytes | None = None
        if model is not None:
            self._install(model)
        self._routes = self._build_routes()

    # --- lifecycle -----------------------------------------------------------------

    def _install(self, model: LoadedModel) -> None:
        self.model = model
        name = model.name
        self.batcher = MicroBatcher(
            model.predict_rows,
            max_batch=self.settings.max_batch,
            on_call=lambda ms, rows: self.metrics.observe_model_call(name, ms / 1000, rows),
            inline=model.engine == "compiled",
        )
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
        self._install(model)
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
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        await self.cache.close()
        if self.batcher is not None:
            self.batcher.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- routing -------------------------------------------------------------------

    def _build_routes(self) -> dict[str, dict[str, Handler]]:
        s = self.settings
        routes: dict[str, dict[str, Handler]] = {
            DEFAULT_HEALTH_ROUTE: {"GET": self._health},
            s.health_route: {"GET": self._health},
            DEFAULT_PREDICT_ROUTE: {"POST": self._predict},
            s.predict_route: {"POST": self._predict},
            "/v2": {"GET": self._v2_server},
            "/v2/health/live": {"GET": self._v2_live},
            "/v2/health/ready": {"GET": self._v2_ready},
            "/metrics": {"GET": self._metrics},
            OPENAPI_ROUTE: {"GET": self._openapi_json},
            "/docs": {"GET": self._docs},
        }
        if s.path_echo_route:
            routes[s.path_echo_route] = {"GET": self._path_echo}
        return routes

    def route_list(self) -> list[str]:
        listed = [f"{m} {p}" for p, methods in self._routes.items() for m in methods]
        listed += [
            "GET /v2/models/{name}",
            "GET /v2/models/{name}/ready",
            "POST /v2/models/{name}/infer",
        ]
        return sorted(set(listed))

    def _resolve(self, method: str, path: str) -> tuple[Handler | None, str, list[str]]:
        """The handler, the route template (for metrics), and the methods the path allows."""
        methods = self._routes.get(path)
        if methods is None and len(path) > 1 and path.endswith("/"):
            methods = self._routes.get(path.rstrip("/"))
        if methods is not None:
            template = path
            lookup = "GET" if method == "HEAD" else method
            return methods.get(lookup), template, list(methods)
        match = _V2_MODEL.match(path)
        if match:
            suffix = match.group(3) or ""
            template = "/v2/models/{name}" + suffix
            allowed = {"": "GET", "/ready": "GET", "/infer": "POST"}[suffix]
            lookup = "GET" if method == "HEAD" else method
            handler: Handler | None = None
            if lookup == allowed:
                handler = {
                    "": self._v2_metadata,
                    "/ready": self._v2_model_ready,
                    "/infer": self._v2_infer,
                }[suffix]
            return handler, template, [allowed]
        return None, "unknown", []

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
        start = time.perf_counter()
        given = header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else new_request_id()
        ctx = _Ctx(request_id, start)
        method = scope["method"]
        handler, template, allowed = self._resolve(method, scope["path"])
        try:
            if handler is None:
                response = self._not_found(method, scope["path"], allowed)
            else:
                response = await handler(scope, receive, ctx)
        except Exception as exc:
            response = error_response(exc, v2=template.startswith("/v2"))
        extra = [
            (b"x-request-id", request_id.encode()),
            (b"server-timing", ctx.server_timing()),
            *ctx.headers,
        ]
        await send_response(send, response, extra, head=method == "HEAD")
        elapsed = time.perf_counter() - start
        self.metrics.observe_request(template, method, response.status, elapsed)

    def _not_found(self, method: str, path: str, allowed: list[str]) -> Response:
        if allowed:
            return json_response(
                405,
                {"error": f"{method} is not allowed on {path}", "allowed": allowed},
                [(b"allow", ", ".join(allowed).encode())],
            )
        return json_response(
            404, {"error": f"no route {method} {path}", "routes": self.route_list()}
        )

    # --- health, docs, metrics, path echo --------------------------------------------

    def health_body(self) -> dict[str, Any]:
        return {
            "status": {"ready": "ok", "loading": "loading", "failed": "failed"}[self.state],
            "model": self.model.describe() if self.model else None,
            "error": self.load_error,
            "cache": self.cache.status().to_json(),
            "store": self.store.status().to_json(),
            "version": __version__,
        }

    def _log_sample(self) -> tuple[StoreStatus, WriterStats | None]:
        store = self.store
        return store.status(), store.stats() if isinstance(store, BatchedLog) else None

    async def _health(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        status = 200 if self.state == "ready" else 503
        return json_response(status, self.health_body())

    async def _metrics(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        return Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)

    async def _openapi_json(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        # The document describes the model's inputs, so it exists only once the model does.
        self._ready_model()
        if self._openapi is None:
            self._openapi = orjson.dumps(build_openapi(self.settings, self.model, __version__))
        return Response(200, self._openapi)

    async def _docs(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        return Response(200, DOCS_HTML.encode(), b"text/html; charset=utf-8")

    async def _path_echo(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        s = self.settings
        return json_response(
            200,
            path_echo(
                scope,
                bound_host=s.host,
                bound_port=s.port,
                request_id=ctx.request_id,
                in_kubernetes=s.in_kubernetes,
            ),
        )

    # --- prediction --------------------------------------------------------------------

    def _ready_model(self) -> tuple[LoadedModel, MicroBatcher]:
        if self.model is None or self.batcher is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return self.model, self.batcher

    async def _read_json(self, scope: Scope, receive: Receive) -> Any:
        check_content_type(scope)
        body = await read_body(scope, receive, self.settings.max_body_bytes)
        return parse_json(body)

    async def _predict(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        model, _ = self._ready_model()
        body = await self._read_json(scope, receive)
        if isinstance(body, dict) and "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise InvalidInput([FieldError(("instances",), "expected an array", "type")])
            if not instances:
                raise InvalidInput(
                    [FieldError(("instances",), "at least one instance required", "min_items")]
                )
            self._check_count(len(instances))
            rows = model.schema.validate_many(instances)
            outputs = await self._run(rows, "vertex", scope, ctx)
            return json_response(200, {"predictions": outputs, "model_version": model.version})
        row, errors = model.schema.validate(body)
        if row is None:
            raise InvalidInput(errors)
        outputs = await self._run([row], "decisions", scope, ctx)
        return json_response(200, {**outputs[0], "model_version": model.version})

    def _check_count(self, count: int) -> None:
        if count > self.settings.max_instances:
            raise TooManyInstances(count, self.settings.max_instances)

    async def _run(
        self, rows: Sequence[Row], route: Route, scope: Scope, ctx: _Ctx
    ) -> list[Output]:
        """Predict ``rows`` through the cache and the batcher; record and count them."""
        model, batcher = self._ready_model()
        s = self.settings
        n = len(rows)
        keys = [cache_key(s.cache_prefix, model.name, model.version, row) for row in rows]
        t0 = time.perf_counter()
        cached = await self._cache_get(keys)
        cache_ms = (time.perf_counter() - t0) * 1000
        outputs: list[Output | None] = [
            orjson.loads(value) if value is not None else None for value in cached
        ]
        missing = [i for i, out in enumerate(outputs) if out is None]
        hits = n - len(missing)
        if missing:
            computed, model_ms = await batcher.predict([rows[i] for i in missing])
            for i, out in zip(missing, computed, strict=True):
                outputs[i] = out
            ctx.timings.append(("model", model_ms, None))
            if self.cache.name != "off":
                items = [
                    (keys[i], orjson.dumps(out)) for i, out in zip(missing, computed, strict=True)
                ]
                if isinstance(self.cache, MemoryCache):
                    # Never waits: store now, with no task to schedule, and no window in which
                    # an identical request would miss.
                    self.cache.store_many(items, s.cache_ttl)
                else:
                    self._spawn(self._cache_set(items))
        done: list[Output] = [out for out in outputs if out is not None]
        desc = "hit" if hits == n else ("miss" if hits == 0 else f"{hits}/{n} hit")
        ctx.timings.insert(0, ("cache", cache_ms, desc))
        ctx.headers.append((b"x-cache", b"HIT" if hits == n else b"MISS"))
        if n > 1:
            ctx.headers.append((b"x-cache-hits", f"{hits}/{n}".encode()))
        miss = set(missing)
        for i, out in enumerate(done):
            self.metrics.count_prediction(
                model.name, str(out.get("decision", "value")), "miss" if i in miss else "hit"
            )
        await self._log(model, route, rows, done, missing, scope, ctx)
        return done

    async def _cache_get(self, keys: list[str]) -> list[bytes | None]:
        try:
            if self.cache.name in ("memory", "off"):
                values = await self.cache.get_many(keys)
            else:
                values = await asyncio.wait_for(
                    self.cache.get_many(keys), self.settings.cache_timeout
                )
        except Exception as exc:  # a cache must never fail a prediction
            log.warning("cache lookup failed, serving uncached: %r", exc)
            self.metrics.count_cache("error", len(keys))
            return [None] * len(keys)
        hits = sum(v is not None for v in values)
        if hits:
            self.metrics.count_cache("hit", hits)
        if hits < len(keys):
            self.metrics.count_cache("miss", len(keys) - hits)
        return values

    async def _cache_set(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await asyncio.wait_for(
                self.cache.set_many(items, self.settings.cache_ttl), self.settings.cache_timeout
            )
        except Exception as exc:
            log.warning("cache store failed: %r", exc)
            self.metrics.count_cache("store_error", len(items))

    async def _log(
        self,
        model: LoadedModel,
        route: Route,
        rows: Sequence[Row],
        outputs: Sequence[Output],
        missing: list[int],
        scope: Scope,
        ctx: _Ctx,
    ) -> None:
        if self.store.name == "off":
            return
        client = scope.get("client")
        peer = host_port(str(client[0]), client[1]) if client else None
        chain = forwarded_chain(scope)
        forwarded = ", ".join(chain) if chain else None
        now = time.time()
        latency = (time.perf_counter() - ctx.start) * 1000
        miss = set(missing)
        records = [
            PredictionRecord(
                request_id=ctx.request_id,
                index=i,
                ts=now,
                route=route,
                model_name=model.name,
                model_version=model.version,
                instance=row,
                output=out,
                latency_ms=round(latency, 3),
                cache_hit=i not in miss,
                client_addr=peer,
                forwarded=forwarded,
            )
            for i, (row, out) in enumerate(zip(rows, outputs, strict=True))
        ]
        if self.settings.durable:
            await self.store.record_durable(records)
        else:
            self.store.record(records)

    # --- Open Inference Protocol V2 ---------------------------------------------------

    async def _v2_server(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        return json_response(200, {"name": "servepath", "version": __version__, "extensions": []})

    async def _v2_live(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        return json_response(200, {"live": True})

    async def _v2_ready(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        ready = self.state == "ready"
        return json_response(200 if ready else 503, {"ready": ready})

    def _v2_model(self, scope: Scope) -> LoadedModel:
        match = _V2_MODEL.match(scope["path"])
        assert match is not None
        name, version = match.group(1), match.group(2)
        model, _ = self._ready_model()
        if name != model.name or (version is not None and version != model.version):
            wanted = f"{name} version {version}" if version else name
            raise _UnknownModel(
                f"model {wanted!r} not found; this server serves {model.name!r}"
                f" version {model.version!r}"
            )
        return model

    async def _v2_metadata(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        try:
            return json_response(200, v2.metadata(self._v2_model(scope)))
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})

    async def _v2_model_ready(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        try:
            model = self._v2_model(scope)
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        except ModelNotReady:
            return json_response(503, {"ready": False})
        return json_response(200, {"name": model.name, "ready": True})

    async def _v2_infer(self, scope: Scope, receive: Receive, ctx: _Ctx) -> Response:
        try:
            model = self._v2_model(scope)
        except _UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        if header(scope, b"inference-header-content-length") is not None:
            return json_response(
                400, {"error": "the binary tensor extension is not supported; send JSON tensors"}
            )
        body = await self._read_json(scope, receive)
        instances = v2.instances_from_request(body, model)
        self._check_count(len(instances))
        rows = model.schema.validate_many(instances, loc=("inputs",))
        outputs = await self._run(rows, "v2", scope, ctx)
        requested = None
        if isinstance(body.get("outputs"), list):
            requested = [
                str(o["name"]) for o in body["outputs"] if isinstance(o, dict) and "name" in o
            ]
        request_id = body.get("id") if isinstance(body.get("id"), str) else None
        return json_response(200, v2.response(model, outputs, request_id, requested))


class _UnknownModel(Exception):
    pass


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
        return load_model(fetched.path, settings.model_name)
    path = settings.model_path or ensure_example(settings.default_model_path)
    return load_model(path, settings.model_name)


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
