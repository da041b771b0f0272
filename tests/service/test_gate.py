"""The gate: what the connection asks before the app sees a request, decided without it."""

from __future__ import annotations

from servepath.config import Settings
from servepath.service.admission import Decision
from servepath.service.gate import Gate, HttpLimits, refusal
from servepath.service.metrics import Metrics
from servepath.service.request import Head, request_id_for


def gate(**settings: object) -> Gate:
    return Gate(Settings(**settings), Metrics())  # type: ignore[arg-type]


def test_only_posts_to_a_predict_route_or_a_v2_infer_route_run_the_model() -> None:
    g = gate(predict_route="/predict")
    assert g.predict_template("POST", "/decisions") == "/decisions"
    assert g.predict_template("POST", "/predict") == "/predict"
    assert g.predict_template("POST", "/v2/models/decision/infer") == "/v2/models/{name}/infer"
    assert g.predict_template("GET", "/decisions") is None
    assert g.predict_template("POST", "/metrics") is None
    assert g.predict_template("POST", "/v2/models/decision/ready") is None


def test_before_the_data_plane_installs_its_admission_nothing_is_decided_on_the_head() -> None:
    g = gate()
    assert g.admit(100) is None
    decided = Decision(False, "wait", 2.0, 3, "expected wait 2.0 s exceeds 0.05 s")
    g.install(lambda body_bytes: decided)
    assert g.admit(100) is decided


def test_drain_and_reload_reach_whoever_registered() -> None:
    g = gate()
    seen: list[str] = []
    g.on_drain(lambda: seen.append("drain"))
    g.on_reload(lambda: seen.append("reload"))
    g.begin_drain()
    g.reload()
    assert g.draining and seen == ["drain", "reload"]


def test_a_refusal_on_the_head_says_what_the_app_would_say() -> None:
    payload, headers = refusal(
        Decision(False, "wait", 2.0, 3, "expected wait 2.0 s exceeds 0.05 s")
    )
    assert payload == {
        "error": "the server is overloaded: expected wait 2.0 s exceeds 0.05 s; retry in 3 s",
        "reason": "overloaded",
        "retry_after": 3,
    }
    assert headers == ((b"retry-after", b"3"),)


def test_the_limits_come_from_the_settings() -> None:
    limits = gate(header_timeout=3.0, max_connections=77).limits
    assert limits == HttpLimits(header_timeout=3.0, max_connections=77)


def test_the_head_keeps_the_first_of_each_header_and_every_forwarded_value() -> None:
    head = Head.of(
        [
            (b"content-length", b"12"),
            (b"content-length", b"99"),
            (b"x-request-id", b"abc"),
            (b"x-request-timeout", b"junk"),
            (b"x-envoy-expected-rq-timeout-ms", b"2500"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-forwarded-for", b"10.0.0.2"),
            (b"forwarded", b"for=10.0.0.3"),
        ]
    )
    assert head.declared_length == 12 and head.request_id == "abc"
    # The first deadline header counts, junk or not: a caller cannot stack a second one.
    assert head.timeout is None
    assert head.x_forwarded_for == ["10.0.0.1", "10.0.0.2"]
    assert head.forwarded == ["for=10.0.0.3"]
    assert Head.of([(b"x-envoy-expected-rq-timeout-ms", b"2500")]).timeout == 2.5
    assert Head.of([(b"content-length", b"-1")]).declared_length == 0


def test_a_sane_caller_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id_for("order-42") == "order-42"
    for bad in (None, "", "a b", "x" * 201, "id\r\nx: y"):
        made = request_id_for(bad)
        assert made != bad and len(made) == 32
