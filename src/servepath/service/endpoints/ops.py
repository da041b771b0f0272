"""The operator's routes: health, Prometheus metrics, the OpenAPI document and its docs page
(Swagger UI served from this server), and the path echo."""

from __future__ import annotations

from typing import Any

import orjson

from servepath import __version__
from servepath.config import Settings
from servepath.contract import DEFAULT_HEALTH_ROUTE, OPENAPI_ROUTE
from servepath.model.loaded import LoadedModel
from servepath.service.asgi import Receive, Response, Scope, header, json_response
from servepath.service.dataplane import DataPlane
from servepath.service.docs_assets import ASSET_ROUTES, DOCS_MISSING, DOCS_PAGE, INIT_ROUTE
from servepath.service.docs_assets import asset as docs_asset
from servepath.service.docs_assets import available as docs_available
from servepath.service.endpoints import Insider, Routes
from servepath.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from servepath.service.openapi import build_openapi
from servepath.service.pathecho import caller_view, path_echo
from servepath.service.request import RequestContext
from servepath.service.security import html_headers


class Ops:
    """Health, metrics, docs and the path echo over the data plane."""

    def __init__(self, settings: Settings, plane: DataPlane, insider: Insider) -> None:
        self.settings = settings
        self.plane = plane
        self.insider = insider
        self._openapi: bytes | None = None
        plane.on_install.append(self._forget_openapi)

    def routes(self) -> Routes:
        s = self.settings
        routes: Routes = {
            DEFAULT_HEALTH_ROUTE: {"GET": self.health},
            s.health_route: {"GET": self.health},
            "/metrics": {"GET": self.metrics},
            OPENAPI_ROUTE: {"GET": self.openapi},
            "/docs": {"GET": self.docs},
            **{route: {"GET": self.docs_asset} for route in (*ASSET_ROUTES, INIT_ROUTE)},
        }
        if s.path_echo_route:
            routes[s.path_echo_route] = {"GET": self.path_echo}
        return routes

    def health_routes(self) -> tuple[str, ...]:
        """Probed by orchestrators: open unless --protect-health."""
        return (DEFAULT_HEALTH_ROUTE, self.settings.health_route)

    def _forget_openapi(self, model: LoadedModel) -> None:
        self._openapi = None

    async def health(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        ok, _ = self.plane.serving()
        return json_response(200 if ok else 503, self.plane.health(full=self.insider(scope, ctx)))

    async def metrics(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return Response(200, self.plane.metrics.render(), METRICS_CONTENT_TYPE)

    async def openapi(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        # The document describes the model's inputs, so it exists only once the model does.
        model = self.plane.ready_model()
        if self._openapi is None:
            self._openapi = orjson.dumps(build_openapi(self.settings, model, __version__))
        return Response(200, self._openapi)

    async def docs(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        html = DOCS_PAGE if docs_available() else DOCS_MISSING
        return Response(200, html.encode(), b"text/html; charset=utf-8", html_headers(html))

    async def docs_asset(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        found = docs_asset(scope["path"])
        if found is None:
            return json_response(404, {"error": "Swagger UI's assets are not installed"})
        return static_response(scope, found.body, found.content_type, found.etag,
                               b"public, max-age=86400")  # fmt: skip

    async def path_echo(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self.plane.admit_diagnostic(self.settings.path_echo_route or "")
        return json_response(200, self.echo(scope, ctx))

    def echo(self, scope: Scope, ctx: RequestContext) -> dict[str, Any]:
        """What the server saw of this request (:func:`~servepath.service.pathecho.path_echo`)."""
        s = self.settings
        return path_echo(
            scope,
            bound_host=s.host,
            bound_port=s.port,
            request_id=ctx.request_id,
            in_kubernetes=s.in_kubernetes,
            trusted=s.trusted_proxies,
            insider=self.insider(scope, ctx),
            view=caller_view(scope, ctx, s.trusted_proxies),
        )


def static_response(
    scope: Scope, body: bytes, content_type: bytes, etag: bytes, cache_control: bytes
) -> Response:
    """A file of the server's own, revalidated by its ETag (304 when the caller has it)."""
    headers = [(b"etag", etag), (b"cache-control", cache_control)]
    if header(scope, b"if-none-match") == etag.decode():
        return Response(304, b"", content_type, headers)
    return Response(200, body, content_type, headers)
