"""W3C Trace Context (``traceparent``, ``tracestate``) and the sampling decision: pure.

A caller that traces sends ``traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex
flags>``; the server continues that trace (its request span becomes the parent's child) and
honours the caller's sampled flag whatever its own sampling fraction (parent-based
sampling). A header that is not a valid version-00 one (or a later version's that does not
start like one) is ignored: the request starts a new trace, as the recommendation says.
``tracestate`` is the vendors' list that travels with the trace: kept as it came (at most
the size the recommendation lets a receiver drop it past) and exported with the request
span.

A sampled request's answer carries a ``traceparent`` naming the server's request span. The
W3C Trace Context Level 2 draft calls that response header ``traceresponse``; it is a draft,
while ``traceparent`` (the same format) is the header every tracing library already parses,
so that is the name used (see docs/serving.md, "Traces"). A request that is not sampled is
served as if tracing were off: no header, no trace id in the log, nothing exported.

Nothing here knows the OpenTelemetry SDK. A request that is not sampled costs one pass over
its header names and a random number.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
#: Past this, a receiver may drop ``tracestate`` (W3C Trace Context, 3.3.1.5).
MAX_TRACESTATE = 512

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
    match = _TRACEPARENT.fullmatch(value.strip(b" \t"))
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return Parent(trace_id, span_id, bool(int(flags, 16) & _SAMPLED))


_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?"
)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    """The ``traceparent`` value naming span ``span_id`` of trace ``trace_id``."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}".encode()


class Trace:
    """One sampled request: its ids, and the moments the request passed through
    (``time.perf_counter()`` seconds), noted by whoever saw them.

    Made once per sampled request on the request path, so a plain class whose moments
    default to the class's values: building one sets five attributes, not twenty (a
    dataclass with every field in ``__init__`` cost several times more). The spans are
    built from it after the answer has gone out.
    """

    state: bytes | None = None  # the caller's tracestate, as it came
    end = 0.0
    method = ""
    route = ""
    status = 0
    request_id = ""
    #: Admission: when the request was let in (the ticket's time); 0: not noted.
    admitted = 0.0
    #: The pipeline's moments: cache lookup, batcher (waiting, then the model call), log.
    cache_start = 0.0
    cache_end = 0.0
    hits = 0
    rows = 0
    batch_end = 0.0
    model_ms = -1.0  # -1: no model call (every row from the cache)
    log_start = 0.0
    log_end = 0.0
    #: The version that answered: name, content version, label, engine.
    model: tuple[str, str, str, str] | None = None
    _hex: str | None = None

    def __init__(self, trace_id: int, span_id: int, parent_id: int, start: float) -> None:
        self.trace_id = trace_id
        self.span_id = span_id  # the server's request span
        self.parent_id = parent_id  # the caller's span; 0: none (the trace's root)
        self.start = start

    @property
    def trace_hex(self) -> str:
        """The trace id as 32 hex digits (what the log and the page show)."""
        text = self._hex
        if text is None:
            text = self._hex = f"{self.trace_id:032x}"
        return text

    def traceparent(self) -> bytes:
        """The answer's ``traceparent``: this trace, the server's request span, sampled."""
        return b"00-%032x-%016x-01" % (self.trace_id, self.span_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_hex,
            "span_id": f"{self.span_id:016x}",
            "parent_id": f"{self.parent_id:016x}" if self.parent_id else None,
        }


def sampled_trace(
    headers: Iterable[tuple[bytes, bytes]], fraction: float, start: float
) -> Trace | None:
    """The trace of a request with ``headers`` when it is sampled, else None: the caller's
    trace when it sent a valid ``traceparent`` (sampled as the caller says), else a new one,
    for ``fraction`` of the requests.

    Most requests are not sampled at a small fraction, and they should cost next to
    nothing: one pass over the header names and one random number, no object.
    """
    parent_value = state = None
    for name, value in headers:
        if name == TRACEPARENT:
            if parent_value is not None:
                parent_value = b""  # two of them: neither can be trusted
                break
            parent_value = value
        elif name == TRACESTATE:
            state = value if state is None else state + b"," + value
    if parent_value:
        parent = parse_traceparent(parent_value)
        if parent is not None:
            if not parent.sampled:
                return None
            trace = Trace(parent.trace_id, _span_id(), parent.span_id, start)
            if state is not None and len(state) <= MAX_TRACESTATE:
                trace.state = state
            return trace
    # A new trace (an invalid traceparent is ignored, and tracestate with it).
    if fraction < 1.0 and random.random() >= fraction:
        return None
    return Trace(random.getrandbits(128) or 1, _span_id(), 0, start)


def _span_id() -> int:
    return random.getrandbits(64) or 1


#: The request being traced, for the layers that note its moments (the predict pipeline,
#: the live page's ring). Set only by the traced app: without tracing nothing touches it.
current: ContextVar[Trace | None] = ContextVar("servepath_trace", default=None)
