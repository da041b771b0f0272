"""A person's way in to a server with API keys: the login page, its session cookie, and what
the cookie opens (the live page, /docs, /openapi.json) and does not (predictions, /metrics),
on a real `servepath serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servepath.model.example import EXAMPLE_APPLICANT
from servepath.service.auth import parse_key_file
from servepath.service.session import COOKIE, SESSION_SECONDS, issue
from tests.support import ServerProcess, serve

KEY = "person-key-0123456789abcdef"
OTHER = "other-key-fedcba9876543210"
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[ServerProcess]:
    tmp_path = tmp_path_factory.mktemp("login")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"ada.lovelace:{KEY}\nother:{OTHER}\n")
    keys.chmod(0o600)
    with serve(tmp_path, model=example_model_path, args=["--api-key-file", str(keys)]) as server:
        yield server


def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10, trust_env=False, follow_redirects=False)


def _login(c: httpx.Client, key: str, **headers: str) -> httpx.Response:
    return c.post("/_ui/login", data={"key": key, "next": "/_ui"}, headers=headers)


def test_without_a_cookie_an_api_client_gets_401_json_and_a_browser_the_login_page(
    keyed: ServerProcess,
) -> None:
    with _client(keyed) as c:
        for path in ("/_ui", "/_ui/data", "/docs", "/openapi.json"):
            refused = c.get(path, headers={"Accept": "application/json"})
            assert refused.status_code == 401, path
            assert refused.json()["reason"] == "unauthorized"
        for path in ("/_ui", "/docs"):
            sent = c.get(path, headers=BROWSER)
            assert sent.status_code == 303, path
            assert sent.headers["location"] == f"/_ui/login?next=%2F{path[1:]}"
        form = c.get("/_ui/login?next=/docs")
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert 'name="key"' in form.text and 'value="/docs"' in form.text
    csp = form.headers["content-security-policy"]
    assert "form-action 'self'" in csp and "script-src 'none'" in csp
    # under no-referrer a browser posts the form with Origin: null, which is refused
    assert form.headers["referrer-policy"] == "same-origin"
    # nothing on the page comes from elsewhere: it works offline
    assert "http://" not in form.text and "https://" not in form.text


def test_a_wrong_key_gets_the_form_again_with_an_error_and_no_cookie(keyed: ServerProcess) -> None:
    with _client(keyed) as c:
        wrong = _login(c, "not-a-key-of-this-server-000")
        assert wrong.status_code == 401
        assert "that key is not one this server knows" in wrong.text
        assert "set-cookie" not in wrong.headers and not c.cookies
        assert c.get("/_ui", headers=BROWSER).status_code == 303


def test_the_right_key_sets_a_cookie_that_opens_the_pages_and_nothing_else(
    keyed: ServerProcess,
) -> None:
    with _client(keyed) as c:
        signed = _login(c, KEY)
        assert signed.status_code == 303 and signed.headers["location"] == "/_ui"
        cookie = signed.headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "path", "max-age", "samesite"} <= attributes
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        assert f"Max-Age={SESSION_SECONDS}" in cookie and "secure" not in attributes  # plain HTTP
        assert KEY not in cookie
        assert c.get("/_ui", headers=BROWSER).status_code == 200
        data = c.get("/_ui/data")
        assert data.status_code == 200
        assert data.json()["server"]["pid"] is not None  # the viewer is known: an insider
        assert c.get("/_ui/app.js").status_code == 200
        assert c.get("/docs", headers=BROWSER).status_code == 200
        assert c.get("/openapi.json").status_code == 200
        # the cookie is no credential for predictions, nor for the operator's routes
        predicted = c.post("/decisions", json=EXAMPLE_APPLICANT)
        assert predicted.status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/_path").status_code == 401
        assert c.get("/_ui/login").text.count("ada.lovelace") == 1  # says who is signed in
        # with the key in a header, the prediction goes through as before
        keyed_call = c.post("/decisions", json=EXAMPLE_APPLICANT, headers={"X-API-Key": KEY})
        assert keyed_call.status_code == 200


def test_a_tampered_or_expired_cookie_is_refused(keyed: ServerProcess) -> None:
    with _client(keyed) as c:
        token = _login(c, KEY).cookies[COOKIE]
    version, name, expires, mac = token.split(".")
    ring = parse_key_file(f"ada.lovelace:{KEY}\nother:{OTHER}\n")
    forged = [
        f"{version}.{name}.{int(expires) + 3600}.{mac}",  # a later expiry, same signature
        f"{version}.{name}.{expires}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",
        f"{version}.{issue(ring, 'other').split('.')[1]}.{expires}.{mac}",  # another name
        issue(ring, "ada.lovelace", now=0.0),  # signed right, but long expired
        "garbage",
    ]
    for value in forged:
        with _client(keyed) as c:
            c.cookies.set(COOKIE, value)
            assert c.get("/_ui/data").status_code == 401, value
            assert c.get("/_ui", headers=BROWSER).status_code == 303, value
    with _client(keyed) as c:
        c.cookies.set(COOKIE, token)
        assert c.get("/_ui/data").status_code == 200  # the untouched one still opens


def test_a_login_posted_from_another_site_is_refused(keyed: ServerProcess) -> None:
    with _client(keyed) as c:
        for origin in ("http://attacker.example", "null"):
            refused = _login(c, KEY, Origin=origin)
            assert refused.status_code == 403 and "set-cookie" not in refused.headers
        host = keyed.url.removeprefix("http://")
        assert _login(c, KEY, Origin=f"http://{host}").status_code == 303


def test_logout_clears_the_cookie(keyed: ServerProcess) -> None:
    with _client(keyed) as c:
        _login(c, KEY)
        assert c.get("/_ui/data").status_code == 200
        out = c.post("/_ui/logout")
        assert out.status_code == 303 and out.headers["location"] == "/_ui/login"
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert COOKIE not in c.cookies
        assert c.get("/_ui/data").status_code == 401
