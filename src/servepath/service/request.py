"""One request as the service sees it: its id, its context, and what the pipeline knows of it.

Small and free of the model's libraries (no numpy): the HTTP layer, the path echo and the
endpoints all use it. :class:`RequestContext` is what the ASGI shell and the endpoints add
timings and headers to; :class:`RequestMeta` is the predict pipeline's view of a request,
with no ASGI in it. :class:`Head` holds the request headers the service acts on, read in one
pass over the head (by the HTTP layer as they arrive, or from the ASGI scope when the app
runs under another server).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from servepath.traffic import TRAFFIC_HEADER_KEY, Traffic, traffic_of

if TYPE_CHECKING:
    from servepath.net.forwarded import ClientView
    from servepath.service.admission import Ticket

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: 48 bits of Unix milliseconds, then random bits.

    Ids made in time order land at the end of the prediction log's primary-key index rather
    than at random places in it: that makes a logged insert about 2.5x cheaper once the
    table outgrows the page cache, and sorts the ids by time for whoever reads them.
    """
    # Ids are not secrets: the random module's generator (seeded per process, reseeded in a
    # forked child) saves a getrandom() system call per request; 80 random bits within one
    # millisecond keep them unique.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    # Version 7 in bits 76-79, the RFC variant (0b10) in bits 62-63.
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def request_id_for(given: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is a sane one, else a new id."""
    return given if given and _REQUEST_ID.match(given) else new_request_id()


@dataclass(slots=True)
class Head:
    """The request headers the service acts on, each read once (the first value wins).

    ``content_length`` is -1 when the request declared none (or one that is no number).
    """

    content_length: int = -1
    request_id: str | None = None
    timeout: float | None = None  # the caller's own deadline, seconds (see :func:`timeout_of`)
    timed: bool = False  # a deadline header was seen (the first one counts, junk or not)
    #: Every ``Forwarded`` / ``X-Forwarded-For`` value, in order (None: the header is absent).
    forwarded: list[str] | None = None
    x_forwarded_for: list[str] | None = None
    #: What synthetic traffic the request says it is (``X-Servepath-Traffic``, first value,
    #: read into the closed vocabulary of :mod:`servepath.traffic`); None: ordinary.
    traffic: Traffic | None = None

    def note(self, name: bytes, value: bytes) -> None:
        """Take one header (``name`` in lower case) if it is one the service acts on."""
        if name == b"content-length":
            if self.content_length < 0 and value.isdigit():
                self.content_length = int(value)
        elif name == b"x-request-id":
            if self.request_id is None:
                self.request_id = value.decode("latin-1")
        elif name == b"x-request-timeout":
            if not self.timed:
                self.timed = True
                self.timeout = timeout_of(value, 1.0)
        elif name == b"x-envoy-expected-rq-timeout-ms":
            if not self.timed:
                self.timed = True
                self.timeout = timeout_of(value, 0.001)
        elif name == b"x-forwarded-for":
            if self.x_forwarded_for is None:
                self.x_forwarded_for = []
            self.x_forwarded_for.append(value.decode("latin-1"))
        elif name == b"forwarded":
            if self.forwarded is None:
                self.forwarded = []
            self.forwarded.append(value.decode("latin-1"))
        elif name == TRAFFIC_HEADER_KEY and self.traffic is None:
            self.traffic = traffic_of(value)

    @classmethod
    def of(cls, headers: Iterable[tuple[bytes, bytes]]) -> Head:
        """The head of an ASGI scope's headers (when no HTTP layer of ours read them)."""
        head = cls()
        note = head.note
        for name, value in headers:
            note(name, value)
        return head

    @property
    def declared_length(self) -> int:
        """The declared body length, 0 when none was declared."""
        return max(0, self.content_length)


def timeout_of(value: bytes, scale: float) -> float | None:
    """A caller's deadline header (``X-Request-Timeout: 2.5`` seconds, or Envoy's
    ``x-envoy-expected-rq-timeout-ms: 2500`` with ``scale`` 0.001) in seconds; None when it
    is junk or not positive."""
    try:
        seconds = float(value) * scale
    except ValueError:
        return None
    return seconds if seconds > 0 else None


@dataclass(slots=True)
class RequestContext:
    """Per-request state the shell and the endpoints add timings and headers to."""

    request_id: str
    start: float  # time.perf_counter() when the request arrived
    head: Head = field(default_factory=Head)
    gone: Callable[[], bool] | None = None  # true once the caller has hung up
    ticket: Ticket | None = None  # admission to the predict pipeline, released at the end
    caller: str | None = None  # the name of the API key the request carried
    #: Who sent the request, as the server believes it: resolved once, when first asked.
    view: ClientView | None = None
    timings: list[tuple[str, float, str | None]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def server_timing(self) -> bytes:
        total = (time.perf_counter() - self.start) * 1000
        parts = [
            f'{name};dur={dur:.3f};desc="{desc}"' if desc else f"{name};dur={dur:.3f}"
            for name, dur, desc in self.timings
        ]
        parts.append(f"total;dur={total:.3f}")
        return ", ".join(parts).encode()


@dataclass(slots=True)
class RequestMeta:
    """What the pipeline knows of a request besides its rows.

    Built once per request, so slotted rather than frozen (a frozen dataclass costs about
    three times as much to build); nothing changes it once it is made.
    """

    request_id: str
    #: ``time.perf_counter()`` when the request arrived.
    start: float
    #: The TCP peer as the server saw it, ``host:port``; None when unknown.
    client: str | None = None
    #: The forwarded chain as *claimed* (the hops no trusted proxy vouches for), client
    #: first, bounded (see :mod:`servepath.net.forwarded`); None when there is none.
    forwarded: str | None = None
    #: ``time.perf_counter()`` past which an answer is of no use to the caller.
    deadline: float | None = None
    #: True once the caller has hung up; None when the server cannot tell.
    gone: Callable[[], bool] | None = None
    #: The server's own id of this request's record, unique whatever the caller sends;
    #: "" makes the pipeline draw one.
    record_id: str = ""
    #: The client's address as the server believes it (the peer, or what a trusted proxy
    #: vouches for); None when unknown.
    client_ip: str | None = None
    #: Request fields that were cut to fit the log's bounds (e.g. ``("forwarded",)``).
    truncated: tuple[str, ...] = ()
    #: The name of the API key the request carried; None when the route needs none.
    api_key: str | None = None
    #: The synthetic traffic the request was marked as; None for an ordinary request.
    traffic: Traffic | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "record_id": self.record_id,
            "client": self.client,
            "client_ip": self.client_ip,
            "forwarded": self.forwarded,
            "truncated": list(self.truncated),
            "api_key": self.api_key,
            "traffic": self.traffic,
            "deadline_in_s": None
            if self.deadline is None
            else round(self.deadline - time.perf_counter(), 6),
            "gone": None if self.gone is None else self.gone(),
        }
