"""`servepath http`: one request, phase by phase, with the headers that tell its path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, base_settings, get_output
from servepath.cli._client_options import CafileOption, InsecureOption, ProxyOption, read_input

if TYPE_CHECKING:
    from servepath.netdiag.http import HttpHop, HttpReport
    from servepath.output import Grid, Output

_BAR_WIDTH = 30


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` (or ``Name:value``) as given to ``--header``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise typer.BadParameter(f"{text!r} is not NAME: VALUE", param_hint="--header")
    return name, value.strip()


@app.command()
def http(
    url: Annotated[
        str, typer.Argument(metavar="URL", help="http:// or https:// URL (http:// if none).")
    ],
    method: Annotated[
        str | None,
        typer.Option(
            "--method", "-X", metavar="METHOD", help="HTTP method [default: GET, POST with --data]."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", metavar="FILE", help="Request body from FILE, or - for stdin."
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", metavar="'NAME: VALUE'", help="Extra header (repeat for more)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds for each of connect, read, write.")
    ] = 10.0,
    proxy: ProxyOption = None,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Do not follow redirects.")
    ] = False,
    insecure: InsecureOption = False,
    cafile: CafileOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Time one HTTP request phase by phase, like curl -w.

    DNS, connect, proxy CONNECT, TLS, send, wait (time to first byte) and download lie end
    to end and add up to the total; then the headers that tell the request's path (proxies,
    caches, load balancers) and the server's own Server-Timing. Exit 0 on a 2xx or 3xx
    answer, 1 otherwise.
    """
    from servepath.netdiag.http import probe_http

    out = get_output()
    headers = [parse_header(h) for h in header or []]
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    content = read_input(data) if data is not None else None
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    settings = base_settings()
    proxy_env = settings.proxy
    if cafile is not None and not insecure:
        from servepath.client import Trust

        # a --cafile that cannot be read is bad usage, whatever the URL's scheme
        Trust(cafile=str(cafile)).context()
    if cafile is None and not insecure and settings.ssl_cert_file:
        cafile = Path(settings.ssl_cert_file)
    report = probe_http(
        url,
        method=method,
        content=content,
        headers=headers,
        timeout=timeout,
        proxy_env=proxy_env,
        proxy=proxy,
        follow=not no_follow,
        verify=not insecure,
        cafile=str(cafile) if cafile else None,
    )
    if report.error is not None and report.error.kind == "invalid_url" and not report.hops:
        raise typer.BadParameter(report.error.message, param_hint="URL")
    if json_out:
        out.json(report)
    else:
        render(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def phase_grid(hop: HttpHop) -> Grid:
    from servepath.output import Column, Grid

    p = hop.phases
    rows = [
        ("prepare (client)", p.prepare_ms),
        ("DNS", p.dns_ms),
        ("TCP connect", p.connect_ms),
        ("proxy CONNECT", p.proxy_tunnel_ms),
        ("TLS handshake", p.tls_ms),
        ("request sent", p.send_ms),
        ("wait (TTFB)", p.wait_ms),
        ("download", p.download_ms),
    ]
    grid = Grid(["phase", Column("ms", "right"), ""])
    scale = _BAR_WIDTH / p.total_ms if p.total_ms > 0 else 0.0
    clock = 0.0
    for name, value in rows:
        if value is None:
            continue
        start = round(clock * scale)
        width = max(1, round((clock + value) * scale) - start)
        grid.add_row(name, f"{value:.2f}", " " * start + "█" * width)
        clock += value
    grid.add_row(("total", "bold"), (f"{p.total_ms:.2f}", "bold"), "")
    return grid


def _describe_proxy(hop: HttpHop) -> str:
    choice = hop.proxy
    if choice.proxy:
        return f"through forward proxy {choice.proxy} ({choice.reason})"
    return f"direct ({choice.reason})"


def render(out: Output, report: HttpReport) -> None:
    from servepath.output import Column, Grid, plural

    for i, hop in enumerate(report.hops):
        if hop.status is not None:
            colour = "green" if hop.status < 400 else "red"
            status: tuple[str, str] = (f"{hop.status} {hop.reason}".rstrip(), colour)
        else:
            status = ("failed", "red")
        prefix = "→ " if i else ""
        version = f"  {hop.http_version}" if hop.http_version else ""
        out.print(f"{prefix}{hop.method} {hop.url}  ", status, version)
    final = report.final if report.hops else None
    if final is None:
        if report.error:
            out.print((f"error ({report.error.kind})", "red"), f": {report.error.message}")
        return
    resolved = f"  resolved: {', '.join(final.resolved)}" if final.resolved else ""
    connected = "connected to" if final.phases.connect_ms is not None else "connecting to"
    if final.error and (
        final.error.kind in ("refused", "connect_timeout", "unreachable", "proxy")
        or final.phases.send_ms is None
    ):
        connected = "could not connect to"
    where = f"{connected} {final.remote}, " if final.remote else ""
    out.print(f"{where}{_describe_proxy(final)}{resolved}")
    if final.tls_version:
        out.print(f"TLS: {final.tls_version} {final.tls_cipher or ''}".rstrip())
    if final.phases.reused_connection:
        out.print("connection reused: no DNS, connect or TLS on this hop")
    out.table(phase_grid(final))
    if len(report.hops) > 1:
        out.print(f"{plural(len(report.hops) - 1, 'redirect')} followed:")
        for code, src, dst in report.redirects:
            out.print(f"  {code} {src} → {dst}")
    if final.headers:
        out.print("headers that tell the path:")
        for name, value in final.headers:
            out.print(f"  {name}: {value}")
    if final.server_timing:
        grid = Grid(["name", Column("dur ms", "right"), "desc"], title="Server-Timing")
        for entry in final.server_timing:
            dur = "-" if entry.dur is None else f"{entry.dur:g}"
            grid.add_row(entry.name, dur, entry.desc or "")
        out.table(grid)
    if final.body_preview:
        out.print(f"body: {final.body_preview}")
    for note in report.notes:
        out.print(f"note: {note}")
    if report.error:
        out.print((f"error ({report.error.kind})", "red"), f": {report.error.message}")
