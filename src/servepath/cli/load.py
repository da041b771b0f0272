"""`servepath load URL`: open- or closed-loop load, capacity search, replica estimate."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.errors import ConfigError, ServepathError
from servepath.load.capacity import DEFAULT_HEADROOM, SLO, parse_error_budget, parse_slo
from servepath.load.locust import LocustScenario, scenario_summary, write_locustfile
from servepath.load.payloads import Instance, example_from_openapi, parse_instances
from servepath.load.report import FindMaxReport, RunReport, SweepReport, write_csv
from servepath.load.schedule import DEFAULT_MAX_INFLIGHT, parse_duration
from servepath.output import Output

if TYPE_CHECKING:
    # The generator pulls in aiohttp; it is imported when a load actually runs, so that
    # every other servepath command starts without it.
    from servepath.load.generator import Progress


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
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from None


def _data_instances(data: Path) -> list[Instance]:
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


def _target_and_instances(url: str, data: Path | None, out: Output) -> tuple[str, list[Instance]]:
    """The URL the load goes to and the instances it sends.

    The server's OpenAPI document says which route a bare origin means and which example to
    send, as it does for `request` and `doctor`; with --data and a URL that names its route,
    nothing is asked of the server before the run.
    """
    from servepath.client import names_no_route
    from servepath.load.generator import fetch_openapi, predict_url

    given = _data_instances(data) if data is not None else None
    spec = None
    if given is None or names_no_route(url):
        try:
            spec = fetch_openapi(url)
        except ServepathError as exc:
            if given is None:
                out.error(str(exc))
                raise typer.Exit(EXIT_PROBLEM) from None
            # the instances are given; without the document, the default predict route
    target = predict_url(url, spec)
    if given is not None:
        return target, given
    assert spec is not None
    try:
        return target, [example_from_openapi(spec, urlsplit(target).path)]
    except ServepathError as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from None


@app.command()
def load(
    url: Annotated[str, typer.Argument(help="The service (its predict route is added) or a URL.")],
    rate: Annotated[
        float | None, typer.Option(help="Open loop: requests per second, sent on schedule.")
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(help="Closed loop: requests in flight; a list (1,4,16) runs a sweep."),
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Measured time: 30, 30s, 2m (default 10s).")
    ] = None,
    requests: Annotated[int | None, typer.Option(help="Measured requests instead.")] = None,
    warmup: Annotated[str | None, typer.Option(help="Unmeasured time before the run.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="JSON object or JSON Lines of instances, cycled.")
    ] = None,
    unique: Annotated[
        float, typer.Option(help="Share of requests with never-seen instances (cache misses).")
    ] = 0.0,
    batch: Annotated[int, typer.Option(help='Instances per request ({"instances": [...]}).')] = 1,
    timeout: Annotated[str, typer.Option(help="Per-request timeout.")] = "10s",
    processes: Annotated[int, typer.Option(help="Generator processes sharing the load.")] = 1,
    max_inflight: Annotated[
        int, typer.Option(help="Open loop: most requests (and connections) in flight.")
    ] = DEFAULT_MAX_INFLIGHT,
    slo: Annotated[str | None, typer.Option(help="Objective, e.g. p99=50ms.")] = None,
    error_budget: Annotated[str, typer.Option(help="Allowed failed share, e.g. 0.1%.")] = "0.1%",
    find_max_: Annotated[
        bool,
        typer.Option("--find-max", help="Step the rate up, then bisect, to the SLO's limit."),
    ] = False,
    max_rate: Annotated[float | None, typer.Option(help="Highest rate --find-max tries.")] = None,
    target_rps: Annotated[
        float | None, typer.Option(help="Estimate replicas for this rate at the SLO.")
    ] = None,
    headroom: Annotated[
        float, typer.Option(help="Share of capacity kept spare per replica.")
    ] = DEFAULT_HEADROOM,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    csv: Annotated[Path | None, typer.Option(help="Write the per-second series here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write latency plots (PNG) here.")] = None,
    locustfile: Annotated[
        Path | None, typer.Option(help="Write this scenario as a Locust file and stop.")
    ] = None,
) -> None:
    """Load a service and report honest latency percentiles, errors and capacity."""
    from servepath.load.generator import (
        LoadPlan,
        check_url,
        find_max,
        run_load,
        sweep_concurrency,
    )

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
    try:
        objective: SLO | None = (
            parse_slo(slo, parse_error_budget(error_budget)) if slo is not None else None
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--slo/--error-budget") from None
    seconds = _duration(duration, "--duration")
    if seconds is None and requests is None:
        seconds = 10.0
    request_timeout = _duration(timeout, "--timeout")
    assert request_timeout is not None
    target, instances = _target_and_instances(url, data, out)

    if locustfile is not None:
        parts = urlsplit(target)
        scenario = LocustScenario(
            host=urlunsplit((parts.scheme, parts.netloc, "", "", "")),
            predict_path=parts.path + (f"?{parts.query}" if parts.query else ""),
            instances=tuple(instances),
            unique=unique,
            batch=batch,
            slo=objective,
            rate=rate,
            users=levels[0] if levels else 10,
            timeout=request_timeout,
        )
        try:
            files = write_locustfile(scenario, locustfile)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        if json:
            out.json({"files": [str(f) for f in files], "host": scenario.host})
        else:
            out.print(scenario_summary(scenario, files))
        raise typer.Exit(EXIT_OK)

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
            unique=unique,
            batch=batch,
            timeout=request_timeout,
            processes=processes,
            max_inflight=max_inflight,
            slo=objective,
            salt=random.randrange(1 << 24),
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None

    live = _LiveLine(out, enabled=not json and out.err_console.is_terminal)
    try:
        with live:
            if find_max_:
                assert objective is not None
                search = find_max(
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
                result: RunReport | FindMaxReport | SweepReport = search
                detail = search.best
            elif len(levels) > 1 or target_rps is not None:
                sweep = sweep_concurrency(
                    plan,
                    levels,
                    slo=objective,
                    target_rps=target_rps,
                    headroom=headroom,
                    progress=live.callback,
                )
                result = sweep
                detail = max(sweep.runs, key=lambda r: r.achieved_rate) if sweep.runs else None
            else:
                run = run_load(plan, live.callback)
                result = detail = run
    except ServepathError as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from None

    if detail is not None and csv is not None:
        write_csv(detail.timeseries, csv)
    if detail is not None and plot is not None:
        from servepath.load.plot import write_plot

        write_plot(detail, plot)
    if json:
        out.json(result)
    else:
        _render(out, result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEM)


class _LiveLine:
    """One progress line on stderr while a run goes on (only on a terminal)."""

    def __init__(self, out: Output, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self._live: Live | None = None

    def __enter__(self) -> _LiveLine:
        if self.enabled:
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
        if self._live is not None:
            self._live.console.print(message)


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _render(out: Output, result: RunReport | FindMaxReport | SweepReport) -> None:
    if isinstance(result, RunReport):
        _render_run(out, result)
    elif isinstance(result, FindMaxReport):
        _render_find_max(out, result)
    else:
        _render_sweep(out, result)


def _render_run(out: Output, r: RunReport) -> None:
    head = (
        f"open loop at {r.target_rate:g} req/s"
        if r.mode == "open"
        else f"closed loop at concurrency {r.concurrency}"
    )
    out.print(f"[bold]{r.url}[/] — {head}, {r.processes} process(es), {r.duration_s:.1f} s")
    counts = Table(show_header=False, box=None, pad_edge=False)
    counts.add_row("requests", f"{r.sent} sent = {r.succeeded} succeeded + {r.failed} failed")
    if r.warmup_requests:
        counts.add_row("warmup", f"{r.warmup_requests} requests, not counted")
    target = f" (target {r.target_rate:g})" if r.target_rate else ""
    counts.add_row("achieved", f"{r.achieved_rate:.1f} req/s{target}")
    counts.add_row("errors", r.errors.describe())
    ratio = r.cache.hit_ratio
    counts.add_row(
        "cache",
        f"{ratio:.1%} hits ({r.cache.hits} hit, {r.cache.misses} miss"
        + (f", {r.cache.unknown} unlabelled)" if r.cache.unknown else ")")
        if ratio is not None
        else "no X-Cache header in the responses",
    )
    out.print(counts)

    table = Table(title="latency, ms")
    table.add_column("")
    for name in ("p50", "p90", "p99", "p99.9", "max"):
        table.add_column(name, justify="right")
    rows = [
        ("from intended send (callers' view)", r.latency),
        ("service time (from actual send)", r.service_time),
    ]
    if r.server_time is not None:
        rows.append(("  of which server (Server-Timing total)", r.server_time))
    if r.network_time is not None:
        rows.append(("  of which network and client", r.network_time))
    for label, s in rows:
        table.add_row(
            label, _ms(s.p50_ms), _ms(s.p90_ms), _ms(s.p99_ms), _ms(s.p999_ms), _ms(s.max_ms)
        )
    out.print(table)

    g = r.generator
    health = Table(show_header=False, box=None, pad_edge=False, title="generator")
    health.add_row("CPU", ", ".join(f"{c:.0f}%" for c in g.cpu_percent) + " of a core")
    health.add_row("send rate", f"{g.send_rate:.1f} req/s")
    if g.sched_lag is not None:
        health.add_row(
            "scheduling lag",
            f"p50 {_ms(g.sched_lag.p50_ms)} ms, p99 {_ms(g.sched_lag.p99_ms)} ms, "
            f"max {_ms(g.sched_lag.max_ms)} ms",
        )
        health.add_row(
            "sent late",
            f"{g.late} requests more than {g.late_threshold_ms:g} ms after their intended time"
            + (f" ({g.inflight_waits} waited for an in-flight slot)" if g.inflight_waits else ""),
        )
    health.add_row("kept the rate", "yes" if g.kept_rate else "[bold red]no[/]")
    out.print(health)
    if r.slo is not None:
        colour = "green" if r.slo.met else "red"
        out.print(f"[{colour}]SLO {r.slo.slo.label}: {r.slo.describe()}[/]")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    for p in r.problems:
        out.print(f"[bold red]problem:[/] {p}")


def _render_find_max(out: Output, f: FindMaxReport) -> None:
    table = Table(title=f"capacity search, SLO {f.slo.label}")
    for name in ("rate", "achieved", f"p{f.slo.percentile:g} ms", "errors", "result"):
        table.add_column(name, justify="right")
    for s in f.steps:
        verdict = "pass" if s.passed else "fail"
        if not s.kept_rate:
            verdict += ", generator late"
        table.add_row(
            f"{s.rate:.1f}",
            f"{s.achieved_rate:.1f}",
            _ms(s.observed_ms),
            f"{s.error_ratio:.2%}",
            verdict,
        )
    out.print(table)
    if f.max_rate is not None:
        out.print(f"[bold]highest rate meeting the SLO: {f.max_rate:.1f} req/s[/]")
    if f.replicas is not None:
        out.print(f.replicas.statement)
    for p in f.problems:
        out.print(f"[bold red]problem:[/] {p}")


def _render_sweep(out: Output, s: SweepReport) -> None:
    table = Table(title="closed-loop sweep")
    for name in ("concurrency", "achieved req/s", "p50 ms", "p99 ms", "errors", "SLO"):
        table.add_column(name, justify="right")
    for r in s.runs:
        table.add_row(
            str(r.concurrency),
            f"{r.achieved_rate:.1f}",
            _ms(r.latency.p50_ms),
            _ms(r.latency.p99_ms),
            str(r.failed),
            "—" if r.slo is None else ("met" if r.slo.met else "missed"),
        )
    out.print(table)
    if s.usl is not None:
        u = s.usl
        peak = u.peak_concurrency
        out.print(
            f"USL fit: λ={u.lambda_:.1f} req/s, σ={u.sigma:.4g}, κ={u.kappa:.3g}, "
            f"R²={u.r_squared:.3f}"
            + (f"; throughput peaks at concurrency {peak:.1f}" if peak is not None else "")
        )
    if s.capacity_rps is not None:
        out.print(f"best throughput within the SLO: {s.capacity_rps:.1f} req/s")
    if s.replicas is not None:
        out.print(s.replicas.statement)
    for p in s.problems:
        out.print(f"[bold red]problem:[/] {p}")
