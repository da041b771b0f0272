"""`servepath ports`: the state of each port, and who answered for it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, failure_context, get_output
from servepath.netdiag.services import DEFAULT_PORTS
from servepath.render.text_ports import render_scan

if TYPE_CHECKING:
    pass

#: The probe's own defaults (servepath.netdiag.ports), written here so that `--help` does
#: not import the probe; a test holds them equal.
DEFAULT_TIMEOUT = 1.0
DEFAULT_CONCURRENCY = 1024


def _allow_open_files(wanted: int) -> None:
    import resource

    # One socket per port in flight; a soft limit of 1024 would otherwise cap a big scan.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    with contextlib.suppress(ValueError, OSError):  # else the probe keeps to the lower limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@app.command("ports")
def ports_command(
    host: Annotated[str, typer.Argument(metavar="HOST", help="Host name or IP address to probe.")],
    ports: Annotated[
        str | None,
        typer.Argument(
            metavar="PORTS",
            help="Ports: a list and ranges, e.g. 80,443,8000-8010 (service names allowed). "
            f"[default: {','.join(map(str, DEFAULT_PORTS))}]",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.001, metavar="SECONDS", help="Seconds to wait for each port."
        ),
    ] = DEFAULT_TIMEOUT,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, metavar="N", help="Ports probed at once.")
    ] = DEFAULT_CONCURRENCY,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Probe TCP ports: open, closed, filtered or unreachable.

    closed: the host answered with a reset (nothing listens); filtered: no answer (dropped on
    the way); unreachable: an ICMP error, with the address that sent it (a firewall REJECT
    names its hop). Exit 0 when every port asked is open, 1 otherwise.
    """
    from servepath.netdiag.ports import scan_ports
    from servepath.netdiag.services import parse_ports

    out = get_output()
    wanted = parse_ports(ports) if ports is not None else DEFAULT_PORTS
    failure_context(host=host, ports=list(wanted))
    _allow_open_files(min(len(wanted), concurrency) + 64)
    scan = scan_ports(host, wanted, timeout=timeout, concurrency=concurrency)
    if json_out:
        out.json(scan)
    else:
        render_scan(out, scan)
    raise typer.Exit(EXIT_OK if scan.all_open else EXIT_PROBLEM)
