"""The TLS stage's verdict: a certificate's trust, name and dates (judged by the server's
``Date`` too, so that this machine's clock and a certificate issued for a future start are
told apart), its chain, and a port that speaks something else. Pure; called by
:mod:`~servepath.netdiag.doctor.diagnose` in its walk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from servepath.netdiag.doctor.causes import Cause
from servepath.netdiag.doctor.evidence import Observations, untrusted_only
from servepath.netdiag.doctor.report import Stage, StageStatus, Verdict
from servepath.netdiag.doctor.transport import not_tried

__all__ = ["add_not_http", "other_protocol", "stage_tls"]


# --- TLS ----------------------------------------------------------------------------------

_TLS_CAUSE: dict[str, Cause] = {
    "expired": "tls_expired",
    "not_yet_valid": "tls_not_yet_valid",
    "hostname_mismatch": "tls_hostname_mismatch",
    "self_signed": "tls_untrusted",
    "unknown_issuer": "tls_untrusted",
    "plain_http": "plain_http_on_tls_port",
}


def stage_tls(obs: Observations, v: Verdict) -> None:
    if obs.tls_on_plain is not None:
        t = obs.tls_on_plain
        v.add(
            Stage(
                "tls",
                "fail",
                f"port {obs.port} answered a TLS handshake ({t.protocol})",
                t.to_json(),
            ),
            "tls_on_plain_port",
        )
        return
    if obs.scheme != "https":
        v.add(Stage("tls", "skip", "plain http: no TLS"))
        return
    if obs.tls is None:
        reason = "through the forward proxy's tunnel" if obs.proxy else "the port is not open"
        v.add(Stage("tls", "skip", not_tried(v, reason) if not obs.proxy else reason))
        return
    t = obs.tls
    if t.ok:
        days = f", {t.days_to_expiry:.0f} days to expiry" if t.days_to_expiry is not None else ""
        # The same threshold as `serve` and `tls`: a certificate about to expire is a warning.
        status: StageStatus = "warn" if t.expires_soon else "ok"
        summary = f"{t.protocol} {t.cipher}, trusted{days}"
        v.add(Stage("tls", status, summary + (": renew it soon" if t.expires_soon else ""),
                    t.to_json()))  # fmt: skip
        return
    failure = t.failure or (t.problems[0] if t.problems else "handshake_failed")
    if failure != "plain_http" and other_protocol(obs):
        add_not_http(obs, v, "tls")
        return
    cause = _TLS_CAUSE.get(failure, "tls_handshake_failed")
    if obs.insecure and untrusted_only(t):
        summary = f"{failure}: {t.detail} (not verified: --insecure)"
        v.add(Stage("tls", "warn", summary, t.to_json()))
        return
    data = {**t.to_json(), "clock_skew_s": obs.clock_skew_s, "server_date": obs.server_date}
    context: dict[str, Any] = {"detail": t.detail}
    if cause in ("tls_expired", "tls_not_yet_valid"):
        cause, context = dated(obs, cause, context)
    chain = t.chain
    if cause == "tls_untrusted" and chain is not None and chain.missing is not None:
        context["missing"] = chain.missing
        if chain.issuer_trusted:  # fetched from the AIA URL: the store vouches for it
            cause = "tls_chain_incomplete"
            context["issuer_url"] = chain.issuer_url
    v.add(Stage("tls", "fail", f"{failure}: {t.detail}", data), cause, **context)


#: A clock this far from the server's explains a certificate's dates; closer, the dates do.
CLOCK_SKEW_S = 300.0


def dated(obs: Observations, cause: Cause, context: dict[str, Any]) -> tuple[Cause, dict[str, Any]]:
    """Expired or not yet valid: by whose clock? The server's Date tells this machine's."""
    t, skew = obs.tls, obs.clock_skew_s
    assert t is not None
    cert = t.certificate
    if skew is None or cert is None:
        return cause, {**context, "clocks_text": ""}
    server_now = t.checked_at - timedelta(seconds=skew)
    valid_there = cert.not_before <= server_now <= cert.not_after
    if abs(skew) > CLOCK_SKEW_S and valid_there:
        ahead = "ahead of" if skew > 0 else "behind"
        return "clock_skew", {
            "skew_text": f"{duration(abs(skew))} {ahead}",
            "server_date": obs.server_date,
            "validity": f"from {cert.not_before:%Y-%m-%d %H:%M} "
            f"to {cert.not_after:%Y-%m-%d %H:%M} UTC",
            "looks": "looks expired" if skew > 0 else "looks not yet valid",
        }
    clocks = f"; this machine's clock agrees with the server's (Date: {obs.server_date})"
    return cause, {**context, "clocks_text": clocks}


def duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def other_protocol(obs: Observations) -> bool:
    return obs.protocol is not None and obs.protocol.name not in (
        "http",
        "tls",
        "unknown",
        "silent",
    )


def add_not_http(obs: Observations, v: Verdict, stage: str) -> None:
    assert obs.protocol is not None
    p = obs.protocol
    v.add(
        Stage(stage, "fail", f"port {obs.port} speaks {p.label}: {p.evidence}", p.to_json()),
        "not_http",
        protocol=p.label,
        evidence=p.evidence,
    )
