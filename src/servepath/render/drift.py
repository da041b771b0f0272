"""A drift as one self-contained page (``servepath drift --html``), from the same report as
``--json``: per model version the verdict, the table of features (drifted first), and each
feature's distributions side by side — reference and current over the same bins (numeric
ranges, or categories) — with the numbers in a table under each chart.
"""

from __future__ import annotations

from collections.abc import Sequence

from servepath.drift import DriftReport, FeatureDrift, VersionDrift
from servepath.output import percent, plural
from servepath.render.charts import PALETTE, Axes, Scale, Series, hbars, legend, line_chart
from servepath.render.charts import nice_ticks as _nice
from servepath.render.markup import el, esc, table, text_el
from servepath.render.page import page
from servepath.render.text_drift import (
    TEST_LABELS,
    moved,
    number,
    ordered,
    share,
    version_name,
    window,
)

__all__ = ["drift_html"]

REFERENCE, CURRENT = PALETTE[0], PALETTE[1]


def _card(key: str, value: str, detail: str = "", tone: str | None = None) -> str:
    return el(
        "div",
        text_el("div", key, class_="k"),
        text_el("div", value, class_=f"v {tone}" if tone else "v"),
        text_el("div", detail, class_="d") if detail else "",
        class_="card",
    )


def _features_table(features: Sequence[FeatureDrift], caption: str) -> str:
    rows = [
        (
            "DRIFT" if f.drifted else "ok",
            f.name,
            f.kind,
            TEST_LABELS.get(f.test or "", "-"),
            number(f.statistic),
            number(f.threshold),
            number(f.psi),
            f"{share(f.reference_missing)} → {share(f.current_missing)}",
            moved(f),
        )
        for f in ordered(features)
    ]
    return table(
        ("", "feature", "kind", "test", "statistic", "threshold", "PSI", "missing", "moved"),
        rows,
        caption=caption,
        numeric=(4, 5, 6, 7),
        row_class=["fail" if f.drifted else None for f in ordered(features)],
        column_class={6: "wide-cell", 7: "wide-cell"},
    )


def _numeric_chart(f: FeatureDrift) -> str:
    d = f.distribution
    if d.edges is not None:
        xs = [(a + b) / 2 for a, b in zip(d.edges[:-1], d.edges[1:], strict=True)]
    else:
        xs = [float(label) for label in d.labels]
    top = max([*d.reference, *d.current, 0.01])
    x_ticks = _nice(min(xs), max(xs)) if len(xs) > 1 else (xs[0] - 1, xs[0] + 1)
    y_ticks = _nice(0.0, top)
    axes = Axes(
        Scale(x_ticks[0], x_ticks[-1]),
        Scale(0.0, y_ticks[-1]),
        x_ticks,
        y_ticks,
        f.name,
        "share of values",
        y_format=lambda v: f"{v:.0%}" if v else "0",
    )
    series = [
        Series("reference", tuple(zip(xs, d.reference, strict=True)), REFERENCE,
               marker="circle", tips=tuple(f"reference {lbl}: {s:.1%}"
                                           for lbl, s in zip(d.labels, d.reference, strict=True))),
        Series("current", tuple(zip(xs, d.current, strict=True)), CURRENT, dashed=True,
               marker="square", tips=tuple(f"current {lbl}: {s:.1%}"
                                           for lbl, s in zip(d.labels, d.current, strict=True))),
    ]  # fmt: skip
    svg = line_chart(
        f"{f.name}: reference and current distributions",
        axes,
        series,
        description="share of values per bin, reference solid, current dashed",
    )
    return svg + legend(series)


def _categorical_chart(f: FeatureDrift) -> str:
    d = f.distribution
    rows: list[tuple[str, float, str]] = []
    for label, ref, cur in zip(d.labels, d.reference, d.current, strict=True):
        rows.append((f"{label} · reference", ref * 100, REFERENCE))
        rows.append((f"{label} · current", cur * 100, CURRENT))
    svg = hbars(
        f"{f.name}: reference and current shares per category",
        rows,
        unit="%",
        value_format=lambda v: f"{v:.1f}",
    )
    series = [Series("reference", (), REFERENCE), Series("current", (), CURRENT)]
    return svg + legend(series)


def _figure(f: FeatureDrift) -> str:
    if not f.distribution.labels:
        chart = text_el("p", f.note or "nothing to draw", class_="lead")
    elif f.kind == "numeric":
        chart = _numeric_chart(f)
    else:
        chart = _categorical_chart(f)
    verdict = "drifted" if f.drifted else "no drift"
    caption = (
        f"{verdict}: {TEST_LABELS.get(f.test or '', 'no test')} {number(f.statistic)} "
        f"(threshold {number(f.threshold)}), PSI {number(f.psi)}"
    )
    d = f.distribution
    numbers = table(
        ("bin" if d.edges is not None else "value", "reference", "current"),
        [
            (lbl, share(r), share(c))
            for lbl, r, c in zip(d.labels, d.reference, d.current, strict=True)
        ],
        numeric=(1, 2),
    )
    title = f"{f.name} ({'prediction, ' if f.role == 'prediction' else ''}{f.kind})"
    return el(
        "figure",
        text_el("h3", title),
        chart,
        text_el("figcaption", caption),
        el("details", el("summary", "the numbers"), numbers),
        class_="fail" if f.drifted else None,
    )


def _version(v: VersionDrift, fail_share: float) -> str:
    count = sum(f.drifted for f in v.features)
    cards = el(
        "div",
        _card("predictions", f"{v.rows:,}", "in the current window"),
        _card(
            "drifted features",
            f"{count} of {len(v.features)}",
            f"{percent(v.drifted_share)}; fails at {percent(fail_share)}",
            "fail" if v.drifted else "ok",
        ),
        _card(
            "prediction",
            "drifted" if any(f.drifted for f in v.prediction) else "steady",
            ", ".join(f.name for f in v.prediction) or "not in the reference",
            "fail" if any(f.drifted for f in v.prediction) else None,
        ),
        class_="cards",
        role="group",
        aria_label="headline numbers",
    )
    parts = [text_el("h2", version_name(v)), cards]
    if v.features:
        parts.append(_features_table(v.features, "features, drifted first"))
    if v.prediction:
        parts.append(_features_table(v.prediction, "the prediction's fields"))
    figures = [_figure(f) for f in ordered([*v.features, *v.prediction])]
    parts.append(el("div", *figures, class_="grid2"))
    return el("section", *parts)


def drift_html(report: DriftReport, *, generated: str | None = None) -> str:
    """The drift report as one self-contained HTML page; ``generated`` goes in the footer."""
    badge = (
        text_el("span", "✔ NO DRIFT", class_="badge ok")
        if report.ok
        else text_el("span", "✘ DRIFT", class_="badge fail")
    )
    header = el(
        "header",
        text_el("h1", "servepath drift"),
        text_el("span", report.store, class_="url"),
        badge,
        class_="top",
    )
    reference = (
        f"{report.reference} ({plural(report.reference_rows, 'row')})"
        if report.reference_kind == "file"
        else f"the log's window {window(report.reference_since, report.reference_until)} "
        f"({plural(report.reference_rows, 'prediction')})"
    )
    lead = text_el(
        "p",
        f"current window {window(report.since, report.until)} ({report.traffic} traffic) "
        f"against {reference}; features from the {report.features_from}",
        class_="lead",
    )
    sections = [header, lead]
    sections += [_version(v, report.fail_share) for v in report.versions]
    if report.notes:
        sections.append(el("ul", *(text_el("li", n) for n in report.notes), class_="notes"))
    footer = el(
        "footer",
        esc(
            "servepath drift"
            + (f", {generated}" if generated else "")
            + ". The same data: servepath drift --json"
        ),
    )
    sections.append(footer)
    state = "no drift" if report.ok else "drift"
    return page(f"servepath drift {report.store}: {state}", "\n".join(sections))
