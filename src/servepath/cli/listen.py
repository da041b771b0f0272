"""`servepath listen`: the local listening sockets with their processes, like ss -ltnup + ps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.net.endpoints import host_port

if TYPE_CHECKING:
    from servepath.netdiag.listen import Listener, PortMapping
    from servepath.output import Output

_COMMAND_WIDTH = 120
_REACH = {"loopback": "[yellow]loopback[/]", "unspecified": "all"}


@app.command()
def listen(
    port: Annotated[
        int | None,
        typer.Argument(help="Only this port; exit 1 unless it is reachable", min=1, max=65535),
    ] = None,
    udp: Annotated[bool, typer.Option("--udp/--no-udp", help="Include bound UDP sockets")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List listening TCP (and UDP) sockets: address, port, pid, user, process, command line.

    Warns on services bound to loopback only, names container port-forwarders, and shows the
    host-port-to-container-port mappings it can read (docker-proxy, iptables NAT rules).
    With PORT: exit 0 when something listens on it on a non-loopback address, 1 otherwise.
    """
    from servepath.netdiag.listen import inspect_port, list_listeners

    out = get_output()
    if port is None:
        report = list_listeners(udp=udp)
        if json_out:
            out.json(report)
        else:
            render(out, report.listeners, report.mappings, report.warnings, report.notes)
        raise typer.Exit(EXIT_OK)
    port_report = inspect_port(port, udp=udp)
    if json_out:
        out.json(port_report)
    else:
        render(out, port_report.listeners, port_report.mappings, port_report.warnings,
               port_report.notes)  # fmt: skip
        if port_report.reachable:
            where = ", ".join(port_report.bind_addresses)
            out.print(f"[green]port {port} is reachable[/]: listening on {where}")
    raise typer.Exit(EXIT_OK if port_report.reachable else EXIT_PROBLEM)


def _command(x: Listener) -> str:
    text = " ".join(x.cmdline) or "-"
    return text if len(text) <= _COMMAND_WIDTH else text[: _COMMAND_WIDTH - 1] + "…"


def render(
    out: Output,
    listeners: tuple[Listener, ...],
    mappings: tuple[PortMapping, ...],
    warnings: tuple[str, ...],
    notes: tuple[str, ...],
) -> None:
    if listeners:
        table = Table()
        table.add_column("proto", no_wrap=True)
        table.add_column("address:port", no_wrap=True)
        table.add_column("reach", no_wrap=True)
        table.add_column("pid", justify="right", no_wrap=True)
        table.add_column("user", no_wrap=True)
        table.add_column("process", no_wrap=True)
        table.add_column("command", overflow="fold", min_width=16)
        for x in listeners:
            reach = _REACH.get(x.address_kind, x.address_kind)
            process = x.process or "-"
            if x.forwarder:
                process += f" [cyan]({x.forwarder})[/]"
            # an IPv6 address in brackets would otherwise read as markup: [fd00::1] vanishes
            where = escape(host_port(x.address, x.port))
            table.add_row(
                x.protocol, where, reach, str(x.pid or "-"), x.user or "-", process, _command(x),
            )  # fmt: skip
        out.print(table)
    if mappings:
        out.print("port mappings:")
        for m in mappings:
            chain = f" chain {m.chain}" if m.chain else ""
            iface = f" iface {m.interface}" if m.interface else ""
            out.print(f"  {m.describe()}{chain}{iface}", markup=False)
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    for note in notes:
        out.print(f"note: {note}")
