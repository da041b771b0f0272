"""`servepath log`: read the prediction log back (recent predictions, and `log stats`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from servepath.cli._app import EXIT_PROBLEM, app, base_settings, fail, get_output
from servepath.errors import ConfigError

if TYPE_CHECKING:
    from servepath.output import Grid, Output
    from servepath.store.base import PredictionRecord
    from servepath.store.reader import LogReader, LogStats

T = TypeVar("T")

log_app = typer.Typer(
    name="log",
    help="Read the prediction log back.\n\nRecent predictions (the default), or `log stats`.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)
app.add_typer(log_app, name="log")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Store URL: sqlite, sqlite:///PATH, postgresql://… "
        "[default: SERVEPATH_STORE_URL, else the SQLite file in the data directory].",
        show_default=False,
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Only records from this far back (30s, 10m, 2h, 1d, 1w) or since an ISO time.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@log_app.callback(invoke_without_command=True)
def log_recent(
    ctx: typer.Context,
    store: StoreOpt = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, metavar="N", help="How many records, newest last."),
    ] = 20,
    since: SinceOpt = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            metavar="ID",
            help="Only the requests a caller sent with this X-Request-ID (several may share "
            "one), or the one request with this record id.",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Recent predictions, oldest first, from the prediction log."""
    if ctx.invoked_subcommand is not None:
        return
    out = get_output()
    since_ts = _since(since)
    with _reader(out, store, json_) as reader:
        records = _or_exit(
            out, json_, lambda: reader.recent(limit=limit, since=since_ts, request_id=request_id)
        )
        target = reader.target
    if json_:
        out.json(records)
        return
    if not records:
        which = "" if request_id is None else f" with request id {request_id}"
        out.print(f"no predictions{which} in {target}" + (f" since {since}" if since else ""))
        return
    title = f"{len(records)} most recent in {target}"
    compact = out.tables_are_plain() is not True and out.console.width < WIDE
    out.table(render_records(records, title=title, compact=compact))


@log_app.command("stats")
def log_stats(store: StoreOpt = None, since: SinceOpt = None, json_: JsonOpt = False) -> None:
    """Counts by decision, cache hit rate and latency percentiles, per model version."""
    out = get_output()
    since_ts = _since(since)
    with _reader(out, store, json_) as reader:
        stats = _or_exit(out, json_, lambda: reader.stats(since=since_ts))
    if json_:
        out.json(stats)
        return
    render_stats(out, stats, since_text=since)


def _since(text: str | None) -> float | None:
    from servepath.store.reader import parse_since

    if text is None:
        return None
    try:
        return parse_since(text, time.time())
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _reader(out: Output, store: str | None, json_out: bool) -> LogReader:
    from servepath.store.factory import open_reader
    from servepath.store.reader import StoreUnavailable

    try:
        settings = base_settings()
    except ConfigError as exc:  # the environment, not a flag of this command
        raise typer.BadParameter(str(exc)) from None
    try:
        return open_reader(settings.with_values(store_url=store))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    except StoreUnavailable as exc:
        fail(out, json_out, "store_unavailable", str(exc), code=EXIT_PROBLEM, store=exc.target)


def _or_exit(out: Output, json_out: bool, read: Callable[[], T]) -> T:
    from servepath.store.reader import StoreUnavailable

    try:
        return read()
    except StoreUnavailable as exc:
        fail(out, json_out, "store_unavailable", str(exc), code=EXIT_PROBLEM, store=exc.target)


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
        grid.add_row(*cells)
    return grid


def render_stats(out: Output, stats: LogStats, *, since_text: str | None) -> None:
    from servepath.output import Column, Grid, percent, plural

    window = f" since {since_text}" if since_text else ""
    if not stats.versions:
        out.print(f"no predictions in {stats.store}{window}")
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
