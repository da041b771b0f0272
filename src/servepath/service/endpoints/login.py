"""The login page of a server with API keys: a person pastes a key once, and the browser keeps
a session cookie that opens the live page and ``/docs`` (:mod:`servepath.service.session`).

``GET {login}`` is a small form (no script, no asset of another origin: it works offline);
``POST {login}`` checks the key as the API does and answers 303 with the cookie, or the form
again with an error and no cookie; ``POST {logout}`` clears it. The login routes need no key.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode

from servepath.config import Settings
from servepath.service.asgi import Receive, Response, Scope, read_body
from servepath.service.auth import KeyRing
from servepath.service.endpoints import Routes
from servepath.service.metrics import Metrics
from servepath.service.request import RequestContext
from servepath.service.security import html_headers
from servepath.service.session import (
    clear_cookie,
    cookie_of,
    issue,
    safe_next,
    same_origin,
    set_cookie,
    verify,
)

#: A login form's body is a key and a path; anything longer is not one.
MAX_FORM_BYTES = 4096
LOGIN_SUFFIX = "/login"
LOGOUT_SUFFIX = "/logout"


def login_root(settings: Settings) -> str:
    """Where the login page lives: under the live page, else under ``/docs``."""
    return settings.ui_route or "/docs"


def login_route(settings: Settings) -> str:
    return login_root(settings) + LOGIN_SUFFIX


def routes_of(settings: Settings) -> frozenset[str]:
    """The login routes, which need no key."""
    root = login_root(settings)
    return frozenset({root + LOGIN_SUFFIX, root + LOGOUT_SUFFIX})


def login_url(settings: Settings, back_to: str) -> str:
    """The login page that sends the browser back to ``back_to`` once in."""
    return f"{login_route(settings)}?{urlencode({'next': back_to})}"


class Login:
    """The login and logout routes; ``keys``: the key ring in force now (it changes on
    SIGHUP); ``opens``: the routes a session opens (where the browser may be sent back to)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        keys: Callable[[], KeyRing | None],
        opens: frozenset[str],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.keys = keys
        self.opens = opens
        root = login_root(settings)
        self.login = root + LOGIN_SUFFIX
        self.logout = root + LOGOUT_SUFFIX
        self.home = settings.ui_route or "/docs"

    def routes(self) -> Routes:
        return {
            self.login: {"GET": self.form, "POST": self.submit},
            self.logout: {"POST": self.sign_out},
        }

    async def form(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        back = safe_next(_query(scope).get("next"), self.opens, self.home)
        name = verify(self.keys(), cookie_of(scope["headers"]))
        return self._page(200, back, signed_in=name)

    async def submit(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        if not same_origin(scope["headers"]):
            return self._page(403, self.home, error="this form was sent from another site")
        body = await read_body(scope, receive, MAX_FORM_BYTES)
        fields = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items() if v}
        back = safe_next(fields.get("next"), self.opens, self.home)
        keys = self.keys()
        if keys is None:
            return self._page(404, back, error="this server has no API keys: nothing to log in to")
        identity = keys.identify(fields.get("key", "").strip() or None)
        if not identity.ok or identity.name is None:
            self.metrics.count_caller("", identity.problem or "invalid")
            error = (
                "paste a key"
                if identity.problem == "missing"
                else "that key is not one this server knows"
            )
            return self._page(401, back, error=error)
        self.metrics.count_caller(identity.name, "accepted")
        ctx.caller = identity.name
        cookie = set_cookie(issue(keys, identity.name), secure=_secure(scope))
        return _redirect(back, [(b"set-cookie", cookie)])

    async def sign_out(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        if not same_origin(scope["headers"]):
            return self._page(403, self.home, error="this form was sent from another site")
        cookie = clear_cookie(secure=_secure(scope))
        return _redirect(self.login, [(b"set-cookie", cookie)])

    def _page(
        self, status: int, back: str, *, error: str | None = None, signed_in: str | None = None
    ) -> Response:
        page = login_page(self.login, self.logout, back, error=error, signed_in=signed_in)
        headers = [
            *html_headers(page, form_action="'self'", referrer=b"same-origin"),
            (b"cache-control", b"no-store"),
        ]
        return Response(status, page.encode(), b"text/html; charset=utf-8", headers)


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[0] for k, v in parse_qs(raw).items() if v}


def _secure(scope: Scope) -> bool:
    return bool(scope.get("scheme") == "https")


def _redirect(location: str, headers: list[tuple[bytes, bytes]]) -> Response:
    return Response(
        303,
        b"",
        b"text/plain; charset=utf-8",
        [(b"location", location.encode()), (b"cache-control", b"no-store"), *headers],
    )


def login_page(
    action: str,
    logout: str,
    back: str,
    *,
    error: str | None = None,
    signed_in: str | None = None,
) -> str:
    """The login form (or, signed in, who is and a way out). No script, no asset."""
    esc = html.escape
    if signed_in is not None:
        body = f"""<p>Signed in with the key <b>{esc(signed_in)}</b>.</p>
<p><a href="{esc(back)}">Continue to {esc(back)}</a></p>
<form method="post" action="{esc(logout)}"><button type="submit">Sign out</button></form>"""
    else:
        problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
        body = f"""<p>This server takes API keys. Paste one to open its pages in this browser
(the live page and the API docs) for 8 hours; predictions still need the key in a header.</p>
{problem}
<form method="post" action="{esc(action)}">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{esc(back)}">
<button type="submit">Sign in</button>
</form>"""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>servepath: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
  padding: 0 1rem; color: #1b1f24; }}
label {{ display: block; font-weight: 600; margin-top: 1rem; }}
input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }}
button {{ margin-top: 1rem; padding: .5rem 1.2rem; font: inherit; }}
.error {{ color: #a40e26; font-weight: 600; }}
</style></head><body>
<h1>servepath</h1>
{body}
</body></html>
"""
