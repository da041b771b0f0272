"""Response security headers: what every answer carries, and the policy of an HTML page.

Pure. ``X-Content-Type-Options: nosniff`` goes on every response the server writes (uvicorn
adds :data:`SERVER_HEADERS` to each, the protocol's own canned answers included), so that no
browser runs a JSON error that quotes a caller's bytes as a script or a page. An HTML page
gets a ``Content-Security-Policy`` made from the page itself by :func:`csp_for_html`: the
origins of its scripts and stylesheets, and a hash of each inline script, so that the page
works and nothing else runs in it; the policy follows the page when its assets move.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

#: Headers on every response, as uvicorn's ``headers`` option takes them.
SERVER_HEADERS: tuple[tuple[str, str], ...] = (("x-content-type-options", "nosniff"),)

_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.I | re.S)
_STYLESHEET = re.compile(r"<link\b[^>]*\bhref=[\"']([^\"']+)[\"'][^>]*>", re.IGNORECASE)


def _source(url: str) -> str:
    """The CSP source for an asset's URL: its origin, or ``'self'`` for a relative one."""
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return "'self'"


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def csp_for_html(html: str, *, form_action: str = "'none'") -> str:
    """A Content-Security-Policy that lets ``html``'s own scripts and stylesheets load and
    nothing else: no other script, no framing, no plugins, fetches only to this server.
    ``form_action``: where the page's forms may post (the login page: ``'self'``)."""
    scripts = sorted({_source(u) for u in _SCRIPT_SRC.findall(html)})
    scripts += [_hash(body) for body in _INLINE_SCRIPT.findall(html) if body.strip()]
    styles = sorted({_source(u) for u in _STYLESHEET.findall(html)} | {"'self'"})
    # Inline styles only: the UI sets style attributes; styles cannot run code.
    styles.append("'unsafe-inline'")
    script_src = " ".join(scripts) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script_src}",
            f"style-src {' '.join(styles)}",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
        ]
    )


def html_headers(
    html: str, *, form_action: str = "'none'", referrer: bytes = b"no-referrer"
) -> list[tuple[bytes, bytes]]:
    """The headers an HTML page is served with (beyond :data:`SERVER_HEADERS`). A page with a
    form posts with ``referrer=b"same-origin"``: under ``no-referrer`` a browser sends
    ``Origin: null``, and the server could not tell its own form from another site's."""
    return [
        (b"content-security-policy", csp_for_html(html, form_action=form_action).encode()),
        (b"referrer-policy", referrer),
    ]
