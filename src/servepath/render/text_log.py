"""The prediction log as text: recent records as a table, and the stats per version."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.output import Grid, Output
    from servepath.store.base import PredictionRecord
    from servepath.store.compare import Comparison
    from servepath.store.reader import LogStats


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def describe_output(output: dict[str, object], width: int = 32) -> str:
    """A short form of one prediction's output for a table cell."""
    import orjson

    decision, probability = output.get("decision"), output.get("probability")
    if decision is not None:
        if isinstance(probability, int | float):
            return f"{decision} {probability:.2f}"
        return str(decision)
    text = orjson.dumps(output).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


#: Below this terminal width the table drops route and client and shortens request ids.
WIDE = 120


SHORT_ID = 8


def short_id(request_id: str) -> str:
    """A request id cut to its last characters: ids that are ordered by time share their
    start (``01a2335c…``), so the end is what tells two of them apart."""
    if len(request_id) <= SHORT_ID + 1:
        return request_id
    return "…" + request_id[-SHORT_ID:]


def render_records(records: list[PredictionRecord], *, title: str, compact: bool) -> Grid:
    from servepath.output import Column, Grid

    first, last = _time(records[0].ts), _time(records[-1].ts)
    if compact and any(len(r.request_id) > SHORT_ID + 1 for r in records):
        title += " (request ids shortened; --json has them whole)"
    columns: list[Column | str] = ["time", "request id", Column("#", "right")]
    if not compact:
        columns.append("route")
    columns += ["version", "output", "cache", Column("ms", "right")]
    if not compact:
        columns.append("client")
    # Only a listing that holds marked requests spends a column on them.
    marked = any(r.traffic for r in records)
    if marked:
        columns.append("traffic")
    grid = Grid(columns, title=f"{title}\n{first} … {last}", box="simple")
    for r in records:
        cells = [_clock(r.ts), short_id(r.request_id) if compact else r.request_id, str(r.index)]
        if not compact:
            cells.append(r.route)
        cells += [
            r.model_version,
            describe_output(r.output),
            "HIT" if r.cache_hit else "miss",
            f"{r.latency_ms:.2f}",
        ]
        if not compact:
            # The client the server believed: the peer, unless a trusted proxy vouched.
            cells.append(r.client_ip or r.client_addr or "-")
        if marked:
            cells.append(r.traffic or "")
        grid.add_row(*cells)
    return grid


def render_stats(out: Output, stats: LogStats, *, since_text: str | None) -> None:
    from servepath.output import Column, Grid, percent, plural

    window = f" since {since_text}" if since_text else ""
    if not stats.versions:
        which = "" if stats.traffic == "all" else f" of {stats.traffic} traffic"
        out.print(f"no predictions{which} in {stats.store}{window}")
        _left_out(out, stats)
        return
    first = min(v.first_ts for v in stats.versions)
    last = max(v.last_ts for v in stats.versions)
    out.print(
        f"{stats.store}{window}: {plural(stats.predictions, 'prediction')} in "
        f"{plural(stats.requests, 'request')} from {_time(first)} to {_time(last)}, "
        f"cache hit rate {percent(stats.cache_hit_rate)}"
    )
    numbers = ("requests", "predictions", "cache hits", "p50 ms", "p90 ms", "p99 ms")
    table = Grid(["model", "version", *(Column(c, "right") for c in numbers)], box="simple")
    decisions = Grid(
        ["model", "version", "decision", Column("count", "right"), Column("share", "right")],
        box="simple",
    )
    for v in stats.versions:
        table.add_row(
            v.model_name,
            v.model_version,
            f"{v.requests:,}",
            f"{v.predictions:,}",
            percent(v.cache_hit_rate),
            *(_ms(p) for p in (v.latency_ms.p50, v.latency_ms.p90, v.latency_ms.p99)),
        )
        for label, count in v.decisions.items():
            share = count / v.predictions if v.predictions else 0.0
            decisions.add_row(v.model_name, v.model_version, label, f"{count:,}", percent(share))
    out.table(table)
    out.table(decisions)
    _left_out(out, stats)


def _left_out(out: Output, stats: LogStats) -> None:
    """Say what the numbers do not count, and how to count it."""
    from servepath.output import plural

    if not stats.left_out:
        return
    kinds = ", ".join(f"{x.traffic} {x.predictions:,}" for x in stats.left_out)
    counted = "synthetic" if stats.traffic == "ordinary" else "other"
    out.print(
        f"left out: {plural(stats.left_out_predictions, 'prediction')} in "
        f"{plural(stats.left_out_requests, 'request')} of {counted} traffic ({kinds}); "
        "--traffic all counts them"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_comparison(out: Output, comparison: Comparison, *, since_text: str | None) -> None:
    """``log compare``: each shadow against its primary, then the live split."""
    from servepath.output import Column, Grid, percent, plural

    window = f" since {since_text}" if since_text else ""
    if not comparison.pairs and not comparison.live:
        out.print(f"no predictions in {comparison.store}{window}")
        return
    for pair in comparison.pairs:
        out.print(
            f"shadow {pair.shadow} against primary {pair.primary}: "
            f"{plural(pair.requests, 'request')}, {plural(pair.instances, 'instance')} "
            f"compared; agreement {percent(pair.agreement)}"
        )
        if pair.mean_abs_difference is not None:
            out.print(
                f"  |difference| mean {pair.mean_abs_difference:.3g}, "
                f"p99 {pair.p99_abs_difference:.3g}"
            )
        if pair.confusion:
            shadow_labels = sorted({s for row in pair.confusion.values() for s in row})
            grid = Grid(
                ["primary \\ shadow", *(Column(s, "right") for s in shadow_labels)],
                box="simple",
            )
            for label, row in sorted(pair.confusion.items()):
                grid.add_row(label, *(f"{row.get(s, 0):,}" for s in shadow_labels))
            out.table(grid)
        latency = Grid(["version", Column("p50 ms", "right"), Column("p99 ms", "right")],
                       box="simple")  # fmt: skip
        for version, numbers in pair.latency_ms.items():
            latency.add_row(version, _ms(numbers["p50"]), _ms(numbers["p99"]))
        out.table(latency)
    if not comparison.pairs:
        out.print(f"no shadow answers in {comparison.store}{window}")
    if comparison.live:
        live = Grid(
            [
                "version",
                "role",
                *(Column(c, "right") for c in ("requests", "share", "p50 ms", "p99 ms")),
            ],
            box="simple",
        )
        for share in comparison.live:
            live.add_row(share.version, share.role, f"{share.requests:,}", percent(share.share),
                         _ms(share.p50_ms), _ms(share.p99_ms))  # fmt: skip
        out.print(f"live traffic{window}, by the version that answered:")
        out.table(live)
