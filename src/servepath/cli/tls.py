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
from servepath.render.text_tls import render_tls

if TYPE_CHECKING:
    pass


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
        render_tls(out, report, store_source=source if cafile else None)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)
