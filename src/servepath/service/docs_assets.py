"""The assets of ``/docs``: Swagger UI's stylesheet and script, served by the server itself.

They come from the ``swagger-ui-py`` package (Swagger UI 5, which renders OpenAPI 3.1), found
on disk without importing it; nothing is fetched from a CDN, so ``/docs`` works on an
air-gapped VM and its Content-Security-Policy allows only this server. Each file is read
once, on its first request, and served with a strong ETag and a day's caching.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: The routes of the two assets, as the page links them.
ASSET_ROUTES: dict[str, tuple[str, bytes]] = {
    "/docs/swagger-ui.css": ("swagger-ui.css", b"text/css; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", b"text/javascript; charset=utf-8"),
}
#: Where the page starts Swagger UI: a script of its own, so that no inline script is needed.
INIT_ROUTE = "/docs/init.js"
INIT_JS = b'SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: false});\n'


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def static_dir() -> Path | None:
    """The package's static directory, or None when swagger-ui-py is not installed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "static"
        if (candidate / "swagger-ui-bundle.js").is_file():
            return candidate
    return None


@cache
def asset(route: str) -> Asset | None:
    """The asset served at ``route``, or None when the route is not one or the file is gone."""
    if route == INIT_ROUTE:
        return Asset(INIT_JS, b"text/javascript; charset=utf-8", _etag(INIT_JS))
    known = ASSET_ROUTES.get(route)
    directory = static_dir()
    if known is None or directory is None:
        return None
    name, content_type = known
    try:
        body = (directory / name).read_bytes()
    except OSError:
        return None
    return Asset(body, content_type, _etag(body))


def available() -> bool:
    return static_dir() is not None


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>servepath API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
<noscript>The machine-readable API description is at <a href="/openapi.json">/openapi.json</a>.
</noscript></body></html>
"""

DOCS_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>servepath API</title></head><body>
<p>The interactive page needs the <code>swagger-ui-py</code> package, which is not installed
here. The API description is at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""
