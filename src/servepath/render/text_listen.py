"""This machine's listening sockets as text: address, port, process, reach."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.net.listeners import Listener, PortMapping
    from servepath.output import Cell, Output


_REACH: dict[str, Cell] = {"loopback": ("loopback", "yellow"), "unspecified": "all"}


def render_listen(
    out: Output,
    listeners: tuple[Listener, ...],
    mappings: tuple[PortMapping, ...],
    warnings: tuple[str, ...],
    notes: tuple[str, ...],
) -> None:
    from servepath.net.endpoints import host_port
    from servepath.output import Column, Grid

    if listeners:
        grid = Grid(
            [
                "proto",
                "address:port",
                "reach",
                Column("pid", "right"),
                "user",
                "process",
                Column("command", fold=True, min_width=24),
            ]
        )
        for x in listeners:
            reach = _REACH.get(x.address_kind, x.address_kind)
            process: Cell = x.process or "-"
            if x.forwarder:
                process = f"{x.process or '-'} ({x.forwarder})"
            grid.add_row(
                x.protocol,
                host_port(x.address, x.port),
                reach,
                str(x.pid or "-"),
                x.user or "-",
                process,
                " ".join(x.cmdline) or "-",
            )
        out.table(grid)
    if mappings:
        out.print("port mappings:")
        for m in mappings:
            chain = f" chain {m.chain}" if m.chain else ""
            iface = f" iface {m.interface}" if m.interface else ""
            out.print(f"  {m.describe()}{chain}{iface}")
    for warning in warnings:
        out.print(("warning:", "yellow"), f" {warning}")
    for note in notes:
        out.print(f"note: {note}")
