"""A TLS check as text: the handshake, the certificate, its expiry and trust."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.netdiag.tls import TlsReport
    from servepath.output import Output


def _expiry(days: float) -> str:
    from servepath.output import plural

    if days < 0:
        return f"expired {plural(round(-days, 1), 'day')} ago"
    return f"in {plural(round(days, 1), 'day')}"


def render_tls(out: Output, report: TlsReport, *, store_source: str | None = None) -> None:
    from servepath.net.endpoints import host_port
    from servepath.output import Column, Grid

    where = host_port(report.host, report.port)
    if report.address and report.address != report.host:
        where += f" ({report.address})"
    verdict: tuple[str, str] = ("trusted and valid", "green")
    if report.ok and report.expires_soon:
        # the threshold `serve` warns at: the same certificate gets the same word everywhere
        verdict = (
            f"trusted and valid, but expires {_expiry(report.days_to_expiry or 0.0)}",
            "yellow",
        )
    if not report.ok:
        verdict = (report.failure or ", ".join(report.problems) or "not trusted", "red")
    out.print(f"{where}  servername {report.servername}  ", verdict)
    if report.detail and not report.ok:
        out.print(report.detail)
    cert = report.certificate
    grid = Grid([Column("", fold=True, min_width=12), Column("", fold=True)], header=False,
                box="none")  # fmt: skip
    if report.protocol:
        grid.add_row(("protocol", "bold"), f"{report.protocol}  {report.cipher or ''}".rstrip())
    if cert is not None:
        grid.add_row(("subject", "bold"), cert.subject)
        grid.add_row(("names (SAN)", "bold"), ", ".join(cert.names()) or "-")
        grid.add_row(
            ("matches name", "bold"),
            (f"{'yes' if report.name_matches else 'no'} ({report.servername})",
             "green" if report.name_matches else "red"),
        )  # fmt: skip
        issuer = cert.issuer + ("  (self-signed)" if cert.self_signed else "")
        grid.add_row(("issuer", "bold"), issuer)
        grid.add_row(
            ("valid", "bold"),
            f"{cert.not_before:%Y-%m-%d %H:%M} → {cert.not_after:%Y-%m-%d %H:%M} UTC",
        )
        days = report.days_to_expiry or 0.0
        style = "red" if days < 0 else "yellow" if report.expires_soon else "green"
        grid.add_row(("expires", "bold"), (_expiry(days), style))
        grid.add_row(("key", "bold"), f"{cert.key}, {cert.signature_algorithm}")
        grid.add_row(("sha256", "bold"), cert.sha256)
    if report.trust_store == "system":
        store = "the system store"
    else:
        store = report.trust_store + (f", {store_source}" if store_source else "")
    answer = "yes" if report.trusted else "no"
    grid.add_row(
        ("trusted", "bold"), (f"{answer} (by {store})", "green" if report.trusted else "red")
    )
    if report.problems:
        grid.add_row(("problems", "bold"), (", ".join(report.problems), "red"))
    if report.connect_ms is not None:
        shake = "" if report.handshake_ms is None else f", handshake {report.handshake_ms:.1f} ms"
        grid.add_row(("time", "bold"), f"connect {report.connect_ms:.1f} ms{shake}")
    out.table(grid)
    for note in report.notes:
        out.print(f"note: {note}")
