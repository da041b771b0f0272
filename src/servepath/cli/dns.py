"""`servepath dns`: the system resolver and named resolvers, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.render.text_dns import render_dns

if TYPE_CHECKING:
    pass


@app.command()
def dns(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The name to resolve (an IP literal is not resolved)."),
    ],
    rrtype: Annotated[
        str,
        typer.Option(
            "--type", "-t", metavar="TYPE", help="Record type: A, AAAA, CNAME, MX, TXT, NS, ..."
        ),
    ] = "A",
    resolver: Annotated[
        list[str] | None,
        typer.Option(
            "--resolver",
            "-r",
            metavar="IP[:PORT]",
            help="Also ask this nameserver (repeat for more).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for each resolver.")
    ] = 2.0,
    system: Annotated[
        bool,
        typer.Option(
            "--system/--no-system",
            help="Ask the system resolver too: getaddrinfo and each resolv.conf nameserver.",
        ),
    ] = True,
    resolv_conf: Annotated[
        Path,
        typer.Option(metavar="FILE", help="The resolv.conf whose nameservers are the system's."),
    ] = Path("/etc/resolv.conf"),
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Resolve a name with every resolver at once and compare.

    Answers, TTLs, the CNAME chain and the time of each resolver, and whether they agree.
    Exit 0 when every resolver answered and they agree, 1 otherwise.
    """
    from servepath.netdiag.dns import parse_nameserver, probe_dns

    out = get_output()
    servers = [parse_nameserver(spec) for spec in resolver or []]
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    if not system and not servers:
        raise typer.BadParameter("--no-system needs at least one --resolver")
    report = probe_dns(
        name,
        rrtype,
        resolvers=servers,
        system=system,
        resolv_conf=resolv_conf,
        timeout=timeout,
    )
    if json_out:
        out.json(report)
    else:
        render_dns(out, report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PROBLEM)
