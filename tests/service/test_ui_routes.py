"""The live page's routes through the ASGI app: the data's shape, the page's files and their
policy, ``--ui off``, a route of one's own, and API keys."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from servepath.cache.base import NoCache
from servepath.cli import app as cli_app
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.model.loaded import LoadedModel
from servepath.service.app import ServepathApp
from servepath.store.base import NoLog

pytestmark = pytest.mark.anyio

KEY = "ui-key-" + "0123456789abcdef"
HOSTILE = '"><script>alert(1)</script>'
PAGE_FILES = ["/_ui", "/_ui/app.js", "/_ui/app.css"]


@pytest.fixture
async def ui_app(
    request: pytest.FixtureRequest, example_model: LoadedModel
) -> AsyncIterator[httpx.AsyncClient]:
    settings: Settings = getattr(request, "param", Settings())
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51515))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        await app.shutdown()


def _keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"alice:{KEY}\n")
    return path


def _requests_to_decisions(metrics: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == "servepath_http_requests_total" and s.labels["route"] == "/decisions":
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0) + int(s.value)
    return counts


async def test_the_data_lists_each_prediction_request_newest_first_with_its_caller(
    ui_app: httpx.AsyncClient, example_model: LoadedModel
) -> None:
    for i in range(3):
        r = await ui_app.post(
            "/decisions",
            json=EXAMPLE_APPLICANT,
            headers={"X-Request-ID": f"ok-{i}", "X-Forwarded-For": HOSTILE},
        )
        assert r.status_code == 200
    bad = await ui_app.post("/decisions", json={"nope": 1}, headers={"X-Request-ID": "bad"})
    assert bad.status_code == 422
    await ui_app.get("/")  # not a predict route: not in the ring
    data = (await ui_app.get("/_ui/data")).json()
    # A caller from elsewhere without a key: the list withholds who sent each request, and
    # the viewer's own rows come whole beside it, each with its place in the list.
    assert [r["status"] for r in data["requests"]] == [422, 200, 200, 200]
    assert {r["request_id"] for r in data["requests"]} == {None}
    requests = sorted(data["viewer"]["mine"], key=lambda r: r["n"])
    assert [r["request_id"] for r in requests] == ["bad", "ok-2", "ok-1", "ok-0"]
    first = requests[-1]
    assert first["client_ip"] == "203.0.113.7" and first["client_addr"] == "203.0.113.7:51515"
    assert first["forwarded"] == HOSTILE  # a claim, kept verbatim as data
    assert first["route"] == "/decisions" and first["cache"] == "miss"
    assert first["model_ms"] > 0 and first["total_ms"] >= first["model_ms"]
    assert requests[0]["cache"] is None and requests[0]["model_ms"] is None
    assert data["model"] == example_model.describe()
    assert data["server"]["workers"] == 1 and data["server"]["ring"]["size"] == 4
    stats = data["stats"]
    assert stats["requests"] == 4 and stats["errors_4xx"] == 1 and stats["errors_5xx"] == 0
    assert stats["p50_ms"] is not None and stats["p99_ms"] >= stats["p50_ms"]
    # The viewer (this client) and its last answered prediction.
    assert data["viewer"]["client"]["address"] == "203.0.113.7"
    assert data["viewer"]["latest"]["request_id"] == "ok-2"
    # The totals are /metrics' own counts.
    metrics = (await ui_app.get("/metrics")).text
    assert _requests_to_decisions(metrics) == {"200": 3, "422": 1}
    assert data["totals"] == {"requests": 4, "errors": 1, "by_status": {"200": 3, "422": 1}}


async def test_marked_traffic_is_listed_with_its_kind_but_left_out_of_the_numbers(
    ui_app: httpx.AsyncClient,
) -> None:
    for i in range(2):
        r = await ui_app.post(
            "/decisions", json=EXAMPLE_APPLICANT, headers={"X-Request-ID": f"real-{i}"}
        )
        assert r.status_code == 200
    marks = ["doctor", "load", "DOCTOR", "a monitor of my own"]
    for i, mark in enumerate(marks):
        r = await ui_app.post(
            "/decisions",
            json={"nope": 1} if i == 0 else EXAMPLE_APPLICANT,  # the doctor's probe refused
            headers={"X-Request-ID": f"synthetic-{i}", "X-Servepath-Traffic": mark},
        )
        assert r.status_code == (422 if i == 0 else 200)
    data = (await ui_app.get("/_ui/data")).json()
    stats = data["stats"]
    assert stats["requests"] == 2 and stats["errors_4xx"] == 0 and stats["error_rate"] == 0
    assert stats["synthetic_left_out"] == 4
    assert sum(b["requests"] for b in stats["per_second"]) == 2
    assert [r["traffic"] for r in data["requests"]] == [
        "other",
        "doctor",
        "load",
        "doctor",
        None,
        None,
    ]


async def test_the_data_is_never_cached(ui_app: httpx.AsyncClient) -> None:
    r = await ui_app.get("/_ui/data")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("application/json")


async def test_the_page_runs_only_its_own_script_from_this_server(
    ui_app: httpx.AsyncClient,
) -> None:
    r = await ui_app.get("/_ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = dict(p.strip().split(" ", 1) for p in r.headers["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert '<script src="/_ui/app.js"' in r.text and 'href="/_ui/app.css"' in r.text
    assert re.search(r"<script\b(?![^>]*\bsrc=)", r.text) is None  # no inline script
    assert re.search(r"\son\w+\s*=", r.text) is None  # no inline handlers
    assert 'data-endpoint="/_ui/data"' in r.text


async def test_no_file_of_the_page_names_another_origin(ui_app: httpx.AsyncClient) -> None:
    for route in PAGE_FILES:
        text = (await ui_app.get(route)).text
        # The SVG namespace is a name, not a request.
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (route, urls)
        assert "@import" not in text and "url(" not in text, route


async def test_the_script_never_writes_markup(ui_app: httpx.AsyncClient) -> None:
    js = (await ui_app.get("/_ui/app.js")).text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert "textContent" in js


async def test_the_pages_files_revalidate_with_an_etag(ui_app: httpx.AsyncClient) -> None:
    for route, kind in (("/_ui/app.js", "text/javascript"), ("/_ui/app.css", "text/css")):
        r = await ui_app.get(route)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert r.headers["cache-control"] == "no-cache"
        again = await ui_app.get(route, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("ui_app", [Settings(ui_route=None)], indirect=True)
async def test_ui_off_removes_the_page_its_files_and_its_data(ui_app: httpx.AsyncClient) -> None:
    for route in [*PAGE_FILES, "/_ui/data"]:
        assert (await ui_app.get(route)).status_code == 404, route
    r = await ui_app.post("/decisions", json=EXAMPLE_APPLICANT)
    assert r.status_code == 200


@pytest.mark.parametrize("ui_app", [Settings(ui_route="/ops/live")], indirect=True)
async def test_the_page_lives_under_the_route_it_is_given(ui_app: httpx.AsyncClient) -> None:
    assert (await ui_app.get("/_ui")).status_code == 404
    page = (await ui_app.get("/ops/live")).text
    assert 'src="/ops/live/app.js"' in page and 'data-endpoint="/ops/live/data"' in page
    for route in ("/ops/live/app.js", "/ops/live/app.css", "/ops/live/data"):
        assert (await ui_app.get(route)).status_code == 200, route


async def _statuses(
    tmp_path: Path, example_model: LoadedModel, **changes: str
) -> dict[str, tuple[int, int]]:
    """Each route of the page: (status without a key, status with one)."""
    settings = Settings(api_key_file=_keys(tmp_path), **changes)  # type: ignore[arg-type]
    app = ServepathApp(settings, model=example_model, cache=NoCache(), store=NoLog())
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            found = {}
            for route in [*PAGE_FILES, "/_ui/data", "/_path"]:
                without = (await c.get(route)).status_code
                with_key = (await c.get(route, headers={"X-API-Key": KEY})).status_code
                found[route] = (without, with_key)
            return found
    finally:
        await app.shutdown()


async def test_with_api_keys_the_page_needs_one_like_the_path_echo(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    found = await _statuses(tmp_path, example_model)
    assert found == {route: (401, 200) for route in [*PAGE_FILES, "/_ui/data", "/_path"]}


async def test_opening_the_page_opens_its_files_and_data_but_not_the_path_echo(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    found = await _statuses(tmp_path, example_model, open_routes="/_ui")
    assert found.pop("/_path") == (401, 200)
    assert found == {route: (200, 200) for route in [*PAGE_FILES, "/_ui/data"]}


def test_settings_take_the_route_from_servepath_ui() -> None:
    assert Settings.from_env({"SERVEPATH_UI": "off"}).ui_route is None
    assert Settings.from_env({"SERVEPATH_UI": "/live"}).ui_route == "/live"
    assert Settings.from_env({}).ui_route == "/_ui"


def test_a_ui_route_that_is_no_path_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--ui", "live", "--port", "1"])
    assert result.exit_code == 2
    assert "--ui" in result.output


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CHAIN_1KB = ", ".join(f"10.9.{i // 256}.{i % 256}" for i in range(100))[:1024]


async def _app_with_full_ring(
    example_model: LoadedModel, settings: Settings | None = None
) -> ServepathApp:
    app = ServepathApp(settings or Settings(), model=example_model, cache=NoCache(), store=NoLog())
    assert app.ui is not None
    for i in range(app.ui.capacity):
        headers = [(b"x-forwarded-for", CHAIN_1KB.encode()), (b"forwarded", b"for=" + b"x" * 900)]
        client = ("198.51.100.1", 40000 + i)
        app.ui.note(200, 0.002, "/decisions", f"other-{i}", client, headers, [("model", 1.0, None)])
    await app.startup()
    return app


def _client(app: ServepathApp, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_polls_within_a_second_compute_the_shared_part_once(
    example_model: LoadedModel,
) -> None:
    app = await _app_with_full_ring(example_model)
    page, ring = app.page, app.ui
    assert page is not None and ring is not None
    page.clock = clock = _Clock()
    try:
        async with _client(app, "203.0.113.7") as stranger, _client(app, "127.0.0.1") as local:
            for _ in range(10):
                assert (await stranger.get("/_ui/data")).status_code == 200
                assert (await local.get("/_ui/data")).status_code == 200
            assert page.computed == 1 and ring.renders == ring.capacity
            clock.now += 0.999
            await stranger.get("/_ui/data")
            assert page.computed == 1
            clock.now += 0.002  # a new window: computed again, but no entry rendered again
            await stranger.get("/_ui/data")
            assert page.computed == 2 and ring.renders == ring.capacity
            await local.post("/decisions", json=EXAMPLE_APPLICANT, headers={"X-Request-ID": "new"})
            clock.now += 1.0
            data = (await local.get("/_ui/data")).json()
            assert data["requests"][0]["request_id"] == "new"
            assert data["viewer"]["latest"]["request_id"] == "new"
            assert page.computed == 3 and ring.renders == ring.capacity + 1
    finally:
        await app.shutdown()


async def test_a_stranger_sees_when_and_how_long_but_not_who_of_other_callers(
    example_model: LoadedModel,
) -> None:
    app = await _app_with_full_ring(example_model)
    try:
        async with _client(app, "203.0.113.7") as stranger, _client(app, "127.0.0.1") as local:
            sent = {"X-Request-ID": "mine-1", "X-Forwarded-For": "192.0.2.55"}
            await stranger.post("/decisions", json=EXAMPLE_APPLICANT, headers=sent)
            seen = (await stranger.get("/_ui/data")).json()
            insider = (await local.get("/_ui/data")).json()
    finally:
        await app.shutdown()
    assert [r["status"] for r in seen["requests"]] == [r["status"] for r in insider["requests"]]
    for row in seen["requests"]:
        assert row["withheld"] is True and row["total_ms"] > 0
        for field in ("request_id", "client_ip", "client_addr", "forwarded"):
            assert row[field] is None, field
        assert row["proxies"] == []
    assert seen["server"]["pid"] is None and seen["server"]["hostname"] is None
    [mine] = seen["viewer"]["mine"]
    assert mine["n"] == 0 and mine["request_id"] == "mine-1" and mine["forwarded"] == "192.0.2.55"
    assert seen["viewer"]["latest"]["request_id"] == "mine-1"
    body = str(seen)
    assert "198.51.100.1" not in body and "other-" not in body and "10.9." not in body
    # This machine sees every caller, and the server's own pid.
    assert insider["requests"][1]["request_id"] == "other-199"
    assert insider["requests"][1]["client_ip"] == "198.51.100.1"
    assert insider["server"]["pid"] is not None and "mine" not in insider["viewer"]


async def test_with_api_keys_the_data_needs_one_and_a_key_sees_every_caller(
    tmp_path: Path, example_model: LoadedModel
) -> None:
    for opened in ("", "/_ui"):
        settings = Settings(api_key_file=_keys(tmp_path), open_routes=opened)
        app = await _app_with_full_ring(example_model, settings)
        try:
            async with _client(app, "203.0.113.7") as stranger:
                without = await stranger.get("/_ui/data")
                keyed = await stranger.get("/_ui/data", headers={"X-API-Key": KEY})
        finally:
            await app.shutdown()
        assert without.status_code == (200 if opened else 401)
        if opened:  # opened to everyone: a caller without a key is a stranger
            assert without.json()["requests"][0]["client_ip"] is None
        assert keyed.json()["requests"][0]["client_ip"] == "198.51.100.1"
