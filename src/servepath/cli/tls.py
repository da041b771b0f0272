"""`servepath tls`: what a server presents in its TLS handshake, and why a client refuses it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import (
    EXIT_OK,
    EXIT_PROBLEM,
    app,
    base_settings,
    get_output,
)

if TYPE_CHECKING:
    from servepath.netdiag.tls import TlsReport
    from servepath.output import Output


@app.command()
def tls(
    target: Annotated[
        str,
        typer.Argument(metavar="TARGET", help="HOST, HOST:PORT, [IPv6]:PORT or a URL [port: 443]."),
    ],
    servername: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Name to send (SNI) and check [default: HOST]."),
    ] = None,
    cafile: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Trust this CA bundle (or pinned certificate) instead of the system store "
            "[default: SSL_CERT_FILE].",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds for connect and for the handshake.")
    ] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a server's TLS certificate and handshake.

    Version, cipher, certificate, expiry, name, trust, and why a client refuses it (or that
    the port speaks plain HTTP). Exit 0 when the certificate is trusted and valid, 1
    otherwise.
    """
    from servepath.netdiag.tls import parse_target, probe_tls

    out = get_output()
    host, port = parse_target(target)
    settings = base_settings()
    source = "--cafile"
    if cafile is None and settings.ssl_cert_file:
        cafile, source = Path(settings.ssl_cert_file), "SSL_CERT_FILE"
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint=source)
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    report = probe_tls(
        host, port, servername=servername, cafile=str(cafile) if cafile else None, timeout=timeout
    )
    if json_out:
        out.json(report)
    else:
        render(out, report, store_source=source if cafile else None)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)


def _expiry(days: float) -> str:
    from servepath.output import plural

    if days < 0:
        return f"expired {plural(round(-days, 1), 'day')} ago"
    return f"in {plural(round(days, 1), 'day')}"


def render(out: Output, report: TlsReport, *, store_source: str | None = None) -> None:
    from servepath.net.endpoints import host_port
    from servepath.output import Column, Grid

    where = host_port(report.host, report.port)
    if report.address and report.address != report.host:
        where += f" ({report.address})"
    verdict: tuple[str, str] = ("trusted and valid", "green")
    if not report.ok:
        verdict = (report.failure or ", ".join(report.problems) or "not trusted", "red")
    out.print(f"{where}  servername {report.servername}  ", verdict)
    if report.detail and not report.ok:
        out.print(report.detail)
    cert = report.certificate
    grid = Grid([Column("", fold=True, min_width=12), Column("", fold=True)], header=False,
                box="none")  # fmt: skip
    if report.protocol:
        grid.add_row(("protocol", "bold"), f"{report.protocol}  {report.cipher or ''}".rstrip())
    if cert is not None:
        grid.add_row(("subject", "bold"), cert.subject)
        grid.add_row(("names (SAN)", "bold"), ", ".join(cert.names()) or "-")
        grid.add_row(
            ("matches name", "bold"),
            (f"{'yes' if report.name_matches else 'no'} ({report.servername})",
             "green" if report.name_matches else "red"),
        )  # fmt: skip
        issuer = cert.issuer + ("  (self-signed)" if cert.self_signed else "")
        grid.add_row(("issuer", "bold"), issuer)
        grid.add_row(
            ("valid", "bold"),
            f"{cert.not_before:%Y-%m-%d %H:%M} → {cert.not_after:%Y-%m-%d %H:%M} UTC",
        )
        days = report.days_to_expiry or 0.0
        style = "red" if days < 0 else "yellow" if days < 14 else "green"
        grid.add_row(("expires", "bold"), (_expiry(days), style))
        grid.add_row(("key", "bold"), f"{cert.key}, {cert.signature_algorithm}")
        grid.add_row(("sha256", "bold"), cert.sha256)
    if report.trust_store == "system":
        store = "the system store"
    else:
        store = report.trust_store + (f", {store_source}" if store_source else "")
    answer = "yes" if report.trusted else "no"
    grid.add_row(
        ("trusted", "bold"), (f"{answer} (by {store})", "green" if report.trusted else "red")
    )
    if report.problems:
        grid.add_row(("problems", "bold"), (", ".join(report.problems), "red"))
    if report.connect_ms is not None:
        shake = "" if report.handshake_ms is None else f", handshake {report.handshake_ms:.1f} ms"
        grid.add_row(("time", "bold"), f"connect {report.connect_ms:.1f} ms{shake}")
    out.table(grid)
    for note in report.notes:
        out.print(f"note: {note}")
