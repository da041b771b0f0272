"""`servepath log`: read the prediction log back (recent predictions, and `log stats`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from servepath.cli._app import app, base_settings, get_output
from servepath.render.text_log import (
    WIDE,
    render_comparison,
    render_records,
    render_stats,
)
from servepath.traffic import TrafficFilter

if TYPE_CHECKING:
    from servepath.store.reader import LogReader


log_app = typer.Typer(
    name="log",
    help="Read the prediction log back.\n\nRecent predictions (the default), `log stats`, or "
    "`log compare` (versions side by side: shadow against primary, and the live split). "
    "Requests marked as synthetic (X-Servepath-Traffic: doctor, load, monitor, test, other) "
    "are listed with their kind, and left out of `log stats` unless --traffic asks for them.",
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
_TRAFFIC_HELP = (
    "ordinary (requests not marked X-Servepath-Traffic), synthetic (every marked one), all, "
    "or one kind: doctor, load, monitor, test, other."
)


def _traffic_option(what: str) -> Any:
    """``--traffic KIND``: the same flag on every log command, with its own first words."""
    return typer.Option(
        "--traffic", metavar="KIND", help=f"{what}: {_TRAFFIC_HELP}", show_default=False
    )


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
    traffic: Annotated[TrafficFilter, _traffic_option("Only this traffic [default: all]")] = "all",
    json_: JsonOpt = False,
) -> None:
    """Recent predictions, oldest first, from the prediction log."""
    if ctx.invoked_subcommand is not None:
        return
    out = get_output()
    since_ts = _since(since)
    with _reader(store) as reader:
        records = reader.recent(limit=limit, since=since_ts, request_id=request_id, traffic=traffic)
        target = reader.target
    if json_:
        out.json(records)
        return
    if not records:
        which = "" if request_id is None else f" with request id {request_id}"
        which += "" if traffic == "all" else f" of {traffic} traffic"
        out.print(f"no predictions{which} in {target}" + (f" since {since}" if since else ""))
        return
    title = f"{len(records)} most recent in {target}"
    compact = out.tables_are_plain() is not True and out.console.width < WIDE
    out.table(render_records(records, title=title, compact=compact))


@log_app.command("stats")
def log_stats(
    store: StoreOpt = None,
    since: SinceOpt = None,
    traffic: Annotated[
        TrafficFilter,
        _traffic_option(
            "Which traffic to count [default: ordinary; what is left out is counted apart]"
        ),
    ] = "ordinary",
    json_: JsonOpt = False,
) -> None:
    """Counts by decision, cache hit rate and latency percentiles, per model version.

    Synthetic traffic (the doctor's and load's requests, and any marked X-Servepath-Traffic)
    is left out unless --traffic asks for it; the output says how much was left out.
    """
    out = get_output()
    since_ts = _since(since)
    with _reader(store) as reader:
        stats = reader.stats(since=since_ts, traffic=traffic)
    if json_:
        out.json(stats)
        return
    render_stats(out, stats, since_text=since)


@log_app.command("compare")
def log_compare(
    store: StoreOpt = None,
    since: SinceOpt = None,
    traffic: Annotated[
        TrafficFilter, _traffic_option("Which traffic to compare [default: ordinary]")
    ] = "ordinary",
    json_: JsonOpt = False,
) -> None:
    """Versions side by side: each shadow against the primary it copied, and the live split.

    Per pair of versions: requests compared, agreement (for a classifier, with the confusion
    table; for numbers, the mean and p99 absolute difference) and each one's latency; then
    how many requests each version answered (primary, candidate), and how fast.
    """
    out = get_output()
    since_ts = _since(since)
    with _reader(store) as reader:
        comparison = reader.compare(since=since_ts, traffic=traffic)
    if json_:
        out.json(comparison)
        return
    render_comparison(out, comparison, since_text=since)


def _since(text: str | None) -> float | None:
    from servepath.store.reader import parse_since

    return None if text is None else parse_since(text, time.time())


def _reader(store: str | None) -> LogReader:
    from servepath.store.factory import open_reader

    return open_reader(base_settings().with_values(store_url=store))
