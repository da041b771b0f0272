"""W3C Trace Context (``traceparent``, ``tracestate``) and the sampling decision: pure.

A caller that traces sends ``traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex
flags>``; the server continues that trace (its request span becomes the parent's child) and
honours the caller's sampled flag whatever its own sampling fraction (parent-based
sampling). A header that is not a valid version-00 one (or a later version's that does not
start like one) is ignored: the request starts a new trace, as the recommendation says.
``tracestate`` is the vendors' list that travels with the trace: kept as it came (at most
the size the recommendation lets a receiver drop it past) and exported with the request
span.

The answer carries a ``traceparent`` naming the server's request span: the W3C draft calls
that response header ``traceresponse``, but what the servers a model API sits beside answer
with (Triton among them) and what the tools read is ``traceparent``, so that is the name
used (see docs/serving.md, "Traces").

Nothing here knows the OpenTelemetry SDK: the request path uses this module only when
tracing is on, and it costs a header lookup and a few integer operations.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
#: Past this, a receiver may drop ``tracestate`` (W3C Trace Context, 3.3.1.5).
MAX_TRACESTATE = 512

_HEX = frozenset(b"0123456789abcdef")
_SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class Parent:
    """A caller's span, from a valid ``traceparent``."""

    trace_id: int
    span_id: int
    sampled: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": f"{self.trace_id:032x}",
            "span_id": f"{self.span_id:016x}",
            "sampled": self.sampled,
        }


def parse_traceparent(value: bytes) -> Parent | None:
    """The caller's span in a ``traceparent`` value, or None when it is not a valid one.

    Version 00 is exactly 55 characters; a later version may append fields after a dash,
    which are ignored (the recommendation asks a version-00 parser to read the known part).
    Version ff, upper-case hex, an all-zero trace or parent id are invalid.
    """
    value = value.strip(b" \t")
    if len(value) < 55 or value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    version = value[:2]
    if not _is_hex(version) or version == b"ff":
        return None
    if version == b"00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55:56] != b"-":
        return None
    trace, span, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(trace) and _is_hex(span) and _is_hex(flags)):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return Parent(trace_id, span_id, bool(int(flags, 16) & _SAMPLED))


def _is_hex(text: bytes) -> bool:
    return all(c in _HEX for c in text)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """The ``traceparent`` value naming span ``span_id`` of trace ``trace_id``."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}".encode()


def ratio_bound(fraction: float) -> int:
    """The bound a root trace id's low 64 bits are compared with to sample ``fraction`` of
    the traces (OpenTelemetry's TraceIdRatioBased: the decision follows the trace id, so
    every service that samples by ratio agrees on a trace)."""
    return round(max(0.0, min(1.0, fraction)) * (1 << 64))


@dataclass(slots=True)
class Trace:
    """One traced request: its ids, whether its spans are exported, and the moments the
    request passed through (``time.perf_counter()`` seconds), noted by whoever saw them.

    Mutable and slotted: made once per request on the request path when tracing is on; the
    spans are built from it after the answer has gone out.
    """

    trace_id: int
    span_id: int  # the server's request span
    parent_id: int  # the caller's span; 0: none (the request is the trace's root)
    sampled: bool
    state: bytes | None = None  # the caller's tracestate, as it came
    start: float = 0.0
    end: float = 0.0
    method: str = ""
    route: str = ""
    status: int = 0
    request_id: str = ""
    #: Admission: when the request was let in (the ticket's time); 0: not noted.
    admitted: float = 0.0
    #: The pipeline's moments: cache lookup, batcher (waiting, then the model call), log.
    cache_start: float = 0.0
    cache_end: float = 0.0
    hits: int = 0
    rows: int = 0
    batch_end: float = 0.0
    model_ms: float = -1.0  # -1: no model call (every row from the cache)
    log_start: float = 0.0
    log_end: float = 0.0
    #: The version that answered: name, content version, label, engine.
    model: tuple[str, str, str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def traceparent(self) -> bytes:
        """The answer's ``traceparent``: this trace, the server's request span."""
        return format_traceparent(self.trace_id, self.span_id, self.sampled)


def begin(headers: Iterable[tuple[bytes, bytes]], bound: int, start: float) -> Trace:
    """The trace of a request with ``headers``: the caller's when it sent a valid
    ``traceparent`` (sampled as the caller says), else a new one sampled when its trace id
    falls under ``bound`` (see :func:`ratio_bound`)."""
    parent_value = state = None
    for name, value in headers:
        if name == TRACEPARENT:
            if parent_value is not None:
                parent_value = b""  # two of them: neither can be trusted
                break
            parent_value = value
        elif name == TRACESTATE:
            state = value if state is None else state + b"," + value
    ids = random.getrandbits(192)
    span_id = (ids >> 128) or 1
    parent = parse_traceparent(parent_value) if parent_value else None
    if parent is not None:
        if state is not None and len(state) > MAX_TRACESTATE:
            state = None
        return Trace(parent.trace_id, span_id, parent.span_id, parent.sampled, state, start)
    trace_id = ids & ((1 << 128) - 1) or 1
    # A new trace carries no state: tracestate without a valid traceparent is dropped.
    return Trace(trace_id, span_id, 0, (trace_id & ((1 << 64) - 1)) < bound, None, start)


#: The request being traced, for the layers that note its moments (the predict pipeline).
#: Set only by the traced app: without tracing nothing reads or writes it.
current: ContextVar[Trace | None] = ContextVar("servepath_trace", default=None)
