"""`servepath listen`: the local listening sockets with their processes, like ss -ltnup + ps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, get_output
from servepath.render.text_listen import render_listen

if TYPE_CHECKING:
    pass


@app.command()
def listen(
    port: Annotated[
        int | None,
        typer.Argument(
            metavar="PORT", help="Only this port; exit 1 unless it is reachable.", min=1, max=65535
        ),
    ] = None,
    udp: Annotated[bool, typer.Option("--udp/--no-udp", help="Include bound UDP sockets.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List this machine's listening sockets and their processes.

    TCP (and UDP) sockets with address, port, pid, user, process and command line. Warns on
    services bound to loopback only, names container port-forwarders, and shows the
    host-port-to-container-port mappings it can read (docker-proxy, iptables NAT rules).
    With PORT: exit 0 when something listens on it on a non-loopback address, 1 otherwise.
    """
    from servepath.net.listeners import inspect_port, list_listeners

    out = get_output()
    if port is None:
        report = list_listeners(udp=udp)
        if json_out:
            out.json(report)
        else:
            render_listen(out, report.listeners, report.mappings, report.warnings, report.notes)
        raise typer.Exit(EXIT_OK)
    port_report = inspect_port(port, udp=udp)
    if json_out:
        out.json(port_report)
    else:
        render_listen(out, port_report.listeners, port_report.mappings, port_report.warnings,
               port_report.notes)  # fmt: skip
        if port_report.reachable:
            where = ", ".join(port_report.bind_addresses)
            out.print((f"port {port} is reachable", "green"), f": listening on {where}")
    raise typer.Exit(EXIT_OK if port_report.reachable else EXIT_PROBLEM)
