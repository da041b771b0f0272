"""`servepath trace`: the hops to a host, unprivileged, all TTLs probed at once."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.netdiag.ports import ResolveError
from servepath.netdiag.trace import (
    DEFAULT_MAX_HOPS,
    DEFAULT_QUERIES,
    DEFAULT_TIMEOUT,
    Hop,
    Trace,
    TraceError,
    trace,
)
from servepath.output import Output


class ProtocolChoice(StrEnum):
    tcp = "tcp"
    udp = "udp"
    icmp = "icmp"


def _rtts(hop: Hop) -> str:
    shown = [f"{rtt:.3f}" for rtt in hop.rtt_ms] + ["*"] * hop.lost
    return "  ".join(shown)


def render_trace(out: Output, result: Trace) -> None:
    port = f" port {result.port}" if result.port is not None else ""
    shown = result.target if result.target == result.address else f"{result.target} → "
    shown += result.address if result.target != result.address else ""
    out.print(
        f"[bold]trace to {shown}[/]{port} over {result.protocol} ({result.method}), "
        f"{result.max_hops} hops max, {result.queries} probes each"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("TTL", "ADDRESS", "NAME", "RTT ms", "NOTE"):
        table.add_column(column, justify="right" if column == "TTL" else "left")
    hops = list(result.hops)
    # Trailing silent hops (a target that drops probes) say one thing: say it once.
    last_answer = max((i for i, h in enumerate(hops) if h.address is not None), default=-1)
    trailing = hops[last_answer + 1 :]
    for hop in hops[: last_answer + 1]:
        address = hop.address or "*"
        if len(hop.addresses) > 1:
            address += f" (+{', '.join(hop.addresses[1:])})"
        table.add_row(str(hop.ttl), address, hop.name or "", _rtts(hop), hop.note or "")
    if len(trailing) == 1:
        table.add_row(str(trailing[0].ttl), "*", "", _rtts(trailing[0]), "")
    elif trailing:
        ttls = f"{trailing[0].ttl}-{trailing[-1].ttl}"
        table.add_row(ttls, "*", "", "no answer", "")
    out.print(table)
    style = "green" if result.reached else "red"
    out.print(f"[{style}]{result.detail}[/] ({result.elapsed_s:.2f}s)")


@app.command("trace")
def trace_command(
    host: Annotated[str, typer.Argument(help="Host name or IP address to trace to")],
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            min=1,
            max=65535,
            help="TCP: the service's port (default 80). UDP: a fixed port "
            "(default 33434 upwards, one per probe)",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        ProtocolChoice, typer.Option("--protocol", "-P", help="Probe with TCP, UDP or ICMP echo")
    ] = ProtocolChoice.tcp,
    max_hops: Annotated[
        int, typer.Option("--max-hops", "-m", min=1, max=255, help="Highest TTL probed")
    ] = DEFAULT_MAX_HOPS,
    queries: Annotated[
        int, typer.Option("--queries", "-q", min=1, max=10, help="Probes per hop")
    ] = DEFAULT_QUERIES,
    numeric: Annotated[
        bool, typer.Option("-n", "--numeric", help="Do not look up names of the hops")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", "-w", min=0.001, help="Seconds to wait for a probe")
    ] = DEFAULT_TIMEOUT,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show the routers on the way to HOST and whether it was reached (exit 0 when it was)."""
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
    except (ResolveError, TraceError) as exc:
        out.error(str(exc))
        raise typer.Exit(EXIT_PROBLEM) from exc
    if json_out:
        out.json(result)
    else:
        render_trace(out, result)
    raise typer.Exit(EXIT_OK if result.reached else EXIT_PROBLEM)
