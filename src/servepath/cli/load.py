"""`servepath load URL`: open- or closed-loop load, capacity search, replica estimate.

The flags become a :class:`~servepath.load.run.LoadRequest`; :mod:`servepath.load.run`
carries it out and :mod:`servepath.render.text_load` (or ``--json``) shows the result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    app,
    base_settings,
    failure_context,
    get_output,
)
from servepath.cli._client_options import (
    ApiKeyOption,
    CafileOption,
    InsecureOption,
    ProxyOption,
    read_input,
)
from servepath.load.schedule import DEFAULT_MAX_INFLIGHT

if TYPE_CHECKING:
    # The generator pulls in aiohttp, the capacity fit numpy; they are imported when a load
    # actually runs, so that every other servepath command starts without them.
    from rich.live import Live

    from servepath.load.generator import Progress
    from servepath.load.locust import LocustScenario
    from servepath.load.payloads import Instance
    from servepath.load.report import FindMaxStep
    from servepath.load.run import LoadResult
    from servepath.output import Output

#: servepath.load.capacity.DEFAULT_HEADROOM, written here so that `--help` does not import
#: the capacity model; a test holds them equal.
DEFAULT_HEADROOM = 0.3

_WRITTEN_LABELS = {
    "csv": "per-second series (CSV)",
    "plot": "latency plots (PNG)",
    "html": "report (HTML)",
}


def _concurrencies(text: str | None) -> tuple[int, ...]:
    if text is None:
        return ()
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a concurrency or a comma-separated list", param_hint="--concurrency"
        ) from None
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter("concurrency must be at least 1", param_hint="--concurrency")
    return values


def _duration(text: str | None) -> float | None:
    from servepath.load.schedule import parse_duration

    return None if text is None else parse_duration(text)


def _data_instances(data: Path) -> tuple[Instance, ...]:
    from servepath.load.payloads import parse_instances

    return tuple(parse_instances(read_input(data).decode(), str(data)))


@app.command()
def load(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="The service (http://HOST:PORT: its predict route is added) or a route's URL.",
        ),
    ],
    rate: Annotated[
        float | None,
        typer.Option(metavar="REQ/S", help="Open loop: requests per second, sent on schedule."),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            metavar="N[,N...]",
            help="Closed loop: requests in flight; a list (1,4,16) runs a sweep. "
            "[default: 10 when neither --rate nor --concurrency is given]",
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Measured time: 30, 30s, 2m. [default: 10s]"),
    ] = None,
    requests: Annotated[
        int | None, typer.Option(metavar="N", help="Measured requests instead.")
    ] = None,
    warmup: Annotated[
        str | None, typer.Option(metavar="TIME", help="Unmeasured time before the run.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Instances to send, as given and cycled: a JSON object, an array, "
            '{"instances": [...]} or JSON Lines.',
        ),
    ] = None,
    unique: Annotated[
        float | None,
        typer.Option(
            metavar="SHARE",
            help="Share of requests carrying fresh instances (cache misses), drawn from the "
            "server's input schema or around --data. [default: 1 without --data, 0 with it]",
        ),
    ] = None,
    repeat: Annotated[
        bool,
        typer.Option(
            "--repeat",
            help="Send the server's example (or --data) over and over: cache hits after the "
            "first answer. The same as --unique 0.",
        ),
    ] = False,
    batch: Annotated[
        int, typer.Option(metavar="N", help='Instances per request ({"instances": [...]}).')
    ] = 1,
    timeout: Annotated[str, typer.Option(metavar="TIME", help="Per-request timeout.")] = "10s",
    processes: Annotated[
        int, typer.Option(metavar="N", help="Generator processes sharing the load.")
    ] = 1,
    max_inflight: Annotated[
        int,
        typer.Option(metavar="N", help="Open loop: most requests (and connections) in flight."),
    ] = DEFAULT_MAX_INFLIGHT,
    slo: Annotated[
        str | None, typer.Option(metavar="pNN=TIME", help="Objective, e.g. p99=50ms.")
    ] = None,
    error_budget: Annotated[
        str, typer.Option(metavar="SHARE", help="Allowed failed share, e.g. 0.1%.")
    ] = "0.1%",
    find_max_: Annotated[
        bool,
        typer.Option("--find-max", help="Step the rate up, then bisect, to the SLO's limit."),
    ] = False,
    max_rate: Annotated[
        float | None, typer.Option(metavar="REQ/S", help="Highest rate --find-max tries.")
    ] = None,
    target_rps: Annotated[
        float | None,
        typer.Option(metavar="REQ/S", help="Estimate the replicas this rate needs at the SLO."),
    ] = None,
    headroom: Annotated[
        float, typer.Option(metavar="SHARE", help="Share of capacity kept spare per replica.")
    ] = DEFAULT_HEADROOM,
    proxy: ProxyOption = None,
    cafile: CafileOption = None,
    insecure: InsecureOption = False,
    api_key: ApiKeyOption = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    csv: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write the per-second series here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write latency plots (PNG) here.")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the report as one self-contained HTML page."),
    ] = None,
    locustfile: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write this scenario as a Locust file and stop."),
    ] = None,
) -> None:
    """Load a service: honest latency percentiles, errors, capacity.

    Every request carries a fresh instance by default (drawn from the server's input schema:
    its categories, numbers spread around the example), so the model is measured, not the
    response cache; --repeat measures the cache. The cache hit ratio stands beside every
    capacity figure. Exit 0 when the run did what it was asked (and met --slo), 1 otherwise.
    """
    from servepath.client import Trust
    from servepath.load.capacity import parse_error_budget, parse_slo
    from servepath.load.run import LoadRequest, describe_sending, locust_scenario, prepare, run
    from servepath.render.text_load import render_load

    out = get_output()
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    settings = base_settings()
    request_timeout = _duration(timeout)
    assert request_timeout is not None
    request = LoadRequest(
        url=url,
        trust=Trust.resolve(str(cafile) if cafile else None, insecure, settings.ssl_cert_file),
        proxy_env=settings.proxy,
        proxy=proxy,
        api_key=api_key or settings.api_key,
        rate=rate,
        concurrency=_concurrencies(concurrency),
        duration=_duration(duration),
        requests=requests,
        warmup=_duration(warmup) or 0.0,
        instances=_data_instances(data) if data is not None else None,
        unique=unique,
        repeat=repeat,
        batch=batch,
        timeout=request_timeout,
        processes=processes,
        max_inflight=max_inflight,
        slo=parse_slo(slo, parse_error_budget(error_budget)) if slo is not None else None,
        find_max=find_max_,
        max_rate=max_rate,
        target_rps=target_rps,
        headroom=headroom,
    )
    failure_context(url=url)
    plan = prepare(request)
    if locustfile is not None:
        _write_locustfile(out, json, locustfile, locust_scenario(request, plan))
    failure_context(url=plan.url)
    live = _LiveLine(out, enabled=not json and out.stderr_is_terminal)
    with live:
        result = run(request, plan, progress=live.callback, on_step=live.step)
    written = _write_files(result, csv, plot)
    html_error = _write_html(html, result, written)
    if json:
        out.json({**result.to_json(), "written": written})
    else:
        out.print(describe_sending(plan))
        render_load(out, result.report)
        for what, where in written.items():
            out.print(f"{_WRITTEN_LABELS[what]} written to {where}")
    if html_error is not None:  # the run's own output stands; the file the user asked for not
        out.error(html_error)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEM)


def _write_files(result: LoadResult, csv: Path | None, plot: Path | None) -> dict[str, str]:
    """--csv and --plot, of the run that stands for the result; what was written, where."""
    written: dict[str, str] = {}
    detail = result.detail
    if detail is not None and csv is not None:
        from servepath.load.report import write_csv

        write_csv(detail.timeseries, csv)
        written["csv"] = str(csv)
    if detail is not None and plot is not None:
        from servepath.load.plot import write_plot

        written["plot"] = str(write_plot(detail, plot))
    return written


def _write_html(path: Path | None, result: LoadResult, written: dict[str, str]) -> str | None:
    """--html: the report as a page, noted in ``written``; the error message when the file
    cannot be written."""
    if path is None:
        return None
    from datetime import datetime

    from servepath.errors import ReportNotWritten
    from servepath.load.run import describe_sending
    from servepath.render import write_page
    from servepath.render.load import load_html

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    sending = describe_sending(result.plan)
    # The run's output stands (under --json the one document): a page that cannot be
    # written is said on stderr and in the exit code, after it.
    try:
        page = load_html(result.report, sending=sending, generated=stamp)
        written["html"] = str(write_page(path, page))
    except ReportNotWritten as exc:
        return str(exc)
    return None


def _write_locustfile(out: Output, json_out: bool, path: Path, scenario: LocustScenario) -> None:
    from servepath.load.locust import scenario_summary, write_locustfile

    files = write_locustfile(scenario, path)
    if json_out:
        out.json({"ok": True, "files": [str(f) for f in files], "host": scenario.host})
    else:
        out.print(scenario_summary(scenario, files))
    raise typer.Exit(EXIT_OK)


class _LiveLine:
    """One progress line on stderr while a run goes on (only on a terminal)."""

    def __init__(self, out: Output, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self._live: Live | None = None

    def __enter__(self) -> _LiveLine:
        if self.enabled:
            from rich.live import Live
            from rich.text import Text

            self._live = Live(
                Text(""), console=self.out.err_console, transient=True, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    @property
    def callback(self) -> Callable[[Progress], None] | None:
        """The progress callback, or None so that the engine skips its progress ticks."""
        return self.update if self.enabled else None

    def update(self, p: Progress) -> None:
        from rich.text import Text

        if self._live is None:
            return
        phase = "warming up" if p.warming_up else "measuring"
        self._live.update(
            Text(
                f"{phase} {p.elapsed_s:5.1f}s  sent {p.sent}  ok {p.succeeded}  "
                f"failed {p.failed}  in flight {p.inflight}  p99 {p.p99_ms:.1f} ms"
            )
        )

    def note(self, message: str) -> None:
        from rich.text import Text

        if self._live is not None:
            self._live.console.print(Text(message))

    def step(self, s: FindMaxStep) -> None:
        """A capacity search's step, noted above the progress line."""
        self.note(f"{s.rate:.0f} req/s: {'pass' if s.passed else 'fail'} — {s.note}")
