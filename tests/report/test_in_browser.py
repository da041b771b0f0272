"""The report pages in a real browser (Debian's Chromium): opened from disk as a person opens
an attachment, at a laptop's and a phone's size, with every request intercepted. No console
error, no request leaves the page, the broken stage is visible with its word, nothing is
wider than the screen; the screenshots are kept under the test's tmp_path.

End to end: `servepath doctor --html --svg` and `servepath load --html` against a real
`servepath serve` on loopback.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servepath.render.doctor import doctor_html, standalone_svg
from servepath.render.load import load_html
from tests.helpers.browser import VIEWPORTS, Browser, is_allowed, origin_of
from tests.report.builders import (
    HOSTILE,
    doctor_case,
    doctor_hostile,
    doctor_ipv6_closed,
    find_max_report,
    load_run,
    sweep_report,
)
from tests.support import serve

pytestmark = pytest.mark.timeout(120)


def _fits_the_screen(page: Any, size: str) -> None:
    width = VIEWPORTS[size][0]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, size


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path.as_uri()


# --- the harness itself ----------------------------------------------------------------------


def test_the_harness_allows_only_the_page_itself_or_its_origin() -> None:
    page = "file:///tmp/r/report.html"
    assert is_allowed(page, page, None) and is_allowed(page + "#stages", page, None)
    assert not is_allowed("file:///etc/passwd", page, None)
    assert not is_allowed("http://127.0.0.1:8080/x.css", page, None)
    assert is_allowed("data:image/png;base64,AA==", page, None)
    ui = "http://127.0.0.1:8080/_ui"
    assert is_allowed("http://127.0.0.1:8080/_ui/data", ui, origin_of(ui))
    assert not is_allowed("http://127.0.0.1:8081/", ui, origin_of(ui))
    assert not is_allowed("https://127.0.0.1:8080/", ui, origin_of(ui))
    assert origin_of("http://[::1]/x") == "http://[::1]:80"
    assert origin_of("ws://[::1]:9/x") == "http://[::1]:9"


def test_the_harness_aborts_and_records_a_request_to_another_origin(
    browser: Browser, tmp_path: Path
) -> None:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        outside = f"http://127.0.0.1:{server.server_address[1]}/tracker.png"
        url = _write(tmp_path, "leaky.html", f'<p>hi</p><img src="{outside}">')
        with browser.tab(url) as (page, record):
            page.wait_for_load_state("load")
        assert record.blocked == [outside]
        assert hits == []  # aborted unsent: the server never saw it
        with pytest.raises(AssertionError, match="blocked request"):
            record.assert_clean()
    finally:
        server.shutdown()
        server.server_close()


def test_the_harness_collects_page_errors(browser: Browser, tmp_path: Path) -> None:
    url = _write(tmp_path, "broken.html", "<script>console.error('bad'); nope();</script>")
    with browser.tab(url) as (_, record):
        pass
    assert record.console_errors == ["bad"]
    assert record.page_errors and "nope" in record.page_errors[0]


# --- the doctor's pictures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("port-filtered", lambda: doctor_case("port_filtered")),
        ("mtu-blackhole", lambda: doctor_case("mtu_blackhole")),
        ("ipv6-closed", doctor_ipv6_closed),
        ("hostile", doctor_hostile),
    ],
)
def test_a_doctor_page_shows_the_broken_stage_with_its_word(
    browser: Browser, tmp_path: Path, name: str, build: Any
) -> None:
    report = build()
    url = _write(tmp_path, f"doctor-{name}.html", doctor_html(report))

    def check(page: Any, size: str) -> None:
        _fits_the_screen(page, size)
        visible = page.locator("svg.sp-doc").filter(visible=True)
        assert visible.count() == 1  # the wide path on a laptop, the narrow one on a phone
        broken = visible.locator("g.node.fail").filter(has_text="BROKEN HERE")
        assert broken.count() == 1 and broken.first.is_visible()
        assert report.failed_stage in broken.first.text_content()
        verdict = page.get_by_role("region", name="verdict")
        assert f"Broken at {report.failed_stage}" in verdict.inner_text()
        assert page.locator("script, img").count() == 0
        assert page.evaluate("typeof window.alert") == "function"  # nothing replaced it

    records = browser.visit(url, tmp_path / "shots", name=f"doctor-{name}", check=check)
    for record in records.values():
        record.assert_clean()
        assert record.screenshot is not None and record.screenshot.stat().st_size > 10_000


def test_a_healthy_doctor_page_and_its_svg(browser: Browser, tmp_path: Path) -> None:
    report = doctor_case("ok")
    url = _write(tmp_path, "doctor-ok.html", doctor_html(report))

    def check(page: Any, size: str) -> None:
        _fits_the_screen(page, size)
        assert page.get_by_text("✔ HEALTHY").first.is_visible()
        assert page.locator("svg.sp-doc g.node.fail").count() == 0

    for record in browser.visit(url, tmp_path / "shots", name="doctor-ok", check=check).values():
        record.assert_clean()
    svg = _write(tmp_path, "doctor.svg", standalone_svg(doctor_case("upstream_timeout")))

    def check_svg(page: Any, size: str) -> None:
        assert page.locator("text", has_text="BROKEN HERE").count() == 1
        assert page.locator("text", has_text="cause: upstream_timeout").count() == 1

    # a standalone SVG document: Chromium cannot measure a full page of one
    records = browser.visit(svg, tmp_path / "shots", name="doctor-svg", check=check_svg,
                            full_page=False)  # fmt: skip
    for record in records.values():
        record.assert_clean()


# --- the load report ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("open-errors", lambda: load_run("open", failures=True)),
        ("closed", lambda: load_run("closed", hit_every=3)),
        ("find-max", find_max_report),
        ("sweep", sweep_report),
        ("hostile", lambda: load_run("open", url=f"http://[fd20::1]:8080/{HOSTILE}")),
    ],
)
def test_a_load_page_draws_its_charts_and_fits_both_screens(
    browser: Browser, tmp_path: Path, name: str, build: Any
) -> None:
    url = _write(tmp_path, f"load-{name}.html", load_html(build()))

    def check(page: Any, size: str) -> None:
        _fits_the_screen(page, size)
        charts = page.locator("svg[role=img]")
        assert charts.count() >= 4
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 20
        assert page.get_by_role("heading", name="Percentile spectrum").is_visible()
        if name == "find-max":
            assert page.get_by_role("heading", name="Replica estimate: 18 for 3,000 req/s")
        assert page.locator("script, img").count() == 0

    records = browser.visit(url, tmp_path / "shots", name=f"load-{name}", check=check)
    for record in records.values():
        record.assert_clean()


# --- end to end: the commands against a real server --------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, example_model_path: Path) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("serve"), model=example_model_path,
               args=["--store", "off"]) as server:  # fmt: skip
        yield server.url


def _servepath(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
    return subprocess.run([sys.executable, "-m", "servepath", *args], capture_output=True,
                          text=True, timeout=90, env=env)  # fmt: skip


def test_doctor_writes_html_and_svg_beside_its_json_against_a_real_server(
    service: str, browser: Browser, tmp_path: Path
) -> None:
    page, picture = tmp_path / "doctor.html", tmp_path / "doctor.svg"
    result = _servepath("doctor", f"{service}/decisions", "--json", "--html", str(page),
                        "--svg", str(picture))  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)  # the JSON is what it always was
    assert report["ok"] and report["cause"] == "ok"
    assert picture.read_text().startswith("<?xml")

    def check(tab: Any, size: str) -> None:
        _fits_the_screen(tab, size)
        assert tab.get_by_text("✔ HEALTHY").first.is_visible()
        assert service.removeprefix("http://") in tab.locator("header").inner_text()

    records = browser.visit(page.as_uri(), tmp_path / "shots", name="e2e-doctor", check=check)
    for record in records.values():
        record.assert_clean()


def test_doctor_says_why_a_picture_cannot_be_written_and_keeps_its_report(
    service: str, tmp_path: Path
) -> None:
    nowhere = tmp_path / "no-such-dir" / "doctor.html"
    result = _servepath("doctor", f"{service}/decisions", "--json", "--html", str(nowhere))
    assert result.returncode == 2
    assert json.loads(result.stdout)["ok"]
    assert f"cannot write {nowhere}: No such file or directory" in result.stderr


def test_a_broken_path_writes_its_picture_and_keeps_exit_1(tmp_path: Path) -> None:
    from tests.support import free_port

    page = tmp_path / "broken.html"
    port = free_port()  # nothing listens there
    result = _servepath("doctor", f"http://127.0.0.1:{port}/decisions", "--html", str(page),
                        "--large-kb", "0", "--timeout", "0.5")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "broken at: transport" in result.stdout  # the terminal output as it always was
    assert "BROKEN HERE" in page.read_text()


def test_load_writes_its_html_report_from_a_bounded_run(
    service: str, browser: Browser, tmp_path: Path
) -> None:
    page = tmp_path / "load.html"
    result = _servepath("load", service, "--requests", "50", "--concurrency", "2",
                        "--html", str(page), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["written"]["html"] == str(page) and report["sent"] == 50

    def check(tab: Any, size: str) -> None:
        _fits_the_screen(tab, size)
        cards = tab.get_by_role("group", name="headline numbers").inner_text()
        assert "50" in cards and "0.00% of sent" in cards

    records = browser.visit(page.as_uri(), tmp_path / "shots", name="e2e-load", check=check)
    for record in records.values():
        record.assert_clean()
    text = _servepath("load", service, "--requests", "20", "--concurrency", "2", "--html",
                      str(tmp_path / "missing" / "x.html"))  # fmt: skip
    assert text.returncode == 2 and "cannot write" in text.stderr
    assert "closed loop at concurrency 2" in text.stdout  # the run's own output stands
