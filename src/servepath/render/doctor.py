"""The doctor's report as a picture: the stages in path order, left to right, each a node with
its status as a colour, a shape and a word; the time each stage took on the edge into it; the
broken one marked and the verdict (cause, who fixes it, the fix) beside the path.

:func:`doctor_svg` draws the standalone SVG (``servepath doctor --svg``), :func:`doctor_html`
the page (``--html``) with the same picture, the verdict, the time split and every stage's
data as text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servepath.netdiag.doctor.report import DoctorReport, Stage, StageStatus
from servepath.output import dumps
from servepath.render.markup import el, empty, esc, ms, table, text_el, wrap
from servepath.render.page import page

__all__ = ["StageNode", "doctor_html", "doctor_svg", "stage_nodes", "stage_time_ms"]

NODE_W, NODE_H, GAP, ROW_GAP, MARGIN, HEAD_H = 156, 92, 58, 70, 16, 62
#: Room right of a row for the line that wraps to the next one.
WRAP = 12

#: How each status looks: (colour, pale fill, word on the node, symbol).
STATUS_LOOK: dict[StageStatus, tuple[str, str, str, str]] = {
    "ok": ("#1a7f37", "#dafbe1", "ok", "✔"),
    "warn": ("#9a6700", "#fff8c5", "WARNING", "!"),
    "fail": ("#cf222e", "#ffebe9", "BROKEN HERE", "✘"),
    "skip": ("#6e7781", "#f6f8fa", "skipped", "–"),
}


@dataclass(frozen=True)
class StageNode:
    """What a node of the picture shows for one stage."""

    name: str
    status: StageStatus
    word: str
    lines: tuple[str, ...]
    summary: str
    time_ms: float | None
    broken: bool


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _phases_total(data: Mapping[str, Any]) -> float | None:
    phases = data.get("phases")
    return _num(phases.get("total_ms")) if isinstance(phases, Mapping) else None


def stage_time_ms(stage: Stage) -> float | None:
    """How long the stage's own probe took, when its data says: a DNS answer, the asked
    port's round trip, the TLS handshake, an HTTP request's total, the request's whole time
    for the latency stage."""
    d = stage.data
    if not d:
        return None
    if stage.name == "dns":
        times = [_num(a.get("elapsed_ms")) for a in d.get("answers", ()) if isinstance(a, Mapping)]
        known = [t for t in times if t is not None]
        return max(known) if known else None
    if stage.name == "transport":
        ports = d.get("ports") or ()
        return _num(ports[0].get("rtt_ms")) if ports and isinstance(ports[0], Mapping) else None
    if stage.name == "tls":
        return _num(d.get("handshake_ms"))
    if stage.name == "route":
        hops = [h for h in d.get("hops", ()) if isinstance(h, Mapping) and h.get("rtt_ms")]
        if hops:
            return _num(min(hops[-1]["rtt_ms"]))
        return None
    if stage.name in ("http", "app"):
        return _phases_total(d)
    if stage.name == "large request":
        request = d.get("request")
        return _phases_total(request) if isinstance(request, Mapping) else None
    if stage.name == "latency":
        parts = d.get("parts")
        return _num(parts.get("total_ms")) if isinstance(parts, Mapping) else None
    return None


def stage_nodes(report: DoctorReport) -> tuple[StageNode, ...]:
    """The nodes of the path, in the order a request meets the stages."""
    nodes = []
    for stage in report.stages:
        word = STATUS_LOOK[stage.status][2]
        broken = stage.name == report.failed_stage
        if stage.status == "fail" and not broken:
            word = "FAILED"
        nodes.append(
            StageNode(
                stage.name,
                stage.status,
                word,
                tuple(fit_lines(stage.summary, FACT_WIDTH, lines=2)),
                stage.summary,
                stage_time_ms(stage),
                broken,
            )
        )
    return tuple(nodes)


#: The room for a fact line inside a node, in pixels of the 11 px ``.fact`` font.
FACT_WIDTH = NODE_W - 24
_FACT_PX = 11.0


def _glyph_px(ch: str) -> float:
    """A generous width of one glyph at 11 px (DejaVu Sans, the widest of the fonts the CSS
    names): a cipher suite's capitals and digits are far wider than the average letter."""
    if ch.isupper() or ch in "%@&#WMmw":
        return 0.78 * _FACT_PX
    if ch.isdigit() or ch in "_?$~+=<>":
        return 0.66 * _FACT_PX
    if ch in " .,:;'|!il()[]{}/-":
        return 0.36 * _FACT_PX
    return 0.62 * _FACT_PX


def text_px(text: str) -> float:
    return sum(_glyph_px(ch) for ch in text)


def fit_lines(text: str, width: float, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines that each fit ``width`` pixels by the glyphs' own
    widths (a word too long for a line is broken); the last ends in an ellipsis when text
    was left out. Counting characters lets TLS_AES_256_GCM_SHA384 run past its box."""
    out: list[str] = []
    current = ""
    for word in " ".join(text.split()).split(" "):
        candidate = f"{current} {word}" if current else word
        if text_px(candidate) <= width:
            current = candidate
            continue
        if current:
            out.append(current)
        current = ""
        for ch in word:  # a word wider than a line: broken where it must be
            if text_px(current + ch) > width:
                out.append(current)
                current = ""
            current += ch
    out.append(current)
    if len(out) > lines:
        out = out[:lines]
        last = out[-1]
        while last and text_px(last + "…") > width:
            last = last[:-1]
        out[-1] = last.rstrip() + "…"
    return out


# --- the picture ---------------------------------------------------------------------------

_SVG_CSS = """
.sp-doc text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
  sans-serif; fill: #1f2328; }
.sp-doc .name { font-size: 14px; font-weight: 700; }
.sp-doc .word { font-size: 11px; font-weight: 700; letter-spacing: .04em; }
.sp-doc .fact { font-size: 11px; fill: #424a53; }
.sp-doc .edge { stroke: #8c959f; stroke-width: 2; fill: none; }
.sp-doc .edge.after { stroke-dasharray: 5 5; stroke: #c9d1d9; }
.sp-doc .time { font-size: 11px; fill: #1f2328; font-weight: 600; }
.sp-doc .title { font-size: 16px; font-weight: 700; }
.sp-doc .sub { font-size: 12px; fill: #59636e; }
.sp-doc .vh { font-size: 14px; font-weight: 700; }
.sp-doc .vt { font-size: 12.5px; }
.sp-doc .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
"""


def _symbol(status: StageStatus, cx: float, cy: float, colour: str) -> str:
    """The status as a shape too: circle (ok), triangle (warning), octagon (broken), dashed
    circle (skipped), each with its sign inside."""
    r = 11
    if status == "warn":
        pts = f"{cx},{cy - r - 1} {cx + r + 1},{cy + r - 2} {cx - r - 1},{cy + r - 2}"
        shape = empty("polygon", points=pts, fill=colour)
        sign_y = cy + 6
    elif status == "fail":
        pts = " ".join(
            f"{cx + r * math.cos(math.pi / 8 + k * math.pi / 4):.1f},"
            f"{cy + r * math.sin(math.pi / 8 + k * math.pi / 4):.1f}"
            for k in range(8)
        )
        shape = empty("polygon", points=pts, fill=colour)
        sign_y = cy + 4.5
    elif status == "skip":
        shape = empty(
            "circle",
            cx=cx,
            cy=cy,
            r=r - 1,
            fill="#ffffff",
            stroke=colour,
            stroke_width=1.5,
            stroke_dasharray="3 2",
        )
        sign_y = cy + 4.5
    else:
        shape = empty("circle", cx=cx, cy=cy, r=r, fill=colour)
        sign_y = cy + 4.5
    sign_colour = colour if status == "skip" else "#ffffff"
    _, _, _, sign = STATUS_LOOK[status]
    sign_el = text_el(
        "text",
        sign,
        x=cx,
        y=sign_y,
        text_anchor="middle",
        font_size=13,
        font_weight=700,
        fill=sign_colour,
        aria_hidden="true",
    )
    return shape + sign_el


def _node(node: StageNode, x: float, y: float, index: int) -> str:
    colour, fill, _, _ = STATUS_LOOK[node.status]
    width = 4 if node.broken else 2 if node.status != "skip" else 1.5
    parts = [
        el("title", esc(f"{index}. {node.name}: {node.word} — {node.summary}")),
        empty(
            "rect",
            x=x,
            y=y,
            width=NODE_W,
            height=NODE_H,
            rx=10,
            fill=fill,
            stroke=colour,
            stroke_width=width,
            stroke_dasharray="5 4" if node.status == "skip" else None,
        ),
    ]
    if node.broken:  # a second outline: the broken stage stands out without its colour too
        parts.append(
            empty(
                "rect",
                x=x - 5,
                y=y - 5,
                width=NODE_W + 10,
                height=NODE_H + 10,
                rx=14,
                fill="none",
                stroke=colour,
                stroke_width=1.5,
            )
        )
    parts.append(_symbol(node.status, x + 19, y + 19, colour))
    parts.append(text_el("text", node.name, x=x + 36, y=y + 24, class_="name"))
    parts.append(text_el("text", node.word, x=x + 12, y=y + 48, class_="word", fill=colour))
    for i, line in enumerate(node.lines):
        parts.append(text_el("text", line, x=x + 12, y=y + 64 + 14 * i, class_="fact"))
    label = f"stage {index}, {node.name}: {node.word}. {node.summary}"
    return el("g", *parts, role="listitem", aria_label=label, class_=f"node {node.status}")


def _positions(count: int, columns: int, top: float) -> list[tuple[float, float]]:
    return [
        (MARGIN + (i % columns) * (NODE_W + GAP), top + (i // columns) * (NODE_H + ROW_GAP))
        for i in range(count)
    ]


def _edges(nodes: Sequence[StageNode], pos: Sequence[tuple[float, float]], columns: int) -> str:
    out = []
    broken_at = next((i for i, n in enumerate(nodes) if n.broken), None)
    for i in range(1, len(nodes)):
        (x0, y0), (x1, y1) = pos[i - 1], pos[i]
        after = broken_at is not None and i > broken_at
        cls = "edge after" if after else "edge"
        marker = "url(#sp-arrow-after)" if after else "url(#sp-arrow)"
        mid0 = y0 + NODE_H / 2
        if y0 == y1:
            d = f"M{x0 + NODE_W + 2},{mid0} H{x1 - 6}"
            tx, ty = (x0 + NODE_W + x1) / 2, mid0 - 8
        else:  # wrap to the next row, as a line of text does, into the top of its first node
            turn = y0 + NODE_H + ROW_GAP * 0.72
            d = f"M{x0 + NODE_W + 2},{mid0} h{WRAP} V{turn} H{x1 + NODE_W / 2} V{y1 - 6}"
            tx, ty = x1 + NODE_W / 2 + 8, y1 - 8
        out.append(empty("path", d=d, class_=cls, marker_end=marker))
        t = nodes[i].time_ms
        if t is not None:
            anchor = "middle" if y0 == y1 else "start"
            out.append(
                el(
                    "text",
                    esc(ms(t)),
                    el("title", esc(f"{nodes[i].name} took {ms(t)}")),
                    x=tx,
                    y=ty,
                    text_anchor=anchor,
                    class_="time",
                )
            )
    return "".join(out)


def _marker(ident: str, colour: str) -> str:
    return el(
        "marker",
        empty("path", d="M0,0 L10,5 L0,10 z", fill=colour),
        id=ident,
        viewBox="0 0 10 10",
        refX=9,
        refY=5,
        markerWidth=7,
        markerHeight=7,
        orient="auto-start-reverse",
    )


def _verdict_lines(report: DoctorReport, chars: int) -> list[tuple[str, str]]:
    """(class, text) lines of the verdict box."""
    e = report.explanation
    if report.ok:
        lines = [("vh ok", f"✔ healthy — {e.meaning} ({report.elapsed_s:.2f} s)")]
        warned = [s.name for s in report.stages if s.status == "warn"]
        if warned:
            lines.append(("vt", f"! warnings in: {', '.join(warned)}"))
        return lines + _warning_lines(report, chars)
    lines = [
        ("vh fail", f"✘ broken at {report.failed_stage} — cause: {report.cause}"),
        ("vt", f"who fixes it: {e.owner}"),
    ]
    lines += [("vt", line) for line in wrap(f"what it means: {e.meaning}", chars)]
    if e.fix:
        lines.append(("vt b", "fix:"))
        for fix in e.fix:
            indent = len(fix) - len(fix.lstrip())
            for j, line in enumerate(wrap(fix, chars - 4 - indent)):
                lines.append(("mono", " " * (2 + indent + (2 if j else 0)) + line))
    return lines + _warning_lines(report, chars)


def _warning_lines(report: DoctorReport, chars: int) -> list[tuple[str, str]]:
    """The causes that warning stages name, under the verdict: what, who, the fix."""
    lines: list[tuple[str, str]] = []
    for w in report.warnings:
        lines.append(("vt b", f"! warning at {w.stage} — cause: {w.cause}"))
        lines.append(("vt", f"who fixes it: {w.explanation.owner}"))
        lines += [("vt", line) for line in wrap(f"what it means: {w.explanation.meaning}", chars)]
        for fix in w.explanation.fix:
            for j, line in enumerate(wrap(fix, chars - 4)):
                lines.append(("mono", " " * (2 + (2 if j else 0)) + line))
    return lines


def doctor_svg(report: DoctorReport, *, columns: int = 6, verdict: bool = True) -> str:
    """The path as a standalone SVG document: ``columns`` nodes a row, then the verdict."""
    nodes = stage_nodes(report)
    columns = max(1, min(columns, len(nodes) or 1))
    rows = max(1, math.ceil(len(nodes) / columns))
    width = 2 * MARGIN + WRAP + columns * NODE_W + (columns - 1) * GAP
    top = HEAD_H if verdict else MARGIN
    pos = _positions(len(nodes), columns, top)
    path_bottom = top + rows * NODE_H + (rows - 1) * ROW_GAP
    chars = int((width - 2 * MARGIN - 28) / 7.1)
    lines = _verdict_lines(report, chars) if verdict else []
    box_top = path_bottom + 34
    box_h = 22 + 19 * len(lines) if lines else 0
    height = (box_top + box_h + MARGIN) if lines else path_bottom + 34
    broken = next((n for n in nodes if n.broken), None)
    ok_colour, fail_colour = STATUS_LOOK["ok"][0], STATUS_LOOK["fail"][0]
    state = "healthy" if report.ok else f"broken at {report.failed_stage}: {report.cause}"
    head = [
        text_el("text", "servepath doctor", x=MARGIN, y=24, class_="title"),
        text_el(
            "text",
            "✔ HEALTHY" if report.ok else f"✘ BROKEN AT {(report.failed_stage or '').upper()}",
            x=width - MARGIN,
            y=24,
            text_anchor="end",
            class_="vh",
            fill=ok_colour if report.ok else fail_colour,
        ),
        text_el("text", report.url, x=MARGIN, y=44, class_="mono"),
    ]
    body = [
        el("title", esc(f"servepath doctor {report.url}: {state}")),
        el("desc", esc(" → ".join(f"{n.name} ({n.word})" for n in nodes))),
        el("style", _SVG_CSS),
        el("defs", _marker("sp-arrow", "#8c959f"), _marker("sp-arrow-after", "#c9d1d9")),
        empty("rect", x=0, y=0, width=width, height=height, fill="#ffffff"),
        *(head if verdict else ()),
        _edges(nodes, pos, columns),
        el(
            "g",
            *(_node(n, x, y, i + 1) for i, (n, (x, y)) in enumerate(zip(nodes, pos, strict=True))),
            role="list",
            aria_label="the stages of the path",
        ),
    ]
    if broken is not None:
        i = nodes.index(broken)
        bx, by = pos[i]
        body.append(
            text_el(
                "text",
                "▲ the first broken link",
                x=bx + NODE_W / 2,
                y=by + NODE_H + 22,
                text_anchor="middle",
                class_="vh",
                fill=fail_colour,
            )
        )
    if lines:
        colour = ok_colour if report.ok else fail_colour
        box = [
            empty(
                "rect",
                x=MARGIN,
                y=box_top,
                width=width - 2 * MARGIN,
                height=box_h,
                rx=8,
                fill="#f6f8fa",
                stroke="#d1d9e0",
            ),
            empty("rect", x=MARGIN, y=box_top, width=6, height=box_h, fill=colour),
        ]
        for k, (cls, line) in enumerate(lines):
            fill = colour if cls.startswith("vh") else None
            weight = 700 if cls.endswith(" b") else None
            box.append(
                text_el(
                    "text",
                    line,
                    x=MARGIN + 20,
                    y=box_top + 24 + 19 * k,
                    class_=cls.split()[0],
                    fill=fill,
                    font_weight=weight,
                    **({"xml:space": "preserve"} if cls == "mono" else {}),
                )
            )
        body.append(el("g", *box, class_="verdict"))
    return el(
        "svg",
        *body,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        role="img",
        class_="sp-doc",
        aria_label=f"servepath doctor: {state}",
    )


def standalone_svg(report: DoctorReport) -> str:
    """:func:`doctor_svg` as a file: an XML declaration, then the drawing."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + doctor_svg(report) + "\n"


# --- the page ------------------------------------------------------------------------------

_PART_NAMES = (
    ("dns_ms", "DNS", "#56b4e9"),
    ("connect_ms", "connect", "#009e73"),
    ("tls_ms", "TLS", "#cc79a7"),
    ("server_ms", "server", "#0072b2"),
    ("network_and_proxies_ms", "network and proxies", "#e69f00"),
)


def _time_split(report: DoctorReport) -> str:
    """A stacked bar of where the request's time went (the latency stage's parts)."""
    stage = report.stage("latency")
    parts = stage.data.get("parts") if stage is not None else None
    if not isinstance(parts, Mapping):
        return ""
    total = _num(parts.get("total_ms")) or 0.0
    values = [(label, _num(parts.get(key)) or 0.0, colour) for key, label, colour in _PART_NAMES]
    if total <= 0:
        return ""
    width, bar_h = 1000, 40
    x = 0.0
    rects, legend = [], []
    for label, value, colour in values:
        w = width * value / total
        share = value / total
        rects.append(
            el(
                "rect",
                el("title", esc(f"{label}: {ms(value)} ({share:.0%})")),
                x=f"{x:.1f}",
                y=0,
                width=f"{max(w, 0):.1f}",
                height=bar_h,
                fill=colour,
            )
        )
        x += w
        legend.append(text_el("li", f"{label} {ms(value)}", style=f"--c:{colour}"))
    label = "where the time went: " + ", ".join(f"{lab} {ms(v)}" for lab, v, _ in values)
    svg = el(
        "svg",
        *rects,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {bar_h}",
        preserveAspectRatio="none",
        style="height:40px",
        role="img",
        aria_label=label,
    )
    dominant = stage.data.get("dominant") if stage is not None else None
    rows = [(lab, ms(v), f"{v / total:.0%}") for lab, v, _ in values]
    return el(
        "section",
        text_el("h2", f"Where the time went: {ms(total)}"),
        text_el("p", f"{dominant} dominates" if dominant else "", class_="lead"),
        el("figure", svg, el("ul", *legend, class_="legend", aria_hidden="true")),
        el(
            "details",
            el("summary", "the numbers"),
            table(("part", "time", "share"), [*rows, ("total", ms(total), "100%")], numeric=(1, 2)),
        ),
    )


def _warnings_html(report: DoctorReport) -> str:
    """One section per cause that a warning stage names."""
    parts = []
    for w in report.warnings:
        items = [
            ("warning at", w.stage),
            ("cause", w.cause),
            ("what it means", w.explanation.meaning),
            ("who fixes it", w.explanation.owner),
        ]
        dl = el("dl", *(text_el("dt", k) + text_el("dd", v) for k, v in items))
        fix = w.explanation.fix
        body = (text_el("h3", "Fix") + text_el("pre", "\n".join(fix), class_="fix")) if fix else ""
        parts.append(
            el(
                "section",
                text_el("h2", f"! Warning at {w.stage}: {w.cause}"),
                dl,
                body,
                class_="verdict warn",
                aria_label=f"warning: {w.cause}",
            )
        )
    return "".join(parts)


def _verdict_html(report: DoctorReport) -> str:
    return _verdict_only_html(report) + _warnings_html(report)


def _verdict_only_html(report: DoctorReport) -> str:
    e = report.explanation
    if report.ok:
        warned = [s.name for s in report.stages if s.status == "warn"]
        extra = text_el("p", f"! warnings in: {', '.join(warned)}", class_="warn") if warned else ""
        return el(
            "section",
            text_el("h2", f"✔ Healthy: {e.meaning}"),
            extra,
            class_="verdict ok",
            aria_label="verdict",
        )
    items = [
        ("broken at", report.failed_stage or ""),
        ("cause", report.cause),
        ("what it means", e.meaning),
        ("who fixes it", e.owner),
    ]
    dl = el("dl", *(text_el("dt", k) + text_el("dd", v) for k, v in items))
    fix = (text_el("h3", "Fix") + text_el("pre", "\n".join(e.fix), class_="fix")) if e.fix else ""
    return el(
        "section",
        text_el("h2", f"✘ Broken at {report.failed_stage}: {report.cause}"),
        dl,
        fix,
        class_="verdict fail",
        aria_label="verdict",
    )


def _stage_table(report: DoctorReport) -> str:
    rows = []
    classes = []
    for i, (stage, node) in enumerate(zip(report.stages, stage_nodes(report), strict=True)):
        _, _, _, sign = STATUS_LOOK[stage.status]
        rows.append(
            (
                i + 1,
                stage.name,
                f"{sign} {node.word}",
                ms(node.time_ms) if node.time_ms is not None else "",
                stage.summary,
            )
        )
        classes.append(stage.status)
    return table(
        ("#", "stage", "status", "time", "what the doctor saw"),
        rows,
        numeric=(0, 3),
        row_class=classes,
        column_class={0: "wide-cell", 1: "nowrap", 2: "nowrap", 3: "wide-cell"},
    )


def _hops(report: DoctorReport) -> str:
    stage = report.stage("route")
    hops = stage.data.get("hops") if stage is not None else None
    quality = stage.data.get("quality") if stage is not None else None
    if isinstance(quality, Mapping) and quality.get("hops"):
        return _quality_hops(quality)
    if not hops:
        return ""
    rows = [
        (
            h.get("ttl"),
            h.get("address") or "* (no answer)",
            h.get("name") or "",
            ", ".join(ms(_num(r)) for r in h.get("rtt_ms") or ()),
        )
        for h in hops
        if isinstance(h, Mapping)
    ]
    return el(
        "section",
        text_el("h2", "Route: the hops on the way"),
        table(("TTL", "address", "name", "round trips"), rows, numeric=(0,)),
    )


def _quality_hops(quality: Mapping[str, Any]) -> str:
    """The hops as mtr shows them: sent, lost, best and median round trip; the hop where
    the loss starts and the one where the time jumps are named in a column of their own."""
    start = quality.get("start") if quality.get("lossy") else None
    jump = quality.get("jump")
    rows = []
    for h in quality.get("hops") or ():
        if not isinstance(h, Mapping):
            continue
        notes = []
        if isinstance(start, Mapping) and start.get("ttl") == h.get("ttl"):
            notes.append("loss starts here")
        if isinstance(jump, Mapping) and jump.get("ttl") == h.get("ttl"):
            notes.append(f"time jumps +{ms(_num(quality.get('jump_ms')))}")
        who = h.get("address") or "* (no answer)"
        rows.append(
            (
                h.get("ttl"),
                f"{who} (the service: {h.get('sent')} connections)" if h.get("target") else who,
                f"{h.get('lost')} of {h.get('sent')} ({h.get('loss_pct')}%)",
                ms(_num(h.get("best_ms"))) if h.get("best_ms") is not None else "",
                ms(_num(h.get("median_ms"))) if h.get("median_ms") is not None else "",
                "; ".join(notes),
            )
        )
    return el(
        "section",
        text_el("h2", "Route: the hops on the way, their loss and round trips"),
        table(("TTL", "address", "lost", "best", "median", "note"), rows, numeric=(0,)),
    )


def _stage_data(report: DoctorReport) -> str:
    blocks = []
    for stage in report.stages:
        if not stage.data:
            continue
        text = dumps(stage.data)  # as --json writes it
        blocks.append(
            el("details", text_el("summary", f"{stage.name}: the data"), text_el("pre", text))
        )
    return el("section", text_el("h2", "Each stage's data"), *blocks) if blocks else ""


def doctor_html(report: DoctorReport, *, generated: str | None = None) -> str:
    """The report as one self-contained HTML page; ``generated`` (text) goes in the footer."""
    state = "healthy" if report.ok else f"broken at {report.failed_stage}"
    badge = (
        text_el("span", "✔ HEALTHY", class_="badge ok")
        if report.ok
        else text_el(
            "span", f"✘ BROKEN AT {(report.failed_stage or '').upper()}", class_="badge fail"
        )
    )
    header = el(
        "header",
        text_el("h1", "servepath doctor"),
        text_el("span", report.url, class_="url"),
        badge,
        class_="top",
    )
    picture = el(
        "figure",
        el("div", doctor_svg(report, columns=6, verdict=False), class_="wide-only"),
        el("div", doctor_svg(report, columns=2, verdict=False), class_="narrow-only"),
        text_el(
            "figcaption",
            "each stage a node in the order a request meets it; colour, "
            "shape and word give its status; the time each took is on the edge into it",
        ),
    )
    footer = el(
        "footer",
        esc(
            f"servepath doctor, {report.elapsed_s:.2f} s"
            + (f", {generated}" if generated else "")
            + ". The same data: servepath doctor --json"
        ),
    )
    body = "\n".join(
        [
            header,
            picture,
            _verdict_html(report),
            _time_split(report),
            el("section", text_el("h2", "Stages"), _stage_table(report)),
            _hops(report),
            _stage_data(report),
            footer,
        ]
    )
    return page(f"servepath doctor {report.url}: {state}", body)
