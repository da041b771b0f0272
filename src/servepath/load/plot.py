"""Pictures of a run: latency over time, and the percentile spectrum (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter

from servepath.load.histogram import SpectrumPoint
from servepath.load.report import RunReport

_SPECTRUM_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def _x(percentile: float) -> float:
    # HdrHistogram's spectrum axis: 1/(1-p) on a log scale, so each nine gets equal room.
    return 1.0 / max(1.0 - percentile / 100.0, 1e-6)


def write_plot(report: RunReport, path: Path) -> None:
    """A PNG with latency per second (top) and the percentile spectrum (bottom)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    mode = (
        f"open loop {report.target_rate:g} req/s"
        if report.mode == "open" and report.target_rate
        else f"closed loop, concurrency {report.concurrency}"
    )
    fig.suptitle(f"{report.url} — {mode}")

    rows = report.timeseries
    seconds = [r.second for r in rows]
    top.plot(seconds, [r.p50_ms for r in rows], label="p50", color="tab:blue")
    top.plot(seconds, [r.p99_ms for r in rows], label="p99", color="tab:orange")
    top.plot(seconds, [r.max_ms for r in rows], label="max", color="tab:red", linewidth=0.8)
    top.plot(
        seconds,
        [r.service_p99_ms for r in rows],
        label="service time p99 (from actual send)",
        color="tab:gray",
        linestyle="--",
    )
    top.set_xlabel("second of the run (by intended send time)")
    top.set_ylabel("latency from intended send, ms")
    top.set_yscale("symlog", linthresh=1.0)
    rate_axis = top.twinx()
    rate_axis.bar(seconds, [r.succeeded for r in rows], alpha=0.15, color="tab:green", width=0.9)
    rate_axis.set_ylabel("succeeded requests per second")
    top.legend(loc="upper left")

    _spectrum(bottom, report.spectrum, "latency from intended send", "tab:orange")
    _spectrum(bottom, report.service_spectrum, "service time from actual send", "tab:gray")
    bottom.set_xscale("log")
    bottom.xaxis.set_major_locator(FixedLocator([_x(p) for p in _SPECTRUM_TICKS]))
    bottom.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _pos: f"{100 - 100 / v:g}%" if v > 1 else "0%")
    )
    bottom.xaxis.set_minor_locator(FixedLocator([]))
    bottom.set_xlabel("percentile")
    bottom.set_ylabel("ms")
    bottom.set_title("percentile spectrum")
    bottom.grid(True, which="major", alpha=0.3)
    bottom.legend(loc="upper left")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _spectrum(ax: Axes, points: tuple[SpectrumPoint, ...], label: str, color: str) -> None:
    if not points:
        return
    ax.plot([_x(p.percentile) for p in points], [p.ms for p in points], label=label, color=color)
