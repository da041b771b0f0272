"""The live page in a real browser (Debian's Chromium): a real `servepath serve` with API keys
and the page opened to all (``--open-routes /_ui``) behind a real nginx it trusts
(``--forwarded-allow-ips``), real prediction requests from another loopback address, some
with a spoofed X-Forwarded-For; then ``/_ui`` at a laptop's and a phone's size, with every
request the page makes intercepted. With a key, the page must show those requests with their
id, caller and chain, the counts /metrics and the prediction log have, no console error, no
request to another origin, and nothing wider than the screen; without one (a stranger, since
nginx forwards whoever calls it), their own request whole and found by its id, and no other
caller's address, chain or id. Screenshots go under tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servepath.model.example import EXAMPLE_APPLICANT, generate_applicants
from servepath.model.loaded import LoadedModel
from servepath.model.profile import build_profile, write_profile
from servepath.store.reader import SQLiteReader
from tests.helpers.browser import VIEWPORTS, Browser, browser, origin_of  # noqa: F401
from tests.helpers.nginx import nginx_in_front
from tests.support import serve

pytestmark = pytest.mark.timeout(120)

CALLER = "127.0.0.2"  # the callers' address; nginx and the server are on 127.0.0.1
SPOOF = "198.51.100.66"
HOSTILE = '<img src=x onerror="document.title=1">'  # a header is whatever a caller sends
ANSWERED = [f"plain-{i}" for i in range(4)] + ["spoofed-0", "spoofed-1"]
REFUSED = ["refused-0", "refused-1"]
VIEWER = "viewer-0"  # sent from the browser's own address, so the viewer's path has times
KEY = "browser-key-0123456789abcdef"
WITH_KEY = {"X-API-Key": KEY}


@dataclass
class Site:
    url: str  # nginx, in front
    direct: str  # the server itself
    log: Path


def _send(base: str, address: str, request_id: str, **headers: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, base_url=base, timeout=30, trust_env=False) as c:
        body: Any = {"bad": 1} if request_id.startswith("refused") else EXAMPLE_APPLICANT
        sent = {"X-Request-ID": request_id, **WITH_KEY, **headers}
        return c.post("/decisions", json=body, headers=sent)


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, example_model_path: Path, example_model: LoadedModel
) -> Iterator[Site]:
    tmp_path = tmp_path_factory.mktemp("ui")
    log = tmp_path / "log.sqlite3"
    keys = tmp_path / "keys.txt"
    keys.write_text(f"browser:{KEY}\n")
    profile = tmp_path / "profile.json"
    frame = generate_applicants(2_000, seed=3)
    built = build_profile(
        example_model.schema, frame, model_name="decision", model_version=example_model.version
    )
    write_profile(built, profile)
    args = ["--forwarded-allow-ips", "127.0.0.1", "--store", f"sqlite://{log}", "--durable"]
    args += ["--api-key-file", str(keys), "--open-routes", "/_ui"]
    args += ["--reference-profile", str(profile)]
    with (
        serve(tmp_path, model=example_model_path, args=args) as server,
        nginx_in_front(tmp_path, server.port) as url,
    ):
        for rid in ANSWERED:
            spoof = {
                "spoofed-0": {"X-Forwarded-For": SPOOF},
                "spoofed-1": {"X-Forwarded-For": HOSTILE},
            }
            assert _send(url, CALLER, rid, **spoof.get(rid, {})).status_code == 200
        for rid in REFUSED:
            assert _send(url, CALLER, rid).status_code == 422
        assert _send(url, "127.0.0.1", VIEWER).status_code == 200
        yield Site(url, server.url, log)


def _metrics_counts(site: Site) -> dict[str, int]:
    text = httpx.get(site.direct + "/metrics", headers=WITH_KEY, trust_env=False, timeout=10).text
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "servepath_http_requests_total" and s.labels["route"] == "/decisions":
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0) + int(s.value)
    return counts


def _rows(page: Any) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            "#recent-rows tr",
            """rows => rows.map(r => ({
                id: r.getAttribute('data-request-id'),
                shown_id: r.querySelector('.rid').textContent,
                full_id: r.querySelector('.rid').getAttribute('title'),
                status: r.querySelector('.badge').textContent,
                caller: r.querySelector('.caller .ip').textContent,
                chain: r.querySelector('.chain').textContent,
                cache: r.querySelector('.cache-cell').textContent,
                time: r.querySelector('.time-split').getAttribute('title'),
            }))""",
        )
    )


def test_the_page_shows_every_request_with_its_caller_and_chain(
    browser: Browser,  # noqa: F811
    site: Site,
    tmp_path: Path,
) -> None:
    sent = len(ANSWERED) + len(REFUSED) + 1
    counts = _metrics_counts(site)
    assert counts == {"200": len(ANSWERED) + 1, "422": len(REFUSED)}
    with SQLiteReader(site.log) as reader:
        logged = reader.recent(limit=100)
    assert {r.request_id for r in logged} == {*ANSWERED, VIEWER}

    def check(page: Any, size: str) -> None:
        # A selector, not a predicate: the page's policy forbids eval, Playwright's too.
        page.wait_for_selector(f"#recent-rows tr:nth-child({sent})", timeout=15_000)
        rows = _rows(page)
        assert [r["id"] for r in rows] == [VIEWER, *REFUSED[::-1], *ANSWERED[::-1]]
        by_id = {r["id"]: r for r in rows}
        for rid in [*ANSWERED, *REFUSED]:
            # The caller nginx vouches for, and the trusted proxy it came through.
            assert by_id[rid]["caller"] == CALLER, by_id[rid]
            assert "via 127.0.0.1" in by_id[rid]["chain"]
        assert f"claimed: {SPOOF}" in by_id["spoofed-0"]["chain"]
        assert HOSTILE in by_id["spoofed-1"]["chain"]  # shown as text, never as markup
        assert page.query_selector("#recent-rows img") is None
        assert "claimed" not in by_id["plain-0"]["chain"]
        for record in logged:  # what the page shows is what the log keeps
            row = by_id[record.request_id]
            assert row["caller"] == record.client_ip
            assert (f"claimed: {record.forwarded}" in row["chain"]) == (
                record.forwarded is not None
            )
            assert row["cache"] == ("hit" if record.cache_hit else "miss")
        assert all(r["status"] == "422" for r in rows if r["id"] in REFUSED)
        # Each row's request id, shortened, the whole in its title.
        assert by_id["spoofed-0"]["shown_id"] == "spoofed-…"
        assert by_id["spoofed-0"]["full_id"] == "spoofed-0"
        assert by_id["plain-0"]["shown_id"] == "plain-0"
        assert "model" in by_id["plain-0"]["time"] and "total" in by_id["plain-0"]["time"]

        # The numbers are /metrics' own, as text.
        totals = page.text_content("#totals")
        assert f"{sent} served, {len(REFUSED)} errors" in totals
        errors = page.text_content("#errors")
        assert f"{len(REFUSED)} 4xx, 0 5xx" in errors
        assert page.text_content("#p50").endswith("ms") and page.text_content("#p99").endswith("ms")
        assert page.text_content("#model-name") == "decision"
        assert page.text_content("#stats-window").startswith(f"· {sent} prediction requests")

        # The viewer's own path: you → the trusted nginx → the server's socket → … → model.
        kinds = page.eval_on_selector_all(
            "#path .node .node-kind", "n => n.map(x => x.textContent)"
        )
        assert kinds == ["you", "trusted proxy", "server socket", "route", "cache", "model"]
        socket = page.text_content("#path .node.socket .node-main")
        assert socket == site.direct.removeprefix("http://")
        assert VIEWER in page.text_content("#path-note")
        labels = page.eval_on_selector_all(
            "#path li", "n => n.map(x => x.getAttribute('aria-label'))"
        )
        assert all(labels) and any(label.startswith("model call: ") for label in labels)

        # Filters, client-side.
        page.select_option("#filter-status", "4")
        assert {r["id"] for r in _rows(page)} == set(REFUSED)
        page.select_option("#filter-status", "")
        page.fill("#filter-caller", CALLER)
        assert len(_rows(page)) == len(ANSWERED) + len(REFUSED)
        page.fill("#filter-caller", "")
        assert len(_rows(page)) == sent
        page.fill("#filter-id", "spoofed")
        assert [r["id"] for r in _rows(page)] == ["spoofed-1", "spoofed-0"]
        page.fill("#filter-id", "")
        assert len(_rows(page)) == sent
        assert page.text_content("#worker").startswith("pid ")
        assert "withheld" not in page.text_content("#worker")

        # Input drift: the panel is there, and says it waits for enough rows.
        assert page.is_visible("#drift")
        assert "Too few rows yet" in page.text_content("#drift-note")
        assert "training data of decision" in page.text_content("#drift-window")

        width = VIEWPORTS[size][0]
        assert page.evaluate("document.documentElement.scrollWidth") <= width, size

    records = browser.visit(
        site.url + "/_ui",
        tmp_path,
        name="ui",
        allowed_origin=origin_of(site.url),
        check=check,
        headers=WITH_KEY,
    )
    for record in records.values():
        record.assert_clean()
        assert record.screenshot is not None and record.screenshot.stat().st_size > 0
        assert any(u.endswith("/_ui/data") for u in record.requests)


def test_a_stranger_finds_their_own_request_by_its_id_and_no_one_elses_caller(
    browser: Browser,  # noqa: F811
    site: Site,
) -> None:
    sent = len(ANSWERED) + len(REFUSED) + 1
    url = site.url + "/_ui?id=" + VIEWER
    with browser.tab(url, allowed_origin=origin_of(site.url)) as (page, record):
        page.wait_for_selector("#recent-rows tr.row", timeout=15_000)
        # /_ui?id=… opens the list filtered to that request: the viewer's own, whole.
        assert page.input_value("#filter-id") == VIEWER
        [mine] = _rows(page)
        assert mine["id"] == VIEWER and mine["full_id"] == VIEWER
        assert mine["caller"] == "127.0.0.1" and "via 127.0.0.1" in mine["chain"]
        page.fill("#filter-id", "")
        rows = _rows(page)
        assert len(rows) == sent
        others = [r for r in rows if r["id"] != VIEWER]
        assert len(others) == sent - 1
        for row in others:  # when, what and how long; never who, through what, or which id
            assert row["id"] is None and row["shown_id"] == "withheld"
            assert row["caller"] == "withheld" and row["chain"] == "withheld"
        text = page.text_content("body")
        for secret in (CALLER, SPOOF, *ANSWERED, *REFUSED):
            assert secret not in text, secret
        # The server's own identity is withheld, said as such: no "null", no empty "(yes) ·".
        assert page.text_content("#worker") == "pid withheld, the only worker"
        socket_sub = page.text_content("#path .node.socket .node-sub")
        assert socket_sub in ("in a container", "not in a container"), socket_sub
        assert "null" not in text and "undefined" not in text
    record.assert_clean()


def test_a_person_signs_in_with_a_key_and_the_page_opens(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
    example_model_path: Path,
) -> None:
    """Without --open-routes: the page sends the browser to the login form, a wrong key is
    told so, the right one opens the page with its list, and signing out closes it."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"person:{KEY}\n")
    keys.chmod(0o600)
    args = ["--api-key-file", str(keys), "--store", "off"]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        assert _send(server.url, "127.0.0.1", "signed-in-0").status_code == 200
        origin = origin_of(server.url)
        with browser.tab(server.url + "/_ui", allowed_origin=origin) as (page, record):
            assert page.url == server.url + "/_ui/login?next=%2F_ui"
            page.screenshot(path=str(tmp_path / "login.png"))
            page.fill("#key", "not-the-key-0123456789abcdef")
            page.click("button[type=submit]")
            page.wait_for_selector(".error")
            assert "not one this server knows" in page.inner_text(".error")
            page.fill("#key", KEY)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/_ui")
            page.wait_for_selector("#recent-rows tr.row", timeout=15_000)
            ids = page.eval_on_selector_all(
                "#recent-rows tr", "rows => rows.map(r => r.getAttribute('data-request-id'))"
            )
            assert "signed-in-0" in ids
            cookies = page.context.cookies()
            assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
                ("servepath_session", True, "Strict")
            ]
            page.goto(server.url + "/docs")
            page.wait_for_selector(".swagger-ui", timeout=15_000)
            page.goto(server.url + "/_ui/login")
            page.click("button[type=submit]")  # sign out
            page.wait_for_url(server.url + "/_ui/login")
            page.goto(server.url + "/_ui")
            assert page.url.startswith(server.url + "/_ui/login")
            # the login page's own console errors: the 401s of the wrong key and of a page
            # opened after signing out are what they say, nothing else may be there
            record.console_errors = [m for m in record.console_errors if "401" not in m]
            record.assert_clean()
