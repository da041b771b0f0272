"""W3C traceparent, the sampling decision, the spans' encoding and the trace settings: pure."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.service.otlp import SpanEncoder, spans_in
from servepath.service.tracecontext import (
    Parent,
    Trace,
    format_traceparent,
    parse_traceparent,
    sampled_trace,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_version_00_traceparent_names_the_callers_span_and_its_sampled_flag() -> None:
    parent = parse_traceparent(f"00-{TRACE}-{SPAN}-01".encode())
    assert parent == Parent(int(TRACE, 16), int(SPAN, 16), True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == Parent(
        int(TRACE, 16), int(SPAN, 16), False
    )
    # Flags other than sampled do not matter; a later version's extra fields are ignored.
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-03".encode()).sampled  # type: ignore[union-attr]
    assert parse_traceparent(f"cc-{TRACE}-{SPAN}-01-what-comes-next".encode()) is not None


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 is exactly 55 characters
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-0g",
        f"cc-{TRACE}-{SPAN}-01x",  # a later version, but not a dash after the known part
        "",
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value.encode()) is None


def test_the_answer_names_a_span_of_the_callers_trace() -> None:
    header = format_traceparent(int(TRACE, 16), 0xABC, True)
    assert header == f"00-{TRACE}-0000000000000abc-01".encode()
    assert parse_traceparent(header) == Parent(int(TRACE, 16), 0xABC, True)


def test_a_callers_decision_wins_over_the_servers_fraction() -> None:
    sampled = [(b"traceparent", f"00-{TRACE}-{SPAN}-01".encode()), (b"tracestate", b"a=1")]
    trace = sampled_trace(sampled, 0.0, 1.0)
    assert trace is not None and trace.trace_hex == TRACE and trace.parent_id == int(SPAN, 16)
    assert trace.state == b"a=1" and trace.span_id not in (0, int(SPAN, 16))
    assert trace.traceparent() == f"00-{TRACE}-{trace.span_id:016x}-01".encode()
    unsampled = [(b"traceparent", f"00-{TRACE}-{SPAN}-00".encode())]
    assert sampled_trace(unsampled, 1.0, 1.0) is None


def test_without_a_valid_parent_a_fraction_of_new_traces_is_sampled() -> None:
    bad = [(b"traceparent", b"00-junk"), (b"tracestate", b"a=1")]
    trace = sampled_trace(bad, 1.0, 1.0)
    assert trace is not None and trace.parent_id == 0 and trace.state is None
    assert trace.trace_id not in (0, int(TRACE, 16))
    assert sampled_trace([], 0.0, 1.0) is None
    share = sum(sampled_trace([], 0.25, 1.0) is not None for _ in range(4000)) / 4000
    assert 0.2 < share < 0.3


def test_two_traceparent_headers_start_a_new_trace() -> None:
    two = [(b"traceparent", f"00-{TRACE}-{SPAN}-01".encode())] * 2
    trace = sampled_trace(two, 1.0, 1.0)
    assert trace is not None and trace.trace_hex != TRACE and trace.parent_id == 0


def test_a_requests_spans_decode_as_otlp_with_its_stages_in_order() -> None:
    trace = sampled_trace([(b"traceparent", f"00-{TRACE}-{SPAN}-01".encode())], 0.0, 10.0)
    assert trace is not None
    trace.method, trace.route, trace.status, trace.request_id = "POST", "/decisions", 503, "r" * 300
    trace.admitted, trace.cache_start, trace.cache_end = 10.0001, 10.0002, 10.0003
    trace.rows, trace.hits, trace.batch_end, trace.model_ms = 2, 1, 10.0009, 0.4
    trace.log_start, trace.log_end, trace.end = 10.00091, 10.00095, 10.001
    trace.model = ("decision", "c12599beb720", "2", "treelite")
    data, count = SpanEncoder("svc", "9.9", 4242).encode([trace, trace])
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    [resource_spans] = message.resource_spans
    resource = {a.key: a.value for a in resource_spans.resource.attributes}
    assert resource["service.name"].string_value == "svc"
    assert resource["service.version"].string_value == "9.9"
    assert resource["process.pid"].int_value == 4242
    spans = resource_spans.scope_spans[0].spans
    assert count == len(spans) == 2 * spans_in(trace) == 12
    server, *stages = spans[:6]
    assert server.name == "POST /decisions" and server.parent_span_id.hex() == SPAN
    assert server.status.code == 2  # a 5xx answer is an error
    attrs = {a.key: a.value for a in server.attributes}
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["servepath.request_id"].string_value == "r" * 300
    assert attrs["servepath.model.label"].string_value == "2"
    assert [s.name for s in stages] == ["admission", "cache", "queue", "model", "log write"]
    assert all(s.parent_span_id == server.span_id for s in stages)
    assert len({s.span_id for s in spans[:6]}) == 6
    ns = [(s.start_time_unix_nano, s.end_time_unix_nano) for s in stages]
    assert all(a <= b for a, b in ns) and ns == sorted(ns)
    queue, model = stages[2], stages[3]
    assert model.end_time_unix_nano - model.start_time_unix_nano == pytest.approx(400_000, abs=10)
    assert queue.end_time_unix_nano == model.start_time_unix_nano
    cache = {a.key: a.value.int_value for a in stages[1].attributes}
    assert cache == {"servepath.cache.hits": 1, "servepath.rows": 2}


def test_trace_settings_from_flags_and_the_environment() -> None:
    assert Settings().otlp_endpoint is None
    assert Settings(otlp_endpoint="http://c:4318").otlp_endpoint == "http://c:4318/v1/traces"
    assert Settings(otlp_endpoint="https://c/otel/traces").otlp_endpoint == "https://c/otel/traces"
    env = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/"})
    assert env.otlp_endpoint == "http://c:4318/base/v1/traces"
    env = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/x",
            "SERVEPATH_TRACE_SAMPLE": "0.01",
            "OTEL_SERVICE_NAME": "scoring",
        }
    )
    assert env.otlp_endpoint == "http://traces:4318/x" and env.trace_sample == 0.01
    assert env.trace_service_name == "scoring"
    for bad in ({"trace_sample": 1.5}, {"trace_queue": 0}, {"otlp_endpoint": "collector:4318"}):
        with pytest.raises(ConfigError):
            Settings(**bad)  # type: ignore[arg-type]


def _expected(trace: Trace, offset: int) -> list[dict[str, object]]:
    """What a request's spans say, worked out from its moments without the encoder: name,
    parent, times, attributes and status, server span first."""

    def ns(seconds: float) -> int:
        return int(seconds * 1e9) + offset

    server: dict[str, object] = {
        "name": f"{trace.method} {trace.route}",
        "parent": trace.parent_id,
        "times": (ns(trace.start), max(ns(trace.start), ns(trace.end))),
        "attrs": {"http.request.method": trace.method, "http.route": trace.route,
                  "http.response.status_code": trace.status},
        "error": trace.status >= 500,
        "state": (trace.state or b"").decode(),
    }  # fmt: skip
    model_attrs: dict[str, object] = {}
    if trace.model is not None:
        keys = ("name", "version", "label", "engine")
        model_attrs = {f"servepath.model.{k}": v for k, v in zip(keys, trace.model, strict=True)}
    server["attrs"].update(model_attrs)  # type: ignore[attr-defined]
    if trace.request_id:
        server["attrs"]["servepath.request_id"] = trace.request_id  # type: ignore[index]
    spans = [server]

    def child(name: str, t0: int, t1: int, attrs: dict[str, object]) -> None:
        spans.append({"name": name, "parent": trace.span_id, "times": (t0, max(t0, t1)),
                      "attrs": attrs, "error": False, "state": ""})  # fmt: skip

    if trace.admitted:
        child("admission", ns(trace.start), ns(trace.admitted), {})
    if trace.cache_end:
        child("cache", ns(trace.cache_start), ns(trace.cache_end),
              {"servepath.cache.hits": trace.hits, "servepath.rows": trace.rows})  # fmt: skip
    if trace.model_ms >= 0:
        queued = ns(trace.cache_end or trace.cache_start or trace.start)
        called = max(queued, ns(trace.batch_end - trace.model_ms / 1000))
        child("queue", queued, called, {})
        child("model", called, ns(trace.batch_end), model_attrs)
    if trace.log_end:
        child("log write", ns(trace.log_start), ns(trace.log_end), {})
    return spans


def _decoded(span: Any) -> dict[str, object]:
    def value(v: Any) -> object:
        return getattr(v, v.WhichOneof("value"))

    return {
        "name": span.name,
        "parent": int.from_bytes(span.parent_span_id, "big"),
        "times": (span.start_time_unix_nano, span.end_time_unix_nano),
        "attrs": {a.key: value(a.value) for a in span.attributes},
        "error": span.status.code == 2,
        "state": span.trace_state,
    }


def _traces(seed: int = 7) -> list[Trace]:
    """Requests of many shapes: with and without a caller's parent and its tracestate,
    hits (no model call) and misses, no cache, no log, 2xx/4xx/5xx, batches, request ids
    of other lengths and outside ASCII, another route, another model version, and the
    same shape repeated (one layout, many rows)."""
    rng = random.Random(seed)
    out: list[Trace] = []
    for i in range(60):
        start = 1000.0 + i * 0.01 + rng.random() / 1000
        trace = Trace(rng.getrandbits(128) or 1, rng.getrandbits(64) or 1,
                      rng.getrandbits(64) if i % 3 == 0 else 0, start)  # fmt: skip
        trace.method, trace.route = ("POST", "/decisions") if i % 7 else (
            "POST", "/v2/models/{name}/infer")  # fmt: skip
        trace.status = (200, 200, 200, 422, 503)[i % 5]
        trace.request_id = ("0123456789abcdef" * 2, "short", "", "r-é-ü" * (i % 4), "x" * 200)[
            i % 5]  # fmt: skip
        if i % 11 == 0:
            trace.state = b"vendor=a1,other=b2"
        trace.model = (("decision", "c12599beb720", "2", "treelite"),
                       ("decision", "0a1b2c3d4e5f", "3", "onnxruntime"), None)[i % 3]  # fmt: skip
        moment = start
        if i % 4:
            moment += rng.random() / 1e4
            trace.admitted = moment
        if i % 6:
            trace.cache_start, trace.cache_end = moment + 1e-5, moment + 3e-5
            trace.rows, trace.hits = 1 + i % 3, (i % 2) * (1 + i % 3)
            moment += 3e-5
        if i % 2 == 0:
            trace.model_ms = rng.random() / 10
            trace.batch_end = moment + 2e-4
            moment += 2e-4
        if i % 5 != 1:
            trace.log_start, trace.log_end = moment + 1e-5, moment + 5e-5
            moment += 5e-5
        # Now and then a clock that seems to go back: spans never end before they start.
        trace.end = moment + 1e-4 if i % 13 else start - 1e-3
        out.append(trace)
    return out


def test_requests_of_every_shape_decode_to_the_spans_their_moments_say() -> None:
    encoder = SpanEncoder("svc", "9.9", 1)
    offset = 1_700_000_000_000_000_000
    # The same shapes again, other ids and times, fewer of them: what one batch wrote
    # must not show through the next (the encoder reuses its rows).
    for traces in (_traces(7), _traces(8)[::-1], _traces(9)[:13]):
        data, count = encoder.encode(traces, offset)
        message = ExportTraceServiceRequest()
        message.ParseFromString(data)
        [resource_spans] = message.resource_spans
        [scope_spans] = resource_spans.scope_spans
        assert scope_spans.scope.name == "servepath"
        spans = list(scope_spans.spans)
        assert count == len(spans) == sum(spans_in(t) for t in traces)
        by_trace: dict[int, list[Any]] = {}
        for span in spans:
            by_trace.setdefault(int.from_bytes(span.trace_id, "big"), []).append(span)
        assert len({s.span_id for s in spans}) == len(spans)  # every span its own id
        for trace in traces:
            got = by_trace.pop(trace.trace_id)
            server = got[0]
            assert int.from_bytes(server.span_id, "big") == trace.span_id
            assert [_decoded(s) for s in got] == _expected(trace, offset), trace.request_id
        assert not by_trace
