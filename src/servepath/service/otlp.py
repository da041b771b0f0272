"""A traced request as OTLP spans, encoded straight to protobuf bytes: pure.

The OpenTelemetry SDK builds a ``ReadableSpan`` per span and its exporter encodes each
through protobuf message objects: about 3 µs and 18 µs per span here, so a request's six
spans would cost more than the request itself. These spans are all alike (the same names,
the same attributes but for a few numbers), so each is written as the bytes of its message
directly: fixed-width ids and times behind constant prefixes, attributes that never change
for a model version encoded once. What comes out is the ``ExportTraceServiceRequest`` the
standard exporter would have sent (the tests decode it with ``opentelemetry-proto``).

Span names and attributes follow the OpenTelemetry semantic conventions for HTTP servers
(``{method} {route}``, ``http.request.method``, ``http.route``,
``http.response.status_code``; a 5xx answer is an error); what is servepath's own is under
``servepath.``.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Iterable, Sequence

from servepath.service.tracecontext import Trace

#: The instrumentation scope the spans are reported under.
SCOPE_NAME = "servepath"

_KIND_INTERNAL = 1
_KIND_SERVER = 2
_STATUS_ERROR = 2

_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano (7), end_time_unix_nano (8): fixed64


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length(n: int) -> bytes:
    """A length as its varint (the common one- and two-byte cases without a loop)."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    return varint(n)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (bytes, string, sub-message)."""
    return varint(number << 3 | 2) + varint(len(data)) + data


def string_attr(key: str, value: str) -> bytes:
    """A span attribute (``KeyValue``, field 9 of ``Span``) holding a string."""
    return field(9, field(1, key.encode()) + field(2, field(1, value.encode())))


def int_attr(key: str, value: int) -> bytes:
    any_value = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value (3), int64 varint
    return field(9, field(1, key.encode()) + field(2, any_value))


def bool_attr(key: str, value: bool) -> bytes:
    return field(9, field(1, key.encode()) + field(2, b"\x10\x01" if value else b"\x10\x00"))


def _named(name: str, kind: int) -> bytes:
    return field(5, name.encode()) + bytes((0x30, kind))


_ADMISSION = _named("admission", _KIND_INTERNAL)
_CACHE = _named("cache", _KIND_INTERNAL)
_QUEUE = _named("queue", _KIND_INTERNAL)
_MODEL = _named("model", _KIND_INTERNAL)
_LOG = _named("log write", _KIND_INTERNAL)
#: The key of the request id attribute (its value differs for every request).
_REQUEST_ID_NAME = field(1, b"servepath.request_id")
_ERROR = field(15, b"\x18" + bytes((_STATUS_ERROR,)))


class SpanEncoder:
    """Encodes traced requests; keeps what never changes between them (the names of the
    routes, each model version's attributes) as bytes."""

    def __init__(self, service_name: str, service_version: str) -> None:
        resource = field(
            1,
            b"".join(
                field(1, field(1, key.encode()) + field(2, field(1, value.encode())))
                for key, value in (
                    ("service.name", service_name),
                    ("service.version", service_version),
                    ("telemetry.sdk.language", "python"),
                    ("telemetry.sdk.name", "servepath"),
                )
            ),
        )
        scope = field(1, field(1, SCOPE_NAME.encode()) + field(2, service_version.encode()))
        self._resource = resource
        self._scope = scope
        self._servers: dict[tuple[str, str], bytes] = {}
        self._models: dict[tuple[str, str, str, str], bytes] = {}
        self._ints: dict[tuple[str, int], bytes] = {}

    def request(self, spans: Iterable[bytes]) -> bytes:
        """The ``ExportTraceServiceRequest`` holding ``spans`` (each an encoded ``Span``)."""
        scope_spans = self._scope + b"".join(spans)
        resource_spans = self._resource + field(2, scope_spans)
        return field(1, resource_spans)

    def spans(self, trace: Trace, wall_offset_ns: int) -> list[bytes]:
        """The spans of one request (each as field 2 of ``ScopeSpans``, ready to join):
        the server's request span, then admission, cache, queue, model and log write for
        the stages it passed through. ``wall_offset_ns`` turns ``perf_counter`` seconds
        into Unix nanoseconds."""
        # Written out rather than through field(): this runs for every traced request.
        off = wall_offset_ns
        pack = _TIMES.pack
        trace_field = b"\x0a\x10" + trace.trace_id.to_bytes(16, "big")
        server_id = trace.span_id.to_bytes(8, "big")
        ids = random.getrandbits(64 * 5).to_bytes(40, "big")
        model_attrs = b""
        if trace.model is not None:
            model_attrs = self._models.get(trace.model) or self._model_attrs(trace.model)
        server = self._servers.get((trace.method, trace.route)) or self._server(
            trace.method, trace.route
        )
        rid = trace.request_id.encode()
        value = b"\x0a" + _length(len(rid)) + rid  # AnyValue.string_value
        request_kv = _REQUEST_ID_NAME + b"\x12" + _length(len(value)) + value
        body = [
            trace_field,
            b"\x12\x08",
            server_id,
            server,
            pack(0x39, int(trace.start * 1e9) + off, 0x41, int(trace.end * 1e9) + off),
            self._int("http.response.status_code", trace.status),
            b"\x4a",
            _length(len(request_kv)),
            request_kv,
            model_attrs,
        ]
        if trace.state:
            body.append(field(3, trace.state))
        if trace.parent_id:
            body += (b"\x22\x08", trace.parent_id.to_bytes(8, "big"))
        if trace.status >= 500:
            body.append(_ERROR)
        encoded = b"".join(body)
        out = [b"\x12" + _length(len(encoded)) + encoded]
        head = trace_field + b"\x22\x08" + server_id + b"\x12\x08"
        start = trace.start
        cache_end = trace.cache_end
        stages: list[tuple[bytes, float, float, bytes]] = []
        if trace.admitted:
            stages.append((_ADMISSION, start, trace.admitted, b""))
        if cache_end:
            attrs = self._int("servepath.cache.hits", trace.hits)
            attrs += self._int("servepath.rows", trace.rows)
            stages.append((_CACHE, trace.cache_start, cache_end, attrs))
        if trace.model_ms >= 0:
            called = trace.batch_end - trace.model_ms / 1000
            stages.append((_QUEUE, cache_end or trace.cache_start or start, called, b""))
            stages.append((_MODEL, called, trace.batch_end, model_attrs))
        if trace.log_end:
            stages.append((_LOG, trace.log_start, trace.log_end, b""))
        for i, (named, begin, end, attrs) in enumerate(stages):
            begin_ns = int(begin * 1e9) + off
            times = pack(0x39, begin_ns, 0x41, max(begin_ns, int(end * 1e9) + off))
            span = b"".join((head, ids[i * 8 : i * 8 + 8], named, times, attrs))
            out.append(b"\x12" + _length(len(span)) + span)
        return out

    def _server(self, method: str, route: str) -> bytes:
        # Protobuf fields may come in any order: the name, kind and HTTP attributes of a
        # route's request span are one constant, the times and the rest follow.
        encoded = (
            _named(f"{method} {route}", _KIND_SERVER)
            + string_attr("http.request.method", method)
            + string_attr("http.route", route)
        )
        self._servers[(method, route)] = encoded
        return encoded

    def _int(self, key: str, value: int) -> bytes:
        found = self._ints.get((key, value))
        if found is None:
            found = int_attr(key, value)
            if len(self._ints) < 4096:  # statuses and small counts repeat; bound the rest
                self._ints[(key, value)] = found
        return found

    def _model_attrs(self, model: tuple[str, str, str, str]) -> bytes:
        name, version, label, engine = model
        encoded = (
            string_attr("servepath.model.name", name)
            + string_attr("servepath.model.version", version)
            + string_attr("servepath.model.label", label)
            + string_attr("servepath.model.engine", engine)
        )
        self._models[model] = encoded
        return encoded


def wall_offset_ns() -> int:
    """Unix nanoseconds minus ``perf_counter`` nanoseconds, now."""
    return time.time_ns() - int(time.perf_counter() * 1e9)


def spans_in(trace: Trace) -> int:
    """How many spans :meth:`SpanEncoder.spans` makes of ``trace`` (what a drop loses)."""
    return (
        1
        + (trace.admitted > 0)
        + (trace.cache_end > 0)
        + 2 * (trace.model_ms >= 0)
        + (trace.log_end > 0)
    )


def encode_all(encoder: SpanEncoder, traces: Sequence[Trace]) -> tuple[bytes, int]:
    """The export request for ``traces`` and how many spans it holds."""
    offset = wall_offset_ns()
    spans: list[bytes] = []
    for trace in traces:
        spans += encoder.spans(trace, offset)
    return encoder.request(spans), len(spans)
