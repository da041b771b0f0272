"""The live page (``GET /_ui``): its HTML, script and stylesheet, and the data it polls —
the viewer's own path, the last prediction requests this worker answered, and the numbers.

The data is two parts. What every viewer sees alike (the list, the numbers, the model) is
computed at most once per :data:`SHARED_TTL_S` and kept encoded, in two readings: an
insider's, and a stranger's where other callers' addresses, chains and ids are withheld. The
viewer's own part (their path, their latest request, their own rows) is small and made per
request. A poll therefore costs the same however full the ring is, after the first of a window.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from servepath import __version__
from servepath.config import Settings
from servepath.service.asgi import Receive, Response, Scope, json_response
from servepath.service.dataplane import DataPlane
from servepath.service.endpoints import Routes
from servepath.service.endpoints.ops import Ops, static_response
from servepath.service.pathecho import WITHHELD
from servepath.service.request import RequestContext
from servepath.service.security import html_headers
from servepath.service.ui import SeenRing, latest_from, request_totals
from servepath.service.ui_assets import ASSETS, DATA_SUFFIX
from servepath.service.ui_assets import asset as ui_asset
from servepath.service.ui_assets import page as ui_page
from servepath.service.ui_share import RingShare

#: Seconds the shared part of the data (the list, the numbers, the model) is served for
#: once computed: a poll of any number of viewers costs one computation a window.
SHARED_TTL_S = 1.0
#: A row of the list as a caller from elsewhere without a key sees another caller's request:
#: when, what and how long, never who, through what, or the id that names it.
WITHHELD_ROW: dict[str, Any] = {
    "request_id": None,
    "trace_id": None,
    "client_ip": None,
    "client_addr": None,
    "forwarded": None,
    "proxies": [],
    "pid": None,
    "withheld": True,
}


@dataclass(frozen=True, slots=True)
class Shared:
    """The data every viewer sees alike, as computed at ``at`` (the page's clock)."""

    at: float
    full: bytes  # a JSON object, as an insider sees it (a key, or this machine)
    stranger: bytes  # the same, other callers' addresses, chains and ids withheld
    #: Each caller's own rows, by address, each with its place ``n`` in the list.
    mine: dict[str, tuple[dict[str, Any], ...]]
    #: Each caller's latest prediction (:func:`~servepath.service.ui.latest_from`).
    latest: dict[str, dict[str, Any] | None]


class LivePage:
    """The page at ``root`` over the ring the shell fills with each prediction's answer;
    ``clock``: monotonic seconds, for the shared part's window."""

    def __init__(
        self,
        settings: Settings,
        plane: DataPlane,
        ops: Ops,
        ring: SeenRing,
        root: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.ops = ops
        self.ring = ring
        self.root = root
        self.clock = clock
        self.templates: tuple[str, ...] = ()
        #: With several workers: the list merged from every worker's ring (None: this one's).
        self.share: RingShare | None = None
        self._shared: Shared | None = None
        #: Times the shared part was computed.
        self.computed = 0

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
        self.plane.admit_diagnostic(self.root + DATA_SUFFIX)
        viewer = self.ops.echo(scope, ctx)
        insider = self.ops.insider(scope, ctx)
        shared = self.shared()
        address = viewer["client"]["address"] or ""
        viewer["latest"] = shared.latest.get(address)
        if not insider:
            # The viewer's own rows, whole, where the list withholds other callers' fields.
            viewer["mine"] = list(shared.mine.get(address, ()))
        # The shared part is encoded once per window; the viewer's part goes in beside it.
        body = (shared.full if insider else shared.stranger)[:-1]
        body += b',"viewer":' + orjson.dumps(viewer) + b"}"
        return Response(200, body, b"application/json", [(b"cache-control", b"no-store")])

    def shared(self) -> Shared:
        """The part of the data every viewer sees alike, computed at most once a window."""
        now = self.clock()
        kept = self._shared
        if kept is not None and 0 <= now - kept.at < SHARED_TTL_S:
            return kept
        self._shared = kept = self._compute(now)
        return kept

    def _compute(self, now: float) -> Shared:
        self.computed += 1
        s = self.settings
        ring = self.ring
        share = self.share
        entries = share.merged(ring.capacity) if share else ring.entries(s.trusted_proxies)
        model = self.plane.model
        common: dict[str, Any] = {
            "generated": round(time.time(), 3),
            "model": model.describe() if model else None,
            "model_state": self.plane.state,
            "versions": self.plane.version_split(),
            "shadow": self.plane.shadows.counts(),
            # Live drift of the inputs (None: no --reference-profile); every worker's rows.
            "drift": self.plane.drift.panel() if self.plane.drift is not None else None,
            "stats": ring.stats().to_json(),
            # Summed over every worker (the metrics' shared files when there are several).
            "totals": request_totals(self.plane.metrics.request_families(), self.templates),
        }

        def server(pid: int | None, hostname: str | None) -> dict[str, Any]:
            return {
                "version": __version__,
                "pid": pid,
                "hostname": hostname,
                "workers": s.workers,
                "predict_route": s.predict_route,
                "ring": {
                    "capacity": ring.capacity,
                    "size": len(entries),
                    "scope": "all workers" if share else "worker",
                },
            }

        mine: dict[str, list[dict[str, Any]]] = {}
        for n, entry in enumerate(entries):
            if entry["client_ip"]:
                mine.setdefault(entry["client_ip"], []).append({**entry, "n": n})
        full = {
            **common,
            "server": server(os.getpid(), socket.gethostname()),
            "requests": entries,
        }
        stranger = {
            **common,
            "server": {**server(None, None), "withheld": WITHHELD},
            "requests": [{**e, **WITHHELD_ROW} for e in entries],
        }
        return Shared(
            now,
            orjson.dumps(full, option=orjson.OPT_SERIALIZE_NUMPY),
            orjson.dumps(stranger, option=orjson.OPT_SERIALIZE_NUMPY),
            {ip: tuple(rows) for ip, rows in mine.items()},
            {ip: latest_from(rows, ip) for ip, rows in mine.items()},
        )
