"""`servepath ports`: the state of each port, and who answered for it."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, app, fail, get_output
from servepath.netdiag.services import DEFAULT_PORTS

if TYPE_CHECKING:
    from servepath.netdiag.ports import PortScan, PortState
    from servepath.output import Output

#: The probe's own defaults (servepath.netdiag.ports), written here so that `--help` does
#: not import the probe; a test holds them equal.
DEFAULT_TIMEOUT = 1.0
DEFAULT_CONCURRENCY = 1024

STATES: tuple[PortState, ...] = ("open", "closed", "filtered", "unreachable")
_STATE_STYLE = {"open": "green", "closed": "yellow", "filtered": "red", "unreachable": "magenta"}

#: Past this many ports, closed and filtered ones are summed up instead of listed one by one.
_LIST_ALL_UP_TO = 30


def _allow_open_files(wanted: int) -> None:
    import resource

    # One socket per port in flight; a soft limit of 1024 would otherwise cap a big scan.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    with contextlib.suppress(ValueError, OSError):  # else the probe keeps to the lower limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _ranges(ports: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3,7``."""
    parts: list[str] = []
    ordered = sorted(ports)
    start = previous = ordered[0]
    for port in [*ordered[1:], None]:
        if port is not None and port == previous + 1:
            previous = port
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if port is not None:
            start = previous = port
    return ",".join(parts)


def render_scan(out: Output, scan: PortScan) -> None:
    from servepath.output import Column, Grid, plural

    target = scan.target
    others = f" (also {', '.join(scan.other_addresses)})" if scan.other_addresses else ""
    shown = scan.host if scan.host == scan.address else f"{scan.host} → {scan.address}"
    out.print((shown, "bold"), f"{others}: {target.kind} — {target.meaning}")
    grid = Grid(
        [
            Column("PORT", "right"),
            "SERVICE",
            "RANGE",
            "STATE",
            Column("RTT ms", "right"),
            "OFFENDER",
            "WHY",
        ],
        box="none",
    )
    # The long explanation of each distinct outcome is printed once, under the table.
    notes: list[str] = []
    grouped: dict[tuple[str, str], list[int]] = {}
    summarise = len(scan.results) > _LIST_ALL_UP_TO
    for r in scan.results:
        if r.detail not in notes:
            notes.append(r.detail)
        if summarise and r.state in ("closed", "filtered"):
            grouped.setdefault((r.state, r.detail), []).append(r.port)
            continue
        grid.add_row(
            str(r.port),
            r.service or "",
            r.range,
            (r.state, _STATE_STYLE[r.state]),
            "" if r.rtt_ms is None else f"{r.rtt_ms:.2f}",
            r.offender or "",
            f"[{notes.index(r.detail) + 1}]",
        )
    for (state, detail), ports in grouped.items():
        grid.add_row(
            _ranges(ports),
            plural(len(ports), "port"),
            "",
            (state, _STATE_STYLE[state]),
            "",
            "",
            f"[{notes.index(detail) + 1}]",
        )
    out.table(grid)
    for number, note in enumerate(notes, start=1):
        out.print(f"[{number}] {note}")
    counts = Counter(r.state for r in scan.results)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    out.print(f"{summary} — {plural(len(scan.results), 'port')} in {scan.elapsed_s:.2f}s")


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
    from servepath.net.sockets import ResolveError
    from servepath.netdiag.ports import scan_ports
    from servepath.netdiag.services import PortSpecError, parse_ports

    out = get_output()
    try:
        wanted = parse_ports(ports) if ports is not None else DEFAULT_PORTS
    except PortSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="PORTS") from exc
    _allow_open_files(min(len(wanted), concurrency) + 64)
    try:
        scan = scan_ports(host, wanted, timeout=timeout, concurrency=concurrency)
    except ResolveError as exc:
        fail(out, json_out, "dns", str(exc), host=host, ports=list(wanted))
    if json_out:
        out.json(scan)
    else:
        render_scan(out, scan)
    raise typer.Exit(EXIT_OK if scan.all_open else EXIT_PROBLEM)
