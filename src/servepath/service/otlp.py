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

import functools
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
#: A child span's bytes before its own: ids (trace 18, parent 10, its span's tag 2 and id 8)
#: and times (18) are fixed-width, so its length is its name's and attributes' plus 56.
_CHILD_FIXED = 56


@functools.cache
def _child_prefix(named: bytes, attrs_len: int) -> bytes:
    """A child span's tag (``ScopeSpans.spans``) and length."""
    return b"\x12" + _length(_CHILD_FIXED + len(named) + attrs_len)


_ADMISSION_PREFIX = _child_prefix(_ADMISSION, 0)
_QUEUE_PREFIX = _child_prefix(_QUEUE, 0)
_LOG_PREFIX = _child_prefix(_LOG, 0)

#: The key of the request id attribute (its value differs for every request).
_REQUEST_ID_NAME = field(1, b"servepath.request_id")
_ERROR = field(15, b"\x18" + bytes((_STATUS_ERROR,)))


class SpanEncoder:
    """Encodes traced requests; keeps what never changes between them (the names of the
    routes, each model version's attributes) as bytes."""

    def __init__(self, service_name: str, service_version: str, pid: int) -> None:
        """``pid``: the process the spans come from (each worker exports its own)."""
        strings = b"".join(
            field(1, field(1, key.encode()) + field(2, field(1, value.encode())))
            for key, value in (
                ("service.name", service_name),
                ("service.version", service_version),
                ("telemetry.sdk.language", "python"),
                ("telemetry.sdk.name", "servepath"),
            )
        )
        pid_value = field(2, b"\x18" + varint(pid))  # AnyValue.int_value
        resource = field(1, strings + field(1, field(1, b"process.pid") + pid_value))
        scope = field(1, field(1, SCOPE_NAME.encode()) + field(2, service_version.encode()))
        self._resource = resource
        self._scope = scope
        self._servers: dict[tuple[str, str], bytes] = {}
        self._models: dict[tuple[str, str, str, str], bytes] = {}
        self._ints: dict[tuple[str, int], bytes] = {}

    def request(self, pieces: Iterable[bytes]) -> bytes:
        """The ``ExportTraceServiceRequest`` holding the spans :meth:`spans` wrote."""
        scope_spans = self._scope + b"".join(pieces)
        resource_spans = self._resource + field(2, scope_spans)
        return field(1, resource_spans)

    def spans(self, trace: Trace, wall_offset_ns: int, out: list[bytes]) -> int:
        """Write the spans of one request onto ``out`` (pieces of ``ScopeSpans``' field 2,
        for :meth:`request` to join) and say how many: the server's request span, then
        admission, cache, queue, model and log write for the stages it passed through.
        ``wall_offset_ns`` turns ``perf_counter`` seconds into Unix nanoseconds."""
        # Written out rather than through field(): this runs for every traced request, and
        # a child span's length is known before its bytes are (see _child_prefix).
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
        body = [
            trace_field,
            b"\x12\x08",
            server_id,
            server,
            pack(0x39, int(trace.start * 1e9) + off, 0x41, int(trace.end * 1e9) + off),
            self._int("http.response.status_code", trace.status),
            model_attrs,
        ]
        if trace.request_id:
            rid = trace.request_id.encode()
            value = b"\x0a" + _length(len(rid)) + rid  # AnyValue.string_value
            kv = _REQUEST_ID_NAME + b"\x12" + _length(len(value)) + value
            body += (b"\x4a", _length(len(kv)), kv)
        if trace.state:
            body.append(field(3, trace.state))
        if trace.parent_id:
            body += (b"\x22\x08", trace.parent_id.to_bytes(8, "big"))
        if trace.status >= 500:
            body.append(_ERROR)
        encoded = b"".join(body)
        out += (b"\x12", _length(len(encoded)), encoded)
        count = 1
        head = trace_field + b"\x22\x08" + server_id + b"\x12\x08"
        start = trace.start
        cache_end = trace.cache_end
        if trace.admitted:
            t0 = int(start * 1e9) + off
            t1 = max(t0, int(trace.admitted * 1e9) + off)
            out += (_ADMISSION_PREFIX, head, ids[0:8], _ADMISSION, pack(0x39, t0, 0x41, t1))
            count += 1
        if cache_end:
            attrs = self._int("servepath.cache.hits", trace.hits)
            attrs += self._int("servepath.rows", trace.rows)
            t0 = int(trace.cache_start * 1e9) + off
            t1 = max(t0, int(cache_end * 1e9) + off)
            out += (_child_prefix(_CACHE, len(attrs)), head, ids[8:16], _CACHE,
                    pack(0x39, t0, 0x41, t1), attrs)  # fmt: skip
            count += 1
        if trace.model_ms >= 0:
            called = trace.batch_end - trace.model_ms / 1000
            t0 = int((cache_end or trace.cache_start or start) * 1e9) + off
            t1 = max(t0, int(called * 1e9) + off)
            t2 = max(t1, int(trace.batch_end * 1e9) + off)
            out += (_QUEUE_PREFIX, head, ids[16:24], _QUEUE, pack(0x39, t0, 0x41, t1),
                    _child_prefix(_MODEL, len(model_attrs)), head, ids[24:32], _MODEL,
                    pack(0x39, t1, 0x41, t2), model_attrs)  # fmt: skip
            count += 2
        if trace.log_end:
            t0 = int(trace.log_start * 1e9) + off
            t1 = max(t0, int(trace.log_end * 1e9) + off)
            out += (_LOG_PREFIX, head, ids[32:40], _LOG, pack(0x39, t0, 0x41, t1))
            count += 1
        return count

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
    pieces: list[bytes] = []
    count = 0
    for trace in traces:
        count += encoder.spans(trace, offset, pieces)
    return encoder.request(pieces), count
