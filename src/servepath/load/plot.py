"""Pictures of a run: latency over time, and the percentile spectrum (matplotlib, Agg).

Both latency axes are logarithmic with ticks on the 1-2-5 sequence across the data's range
(never a lone "10⁰"), and the legends sit below their plots, outside the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from servepath.load.histogram import SpectrumPoint
from servepath.load.report import RunReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_SPECTRUM_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def _x(percentile: float) -> float:
    # HdrHistogram's spectrum axis: 1/(1-p) on a log scale, so each nine gets equal room.
    return 1.0 / max(1.0 - percentile / 100.0, 1e-6)


def ticks_125(low: float, high: float) -> list[float]:
    """Tick values on the 1-2-5 sequence covering ``low``..``high`` (both above zero), at
    least three of them: one below the data, one above, and the steps between."""
    low, high = max(min(low, high), 1e-3), max(low, high, 1e-3)
    values: list[float] = []
    exponent = math.floor(math.log10(low)) - 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            values.append(float(f"{value:.6g}"))
        if 10.0**exponent > high:
            break
        exponent += 1
    below = [v for v in values if v <= low]
    above = [v for v in values if v >= high]
    inside = [v for v in values if low < v < high]
    chosen = list(dict.fromkeys([below[-1], *inside, above[0]]))
    position = values.index(chosen[-1])
    while len(chosen) < 3:  # the last decade in ``values`` lies wholly above ``high``
        position += 1
        chosen.append(values[position])
    return chosen


def _label(value: float, _pos: object = None) -> str:
    return f"{value:g}"


def _positive(values: Iterable[float]) -> list[float]:
    return [v for v in values if v > 0 and math.isfinite(v)]


def build_figure(report: RunReport) -> Figure:
    """The figure :func:`write_plot` saves (tests look at its axes)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    fig = Figure(figsize=(10, 9), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    mode = (
        f"open loop {report.target_rate:g} req/s"
        if report.mode == "open" and report.target_rate
        else f"closed loop, concurrency {report.concurrency}"
    )
    fig.suptitle(f"{report.url} — {mode}")

    rows = report.timeseries
    seconds = [r.second for r in rows]

    def series(values: Iterable[float]) -> list[float]:
        return [v if v > 0 else math.nan for v in values]  # an empty second is a gap

    since = "from intended send" if report.mode == "open" else "from send"
    top.plot(seconds, series(r.p50_ms for r in rows), label="p50", color="tab:blue")
    top.plot(seconds, series(r.p99_ms for r in rows), label="p99", color="tab:orange")
    top.plot(seconds, series(r.max_ms for r in rows), label="max", color="tab:red", linewidth=0.8)
    if report.mode == "open":
        top.plot(
            seconds,
            series(r.service_p99_ms for r in rows),
            label="service time p99 (from actual send)",
            color="tab:gray",
            linestyle="--",
        )
    top.set_xlabel(
        "second of the run" + (" (by intended send time)" if report.mode == "open" else "")
    )
    top.set_ylabel(f"latency {since}, ms")
    top.set_yscale("log")
    seen = _positive(v for r in rows for v in (r.p50_ms, r.p99_ms, r.max_ms, r.service_p99_ms))
    if seen:
        ticks = ticks_125(min(seen), max(seen))
        top.set_ylim(ticks[0], ticks[-1])
        top.yaxis.set_major_locator(FixedLocator(ticks))
        top.yaxis.set_major_formatter(FuncFormatter(_label))
        top.yaxis.set_minor_locator(NullLocator())
    top.grid(True, which="major", axis="y", alpha=0.3)
    rate_axis = top.twinx()
    rate_axis.bar(
        seconds,
        [r.succeeded for r in rows],
        alpha=0.15,
        color="tab:green",
        width=0.9,
        label="succeeded per second (right axis)",
    )
    rate_axis.set_ylabel("succeeded requests per second")
    # the latency lines in front of the bars
    top.set_zorder(rate_axis.get_zorder() + 1)
    top.patch.set_visible(False)
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = top.get_legend_handles_labels()
    bar_handles, bar_labels = rate_axis.get_legend_handles_labels()
    top.legend(
        handles + bar_handles,
        labels + bar_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=3,
        frameon=False,
    )

    latency_label = "latency from intended send" if report.mode == "open" else "latency"
    _spectrum(bottom, report.spectrum, latency_label, "tab:orange")
    if report.mode == "open":
        _spectrum(bottom, report.service_spectrum, "service time from actual send", "tab:gray")
    bottom.set_xscale("log")
    bottom.xaxis.set_major_locator(FixedLocator([_x(p) for p in _SPECTRUM_TICKS]))
    bottom.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _pos: f"{100 - 100 / v:g}%" if v > 1 else "0%")
    )
    bottom.xaxis.set_minor_locator(NullLocator())
    bottom.set_yscale("log")
    spectrum = _positive(p.ms for p in (*report.spectrum, *report.service_spectrum))
    if spectrum:
        ticks = ticks_125(min(spectrum), max(spectrum))
        bottom.set_ylim(ticks[0], ticks[-1])
        bottom.yaxis.set_major_locator(FixedLocator(ticks))
        bottom.yaxis.set_major_formatter(FuncFormatter(_label))
        bottom.yaxis.set_minor_locator(NullLocator())
    bottom.set_xlabel("percentile")
    bottom.set_ylabel("ms")
    bottom.set_title("percentile spectrum")
    bottom.grid(True, which="major", alpha=0.3)
    bottom.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return fig


def write_plot(report: RunReport, path: Path) -> Path:
    """A PNG with latency per second (top) and the percentile spectrum (bottom); returns
    where it was written."""
    fig = build_figure(report)
    fig.savefig(path, format="png", dpi=100)
    return path


def _spectrum(ax: Axes, points: tuple[SpectrumPoint, ...], label: str, color: str) -> None:
    if not points:
        return
    ax.plot([_x(p.percentile) for p in points], [p.ms for p in points], label=label, color=color)
