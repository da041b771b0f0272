"""`servepath http`: one request, phase by phase, with the headers that tell its path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, app, base_settings, get_output
from servepath.errors import ConfigError, ServepathError

if TYPE_CHECKING:
    from servepath.netdiag.http import HttpHop, HttpReport
    from servepath.output import Output

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
    url: Annotated[str, typer.Argument(help="http:// or https:// URL")],
    method: Annotated[
        str | None,
        typer.Option("--method", "-X", help="HTTP method [default: GET, POST with --data]"),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Request body from FILE, or - for stdin")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header NAME: VALUE (repeat)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for each of connect, read, write")] = 10.0,
    proxy: Annotated[
        str | None,
        typer.Option(help="Forward proxy URL [default: from HTTP(S)_PROXY / NO_PROXY]"),
    ] = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Do not follow redirects")] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", "-k", help="Do not verify the server's certificate")
    ] = False,
    cafile: Annotated[
        Path | None, typer.Option(help="Trust this CA bundle instead of the system store")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Time one request like curl -w: DNS, connect, TLS, send, wait, download; and its path.

    Exit 0 on a 2xx or 3xx answer, 1 otherwise.
    """
    from servepath.netdiag.http import probe_http

    out = get_output()
    headers = [parse_header(h) for h in header or []]
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    content: bytes | None = None
    if data is not None:
        try:
            content = sys.stdin.buffer.read() if data == "-" else Path(data).read_bytes()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {data}: {exc.strerror}", param_hint="--data"
            ) from exc
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    try:
        proxy_env = base_settings().proxy
    except ConfigError as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc
    try:
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
    except ServepathError as exc:  # a CA bundle or proxy that cannot be used
        raise typer.BadParameter(str(exc)) from exc
    if report.error is not None and report.error.kind == "invalid_url" and not report.hops:
        raise typer.BadParameter(report.error.message, param_hint="URL")
    if json_out:
        out.json(report)
    else:
        render(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _phase_table(hop: HttpHop) -> Table:
    p = hop.phases
    rows = [
        ("DNS", p.dns_ms),
        ("TCP connect", p.connect_ms),
        ("proxy CONNECT", p.proxy_tunnel_ms),
        ("TLS handshake", p.tls_ms),
        ("request sent", p.send_ms),
        ("wait (TTFB)", p.wait_ms),
        ("download", p.download_ms),
    ]
    table = Table(title_justify="left")
    table.add_column("phase", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    scale = _BAR_WIDTH / p.total_ms if p.total_ms > 0 else 0.0
    clock = 0.0
    for name, value in rows:
        if value is None:
            continue
        start = int(clock * scale)
        width = max(1, round(value * scale))
        table.add_row(name, _ms(value), " " * start + "█" * width)
        clock += value
    table.add_row("[bold]total[/]", f"[bold]{_ms(p.total_ms)}[/]", "")
    return table


def _describe_proxy(hop: HttpHop) -> str:
    choice = hop.proxy
    if choice.proxy:
        return f"through forward proxy {choice.proxy} ({choice.reason})"
    return f"direct ({choice.reason})"


def render(out: Output, report: HttpReport) -> None:
    for i, hop in enumerate(report.hops):
        status = (
            f"[{'green' if hop.status and hop.status < 400 else 'red'}]{hop.status} {hop.reason}[/]"
            if hop.status is not None
            else "[red]failed[/]"
        )
        prefix = "→ " if i else ""
        out.print(f"{prefix}{hop.method} {hop.url}  {status}  {hop.http_version or ''}".rstrip())
    final = report.final if report.hops else None
    if final is None:
        if report.error:
            out.print(f"[red]error ({report.error.kind})[/]: {report.error.message}")
        return
    resolved = f"  resolved: {', '.join(final.resolved)}" if final.resolved else ""
    connected = "connected to" if final.phases.connect_ms is not None else "connecting to"
    if final.error and final.error.kind in ("refused", "connect_timeout", "unreachable", "proxy"):
        connected = "could not connect to"
    where = f"{connected} {final.remote}, " if final.remote else ""
    out.print(f"{where}{_describe_proxy(final)}{resolved}")
    if final.tls_version:
        out.print(f"TLS: {final.tls_version} {final.tls_cipher or ''}")
    if final.phases.reused_connection:
        out.print("connection reused: no DNS, connect or TLS on this hop")
    out.print(_phase_table(final))
    if len(report.hops) > 1:
        out.print(f"redirects followed: {len(report.hops) - 1}")
        for code, src, dst in report.redirects:
            out.print(f"  {code} {src} → {dst}")
    if final.headers:
        out.print("headers that tell the path:")
        for name, value in final.headers:
            out.print(f"  {name}: {value}")
    if final.server_timing:
        table = Table(title="Server-Timing", title_justify="left")
        table.add_column("name")
        table.add_column("dur ms", justify="right")
        table.add_column("desc")
        for entry in final.server_timing:
            dur = "-" if entry.dur is None else f"{entry.dur:g}"
            table.add_row(entry.name, dur, entry.desc or "")
        out.print(table)
    if final.body_preview:
        out.print(f"body: {final.body_preview}")
    for note in report.notes:
        out.print(f"note: {note}")
    if report.error:
        out.print(f"[red]error ({report.error.kind})[/]: {report.error.message}")
