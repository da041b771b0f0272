"""A person's way in to the pages of a server with API keys: a signed session cookie.

A browser cannot send ``X-API-Key``, so with ``--api-key-file`` the live page and ``/docs``
answered every person with a JSON 401. The login page takes a key once and answers with a
cookie that names the key and when it expires, signed with HMAC-SHA-256 under a secret
derived from that key's SHA-256 (the very digest the key ring keeps). So:

* every worker, and a restarted server, verifies the cookie without sharing any state: each
  read the same key file;
* removing (or changing) the key in the file and sending SIGHUP ends every session of it;
* nothing in the cookie is the key, and the cookie cannot be made without the key.

The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` over TLS, and lasts
:data:`SESSION_SECONDS`; it opens only the pages a person reads (:func:`session_routes`),
never a prediction route, so a page elsewhere cannot make a logged-in browser predict (those
take a key in a header, which no cross-site form can set). Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from servepath.service.auth import KeyRing

#: The cookie's name.
COOKIE = "servepath_session"
#: How long a session lasts, in seconds (the cookie's Max-Age and the token's own expiry).
SESSION_SECONDS = 8 * 3600
_VERSION = "v1"
#: Separates the session secret from any other use of a key's digest.
_PURPOSE = b"servepath session cookie v1"


def _secret(key_digest: bytes) -> bytes:
    return hmac.new(key_digest, _PURPOSE, hashlib.sha256).digest()


def _mac(key_digest: bytes, payload: str) -> str:
    mac = hmac.new(_secret(key_digest), payload.encode(), hashlib.sha256).digest()
    return _b64(mac)


def issue(keys: KeyRing, name: str, *, now: float | None = None) -> str:
    """The token for the key named ``name`` (which must be in ``keys``)."""
    digest = dict(keys.keys)[name]
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    payload = f"{_VERSION}.{_b64(name.encode())}.{expires}"
    return f"{payload}.{_mac(digest, payload)}"


def _b64(data: bytes) -> str:
    # A key's name may hold dots; the token's fields are separated by them.
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def verify(keys: KeyRing | None, token: str | None, *, now: float | None = None) -> str | None:
    """The key name a token was issued for, when its signature holds under that key as the
    key file has it now and it has not expired; else None."""
    if keys is None or not token:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
        return None
    version, encoded, expires, mac = parts
    name = _unb64(encoded)
    digest = dict(keys.keys).get(name) if name is not None else None
    if name is None or digest is None:
        return None
    if not hmac.compare_digest(_mac(digest, f"{version}.{encoded}.{expires}"), mac):
        return None
    if int(expires) <= (time.time() if now is None else now):
        return None
    return name


def cookie_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value among a request's ``Cookie`` headers."""
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, text = part.strip().partition("=")
            if name == COOKIE and text:
                return text
    return None


def set_cookie(token: str, *, secure: bool) -> bytes:
    """The ``Set-Cookie`` value that starts a session."""
    attrs = f"{COOKIE}={token}; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; SameSite=Strict"
    return (attrs + ("; Secure" if secure else "")).encode()


def clear_cookie(*, secure: bool) -> bytes:
    """The ``Set-Cookie`` value that ends a session in the browser."""
    attrs = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
    return (attrs + ("; Secure" if secure else "")).encode()


def wants_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A browser navigating (``Accept`` names ``text/html``), not an API client."""
    return any(h == b"accept" and b"text/html" in v for h, v in headers)


def same_origin(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A form post that came from this server's own page: its ``Origin`` (when the browser
    sends one) names the host the request was sent to."""
    origin = host = None
    for header, value in headers:
        if header == b"origin":
            origin = value.decode("latin-1")
        elif header == b"host":
            host = value.decode("latin-1")
    if origin is None:
        return True  # no Origin: not a cross-site post by a browser that sends one
    return origin != "null" and host is not None and urlsplit(origin).netloc == host


def session_routes(ui_routes: Iterable[str], docs_routes: Iterable[str]) -> frozenset[str]:
    """The routes a session cookie opens: the pages a person reads, never a prediction."""
    return frozenset([*ui_routes, *docs_routes])


def safe_next(target: str | None, allowed: frozenset[str], default: str) -> str:
    """Where to send the browser after login: a path the session opens, else ``default`` (no
    open redirect to another site)."""
    if target and target in allowed:
        return target
    return default
