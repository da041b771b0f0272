"""The ASGI shell of the model API: request ids, API keys, the error table, Server-Timing,
metrics and the access log, around a router assembled from the endpoint families.

No framework sits between the server and the routes: the hot path is a dict lookup, the
endpoint's handler (:mod:`servepath.service.endpoints`), and the data plane
(:mod:`servepath.service.dataplane`: admission, the predict pipeline, the model's state).
This module knows what every request shares and nothing of what any route does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servepath.cache.base import Cache
from servepath.config import Settings
from servepath.contract import DEFAULT_PREDICT_ROUTE, OPENAPI_ROUTE
from servepath.errors import ConfigError, clip
from servepath.model.loaded import LoadedModel
from servepath.model.profile import read_profile
from servepath.net.addresses import classify_address
from servepath.net.endpoints import host_port
from servepath.service.accesslog import escaped, request_target
from servepath.service.asgi import (
    Receive,
    Response,
    Scope,
    Send,
    json_response,
    response_headers,
    send_response,
)
from servepath.service.auth import (
    AccessPolicy,
    Identity,
    challenge,
    load_key_file,
    parse_open_routes,
    presented_key,
)
from servepath.service.control import Coordinator
from servepath.service.dataplane import DataPlane
from servepath.service.docs_assets import ASSET_ROUTES as DOCS_ASSET_ROUTES
from servepath.service.docs_assets import INIT_ROUTE as DOCS_INIT_ROUTE
from servepath.service.endpoints.decisions import Decisions
from servepath.service.endpoints.login import Login, login_url
from servepath.service.endpoints.login import routes_of as login_routes
from servepath.service.endpoints.ops import Ops
from servepath.service.endpoints.page import LivePage
from servepath.service.endpoints.repository import Repository
from servepath.service.endpoints.v2 import HEALTH_ROUTES as V2_HEALTH_ROUTES
from servepath.service.endpoints.v2 import V2
from servepath.service.errors import error_response
from servepath.service.gate import Gate
from servepath.service.livedrift import DriftMonitor
from servepath.service.metrics import Metrics
from servepath.service.pathecho import caller_view
from servepath.service.request import Head, RequestContext, request_id_for
from servepath.service.routes import LIVE_ROUTE, V2_INFER, Router
from servepath.service.session import cookie_of, wants_html
from servepath.service.session import verify as verify_session
from servepath.service.tracecontext import TRACEPARENT, Trace, sampled_trace
from servepath.service.tracecontext import current as current_trace
from servepath.service.ui import SeenRing, TracedRing
from servepath.service.ui_assets import subroutes as ui_subroutes
from servepath.service.ui_share import RingShare, shared_directory
from servepath.store.base import PredictionLog

if TYPE_CHECKING:
    from servepath.service.tracing import Tracer

log = logging.getLogger(__name__)
access_log = logging.getLogger("servepath.access")

#: The scope extension the HTTP layer puts its per-request hooks under.
EXTENSION = "servepath"


class ServepathApp:
    """ASGI app: the shell around the data plane and the endpoint families."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache: Cache,
        store: PredictionLog,
        model: LoadedModel | None = None,
        model_loader: Callable[[], LoadedModel] | None = None,
        gate: Gate | None = None,
        shared_dir: str | None = None,
    ) -> None:
        self.settings = settings
        if gate is None:  # the app alone (under another server, or in a test): a gate of its own
            gate = Gate(settings, Metrics(multiprocess=settings.workers > 1))
        self.gate = gate
        self.metrics = gate.metrics
        self.plane = plane = DataPlane(
            settings,
            gate=gate,
            cache=cache,
            store=store,
            model=model,
            model_loader=model_loader,
            drift=drift_monitor(settings, shared_dir),
        )
        self.access = access_policy(settings)
        ops = Ops(settings, plane, self.insider)
        v2 = V2(settings, plane)
        exact = {**Decisions(settings, plane).routes(), **v2.routes(), **ops.routes()}
        #: The live page's ring of the last prediction requests (None: no page).
        self.ui: SeenRing | None = None
        #: The live page itself (None: no page).
        self.page: LivePage | None = None
        #: The route templates whose answers the ring keeps: the predict routes.
        self.ui_templates = frozenset({DEFAULT_PREDICT_ROUTE, settings.predict_route, V2_INFER})
        if settings.ui_route:
            self.ui = SeenRing() if settings.otlp_endpoint is None else TracedRing()
            gate.seen = self.ui.note  # refusals on the head reach the page too
            page = LivePage(settings, plane, ops, self.ui, settings.ui_route)
            page.templates = tuple(sorted(self.ui_templates))
            page.share = ring_share(settings, self.ui)
            exact.update(page.routes())
            self.page = page
        #: The pages a person reads, which a login's session cookie opens (never a prediction).
        docs = ("/docs", *DOCS_ASSET_ROUTES, DOCS_INIT_ROUTE, OPENAPI_ROUTE)
        ui = ui_subroutes(settings.ui_route).values() if settings.ui_route else ()
        self.session_routes = frozenset({*docs, *ui})
        login = Login(settings, self.metrics, lambda: self.access.keys, self.session_routes)
        exact.update(login.routes())
        #: Model control (--model-control explicit): the repository routes and the workers'
        #: agreement on what serves; None without it.
        self.coordinator: Coordinator | None = None
        repository_routes = {}
        if settings.model_control == "explicit":
            self.coordinator = Coordinator(plane, shared_dir)
            repository = Repository(settings, plane, self.coordinator)
            exact.update(repository.routes())
            repository_routes = repository.model_routes()
        self._watch: asyncio.Task[None] | None = None
        self.router = Router(exact, v2.model_routes(), repository_routes)
        #: Routes an orchestrator probes: open unless --protect-health.
        self.health_routes = frozenset({*ops.health_routes(), *V2_HEALTH_ROUTES})
        #: ``--health-port``: what a connection to it may ask for (health, and metrics).
        self.health_port = settings.health_port
        self.health_port_routes = self.health_routes | {"/metrics"}
        # The HTTP layer answers liveness itself only while it needs no key.
        gate.live_path = "" if self.access.needs_key(LIVE_ROUTE, health=True) else LIVE_ROUTE
        #: Key-file reloads under way (kept so that a task is not collected mid-read).
        self._reloads: set[asyncio.Task[None]] = set()
        gate.on_reload(self.reload_keys)
        #: Traces (--otlp-endpoint): the exporter (the request path that traces is
        #: :class:`TracedApp`'s, which create_app chooses).
        self.tracer: Tracer | None = None
        if settings.otlp_endpoint is not None:
            from servepath.service.tracing import Tracer

            self.tracer = Tracer(settings, self.metrics)

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        if self.tracer is not None:  # here, not in __init__: a worker starts its own thread
            self.tracer.start()
        await self.plane.startup()
        if self.page is not None and self.page.share is not None:
            self.page.share.start()
        if self.coordinator is not None:
            self._watch = asyncio.create_task(self.coordinator.watch(), name="servepath-control")

    async def shutdown(self) -> None:
        if self.page is not None and self.page.share is not None:
            await self.page.share.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            assert self.coordinator is not None
            self.coordinator.forget()
        await self.plane.shutdown()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.stop)

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

    # --- one request ---------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        hooks = scope.get("extensions", {}).get(EXTENSION)
        if hooks is not None:
            # The HTTP layer read the head as it arrived, admitted the request if it runs the
            # model, and says when its first byte came and whether its caller has left.
            head: Head = hooks.head
            ctx = RequestContext(request_id_for(head.request_id), hooks.arrived, head)
            ctx.gone = hooks.gone
            ctx.ticket = hooks.ticket
        else:
            head = Head.of(scope["headers"])
            ctx = RequestContext(request_id_for(head.request_id), time.perf_counter(), head)
        method = scope["method"]
        handler, template, allowed = self.router.resolve(method, scope["path"])
        try:
            if self.health_port is not None and self._off_the_health_port(scope, template):
                response = self._health_port_only(method, scope["path"])
            elif handler is None:
                response = self.router.not_found(method, scope["path"], allowed)
            elif self.access.needs_key(template, health=template in self.health_routes):
                refused = self._authorized(scope, ctx, template)
                response = refused or await handler(scope, receive, ctx)
            else:
                response = await handler(scope, receive, ctx)
        except Exception as exc:
            response = error_response(
                exc, v2=template.startswith("/v2"), shed_status=self.settings.shed_status
            )
        finally:
            if ctx.ticket is not None:
                self.plane.leave(ctx.ticket)
        extra = [
            (b"x-request-id", ctx.request_id.encode()),
            (b"server-timing", ctx.server_timing()),
            *ctx.headers,
        ]
        if hooks is not None:  # one write on the connection, no ASGI messages
            headers = response_headers(response, extra)
            await hooks.respond(response.status, headers, response.body, method == "HEAD")
        else:
            await send_response(send, response, extra, head=method == "HEAD")
        elapsed = time.perf_counter() - ctx.start
        self.metrics.observe_request(template, method, response.status, elapsed)
        ui = self.ui
        if ui is not None and template in self.ui_templates:
            client = scope.get("client")
            ui.note(response.status, elapsed, template, ctx.request_id, client,
                    scope["headers"], ctx.timings, head.traffic)  # fmt: skip
        if self.settings.access_log:
            self._access(scope, ctx, response, elapsed)

    def _off_the_health_port(self, scope: Scope, template: str) -> bool:
        """The request came to ``--health-port`` for a route that port does not answer."""
        server = scope.get("server")
        return (
            server is not None
            and server[1] == self.health_port
            and template not in self.health_port_routes
        )

    def _health_port_only(self, method: str, path: str) -> Response:
        routes = sorted(self.health_port_routes)
        return json_response(
            404,
            {
                "error": f"port {self.health_port} answers health checks and /metrics only, "
                f"not {method} {clip(path)}: predictions and the other routes are on port "
                f"{self.settings.port}",
                "reason": "health_port",
                "routes": routes,
            },
        )

    def _authorized(self, scope: Scope, ctx: RequestContext, template: str) -> Response | None:
        """None when the request carries a known key (its name goes on ``ctx``) — or, on a
        page a person reads, a valid session cookie — else the 401 to answer instead (a 303
        to the login page for a browser opening such a page); the body is never read for a
        caller without a key."""
        keys = self.access.keys
        assert keys is not None
        headers = scope["headers"]
        identity = keys.identify(presented_key(headers))
        page = template in self.session_routes
        if not identity.ok and page:
            name = verify_session(keys, cookie_of(headers))
            if name is not None:
                identity = Identity(name)
        if identity.ok:
            ctx.caller = identity.name
            self.metrics.count_caller(identity.name or "", "accepted")
            return None
        self.metrics.count_caller("", identity.problem or "invalid")
        if page and scope["method"] == "GET" and wants_html(headers):
            location = login_url(self.settings, scope["path"]).encode()
            return Response(303, b"", b"text/plain; charset=utf-8", [(b"location", location)])
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
        """Read the key file again (SIGHUP), off the event loop when one runs: a file that
        no longer loads, or does not load in time, keeps the old keys."""
        if self.settings.api_key_file is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._use_keys(self._read_keys())
            return
        task = loop.create_task(self._reload_keys_off_loop())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_keys_off_loop(self) -> None:
        self._use_keys(await asyncio.to_thread(self._read_keys))

    def _read_keys(self) -> AccessPolicy | None:
        try:
            return access_policy(self.settings)
        except ConfigError as exc:
            log.error("SIGHUP: kept the old API keys: %s", exc)
            return None

    def _use_keys(self, policy: AccessPolicy | None) -> None:
        if policy is not None:
            self.access = policy
            log.info("SIGHUP: %s", policy.describe())

    def _access(
        self, scope: Scope, ctx: RequestContext, response: Response, elapsed: float
    ) -> None:
        client = scope.get("client")
        peer = escaped(host_port(str(client[0]), client[1])) if client else "-"
        target = request_target(scope)
        timing = " ".join(f"{name}={dur:.3f}ms" for name, dur, _ in ctx.timings)
        access_log.info(
            '%s "%s %s" %d %d id=%s%s total=%.3fms%s',
            peer,
            escaped(scope["method"]),
            target,
            response.status,
            len(response.body),
            ctx.request_id,
            f" key={escaped(ctx.caller)}" if ctx.caller else "",
            elapsed * 1000,
            " " + timing if timing else "",
        )

    def insider(self, scope: Scope, ctx: RequestContext) -> bool:
        """A caller who may read the server's own details (the data directory, a database's
        error, hostname, pid): one that carried an API key, or one on this machine (as the
        server believes the client, see --forwarded-allow-ips)."""
        if ctx.caller is not None:
            return True
        keys = self.access.keys
        if keys is not None and keys.identify(presented_key(scope["headers"])).ok:
            return True  # a key on an open route (health): checked only when it is sent
        view = caller_view(scope, ctx, self.settings.trusted_proxies)
        client = view.client
        if not client:
            return scope.get("client") is None and not view.claimed  # a unix socket
        # A loopback address is this machine only when nothing else could have put it there:
        # not a proxy the server trusts (nginx on the same host forwards strangers), not a
        # chain that could not be believed (a conflict, a peer forwarding for someone).
        if view.via_proxy and not view.trusted:
            return False
        if view.claimed or view.conflict or self.settings.trusted_proxies.trusts(client):
            return False
        try:
            return classify_address(client).kind == "loopback"
        except ValueError:
            return False


class TracedApp(ServepathApp):
    """The app with tracing on (``--otlp-endpoint``), chosen by :func:`create_app`: the
    sampling decision comes first, and a request that is not sampled goes the untraced way
    with no more than that decision's cost (a pass over its header names, a random number).
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings, **options)
        assert self.tracer is not None
        self.fraction = settings.trace_sample

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        hooks = scope.get("extensions", {}).get(EXTENSION)
        start = hooks.arrived if hooks is not None else time.perf_counter()
        trace = sampled_trace(scope["headers"], self.fraction, start)
        if trace is None:
            await self._http(scope, receive, send)
        else:
            await self._traced(trace, hooks, scope, receive, send)

    async def _traced(
        self, trace: Trace, hooks: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """:meth:`_http` for a sampled request: a prediction continues the caller's trace
        (or begins one), its answer carries a ``traceparent`` naming the request's span,
        and once the answer is out its spans are queued for export. Any other request is
        :meth:`_http`'s alone."""
        start = trace.start
        method = scope["method"]
        _, template, _ = self.router.resolve(method, scope["path"])
        if template not in self.ui_templates:
            await self._http(scope, receive, send)
            return
        trace.method, trace.route = method, template
        if hooks is not None:
            if hooks.ticket is not None:
                trace.admitted = min(max(hooks.ticket[0], start), time.perf_counter())
            respond = hooks.respond

            async def respond_traced(
                status: int, headers: list[tuple[bytes, bytes]], body: bytes, head: bool
            ) -> None:
                trace.status = status
                headers.append((TRACEPARENT, trace.traceparent()))
                await respond(status, headers, body, head)
                trace.end = time.perf_counter()  # written: the request's span ends here

            hooks.respond = respond_traced
        else:
            inner = send

            async def send_traced(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    trace.status = message["status"]
                    headers = message.get("headers", ())
                    message["headers"] = [*headers, (TRACEPARENT, trace.traceparent())]
                await inner(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    trace.end = time.perf_counter()

            send = send_traced
        token = current_trace.set(trace)
        try:
            await self._http(scope, receive, send)
        finally:
            current_trace.reset(token)
            if not trace.end:  # no answer went out (the caller left)
                trace.end = time.perf_counter()
        tracer = self.tracer
        assert tracer is not None
        tracer.submit(trace)


def access_policy(settings: Settings) -> AccessPolicy:
    """Who may call what, from the settings (the key file read now)."""
    keys = load_key_file(settings.api_key_file) if settings.api_key_file else None
    opened = parse_open_routes(settings.open_routes)
    if settings.ui_route and settings.ui_route in opened:
        # Opening the live page opens its script, stylesheet and data with it.
        opened |= frozenset(ui_subroutes(settings.ui_route).values())
    return AccessPolicy(keys, settings.protect_health, opened, login_routes(settings))


def drift_monitor(settings: Settings, shared_dir: str | None) -> DriftMonitor | None:
    """Live drift against ``--reference-profile`` (None without one); with workers, their
    counts are merged through the directory they share."""
    if settings.reference_profile is None:
        return None
    profile = read_profile(settings.reference_profile)
    shared = Path(shared_dir) if shared_dir and settings.workers > 1 else None
    return DriftMonitor(profile, window=settings.drift_window, shared=shared)


def ring_share(settings: Settings, ring: SeenRing) -> RingShare | None:
    """With several workers, the live page's list shared through the directory the
    supervisor made for the workers' metrics (it puts it in each worker's environment)."""
    directory = shared_directory(settings.workers, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    return RingShare(directory, ring, settings.trusted_proxies) if directory else None


def create_app(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    cache: Cache | None = None,
    store: PredictionLog | None = None,
    gate: Gate | None = None,
    shared_dir: str | None = None,
) -> ServepathApp:
    """The ASGI app for ``settings``; pass ``model``, ``cache`` or ``store`` to inject them,
    and ``gate`` to share the one the server hands its connections (else one of its own).
    ``shared_dir``: the directory the workers share (model control agrees through it)."""
    if cache is None:
        from servepath.cache import open_cache

        cache = open_cache(settings)
    if store is None:
        from servepath.store import open_log

        store = open_log(settings)
    kind = ServepathApp if settings.otlp_endpoint is None else TracedApp
    return kind(settings, gate=gate, model=model, cache=cache, store=store, shared_dir=shared_dir)
