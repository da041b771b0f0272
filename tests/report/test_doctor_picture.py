"""The doctor's report drawn as a path: a node per stage in path order, the broken one marked
by colour, shape and word, times on the edges, the verdict beside it; every string escaped.
Pure: reports come from the diagnose cases, no network."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from servepath.net.listeners import Listener, PortListenReport
from servepath.netdiag.doctor import DoctorReport
from servepath.netdiag.doctor.local import diagnose_local
from servepath.render.doctor import doctor_html, doctor_svg, stage_nodes, standalone_svg
from servepath.render.markup import esc
from tests.report.builders import (
    HOSTILE,
    doctor_case,
    doctor_causes,
    doctor_hostile,
    doctor_ipv6_closed,
    doctor_ipv6_healthy,
    doctor_with_hops,
)
from tests.report.pages import SVG_NS, assert_self_contained, inline_svgs, parse


def _nodes(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG_NS}g") if g.get("role") == "listitem"]


def _texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG_NS}text")]


@pytest.mark.parametrize("cause", doctor_causes())
def test_every_cause_draws_its_stages_in_order_and_marks_only_the_broken_one(
    cause: str,
) -> None:
    report = doctor_case(cause)
    svg = ET.fromstring(standalone_svg(report).encode())
    nodes = _nodes(svg)
    assert [n.get("aria-label", "").split(",")[1].split(":")[0].strip() for n in nodes] == [
        s.name for s in report.stages
    ]
    broken = [n for n in nodes if "BROKEN HERE" in _texts(n)]
    if report.ok:
        assert not broken and "✔ HEALTHY" in _texts(svg)
    else:
        assert len(broken) == 1
        (node,) = broken
        assert report.failed_stage in _texts(node)
        # not colour alone: a word, an octagon and a second outline
        assert any(p.get("points", "").count(",") == 8 for p in node.iter(f"{SVG_NS}polygon"))
        assert len(list(node.iter(f"{SVG_NS}rect"))) == 2
        assert "▲ the first broken link" in _texts(svg)


@pytest.mark.parametrize("cause", doctor_causes())
def test_the_verdict_names_cause_owner_and_every_fix_line(cause: str) -> None:
    report = doctor_case(cause)
    page = doctor_html(report)
    assert_self_contained(page)
    text = " ".join(parse(page).text)
    e = report.explanation
    assert e.meaning in text
    for line in e.fix:
        assert line in text
    if not report.ok:
        assert f"Broken at {report.failed_stage}: {report.cause}" in text
        assert e.owner in text
    svg_text = " ".join(_texts(ET.fromstring(standalone_svg(report).encode())))
    assert (f"cause: {report.cause}" in svg_text) != report.ok


def test_the_edges_carry_each_stage_time() -> None:
    report = doctor_case("ok")
    times = {n.name: n.time_ms for n in stage_nodes(report)}
    assert times["transport"] == 0.3 and times["http"] == 2.0 and times["latency"] == 2.0
    assert times["dns"] is None  # an IP address: nothing resolved, nothing timed
    svg = ET.fromstring(doctor_svg(report).encode())
    labels = [t.text for t in svg.iter(f"{SVG_NS}text") if t.get("class") == "time"]
    assert "0.30 ms" in labels and "2.00 ms" in labels


def test_edges_after_the_broken_stage_are_drawn_as_not_reached() -> None:
    report = doctor_case("port_filtered")
    svg = ET.fromstring(doctor_svg(report).encode())
    edges = [p.get("class") for p in svg.iter(f"{SVG_NS}path") if "edge" in (p.get("class") or "")]
    broken = [s.name for s in report.stages].index("transport")
    assert edges == ["edge"] * broken + ["edge after"] * (len(report.stages) - 1 - broken)


@pytest.mark.parametrize(("columns", "rows"), [(6, 2), (2, 6), (12, 1), (4, 3)])
def test_the_path_wraps_into_rows_of_the_asked_width(columns: int, rows: int) -> None:
    svg = ET.fromstring(doctor_svg(doctor_case("ok"), columns=columns).encode())
    tops = {r.get("y") for n in _nodes(svg) for r in n.iter(f"{SVG_NS}rect") if r.get("rx") == "10"}
    assert len(tops) == rows


def test_ipv6_targets_keep_their_brackets() -> None:
    for report in (doctor_ipv6_closed(), doctor_ipv6_healthy()):
        page = doctor_html(report)
        assert "http://[fd20:2::2]:8088/decisions" in page
        assert "[fd20:2::2]:8088" in standalone_svg(report)
    assert doctor_ipv6_closed().failed_stage == "transport"


def test_a_hostile_server_page_and_url_are_text_never_markup() -> None:
    report = doctor_hostile()
    page = doctor_html(report)
    svg = standalone_svg(report)
    for out in (page, svg):
        assert "<script" not in out and "<img" not in out
        assert "\x00" not in out and "\x1b" not in out
        assert "&lt;script&gt;" in out
    assert_self_contained(page)
    ET.fromstring(svg.encode())  # still well-formed XML
    for element in inline_svgs(page):
        assert element.tag == f"{SVG_NS}svg"
    assert "alert(&quot;x&quot;)" in page  # shown, escaped, in the data and the summary


def test_escaping_covers_text_attributes_and_characters_xml_forbids() -> None:
    assert esc(HOSTILE) == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=http://198.51.100.9/x.png"
        "&gt;&amp;amp;\ufffd\ufffd&#x27;&quot;"
    )
    lone = esc("a\ud800b")  # a lone surrogate cannot be written as UTF-8: replaced
    assert lone.startswith("a\ufffd") and lone.endswith("b") and lone.encode("utf-8")


def test_the_route_hops_are_listed_with_their_round_trips() -> None:
    page = doctor_html(doctor_with_hops())
    text = " ".join(parse(page).text)
    assert "Route: the hops on the way" in text
    assert "10.20.1.1" in text and "* (no answer)" in text and "0.21 ms, 0.25 ms" in text
    assert "<script" not in page


def test_the_page_shows_where_the_time_went() -> None:
    page = doctor_html(doctor_case("slow_server"))
    text = " ".join(parse(page).text)
    assert "Where the time went: 800 ms" in text
    assert "server dominates" in text
    assert 'aria-label="where the time went: DNS 0.00 ms, connect 0.30 ms' in page


def test_the_local_doctor_report_draws_too() -> None:
    listen = PortListenReport(8080, (Listener("tcp", "127.0.0.1", 8080, "loopback", 42, "app",
                                              "python3"),))  # fmt: skip
    report: DoctorReport = diagnose_local(
        8080, listen, {"in_container": False}, (200, "GET / -> 200"), 0.01
    )
    assert report.cause == "bound_to_loopback"
    svg = ET.fromstring(standalone_svg(report).encode())
    assert len([n for n in _nodes(svg) if "BROKEN HERE" in _texts(n)]) == 1
    assert_self_contained(doctor_html(report))


def test_the_tls_nodes_cipher_stays_inside_its_box() -> None:
    from dataclasses import replace

    from servepath.netdiag.doctor import Stage
    from servepath.render.doctor import FACT_WIDTH, fit_lines, stage_nodes, text_px

    summary = "TLSv1.3 TLS_AES_256_GCM_SHA384, trusted, 89 days to expiry"
    # counted in characters (23 a line) a line of capitals runs past the 156 px box
    assert text_px("TLS_AES_256_GCM_SHA384,") > FACT_WIDTH
    base = doctor_case("ok")
    stages = tuple(Stage("tls", "ok", summary) if s.name == "tls" else s for s in base.stages)
    node = next(n for n in stage_nodes(replace(base, stages=stages)) if n.name == "tls")
    assert len(node.lines) == 2
    assert all(text_px(line) <= FACT_WIDTH for line in node.lines), node.lines
    assert "".join(node.lines).startswith("TLSv1.3TLS_AES_256_GCM")
    assert fit_lines("GET / -> 200 in 2.0 ms", FACT_WIDTH, 2) == ["GET / -> 200 in 2.0 ms"]


def test_the_kernels_verdict_and_a_warnings_cause_are_drawn_and_printed() -> None:
    from servepath.render.text_doctor import doctor_lines
    from tests.netdiag.doctor.test_diagnose import (
        _UFW_DENY,
        _docker_publish,
        _kernel_readings,
        _local_report,
    )

    published = _docker_publish()
    kernel = _kernel_readings(queued=3, backlog=2, input_rules=_UFW_DENY, mappings=(published,))
    report: DoctorReport = _local_report(kernel, mappings=(published,))
    assert report.cause == "accept_queue_overflow"
    assert [w.cause for w in report.warnings] == ["published_past_firewall"]
    svg = ET.fromstring(standalone_svg(report).encode())
    broken = [n for n in _nodes(svg) if "BROKEN HERE" in _texts(n)]
    assert len(broken) == 1 and "accept queue" in " ".join(_texts(broken[0]))
    drawn = " ".join(_texts(svg))
    assert "! warning at firewall — cause: published_past_firewall" in drawn
    page = doctor_html(report)
    assert_self_contained(page)
    assert 'aria-label="warning: published_past_firewall"' in page
    assert esc("docker run -p 127.0.0.1:8080:80") in page
    text = "\n".join(line.plain for line in doctor_lines(report))
    assert "cause: accept_queue_overflow" in text
    assert "warning at: firewall   cause: published_past_firewall" in text
    assert report.to_json()["warnings"][0]["owner"] == "server operator"


def test_a_lossy_path_lists_each_hops_loss_and_marks_where_it_starts() -> None:
    page = doctor_html(doctor_case("packet_loss"))
    text = " ".join(parse(page).text)
    assert "Route: the hops on the way, their loss and round trips" in text
    assert "2 of 5 (40.0%)" in text and "27 of 80 (33.8%)" in text
    assert "loss starts here" in text
