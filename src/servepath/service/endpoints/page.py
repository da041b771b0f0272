"""The live page (``GET /_ui``): its HTML, script and stylesheet, and the data it polls —
the viewer's own path, the last prediction requests this worker answered, and the numbers."""

from __future__ import annotations

import time
from typing import Any

from servepath import __version__
from servepath.config import Settings
from servepath.service.asgi import Receive, Response, Scope, json_response
from servepath.service.dataplane import DataPlane
from servepath.service.endpoints import Routes
from servepath.service.endpoints.ops import Ops, static_response
from servepath.service.request import RequestContext
from servepath.service.security import html_headers
from servepath.service.ui import SeenRing, latest_from, request_totals
from servepath.service.ui_assets import ASSETS, DATA_SUFFIX
from servepath.service.ui_assets import asset as ui_asset
from servepath.service.ui_assets import page as ui_page


class LivePage:
    """The page at ``root`` over the ring the shell fills with each prediction's answer."""

    def __init__(
        self, settings: Settings, plane: DataPlane, ops: Ops, ring: SeenRing, root: str
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.ops = ops
        self.ring = ring
        self.root = root
        self.templates: tuple[str, ...] = ()

    def routes(self) -> Routes:
        root = self.root
        routes: Routes = {root: {"GET": self.page}, root + DATA_SUFFIX: {"GET": self.data}}
        for suffix in ASSETS:
            routes[root + suffix] = {"GET": self.asset}
        return routes

    async def page(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        html = ui_page(self.root)
        headers = [*html_headers(html), (b"cache-control", b"no-cache")]
        return Response(200, html.encode(), b"text/html; charset=utf-8", headers)

    async def asset(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        found = ui_asset(scope["path"].rstrip("/")[len(self.root) :])
        if found is None:
            return json_response(404, {"error": "no such file of the live page"})
        # Revalidated on every load: an upgraded server's page is never half old.
        return static_response(scope, found.body, found.content_type, found.etag, b"no-cache")

    async def data(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(200, self.snapshot(scope, ctx), [(b"cache-control", b"no-store")])

    def snapshot(self, scope: Scope, ctx: RequestContext) -> dict[str, Any]:
        """What the live page shows: the viewer's own path, the last requests, the numbers."""
        s = self.settings
        ring = self.ring
        viewer = self.ops.echo(scope, ctx)
        entries = ring.entries(s.trusted_proxies)
        viewer["latest"] = latest_from(entries, viewer["client"]["address"])
        model = self.plane.model
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
            "model": model.describe() if model else None,
            "model_state": self.plane.state,
            "viewer": viewer,
            "requests": entries,
            "stats": ring.stats().to_json(),
            # Summed over every worker (the metrics' shared files when there are several).
            "totals": request_totals(self.plane.metrics.request_families(), self.templates),
        }
