"""`doctor --local`'s keep-alive stage: a warning when the server closes idle connections
before the proxy in front of it does (the proxy known from the deploy target), read from the
server's own health document."""

from __future__ import annotations

import orjson

from servepath.net.listeners import Listener, PortListenReport
from servepath.netdiag.doctor.local import (
    diagnose_local,
    proxy_in_front,
    server_keepalive,
)

INGRESS = proxy_in_front(on_vertex=False, in_kubernetes=True)
GOOGLE = proxy_in_front(on_vertex=True, in_kubernetes=True)


def listening(port: int = 8080) -> PortListenReport:
    app = Listener("tcp", "0.0.0.0", port, "unspecified", 42, "app", "python3")  # type: ignore[arg-type]
    return PortListenReport(port, (app,))


def keepalive(keepalive_s: float | None, front: object) -> tuple[str, str, bool]:
    report = diagnose_local(
        8080, listening(), {"in_container": True}, (200, "GET / -> 200"), 0.01,
        keepalive_s=keepalive_s, front=front,  # type: ignore[arg-type]
    )  # fmt: skip
    stage = report.stage("keep-alive")
    assert stage is not None
    return stage.status, stage.summary, report.ok


def test_the_proxy_in_front_is_known_from_the_deploy_target_only() -> None:
    assert GOOGLE is not None and GOOGLE.idle_timeout_s == 600.0  # Vertex AI wins
    assert INGRESS is not None and INGRESS.idle_timeout_s == 60.0
    assert proxy_in_front(on_vertex=False, in_kubernetes=False) is None


def test_a_server_closing_idle_connections_before_the_ingress_is_warned_with_the_fix() -> None:
    status, summary, ok = keepalive(5.0, INGRESS)
    assert status == "warn" and ok, "a warning, not a broken path"
    assert "5 s, before ingress-nginx (60 s)" in summary
    assert "--keepalive-timeout 75" in summary


def test_a_server_outlasting_the_proxy_passes_and_an_unknown_either_side_is_skipped() -> None:
    assert keepalive(75.0, INGRESS)[0] == "ok"
    assert keepalive(75.0, GOOGLE)[0] == "warn"  # 75 s is not enough on Vertex AI
    assert keepalive(620.0, GOOGLE)[0] == "ok"
    assert keepalive(5.0, None)[:2] == ("skip", "the proxy in front is not known here")
    assert keepalive(None, INGRESS)[0] == "skip"


def test_the_idle_timeout_is_read_from_a_health_document_and_nothing_else() -> None:
    assert server_keepalive(orjson.dumps({"status": "ok", "keepalive_timeout_s": 75})) == 75.0
    assert server_keepalive(orjson.dumps({"status": "ok"})) is None
    assert server_keepalive(b"<html>not json</html>") is None
    assert server_keepalive(b"[1, 2]") is None
    assert server_keepalive(None) is None
