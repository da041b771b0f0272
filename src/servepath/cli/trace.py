"""`servepath trace`: the hops to a host, unprivileged, all TTLs probed at once."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, failure_context, get_output
from servepath.render.text_trace import render_trace

if TYPE_CHECKING:
    pass

#: The probe's own defaults (servepath.netdiag.trace), written here so that `--help` does
#: not import the probe; a test holds them equal.
DEFAULT_MAX_HOPS = 30
DEFAULT_QUERIES = 3
DEFAULT_TIMEOUT = 2.0


class ProtocolChoice(StrEnum):
    tcp = "tcp"
    udp = "udp"
    icmp = "icmp"


@app.command("trace")
def trace_command(
    host: Annotated[
        str, typer.Argument(metavar="HOST", help="Host name or IP address to trace to.")
    ],
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            min=1,
            max=65535,
            metavar="PORT",
            help="TCP: the service's port [default: 80]. UDP: a fixed port [default: 33434 "
            "upwards, one per probe].",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        ProtocolChoice, typer.Option("--protocol", "-P", help="Probe with TCP, UDP or ICMP echo.")
    ] = ProtocolChoice.tcp,
    max_hops: Annotated[
        int,
        typer.Option("--max-hops", "-m", min=1, max=255, metavar="N", help="Highest TTL probed."),
    ] = DEFAULT_MAX_HOPS,
    queries: Annotated[
        int, typer.Option("--queries", "-q", min=1, max=10, metavar="N", help="Probes per hop.")
    ] = DEFAULT_QUERIES,
    numeric: Annotated[
        bool, typer.Option("-n", "--numeric", help="Do not look up names of the hops.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", "-w", min=0.001, metavar="SECONDS", help="Seconds to wait for a probe."
        ),
    ] = DEFAULT_TIMEOUT,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Show the routers on the way to a host.

    Every TTL is probed at once, without root. Exit 0 when HOST was reached, 1 otherwise.
    """
    from servepath.netdiag.trace import trace

    out = get_output()
    if protocol is ProtocolChoice.icmp and port is not None:
        raise typer.BadParameter("ICMP echo has no port", param_hint="--port")
    failure_context(target=host, reached=False, hops=[])
    result = trace(
        host,
        protocol=protocol.value,
        port=port,
        max_hops=max_hops,
        queries=queries,
        timeout=timeout,
        resolve_names=not numeric,
    )
    if json_out:
        out.json(result)
    else:
        render_trace(out, result)
    raise typer.Exit(EXIT_OK if result.reached else EXIT_PROBLEM)
