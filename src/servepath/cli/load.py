"""`servepath load URL`: open- or closed-loop load, capacity search, replica estimate."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from servepath.cli._app import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    app,
    base_settings,
    fail,
    get_output,
)
from servepath.cli._client_options import ApiKeyOption, CafileOption, InsecureOption, ProxyOption
from servepath.errors import ConfigError, ServepathError, UsageError
from servepath.load.schedule import DEFAULT_MAX_INFLIGHT

if TYPE_CHECKING:
    # The generator pulls in aiohttp, the capacity fit numpy; they are imported when a load
    # actually runs, so that every other servepath command starts without them.
    from rich.live import Live

    from servepath.client import Trust
    from servepath.load.generator import Progress
    from servepath.load.payloads import Instance
    from servepath.load.report import FindMaxReport, RunReport, SweepReport
    from servepath.load.sampling import InstanceSpace
    from servepath.output import Output

#: servepath.load.capacity.DEFAULT_HEADROOM, written here so that `--help` does not import
#: the capacity model; a test holds them equal.
DEFAULT_HEADROOM = 0.3


def _concurrencies(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a concurrency or a comma-separated list", param_hint="--concurrency"
        ) from None
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter("concurrency must be at least 1", param_hint="--concurrency")
    return values


def _duration(text: str | None, hint: str) -> float | None:
    from servepath.load.schedule import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _data_instances(data: Path) -> list[Instance]:
    from servepath.load.payloads import parse_instances

    try:
        text = data.read_text()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {data}: {exc.strerror}", param_hint="--data"
        ) from None
    try:
        return parse_instances(text, str(data))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from None


def _server_document(
    out: Output,
    json_out: bool,
    url: str,
    trust: Trust,
    proxy: str | None,
    required: bool,
    headers: dict[str, str],
) -> dict[str, Any] | None:
    """The server's OpenAPI document, read as `request` reads it (its proxy, its trust, its
    named failures); ``required``: without it the run cannot start."""
    from servepath.client import ClientFailure, ExampleUnavailable, fetch_spec

    try:
        return fetch_spec(
            url, proxy_env=base_settings().proxy, proxy=proxy, trust=trust, timeout=5,
            headers=headers,
        )  # fmt: skip
    except ClientFailure as exc:
        if not required:
            return None
        r = exc.result
        fail(
            out, json_out, r.failure or "other", f"GET {r.url} failed ({r.failure}): {r.message}",
            url=url, stage="openapi", hints=r.hints,
        )  # fmt: skip
    except ExampleUnavailable as exc:
        if not required:
            return None
        hints = exc.result.hints if exc.result else ()
        fail(out, json_out, exc.failure, str(exc), url=url, stage="openapi",
             hints=(*hints, "or pass instances with --data FILE"))  # fmt: skip


def _target_and_instances(
    url: str,
    data: Path | None,
    out: Output,
    json_out: bool,
    trust: Trust,
    proxy: str | None,
    headers: dict[str, str],
) -> tuple[str, list[Instance], InstanceSpace | None]:
    """The URL the load goes to, the instances it repeats, and where fresh ones come from.

    The server's OpenAPI document says which route a bare origin means, which example to
    send and the schema fresh instances are drawn from, as it does for `request` and
    `doctor`; with --data and a URL that names its route, nothing is asked of the server
    before the run (fresh instances are then drawn around the data).
    """
    from servepath.client import names_no_route
    from servepath.load.generator import predict_url
    from servepath.load.payloads import example_from_openapi
    from servepath.load.sampling import InstanceSpace, instance_schema

    given = _data_instances(data) if data is not None else None
    spec = None
    if given is None or names_no_route(url):
        spec = _server_document(
            out, json_out, url, trust, proxy, required=given is None, headers=headers
        )
    target = predict_url(url, spec)
    route = urlsplit(target).path
    if given is not None:
        schema = instance_schema(spec, route) if spec is not None else None
        # fresh instances (--unique) from the server's schema when it gave one, else
        # drawn around the instances given
        space = InstanceSpace.from_schema(schema, given[0]) if schema is not None else None
        return target, given, space
    assert spec is not None
    try:
        example = example_from_openapi(spec, route)
    except ServepathError as exc:
        fail(out, json_out, "no_example", str(exc), url=url, stage="openapi")
    schema = instance_schema(spec, route)
    space = (
        InstanceSpace.from_schema(schema, example)
        if schema is not None
        else InstanceSpace.from_instances([example])
    )
    return target, [example], space


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
    from servepath.client import Trust, auth_headers
    from servepath.load.capacity import SLO, parse_error_budget, parse_slo
    from servepath.load.generator import LoadPlan, check_url
    from servepath.net.proxy import choose_proxy

    out = get_output()
    try:
        check_url(url)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="URL") from None
    levels = _concurrencies(concurrency)
    if rate is not None and levels:
        raise typer.BadParameter("give --rate (open loop) or --concurrency, not both")
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be above zero", param_hint="--rate")
    if len(levels) > 1 and find_max_:
        raise typer.BadParameter("--find-max steps a rate; it does not take a concurrency list")
    if (find_max_ or target_rps is not None) and slo is None:
        raise typer.BadParameter("--find-max and --target-rps need --slo, e.g. p99=50ms")
    if target_rps is not None and not (find_max_ or len(levels) > 1 or levels):
        raise typer.BadParameter("--target-rps needs --find-max or closed-loop runs to measure")
    if repeat and unique is not None:
        raise typer.BadParameter("give --repeat (all repeated) or --unique SHARE, not both")
    if unique is not None and not 0 <= unique <= 1:
        raise typer.BadParameter("a share from 0 to 1", param_hint="--unique")
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    try:
        objective: SLO | None = (
            parse_slo(slo, parse_error_budget(error_budget)) if slo is not None else None
        )
        settings = base_settings()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--slo/--error-budget") from None
    trust = Trust.resolve(str(cafile) if cafile else None, insecure, settings.ssl_cert_file)
    try:
        if url.startswith("https://"):
            trust.context()  # a CA bundle that cannot be read is bad usage, before the run
    except UsageError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cafile") from None
    seconds = _duration(duration, "--duration")
    if seconds is None and requests is None:
        seconds = 10.0
    request_timeout = _duration(timeout, "--timeout")
    assert request_timeout is not None
    choice = choose_proxy(url, settings.proxy, proxy)
    if choice.proxy is not None and not choice.proxy.startswith("http://"):
        raise typer.BadParameter(
            f"the load generator goes through http:// forward proxies only; {choice.proxy} "
            f"({choice.reason}) is not one",
            param_hint="--proxy",
        )
    auth = auth_headers(api_key or settings.api_key)
    target, instances, space = _target_and_instances(url, data, out, json, trust, proxy, auth)
    fresh_share = 0.0 if repeat else unique if unique is not None else (0.0 if data else 1.0)
    choice = choose_proxy(target, settings.proxy, proxy)

    if locustfile is not None:
        _write_locustfile(
            out, json, locustfile, target, instances, space, fresh_share, batch, objective,
            rate, levels, request_timeout,
        )  # fmt: skip

    if rate is None and not levels:
        if find_max_:
            rate = 10.0
        else:
            levels = [10]
    try:
        plan = LoadPlan(
            url=target,
            instances=tuple(instances),
            rate=rate,
            concurrency=levels[0] if levels and rate is None else None,
            duration=seconds,
            requests=requests,
            warmup=_duration(warmup, "--warmup") or 0.0,
            unique=fresh_share,
            batch=batch,
            timeout=request_timeout,
            processes=processes,
            max_inflight=max_inflight,
            slo=objective,
            salt=random.randrange(1 << 24),
            space=space,
            proxy=choice.proxy,
            proxy_reason=choice.reason,
            trust=trust,
            headers=tuple(auth.items()),
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    result = _run(out, json, plan, levels, find_max_, objective, max_rate, target_rps, headroom)
    detail = _detail(result)
    written: dict[str, str] = {}
    if detail is not None and csv is not None:
        from servepath.load.report import write_csv

        write_csv(detail.timeseries, csv)
        written["csv"] = str(csv)
    if detail is not None and plot is not None:
        from servepath.load.plot import write_plot

        written["plot"] = str(write_plot(detail, plot))
    html_error = _write_html(html, result, plan, written)
    if json:
        out.json({**result.to_json(), "sending": _sending(plan), "written": written})
    else:
        out.print(_describe_sending(plan))
        _render(out, result)
        for what, where in written.items():
            label = _WRITTEN_LABELS[what]
            out.print(f"{label} written to {where}")
    if html_error is not None:  # the run's own output stands; the file the user asked for not
        out.error(html_error)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEM)


_WRITTEN_LABELS = {
    "csv": "per-second series (CSV)",
    "plot": "latency plots (PNG)",
    "html": "report (HTML)",
}


def _write_html(
    path: Path | None,
    result: RunReport | FindMaxReport | SweepReport,
    plan: Any,
    written: dict[str, str],
) -> str | None:
    """--html: the report as a page, noted in ``written``; the error message when the file
    cannot be written."""
    if path is None:
        return None
    from datetime import datetime

    from servepath.render import ReportNotWritten, write_page
    from servepath.render.load import load_html

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        page = load_html(result, sending=_describe_sending(plan), generated=stamp)
        written["html"] = str(write_page(path, page))
    except ReportNotWritten as exc:
        return str(exc)
    return None


def _write_locustfile(
    out: Output,
    json_out: bool,
    path: Path,
    target: str,
    instances: list[Instance],
    space: InstanceSpace | None,
    fresh_share: float,
    batch: int,
    objective: Any,
    rate: float | None,
    levels: list[int],
    request_timeout: float,
) -> None:
    from servepath.load.locust import LocustScenario, scenario_summary, write_locustfile

    parts = urlsplit(target)
    scenario = LocustScenario(
        host=urlunsplit((parts.scheme, parts.netloc, "", "", "")),
        predict_path=parts.path + (f"?{parts.query}" if parts.query else ""),
        instances=tuple(instances),
        unique=fresh_share,
        batch=batch,
        slo=objective,
        rate=rate,
        users=levels[0] if levels else 10,
        timeout=request_timeout,
        space=space,
    )
    try:
        files = write_locustfile(scenario, path)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    if json_out:
        out.json({"ok": True, "files": [str(f) for f in files], "host": scenario.host})
    else:
        out.print(scenario_summary(scenario, files))
    raise typer.Exit(EXIT_OK)


def _run(
    out: Output,
    json_out: bool,
    plan: Any,
    levels: list[int],
    find_max_: bool,
    objective: Any,
    max_rate: float | None,
    target_rps: float | None,
    headroom: float,
) -> RunReport | FindMaxReport | SweepReport:
    from servepath.load.generator import find_max, run_load, sweep_concurrency

    live = _LiveLine(out, enabled=not json_out and out.stderr_is_terminal)
    try:
        with live:
            if find_max_:
                assert objective is not None
                return find_max(
                    plan,
                    objective,
                    max_rate=max_rate,
                    target_rps=target_rps,
                    headroom=headroom,
                    progress=live.callback,
                    on_step=lambda s: live.note(
                        f"{s.rate:.0f} req/s: {'pass' if s.passed else 'fail'} — {s.note}"
                    ),
                )
            if len(levels) > 1 or target_rps is not None:
                return sweep_concurrency(
                    plan,
                    levels,
                    slo=objective,
                    target_rps=target_rps,
                    headroom=headroom,
                    progress=live.callback,
                )
            return run_load(plan, live.callback)
    except ServepathError as exc:
        fail(out, json_out, "load_failed", str(exc), url=plan.url)


def _detail(result: RunReport | FindMaxReport | SweepReport) -> RunReport | None:
    from servepath.load.report import FindMaxReport, RunReport

    if isinstance(result, RunReport):
        return result
    if isinstance(result, FindMaxReport):
        return result.best
    return max(result.runs, key=lambda r: r.achieved_rate) if result.runs else None


def _sending(plan: Any) -> dict[str, Any]:
    return {
        "unique": plan.unique,
        "instances": len(plan.instances),
        "space": plan.space.to_json() if plan.space is not None else None,
        "proxy": plan.proxy,
        "proxy_reason": plan.proxy_reason,
        "trust": plan.trust.to_json(),
    }


def _describe_sending(plan: Any) -> str:
    from servepath.load.sampling import InstanceSpace
    from servepath.output import percent

    if plan.unique >= 1:
        space = plan.space or InstanceSpace.from_instances(plan.instances)
        what = space.describe()
    elif plan.unique <= 0:
        n = len(plan.instances)
        what = (
            "the same instance every time (cache hits after the first answer)"
            if n == 1
            else f"{n} instances, cycled (cache hits once each has been answered)"
        )
    else:
        what = f"{percent(plan.unique)} of requests with fresh instances, the rest repeated"
    via = f"; through the proxy {plan.proxy} ({plan.proxy_reason})" if plan.proxy else ""
    return f"sending {what}{via}"


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


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _render(out: Output, result: RunReport | FindMaxReport | SweepReport) -> None:
    from servepath.load.report import FindMaxReport, RunReport

    if isinstance(result, RunReport):
        _render_run(out, result)
    elif isinstance(result, FindMaxReport):
        _render_find_max(out, result)
    else:
        _render_sweep(out, result)


def _render_run(out: Output, r: RunReport) -> None:
    from servepath.output import Column, Grid, percent, plural

    head = (
        f"open loop at {r.target_rate:g} req/s"
        if r.mode == "open"
        else f"closed loop at concurrency {r.concurrency}"
    )
    out.print(
        (r.url, "bold"),
        f" — {head}, {plural(r.processes, 'process', 'processes')}, {r.duration_s:.1f} s",
    )
    counts = Grid(["", ""], header=False, box="none")
    counts.add_row("requests", f"{r.sent} sent = {r.succeeded} succeeded + {r.failed} failed")
    if r.warmup_requests:
        counts.add_row("warmup", f"{plural(r.warmup_requests, 'request')}, not counted")
    target = f" (target {r.target_rate:g})" if r.target_rate else ""
    counts.add_row("achieved", f"{r.achieved_rate:.1f} req/s{target} at {r.cache.describe()}")
    counts.add_row("errors", r.errors.describe())
    ratio = r.cache.hit_ratio
    if ratio is not None:
        unlabelled = f", {r.cache.unknown} unlabelled" if r.cache.unknown else ""
        counts.add_row(
            "cache",
            f"{percent(ratio)} hits ({r.cache.hits} hit, {r.cache.misses} miss{unlabelled})",
        )
    else:
        counts.add_row("cache", "no X-Cache header in the responses")
    out.table(counts)

    numbers = ("p50", "p90", "p99", "p99.9", "max")
    table = Grid(["", *(Column(n, "right") for n in numbers)], title="latency, ms")
    if r.mode == "open":
        rows = [
            ("from intended send (callers' view)", r.latency),
            ("service time (from actual send)", r.service_time),
        ]
    else:
        # A closed loop sends each request when the one before it came back: its latency is
        # the service time, and there is no intended send time to count from.
        rows = [("per request (from send to answer)", r.service_time)]
    if r.server_time is not None:
        rows.append(("  of which server (Server-Timing total)", r.server_time))
    if r.network_time is not None:
        rows.append(("  of which network and client", r.network_time))
    for label, s in rows:
        table.add_row(
            label, _ms(s.p50_ms), _ms(s.p90_ms), _ms(s.p99_ms), _ms(s.p999_ms), _ms(s.max_ms)
        )
    out.table(table)

    g = r.generator
    health = Grid(["", ""], header=False, box="none", title="generator")
    health.add_row("CPU", ", ".join(f"{c:.0f}%" for c in g.cpu_percent) + " of a core")
    health.add_row("send rate", f"{g.send_rate:.1f} req/s")
    if r.mode == "open":
        if g.sched_lag is not None:
            health.add_row(
                "scheduling lag",
                f"p50 {_ms(g.sched_lag.p50_ms)} ms, p99 {_ms(g.sched_lag.p99_ms)} ms, "
                f"max {_ms(g.sched_lag.max_ms)} ms",
            )
            waits = (
                f" ({g.inflight_waits} waited for an in-flight slot)" if g.inflight_waits else ""
            )
            health.add_row(
                "sent late",
                f"{plural(g.late, 'request')} more than {g.late_threshold_ms:g} ms after "
                f"their intended time{waits}",
            )
        health.add_row("kept the rate", "yes" if g.kept_rate else ("no", "bold red"))
    out.table(health)
    if r.slo is not None:
        colour = "green" if r.slo.met else "red"
        out.print((f"SLO {r.slo.slo.label}: {r.slo.describe()}", colour))
    for w in r.warnings:
        out.print(("warning:", "yellow"), f" {w}")
    for p in r.problems:
        out.print(("problem:", "bold red"), f" {p}")


def _render_replicas(out: Output, replicas: Any) -> None:
    if replicas is None:
        return
    out.print(replicas.statement)
    for note in replicas.notes:
        out.print(("warning:", "yellow"), f" {note}")


def _render_find_max(out: Output, f: FindMaxReport) -> None:
    from servepath.output import Column, Grid, percent

    columns = ("rate", "achieved", f"p{f.slo.percentile:g} ms", "errors", "cache hits")
    table = Grid(
        [*(Column(c, "right") for c in columns), Column("result", "right")],
        title=f"capacity search, SLO {f.slo.label}",
    )
    for s in f.steps:
        verdict = "pass" if s.passed else "fail"
        if not s.kept_rate:
            verdict += ", generator late"
        table.add_row(
            f"{s.rate:.1f}",
            f"{s.achieved_rate:.1f}",
            _ms(s.observed_ms),
            percent(s.error_ratio, 2),
            percent(s.cache_hit_ratio),
            verdict,
        )
    out.table(table)
    if f.max_rate is not None:
        cache = f" at {f.best.cache.describe()}" if f.best is not None else ""
        out.print((f"highest rate meeting the SLO: {f.max_rate:.1f} req/s{cache}", "bold"))
    _render_replicas(out, f.replicas)
    for p in f.problems:
        out.print(("problem:", "bold red"), f" {p}")


def _render_sweep(out: Output, s: SweepReport) -> None:
    from servepath.output import Column, Grid, percent

    columns = ("concurrency", "achieved req/s", "p50 ms", "p99 ms", "errors", "cache hits", "SLO")
    table = Grid([Column(c, "right") for c in columns], title="closed-loop sweep")
    for r in s.runs:
        table.add_row(
            str(r.concurrency),
            f"{r.achieved_rate:.1f}",
            _ms(r.service_time.p50_ms),
            _ms(r.service_time.p99_ms),
            str(r.failed),
            percent(r.cache.hit_ratio),
            "—" if r.slo is None else ("met" if r.slo.met else "missed"),
        )
    out.table(table)
    if s.usl is not None:
        u = s.usl
        peak = u.peak_concurrency
        verdict = "" if u.good_fit else " — a poor fit: not used to plan replicas"
        out.print(
            f"USL fit: λ={u.lambda_:.1f} req/s, σ={u.sigma:.4g}, κ={u.kappa:.3g}, "
            f"R²={u.r_squared:.3f}"
            + (f"; throughput peaks at concurrency {peak:.1f}" if peak is not None else "")
            + verdict
        )
    if s.capacity_rps is not None:
        cache = (
            f" at {percent(s.capacity_cache_hit_ratio)} cache hits"
            if s.capacity_cache_hit_ratio is not None
            else ""
        )
        out.print(f"best throughput within the SLO: {s.capacity_rps:.1f} req/s{cache}")
    _render_replicas(out, s.replicas)
    for w in s.warnings:
        out.print(("warning:", "yellow"), f" {w}")
    for p in s.problems:
        out.print(("problem:", "bold red"), f" {p}")
