"""W3C traceparent, the sampling decision, the spans' encoding and the trace settings: pure."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from servepath.config import Settings
from servepath.errors import ConfigError
from servepath.service.otlp import SpanEncoder, encode_all, spans_in
from servepath.service.tracecontext import (
    Parent,
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
    data, count = encode_all(SpanEncoder("svc", "9.9", 4242), [trace, trace])
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
