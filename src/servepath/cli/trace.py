"""`servepath trace`: the hops to a host, unprivileged, all TTLs probed at once."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, fail, get_output

if TYPE_CHECKING:
    from servepath.netdiag.trace import Hop, Trace
    from servepath.output import Output

#: The probe's own defaults (servepath.netdiag.trace), written here so that `--help` does
#: not import the probe; a test holds them equal.
DEFAULT_MAX_HOPS = 30
DEFAULT_QUERIES = 3
DEFAULT_TIMEOUT = 2.0


class ProtocolChoice(StrEnum):
    tcp = "tcp"
    udp = "udp"
    icmp = "icmp"


def _rtts(hop: Hop) -> str:
    shown = [f"{rtt:.3f}" for rtt in hop.rtt_ms] + ["*"] * hop.lost
    return "  ".join(shown)


def render_trace(out: Output, result: Trace) -> None:
    from servepath.output import Column, Grid, plural

    port = f" port {result.port}" if result.port is not None else ""
    shown = result.target if result.target == result.address else f"{result.target} → "
    shown += result.address if result.target != result.address else ""
    out.print(
        (f"trace to {shown}", "bold"),
        f"{port} over {result.protocol} ({result.method}), "
        f"{plural(result.max_hops, 'hop')} max, {plural(result.queries, 'probe')} each",
    )
    grid = Grid([Column("TTL", "right"), "ADDRESS", "NAME", "RTT ms", "NOTE"], box="none")
    hops = list(result.hops)
    # Trailing silent hops (a target that drops probes) say one thing: say it once.
    last_answer = max((i for i, h in enumerate(hops) if h.address is not None), default=-1)
    trailing = hops[last_answer + 1 :]
    for hop in hops[: last_answer + 1]:
        address = hop.address or "*"
        if len(hop.addresses) > 1:
            address += f" (+{', '.join(hop.addresses[1:])})"
        grid.add_row(str(hop.ttl), address, hop.name or "", _rtts(hop), hop.note or "")
    if len(trailing) == 1:
        grid.add_row(str(trailing[0].ttl), "*", "", _rtts(trailing[0]), "")
    elif trailing:
        ttls = f"{trailing[0].ttl}-{trailing[-1].ttl}"
        grid.add_row(ttls, "*", "", "no answer", "")
    out.table(grid)
    style = "green" if result.reached else "red"
    out.print((result.detail, style), f" ({result.elapsed_s:.2f}s)")


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
    from servepath.net.sockets import ResolveError
    from servepath.netdiag.trace import TraceError, trace

    out = get_output()
    if protocol is ProtocolChoice.icmp and port is not None:
        raise typer.BadParameter("ICMP echo has no port", param_hint="--port")
    try:
        result = trace(
            host,
            protocol=protocol.value,
            port=port,
            max_hops=max_hops,
            queries=queries,
            timeout=timeout,
            resolve_names=not numeric,
        )
    except ResolveError as exc:
        fail(out, json_out, "dns", str(exc), target=host, reached=False, hops=[])
    except TraceError as exc:
        fail(out, json_out, "trace_failed", str(exc), target=host, reached=False, hops=[])
    if json_out:
        out.json(result)
    else:
        render_trace(out, result)
    raise typer.Exit(EXIT_OK if result.reached else EXIT_PROBLEM)
