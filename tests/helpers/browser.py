"""A real browser for the tests: Debian's Chromium, driven by Playwright, that lets a page
fetch nothing but its own origin.

Every request the page makes is intercepted; one to another origin (for a page opened from
a file: any request at all) is aborted before it is sent and recorded, as are console
errors and uncaught page errors, so a test asserts all three empty (``record.assert_clean()``).
Pages render at the two sizes of :data:`VIEWPORTS` and their screenshots go under the test's
``tmp_path``, to be looked at.

Use it from any test package by importing the fixture into that package's conftest.py::

    from tests.helpers.browser import browser  # noqa: F401  (the fixture)

    def test_the_page_shows_the_path(browser: Browser, tmp_path: Path) -> None:
        records = browser.visit(url, tmp_path, name="ui", allowed_origin=origin_of(url),
                                check=lambda page, size: ...)
        for record in records.values():
            record.assert_clean()

No browser is ever downloaded: without Chromium (or Playwright) the tests skip, and under
SERVEPATH_REQUIRE_ALL=1 they fail. SERVEPATH_CHROMIUM names another binary.

The fixture lives for one module (see :func:`browser` for why): a module that uses it should
start servers as processes and run commands as subprocesses, not ``asyncio.run`` in-process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urlsplit

import pytest

from tests.support import need

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route

#: The two sizes every page is rendered at: a laptop and a phone (CSS pixels).
VIEWPORTS: dict[str, tuple[int, int]] = {"desktop": (1280, 800), "phone": (390, 844)}

#: URL schemes that are not network requests (the page's own inline data).
_LOCAL_SCHEMES = ("data", "blob", "about")


def chromium_path() -> str | None:
    """Debian's chromium (SERVEPATH_CHROMIUM names another); None when there is none."""
    named = os.environ.get("SERVEPATH_CHROMIUM")
    candidates = (named,) if named else ("/usr/bin/chromium", shutil.which("chromium"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of ``url`` (the port always written); None for a file: URL."""
    parts = urlsplit(url)
    if parts.scheme == "file" or not parts.hostname:
        return None
    port = parts.port or {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{host}:{port}"


def is_allowed(request_url: str, page_url: str, allowed_origin: str | None) -> bool:
    """Whether the page may make this request: to the allowed origin only; a page opened from
    a file may load itself and nothing else."""
    scheme = urlsplit(request_url).scheme
    if scheme in _LOCAL_SCHEMES:
        return True
    if urlsplit(page_url).scheme == "file" and allowed_origin is None:
        return urldefrag(request_url)[0] == urldefrag(page_url)[0]
    return allowed_origin is not None and origin_of(request_url) == allowed_origin


@dataclass
class PageRecord:
    """What one page did while it was open."""

    url: str
    viewport: str
    allowed_origin: str | None
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def problems(self) -> list[str]:
        return (
            [f"blocked request to another origin: {u}" for u in self.blocked]
            + [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
        )

    def assert_clean(self) -> None:
        assert not self.problems(), f"{self.url} at {self.viewport}: {self.problems()}"


class Browser:
    """One Chromium for the session; each page opens in a fresh context (no shared state)."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    @contextlib.contextmanager
    def tab(
        self,
        url: str,
        *,
        viewport: str = "desktop",
        allowed_origin: str | None = None,
        wait_until: str = "load",
        headers: dict[str, str] | None = None,
    ) -> Iterator[tuple[Page, PageRecord]]:
        """Open ``url`` at ``viewport`` with every foreign request aborted and recorded;
        ``headers`` go with every request the page makes (an API key)."""
        width, height = VIEWPORTS[viewport]
        record = PageRecord(url, viewport, allowed_origin)
        context = self._browser.new_context(
            viewport={"width": width, "height": height},
            service_workers="block",
            java_script_enabled=True,
            extra_http_headers=headers or {},
        )

        def route(route: Route, request: Request) -> None:
            if is_allowed(request.url, url, allowed_origin):
                record.requests.append(request.url)
                route.continue_()
            else:
                record.blocked.append(request.url)
                route.abort("blockedbyclient")

        def websocket(ws: Any) -> None:
            if is_allowed(ws.url, url, allowed_origin):
                ws.connect_to_server()
            else:
                record.blocked.append(ws.url)
                ws.close()

        context.route("**/*", route)
        context.route_web_socket("**/*", websocket)
        page = context.new_page()
        page.on(
            "console",
            lambda m: record.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: record.page_errors.append(str(e)))
        try:
            page.goto(url, wait_until=wait_until)
            yield page, record
        finally:
            context.close()

    def visit(
        self,
        url: str,
        shots: Path,
        *,
        name: str = "page",
        allowed_origin: str | None = None,
        check: Callable[[Page, str], None] | None = None,
        full_page: bool = True,
        headers: dict[str, str] | None = None,
    ) -> dict[str, PageRecord]:
        """Open ``url`` at every size of :data:`VIEWPORTS`, run ``check(page, size)`` on each,
        and save ``shots/{name}-{size}.png``; returns the record of each size."""
        shots.mkdir(parents=True, exist_ok=True)
        records = {}
        for size in VIEWPORTS:
            tab = self.tab(url, viewport=size, allowed_origin=allowed_origin, headers=headers)
            with tab as (page, record):
                if check is not None:
                    check(page, size)
                record.screenshot = shots / f"{name}-{size}.png"
                page.screenshot(path=str(record.screenshot), full_page=full_page)
            records[size] = record
        return records


def require_browser() -> str:
    """The chromium binary, after checking that Playwright is importable (skip or fail)."""
    need(importlib.util.find_spec("playwright") is not None, "playwright is not installed")
    path = chromium_path()
    need(path is not None, "chromium is not installed (apt-get install chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the tests of one module.

    Not for the whole session: while Playwright's sync API is open, its event loop counts as
    running in the main thread, so ``asyncio.run`` (an in-process CLI run, an anyio test)
    fails there. Keep browser tests in modules of their own; run servers as processes
    (``tests.support.serve``) and commands as subprocesses.
    """
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            # nothing of the browser's own reaches out either: no proxy, no background fetches
            args=["--no-proxy-server", "--disable-background-networking"],
        )
        try:
            yield Browser(launched)
        finally:
            launched.close()
