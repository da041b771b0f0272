"""A port scan as text: one row per port (runs of the same state folded), then the counts."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.netdiag.ports import PortScan, PortState
    from servepath.output import Output


#: Port states in the order the summary counts them.
STATES: tuple[PortState, ...] = ("open", "closed", "filtered", "unreachable")


_STATE_STYLE = {"open": "green", "closed": "yellow", "filtered": "red", "unreachable": "magenta"}


#: Past this many ports, closed and filtered ones are summed up instead of listed one by one.
_LIST_ALL_UP_TO = 30


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
