"""A trace as text: one row per hop, its address, name and round-trip times."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.netdiag.trace import Hop, Trace
    from servepath.output import Output


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
