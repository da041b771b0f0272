"""Small SVG charts drawn by hand: lines and points on linear or logarithmic axes, and
horizontal bars. Each chart is a ``role="img"`` with a title and a description that say
what it shows; every point carries a ``<title>`` with its values, and the page puts the
numbers in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servepath.render.markup import el, empty, esc, text_el

#: Colour-blind-safe series colours (Okabe–Ito).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#6e7781")


@dataclass(frozen=True)
class Scale:
    """Maps data values onto ``0..1``; logarithmic scales take positive values only."""

    low: float
    high: float
    log: bool = False

    def norm(self, value: float) -> float:
        if self.log:
            value, low, high = (math.log10(max(v, 1e-9)) for v in (value, self.low, self.high))
        else:
            low, high = self.low, self.high
        return 0.5 if high == low else (value - low) / (high - low)


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]
    colour: str
    dashed: bool = False
    #: marks on the points: "circle", "cross", or "" for a bare line
    marker: str = ""
    line: bool = True
    #: one marker per point (overrides ``marker``): e.g. pass as circles, fail as crosses
    markers: tuple[str, ...] = ()
    #: one tooltip per point; the default says the label and both values
    tips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the chart at ``y``, e.g. an SLO threshold."""

    y: float
    label: str
    colour: str = "#cf222e"


@dataclass(frozen=True)
class Axes:
    x: Scale
    y: Scale
    x_ticks: tuple[float, ...]
    y_ticks: tuple[float, ...]
    x_label: str
    y_label: str
    x_format: Callable[[float], str] = field(default=lambda v: f"{v:g}")
    y_format: Callable[[float], str] = field(default=lambda v: f"{v:g}")


W, H = 520, 280
LEFT, RIGHT, TOP, BOTTOM = 58, 28, 16, 44


def nice_ticks(low: float, high: float, count: int = 5) -> tuple[float, ...]:
    """Round tick values (1, 2, 2.5, 5 × 10ⁿ steps) covering ``low``..``high``."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return tuple(ticks)


def _marker(kind: str, x: float, y: float, colour: str, tip: str) -> str:
    title = el("title", esc(tip))
    if kind == "cross":
        a, b, c, e = x - 5, x + 5, y - 5, y + 5
        d = f"M{a:.1f},{c:.1f} L{b:.1f},{e:.1f} M{a:.1f},{e:.1f} L{b:.1f},{c:.1f}"
        return el("path", title, d=d, stroke=colour, stroke_width=2.5, fill="none")
    if kind == "square":
        return el("rect", title, x=f"{x - 4:.1f}", y=f"{y - 4:.1f}", width=8, height=8, fill=colour)
    return el(
        "circle",
        title,
        cx=f"{x:.1f}",
        cy=f"{y:.1f}",
        r=4,
        fill=colour,
        stroke="#ffffff",
        stroke_width=1,
    )


def line_chart(
    title: str,
    axes: Axes,
    series: Sequence[Series],
    *,
    rules: Sequence[Rule] = (),
    marks: Sequence[Rule] = (),
    description: str = "",
    width: int = W,
    height: int = H,
) -> str:
    """One chart: axes with ticks and gridlines, the series, horizontal ``rules`` and
    vertical ``marks`` (a :class:`Rule` whose ``y`` is read as an x value)."""
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(v: float) -> float:
        return LEFT + pw * axes.x.norm(v)

    def py(v: float) -> float:
        return TOP + ph * (1 - axes.y.norm(v))

    grid = []
    for t in axes.y_ticks:
        y = py(t)
        grid.append(
            empty("line", x1=LEFT, x2=LEFT + pw, y1=f"{y:.1f}", y2=f"{y:.1f}", stroke="#eaeef2")
        )
        grid.append(
            text_el("text", axes.y_format(t), x=LEFT - 6, y=f"{y + 4:.1f}", text_anchor="end")
        )
    for t in axes.x_ticks:
        x = px(t)
        grid.append(
            empty(
                "line", x1=f"{x:.1f}", x2=f"{x:.1f}", y1=TOP + ph, y2=TOP + ph + 5, stroke="#8c959f"
            )
        )
        grid.append(
            text_el("text", axes.x_format(t), x=f"{x:.1f}", y=TOP + ph + 18, text_anchor="middle")
        )
    frame = [
        empty("path", d=f"M{LEFT},{TOP} V{TOP + ph} H{LEFT + pw}", stroke="#8c959f", fill="none"),
        text_el(
            "text",
            axes.x_label,
            x=LEFT + pw / 2,
            y=height - 6,
            text_anchor="middle",
            class_="label",
        ),
        text_el(
            "text",
            axes.y_label,
            x=14,
            y=TOP + ph / 2,
            text_anchor="middle",
            class_="label",
            transform=f"rotate(-90 14 {TOP + ph / 2})",
        ),
    ]
    drawn = []
    for s in series:
        pts = [(px(x), py(y)) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        if s.line and len(pts) > 1:
            d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            drawn.append(
                empty(
                    "path",
                    d=d,
                    stroke=s.colour,
                    fill="none",
                    stroke_width=2,
                    stroke_dasharray="6 4" if s.dashed else None,
                    stroke_linejoin="round",
                )
            )
        for i, ((x, y), (dx, dy)) in enumerate(zip(pts, s.points, strict=False)):
            kind = s.markers[i] if i < len(s.markers) else s.marker
            if not kind:
                continue
            tip = s.tips[i] if i < len(s.tips) else f"{s.label}: {dx:g}, {dy:g}"
            drawn.append(_marker(kind, x, y, s.colour, tip))
    for r in rules:
        y = py(r.y)
        drawn.append(
            empty(
                "line",
                x1=LEFT,
                x2=LEFT + pw,
                y1=f"{y:.1f}",
                y2=f"{y:.1f}",
                stroke=r.colour,
                stroke_width=1.5,
                stroke_dasharray="4 3",
            )
        )
        drawn.append(
            text_el(
                "text",
                r.label,
                x=LEFT + pw - 4,
                y=f"{y - 5:.1f}",
                text_anchor="end",
                fill=r.colour,
                font_size=12,
            )
        )
    for m in marks:
        x = px(m.y)
        drawn.append(
            empty(
                "line",
                x1=f"{x:.1f}",
                x2=f"{x:.1f}",
                y1=TOP,
                y2=TOP + ph,
                stroke=m.colour,
                stroke_width=1.5,
                stroke_dasharray="4 3",
            )
        )
        drawn.append(
            text_el(
                "text",
                m.label,
                x=f"{x - 5:.1f}",
                y=TOP + 12,
                text_anchor="end",
                fill=m.colour,
                font_size=12,
            )
        )
    return el(
        "svg",
        el("title", esc(title)),
        el("desc", esc(description)) if description else "",
        el("g", *grid, *frame, class_="axis"),
        el("g", *drawn),
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        role="img",
        aria_label=title + (f": {description}" if description else ""),
    )


def legend(series: Sequence[Series], rules: Sequence[Rule] = ()) -> str:
    """The series' names and colours, as an HTML list under the chart."""
    items = [text_el("li", s.label, style=f"--c:{s.colour}") for s in series]
    items += [text_el("li", r.label, style=f"--c:{r.colour}") for r in rules]
    return el("ul", *items, class_="legend", aria_hidden="true")


def hbars(
    title: str,
    rows: Sequence[tuple[str, float, str]],
    *,
    unit: str = "",
    width: int = W,
    value_format: Callable[[float], str] = lambda v: f"{v:g}",
) -> str:
    """Horizontal bars, one per ``(label, value, colour)``, the value written at its end."""
    bar_h, gap, label_w = 22, 8, 190
    height = max(1, len(rows)) * (bar_h + gap) + 8
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    span = width - label_w - 120
    out = []
    for i, (label, value, colour) in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        w = max(span * value / top, 1.5 if value > 0 else 0)
        text = value_format(value) + (f" {unit}" if unit else "")
        out.append(
            el(
                "g",
                el("title", esc(f"{label}: {text}")),
                text_el("text", label, x=label_w - 8, y=y + 15, text_anchor="end", font_size=13),
                empty("rect", x=label_w, y=y, width=f"{w:.1f}", height=bar_h, fill=colour, rx=3),
                text_el(
                    "text",
                    text,
                    x=f"{label_w + w + 6:.1f}",
                    y=y + 15,
                    font_size=13,
                    font_weight=600,
                ),
            )
        )
    return el(
        "svg",
        el("title", esc(title)),
        *out,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        role="img",
        aria_label=title,
    )
