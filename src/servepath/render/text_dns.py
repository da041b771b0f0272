"""A DNS comparison as text: each resolver's answer, the CNAME chains, the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.netdiag.dns import DnsReport
    from servepath.output import Output


_STYLE = {
    "ok": "green",
    "nxdomain": "yellow",
    "no_answer": "yellow",
    "servfail": "red",
    "refused": "red",
    "timeout": "red",
    "error": "red",
}


def render_dns(out: Output, report: DnsReport) -> None:
    from servepath.output import Column, Grid

    if report.literal:
        out.print(report.verdict)
        return
    grid = Grid(
        ["resolver", "outcome", "answer", Column("ttl", "right"), Column("ms", "right")],
        title=f"{report.name} {report.rrtype}",
    )
    for a in report.answers:
        resolver = a.resolver
        if a.source == "resolv.conf":
            resolver += " (resolv.conf)"
        grid.add_row(
            resolver,
            (a.outcome, _STYLE.get(a.outcome, "")),
            "\n".join(a.values) or "-",
            "-" if a.ttl is None else str(a.ttl),
            f"{a.elapsed_ms:.1f}",
        )
    out.table(grid)
    chains = {a.cname_chain for a in report.answers if a.cname_chain}
    for chain in sorted(chains):
        who = [a.resolver for a in report.answers if a.cname_chain == chain]
        whom = "" if len(chains) == 1 else f" ({', '.join(who)})"
        out.print(f"CNAME chain{whom}: {' → '.join(chain)}")
    for a in report.answers:
        if a.outcome != "ok":
            out.print(f"{a.resolver}: {a.detail}")
    mark = ("agree", "green") if report.agree else ("problem", "red")
    out.print(mark, f": {report.verdict}")
    for note in report.notes:
        out.print(f"note: {note}")
