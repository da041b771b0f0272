"""A regions measurement as text: each target's RTT beside the model's estimate."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.output import Cell, Output
    from servepath.regions.measure import MeasureReport, TargetResult


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_measurement(out: Output, report: MeasureReport) -> None:
    from servepath.output import Column, Grid, plural

    origin = f" from {report.from_region}" if report.from_region else ""
    with_estimates = any(t.estimate_ms is not None for t in report.targets)
    numbers = ("min", "p50", "p90", *(("model", "×model") if with_estimates else ()))
    table = Grid(
        [
            Column("target", fold=True, min_width=20),
            "status",
            Column("ok", "right"),
            Column("loss", "right"),
            *(Column(c, "right") for c in numbers),
        ],
        title=f"TCP connect RTT in ms{origin}: {plural(report.samples, 'sample')} each, "
        f"timeout {report.timeout_s:g}s",
        box="simple",
    )
    for t in report.targets:
        label = t.target.label + (f"@{t.target.region}" if t.target.region else "")
        row: list[Cell] = [
            label,
            _status(t),
            f"{t.stats.ok}/{t.stats.sent}",
            f"{t.stats.loss_pct:.0f}%",
            _ms(t.stats.min_ms, 2),
            _ms(t.stats.median_ms, 2),
            _ms(t.stats.p90_ms, 2),
        ]
        if with_estimates:
            ratio = t.vs_estimate
            row += [_ms(t.estimate_ms), "-" if ratio is None else f"{ratio:.2f}"]
        table.add_row(*row)
    out.table(table)
    for t in report.targets:
        if t.address is not None and t.address != t.target.host:
            out.print(f"{t.target.label}: connected to {t.address}")
        if t.detail and t.status != "ok":
            out.print(f"{t.target.label}: {t.detail}")
    if with_estimates:
        out.print(
            "model = the latency model's estimate from the --from region; ×model = p50 ÷ model"
        )
    elif any(t.target.region for t in report.targets):
        out.print("give --from REGION to set the measurements beside the model's estimate")


def _status(t: TargetResult) -> tuple[str, str]:
    colour = {"ok": "green", "lossy": "yellow"}.get(t.status, "red")
    return (t.status, colour)
