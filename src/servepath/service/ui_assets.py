"""The files of the live page (``GET /_ui``): its HTML, script and stylesheet, from the package.

Nothing comes from another origin and nothing on the page is inline code: the script and the
stylesheet are files of their own under the page's route, so the page's
Content-Security-Policy (made from the page by :func:`servepath.service.security.html_headers`)
is ``script-src 'self'``. The files are read once and served with a strong ETag; a browser
revalidates them (``no-cache``) so that an upgraded server's page is never half old.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC = Path(__file__).with_name("ui_static")

#: The page's own files, as ``suffix → (file, content type)`` under the page's route.
ASSETS: dict[str, tuple[str, bytes]] = {
    "/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/app.css": ("app.css", b"text/css; charset=utf-8"),
}
#: Where the page reads its data, under the page's route.
DATA_SUFFIX = "/data"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def subroutes(root: str) -> dict[str, str]:
    """The page's routes for a page at ``root``: ``{"page", "data", "/app.js", "/app.css"}``."""
    return {"page": root, "data": root + DATA_SUFFIX, **{s: root + s for s in ASSETS}}


@cache
def page(root: str) -> str:
    """The HTML of the page served at ``root`` (its files and its data under ``root``)."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{root}", html.escape(root, quote=True))


@cache
def asset(suffix: str) -> Asset | None:
    known = ASSETS.get(suffix)
    if known is None:
        return None
    name, content_type = known
    body = (STATIC / name).read_bytes()
    return Asset(body, content_type, b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"')
