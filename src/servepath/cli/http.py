"""`servepath http`: one request, phase by phase, with the headers that tell its path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, base_settings, get_output
from servepath.cli._client_options import CafileOption, InsecureOption, ProxyOption, read_input
from servepath.render.text_http import render_http

if TYPE_CHECKING:
    pass


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
        render_http(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)
