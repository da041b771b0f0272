"""The session cookie's token: signed under the key it names, refused when tampered with,
expired, or when its key left the key file; the cookie's attributes; where a login may send
the browser back to."""

from __future__ import annotations

from servepath.service.auth import parse_key_file
from servepath.service.session import (
    COOKIE,
    SESSION_SECONDS,
    clear_cookie,
    cookie_of,
    issue,
    safe_next,
    same_origin,
    set_cookie,
    verify,
)

ADA = "ada-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
RING = parse_key_file(f"ada.l:{ADA}\nbob:{BOB}\n")


def test_a_token_names_its_key_until_it_expires() -> None:
    token = issue(RING, "ada.l", now=1000.0)
    assert ADA not in token
    assert verify(RING, token, now=1000.0) == "ada.l"
    assert verify(RING, token, now=1000.0 + SESSION_SECONDS - 1) == "ada.l"
    assert verify(RING, token, now=1000.0 + SESSION_SECONDS) is None


def test_a_token_is_refused_once_its_key_leaves_or_changes_in_the_key_file() -> None:
    token = issue(RING, "ada.l", now=1000.0)
    assert verify(parse_key_file(f"bob:{BOB}\n"), token, now=1000.0) is None
    changed = parse_key_file(f"ada.l:{ADA}-rotated\nbob:{BOB}\n")
    assert verify(changed, token, now=1000.0) is None
    assert verify(None, token, now=1000.0) is None  # no keys: no sessions either


def test_a_token_cannot_be_moved_to_another_key_or_lengthened() -> None:
    version, name, expires, mac = issue(RING, "ada.l", now=1000.0).split(".")
    bob_name = issue(RING, "bob", now=1000.0).split(".")[1]
    for forged in (
        f"{version}.{bob_name}.{expires}.{mac}",
        f"{version}.{name}.{int(expires) + 1}.{mac}",
        f"v0.{name}.{expires}.{mac}",
        f"{version}.{name}.{expires}",
        "",
        "....",
        f"{version}.%%%.{expires}.{mac}",
    ):
        assert verify(RING, forged, now=1000.0) is None, forged


def test_the_cookie_is_http_only_strict_and_secure_over_tls() -> None:
    plain = set_cookie("T", secure=False).decode()
    assert plain == f"{COOKIE}=T; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; SameSite=Strict"
    assert set_cookie("T", secure=True).decode().endswith("; Secure")
    assert "Max-Age=0" in clear_cookie(secure=False).decode()
    headers = [(b"cookie", b"other=1; " + COOKIE.encode() + b"=abc.def; x=y")]
    assert cookie_of(headers) == "abc.def"
    assert cookie_of([(b"cookie", b"other=1")]) is None


def test_a_login_sends_the_browser_back_only_to_a_page_the_session_opens() -> None:
    opens = frozenset({"/_ui", "/docs"})
    assert safe_next("/docs", opens, "/_ui") == "/docs"
    for elsewhere in ("https://attacker.example/", "//attacker.example", "/metrics", None):
        assert safe_next(elsewhere, opens, "/_ui") == "/_ui"


def test_a_form_posted_from_another_origin_is_told_apart() -> None:
    host = (b"host", b"127.0.0.1:8080")
    assert same_origin([host, (b"origin", b"http://127.0.0.1:8080")])
    assert same_origin([host])  # no Origin: not a cross-site browser post
    assert not same_origin([host, (b"origin", b"http://attacker.example")])
    assert not same_origin([host, (b"origin", b"null")])
