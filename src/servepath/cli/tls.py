"""`servepath tls`: what a server presents in its TLS handshake, and why a client refuses it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.errors import EndpointError, ServepathError
from servepath.net.endpoints import host_port

if TYPE_CHECKING:
    from servepath.netdiag.tls import TlsReport
    from servepath.output import Output


@app.command()
def tls(
    target: Annotated[str, typer.Argument(help="HOST or HOST:PORT ([IPv6]:PORT) [port: 443]")],
    servername: Annotated[
        str | None, typer.Option(help="Name to send (SNI) and check [default: HOST]")
    ] = None,
    cafile: Annotated[
        Path | None, typer.Option(help="Trust this CA bundle instead of the system store")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for connect and for the handshake")] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Check a server's TLS: version, cipher, certificate, expiry, name, trust, and the failure.

    Exit 0 when the certificate is trusted and valid, 1 otherwise.
    """
    from servepath.netdiag.tls import parse_target, probe_tls

    out = get_output()
    try:
        host, port = parse_target(target)
    except EndpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="TARGET") from exc
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    try:
        report = probe_tls(
            host,
            port,
            servername=servername,
            cafile=str(cafile) if cafile else None,
            timeout=timeout,
        )
    except ServepathError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cafile") from exc
    if json_out:
        out.json(report)
    else:
        render(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def render(out: Output, report: TlsReport) -> None:
    where = host_port(report.host, report.port)
    if report.address and report.address != report.host:
        where += f" ({report.address})"
    verdict = "[green]trusted and valid[/]" if report.ok else f"[red]{report.failure}[/]"
    if not report.ok and report.failure is None and report.problems:
        verdict = f"[red]{', '.join(report.problems)}[/]"
    out.print(f"{where}  servername {report.servername}  {verdict}")
    if report.detail and not report.ok:
        out.print(report.detail)
    cert = report.certificate
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    if report.protocol:
        table.add_row("protocol", f"{report.protocol}  {report.cipher or ''}")
    if cert is not None:
        table.add_row("subject", cert.subject)
        table.add_row("names (SAN)", ", ".join(cert.names()) or "-")
        name_ok = "[green]yes[/]" if report.name_matches else "[red]no[/]"
        table.add_row("matches name", f"{name_ok} ({report.servername})")
        table.add_row(
            "issuer", cert.issuer + ("  [yellow](self-signed)[/]" if cert.self_signed else "")
        )
        table.add_row(
            "valid", f"{cert.not_before:%Y-%m-%d %H:%M} → {cert.not_after:%Y-%m-%d %H:%M} UTC"
        )
        days = report.days_to_expiry or 0.0
        style = "red" if days < 0 else "yellow" if days < 14 else "green"
        table.add_row("expires in", f"[{style}]{days:.1f} days[/]")
        table.add_row("key", f"{cert.key}, {cert.signature_algorithm}")
        table.add_row("sha256", cert.sha256)
    trust = "[green]yes[/]" if report.trusted else "[red]no[/]"
    store = "system store" if report.trust_store == "system" else report.trust_store
    table.add_row("trusted", f"{trust} (by {store})")
    if report.problems:
        table.add_row("problems", ", ".join(report.problems))
    if report.connect_ms is not None:
        shake = "" if report.handshake_ms is None else f", handshake {report.handshake_ms:.1f} ms"
        table.add_row("time", f"connect {report.connect_ms:.1f} ms{shake}")
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")
