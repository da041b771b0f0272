"""An HTTP request's timing as text: the phases as bars, the path headers, the verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.netdiag.http import HttpHop, HttpReport
    from servepath.output import Grid, Output


_BAR_WIDTH = 30


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def phase_grid(hop: HttpHop) -> Grid:
    from servepath.output import Column, Grid

    p = hop.phases
    rows = [
        ("prepare (client)", p.prepare_ms),
        ("DNS", p.dns_ms),
        ("TCP connect", p.connect_ms),
        ("proxy CONNECT", p.proxy_tunnel_ms),
        ("TLS handshake", p.tls_ms),
        ("request sent", p.send_ms),
        ("wait (TTFB)", p.wait_ms),
        ("download", p.download_ms),
    ]
    grid = Grid(["phase", Column("ms", "right"), ""])
    scale = _BAR_WIDTH / p.total_ms if p.total_ms > 0 else 0.0
    clock = 0.0
    for name, value in rows:
        if value is None:
            continue
        start = round(clock * scale)
        width = max(1, round((clock + value) * scale) - start)
        grid.add_row(name, f"{value:.2f}", " " * start + "█" * width)
        clock += value
    grid.add_row(("total", "bold"), (f"{p.total_ms:.2f}", "bold"), "")
    return grid


def _describe_proxy(hop: HttpHop) -> str:
    choice = hop.proxy
    if choice.proxy:
        return f"through forward proxy {choice.proxy} ({choice.reason})"
    return f"direct ({choice.reason})"


def render_http(out: Output, report: HttpReport) -> None:
    from servepath.output import Column, Grid, plural

    for i, hop in enumerate(report.hops):
        if hop.status is not None:
            colour = "green" if hop.status < 400 else "red"
            status: tuple[str, str] = (f"{hop.status} {hop.reason}".rstrip(), colour)
        else:
            status = ("failed", "red")
        prefix = "→ " if i else ""
        version = f"  {hop.http_version}" if hop.http_version else ""
        out.print(f"{prefix}{hop.method} {hop.url}  ", status, version)
    final = report.final if report.hops else None
    if final is None:
        if report.error:
            out.print((f"error ({report.error.kind})", "red"), f": {report.error.message}")
        return
    resolved = f"  resolved: {', '.join(final.resolved)}" if final.resolved else ""
    connected = "connected to" if final.phases.connect_ms is not None else "connecting to"
    if final.error and (
        final.error.kind in ("refused", "connect_timeout", "unreachable", "proxy")
        or final.phases.send_ms is None
    ):
        connected = "could not connect to"
    where = f"{connected} {final.remote}, " if final.remote else ""
    out.print(f"{where}{_describe_proxy(final)}{resolved}")
    if final.tls_version:
        out.print(f"TLS: {final.tls_version} {final.tls_cipher or ''}".rstrip())
    if final.phases.reused_connection:
        out.print("connection reused: no DNS, connect or TLS on this hop")
    out.table(phase_grid(final))
    if len(report.hops) > 1:
        out.print(f"{plural(len(report.hops) - 1, 'redirect')} followed:")
        for code, src, dst in report.redirects:
            out.print(f"  {code} {src} → {dst}")
    if final.headers:
        out.print("headers that tell the path:")
        for name, value in final.headers:
            out.print(f"  {name}: {value}")
    if final.server_timing:
        grid = Grid(["name", Column("dur ms", "right"), "desc"], title="Server-Timing")
        for entry in final.server_timing:
            dur = "-" if entry.dur is None else f"{entry.dur:g}"
            grid.add_row(entry.name, dur, entry.desc or "")
        out.table(grid)
    if final.body_preview:
        out.print(f"body: {final.body_preview}")
    for note in report.notes:
        out.print(f"note: {note}")
    if report.error:
        out.print((f"error ({report.error.kind})", "red"), f": {report.error.message}")
