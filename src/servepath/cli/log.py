"""`servepath log`: read the prediction log back (recent predictions, and `log stats`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
import typer
from rich import box
from rich.table import Table

from servepath.cli._app import EXIT_PROBLEM, EXIT_USAGE, app, base_settings, get_output
from servepath.errors import ConfigError
from servepath.output import Output
from servepath.store.base import PredictionRecord
from servepath.store.factory import open_reader
from servepath.store.reader import LogReader, LogStats, StoreUnavailable, parse_since

T = TypeVar("T")

log_app = typer.Typer(
    name="log",
    help="Read the prediction log back: recent predictions (default), or `log stats`.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(log_app, name="log")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL: sqlite, sqlite:///PATH, postgresql://… "
        "(default: SERVEPATH_STORE_URL, else the SQLite file in the data directory).",
        show_default=False,
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
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
        int, typer.Option("--limit", "-n", min=1, help="How many records, newest last.")
    ] = 20,
    since: SinceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Recent predictions, oldest first, from the prediction log."""
    if ctx.invoked_subcommand is not None:
        return
    out = get_output()
    since_ts = _since(since)
    with _reader(out, store) as reader:
        records = _or_exit(out, lambda: reader.recent(limit=limit, since=since_ts))
        target = reader.target
    if json_:
        out.json(records)
        return
    if not records:
        out.print(f"no predictions in {target}" + (f" since {since}" if since else ""))
        return
    title = f"{len(records)} most recent in {target}"
    out.print(render_records(records, title=title, width=out.console.width))


@log_app.command("stats")
def log_stats(store: StoreOpt = None, since: SinceOpt = None, json_: JsonOpt = False) -> None:
    """Counts by decision, cache hit rate and latency percentiles, per model version."""
    out = get_output()
    since_ts = _since(since)
    with _reader(out, store) as reader:
        stats = _or_exit(out, lambda: reader.stats(since=since_ts))
    if json_:
        out.json(stats)
        return
    render_stats(out, stats, since_text=since)


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_since(text, time.time())
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def _reader(out: Output, store: str | None) -> LogReader:
    try:
        settings = base_settings()
    except ConfigError as exc:  # the environment, not a flag of this command
        out.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    try:
        return open_reader(settings.replace(store_url=store))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    except StoreUnavailable as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from None


def _or_exit(out: Output, read: Callable[[], T]) -> T:
    try:
        return read()
    except StoreUnavailable as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from None


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def describe_output(output: dict[str, object], width: int = 32) -> str:
    """A short form of one prediction's output for a table cell."""
    decision, probability = output.get("decision"), output.get("probability")
    if decision is not None:
        if isinstance(probability, int | float):
            return f"{decision} {probability:.2f}"
        return str(decision)
    text = orjson.dumps(output).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


#: Below this console width the table drops route and client and shortens request ids.
WIDE = 120
SHORT_ID = 8


def render_records(records: list[PredictionRecord], *, title: str, width: int) -> Table:
    wide = width >= WIDE
    first, last = _time(records[0].ts), _time(records[-1].ts)
    if not wide and any(len(r.request_id) > SHORT_ID + 1 for r in records):
        title += " (request ids shortened; --json has them whole)"
    table = Table(title=f"{title}\n{first} … {last}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("time", no_wrap=True)
    table.add_column("request id", no_wrap=True)
    table.add_column("#", justify="right", no_wrap=True)
    if wide:
        table.add_column("route", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("cache", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    if wide:
        table.add_column("client", no_wrap=True)
    for r in records:
        request_id = r.request_id
        if not wide and len(request_id) > SHORT_ID + 1:
            request_id = request_id[:SHORT_ID] + "…"
        cells = [_clock(r.ts), request_id, str(r.index)]
        if wide:
            cells.append(r.route)
        cells += [
            r.model_version,
            describe_output(r.output),
            "HIT" if r.cache_hit else "miss",
            f"{r.latency_ms:.2f}",
        ]
        if wide:
            cells.append(r.client_addr or "-")
        table.add_row(*cells)
    return table


def render_stats(out: Output, stats: LogStats, *, since_text: str | None) -> None:
    window = f" since {since_text}" if since_text else ""
    if not stats.versions:
        out.print(f"no predictions in {stats.store}{window}")
        return
    first = min(v.first_ts for v in stats.versions)
    last = max(v.last_ts for v in stats.versions)
    out.print(
        f"{stats.store}{window}: {stats.predictions} predictions in {stats.requests} "
        f"requests from {_time(first)} to {_time(last)}, "
        f"cache hit rate {stats.cache_hit_rate:.1%}"
    )
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("model")
    table.add_column("version")
    for column in ("requests", "predictions", "cache hits", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="right")
    decisions = Table(box=box.SIMPLE_HEAD)
    decisions.add_column("model")
    decisions.add_column("version")
    decisions.add_column("decision")
    decisions.add_column("count", justify="right")
    decisions.add_column("share", justify="right")
    for v in stats.versions:
        table.add_row(
            v.model_name,
            v.model_version,
            str(v.requests),
            str(v.predictions),
            f"{v.cache_hit_rate:.1%}",
            *(_ms(p) for p in (v.latency_ms.p50, v.latency_ms.p90, v.latency_ms.p99)),
        )
        for label, count in v.decisions.items():
            share = count / v.predictions if v.predictions else 0.0
            decisions.add_row(v.model_name, v.model_version, label, str(count), f"{share:.1%}")
    out.print(table)
    out.print(decisions)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
