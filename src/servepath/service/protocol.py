"""The HTTP/1.1 connection: uvicorn's httptools protocol with limits, timeouts and fast paths.

httptools (llhttp) has no cap of its own on the request line, the header count or the header
bytes, and uvicorn adds none, so one connection sending an endless header block grows the
process without bound; and uvicorn times out only idle keep-alive connections. The limits
live here, in the protocol, because only the protocol sees the bytes before a request
exists (an ASGI guard runs after the whole head has been buffered, and uvicorn's own options
stop at ``limit_concurrency`` and ``timeout_keep_alive``):

* **head**: request line over ``max_url_bytes`` → 414; more than ``max_headers`` headers, or
  a head past ``max_header_bytes`` (counted as it arrives, so a single endless header line
  is cut off too) → 431; malformed → 400. Each answer closes the connection.
* **Host**: HTTP/1.1 without one, two of them, or one that is no ``host[:port]`` → 400 and
  close (RFC 9112 §3.2); HTTP/1.0 may omit it.
* **Upgrade** (WebSocket, h2c): never switched to; the request is answered as plain HTTP and
  the connection then closed (an Upgrade request carrying a body → 400: llhttp would hand
  the body to the other protocol).
* **time**: a connection that sends no request within ``header_timeout`` is closed; a head
  not complete within ``header_timeout`` of its first byte, or a body that stalls for
  ``body_timeout`` (or is still arriving ``request_timeout`` after the head) → 408 and
  close; an idle keep-alive connection closes after ``keepalive_timeout``; a caller that
  stops reading its response for ``send_timeout`` is cut off.
* **count**: past ``max_connections`` open connections a new one is answered 503 (or the
  ``--shed-status``, 429) and closed
  (logged at most every 10 s with a count); at most :data:`MAX_PIPELINE` pipelined requests
  are parsed ahead of the one in progress: past them the connection stops reading (what was
  read waits unparsed) and reads on as answers go out, as nginx does, so every request is
  answered in order while one connection holds a bounded amount, whatever its caller sends.
* **fast paths**, answered from the parser's callback with no ASGI task: liveness
  (``/v2/health/live``), which therefore never waits behind predictions, and a prediction
  request the app would shed (503 or 429 + ``Retry-After``), which then costs a few microseconds
  instead of a request's worth.
* **draining**: on shutdown, a connection whose next request already sits unread in the
  socket keeps it and is answered (with ``Connection: close``); pipelined requests already
  parsed are answered too; an idle keep-alive connection answers a request that comes within
  :data:`DRAIN_IDLE_GRACE` (its caller may be sending it as the drain begins).
* **closing**: a connection its caller may still be sending on (idle at the keep-alive timeout
  or the drain, or answered with input unread behind the answer) is closed as nginx's
  lingering close does: FIN, then what still arrives is read and dropped until the caller
  closes too. Closing a socket with unread input makes the kernel send RST, which discards
  what of the answer is still unsent and fails the caller's read; FIN tells a caller whose
  request got no answer that it went unread, safe to send again.

The protocol never sees the app it serves: it consults the :class:`~servepath.service.gate.Gate`
the server put on its config (:class:`ServepathConfig`); under a plain uvicorn ``Config`` only
the limits apply, at their defaults.
Written against uvicorn 0.54.0 (pinned): :meth:`on_headers_complete` follows uvicorn's own.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import re
import struct
import termios
import time
import urllib.parse
from typing import Any

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from servepath.ratelog import RateLimitedWarning
from servepath.service.admission import Decision
from servepath.service.gate import Gate, HttpLimits, refusal
from servepath.service.request import Head, request_id_for
from servepath.service.routes import LIVE_BODY

log = logging.getLogger(__name__)

#: Pipelined requests parsed ahead of the one in progress on one connection; past them the
#: connection reads no more until answers go out (the rest waits in the socket).
MAX_PIPELINE = 32
#: Connections the health port (``--health-port``) holds at once: a few probers at a time.
HEALTH_CONNECTIONS = 64
#: A read holding more than this is parsed this much at a time, so that a read full of
#: small pipelined requests builds at most this many bytes' worth past MAX_PIPELINE.
PIPELINE_SLICE = 4096
#: On shutdown, a head still arriving gets at most this long to complete.
DRAIN_HEAD_GRACE = 1.0
#: On shutdown, an idle keep-alive connection stays open this long for a request already on
#: its way (its caller has just had an answer), answered with ``Connection: close``.
DRAIN_IDLE_GRACE = 0.5
#: After that grace, an idle connection's FIN waits this long for the caller's own close
#: before the close: no request of its was read, so there is no answer to protect, only a
#: request that may cross the FIN (it is read and dropped rather than reset).
DRAIN_IDLE_LINGER = 0.2
#: After an error answer, input is read and dropped for this long (or this many bytes)
#: before the close, so that the answer is not lost to a reset.
LINGER_TIME = 2.0
LINGER_BYTES = 1 << 20

#: A Host header's value: RFC 3986 reg-name, IPv4 or bracketed IPv6, and a port (or empty).
_HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")

CONNECTION_LIMIT_WARNING = RateLimitedWarning(
    log, "connection limit reached, refusing new connections"
)


#: Headers the protocol reads as they arrive (the rest it only keeps for the app).
_NOTED = frozenset(
    {b"host", b"content-length", b"x-request-id", b"x-request-timeout",
     b"x-envoy-expected-rq-timeout-ms", b"forwarded", b"x-forwarded-for",
     b"x-servepath-traffic"}
)  # fmt: skip
_DEFAULT_LIMITS = HttpLimits()


class ServepathConfig(Config):
    """uvicorn's Config, carrying the gate every connection of this server consults."""

    gate: Gate | None = None


class _Reject(Exception):
    """Raised from a parser callback: answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Flow(FlowControl):
    """uvicorn's flow control, except that reading stays paused while ``held``: requests
    read ahead wait unparsed behind a full pipeline (uvicorn resumes reading after every
    answer and in every ``receive``, which would read a flood in without bound)."""

    held = False

    def resume_reading(self) -> None:
        if self.read_paused and not self.held:
            self.read_paused = False
            self._transport.resume_reading()


class _CycleTransport:
    """The transport as a request cycle sees it: writes go straight to it; its close goes
    through the protocol, which closes without a reset when input may be unread."""

    __slots__ = ("close", "get_extra_info", "is_closing", "write")

    def __init__(self, transport: asyncio.Transport, close: Any) -> None:
        self.write = transport.write
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.close = close


class Cycle(RequestResponseCycle):
    """uvicorn's request cycle, with what the app asks of the connection (the ``servepath``
    scope extension): when the request's first byte arrived, the headers read on the way
    (:class:`~servepath.service.request.Head`), whether its caller left, the admission
    ticket the protocol took for it (None if it took none), and :meth:`respond`."""

    arrived: float
    ticket: Any = None
    head: Head

    def gone(self) -> bool:
        return self.disconnected

    async def respond(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head: bool
    ) -> None:
        """Write a whole response at once: status line, the server's and ``headers`` (the
        app's own, content-length among them), then ``body`` unless ``head``.

        The ASGI ``send`` path checks every header against uvicorn's patterns and writes
        head and body apart; the app's headers are its own (a caller's request id is used
        only once it matches the id pattern), so one join and one write do. Falls back to
        ``send`` where uvicorn's access log is on (it logs from there).
        """
        if self.access_log:
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
            await self.send({"type": "http.response.body", "body": b"" if head else body})
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status]]
        for name, value in self.default_headers:
            content += (name, b": ", value, b"\r\n")
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if not head:
            content.append(body)
        self.transport.write(b"".join(content))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


def canned_response(
    status: int,
    payload: dict[str, Any],
    *,
    request_id: str | None = None,
    close: bool = True,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    elapsed_ms: float | None = None,
    defaults: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A complete HTTP/1.1 response with a JSON body, written by the protocol itself.

    ``defaults``: the server's own headers (uvicorn keeps ``date`` there), written first.
    """
    body = orjson.dumps(payload)
    lines = [STATUS_LINE[status]]
    for name, value in defaults or ():
        lines += [name, b": ", value, b"\r\n"]
    lines += [
        b"content-type: application/json\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    if request_id is not None:
        lines += [b"x-request-id: ", request_id.encode(), b"\r\n"]
    if elapsed_ms is not None:
        lines += [b"server-timing: total;dur=", f"{elapsed_ms:.3f}".encode(), b"\r\n"]
    for name, value in extra:
        lines += [name, b": ", value, b"\r\n"]
    if close:
        lines.append(b"connection: close\r\n")
    lines += [b"\r\n", body]
    return b"".join(lines)


def pending_bytes(transport: asyncio.Transport) -> int:
    """Bytes waiting unread in the connection's socket (FIONREAD); 0 when unknowable."""
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno()
        raw = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class ServepathHttpProtocol(HttpToolsProtocol):
    """See the module docstring."""

    flow: _Flow

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        gate = getattr(config, "gate", None)
        self.gate: Gate | None = gate
        self.limits = limits = gate.limits if gate is not None else _DEFAULT_LIMITS
        self._max_head = limits.max_url_bytes + limits.max_header_bytes
        self._in_head = False
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._hosts = 0  # Host headers in the request being read, and the (last) value
        self._host = b""
        self._head = Head()
        self._arrived = 0.0
        self._arrived_loop = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._send_timer: asyncio.TimerHandle | None = None
        # The message in progress was answered here; drop the rest of it.
        self._discard = False
        self._discard_keep_alive = True
        self._stopped = False  # no more requests are read on this connection
        self._draining = False
        self._health_only = False  # a connection to --health-port: no predictions
        self._requests = 0
        self._lingering = 0  # bytes still dropped while lingering before the close
        # Bytes read but not yet parsed: they wait for room in a full pipeline.
        self._unparsed: memoryview | None = None
        self._cycle_transport: Any = None

    # --- the connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _Flow(transport)
        self._cycle_transport = _CycleTransport(transport, self._close_after_response)
        gate = self.gate
        health: set[object] = set()
        if gate is not None and gate.health_port is not None:
            health = gate.health_connections
            self._health_only = self.server is not None and self.server[1] == gate.health_port
        if self._health_only:
            # The health port's connections have their own bound, so that a flood of the
            # main port never refuses a probe (and probes never take a caller's place).
            limit = HEALTH_CONNECTIONS
            over = len(health) >= limit
            if not over:
                health.add(self)
        else:
            limit = self.limits.max_connections
            over = len(self.connections) - len(health) > limit
        if over:
            self._stopped = True
            CONNECTION_LIMIT_WARNING.note(f"{len(self.connections) - 1} open, the limit is {limit}")
            self._count_rejected("connections")
            transport.write(
                canned_response(
                    gate.shed_status if gate is not None else 503,
                    {
                        "error": f"the server holds {limit} connections, its limit; "
                        "retry shortly, or reuse a keep-alive connection",
                        "reason": "connections",
                        "retry_after": 1,
                    },
                    extra=((b"retry-after", b"1"),),
                    defaults=self.server_state.default_headers,
                )
            )
            transport.close()
            return
        # A connection that sends no request within the header timeout is closed, as nginx's
        # client_header_timeout does.
        self._arm("first", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._health_only and self.gate is not None:
            self.gate.health_connections.discard(self)
        self._cancel()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            if self._lingering:
                self._lingering -= len(data)
                if self._lingering <= 0:
                    self.transport.close()
            return
        if self._unparsed is not None or len(self.pipeline) >= MAX_PIPELINE:
            self._hold(memoryview(data))
            return
        self._unset_keepalive_if_required()
        if self._timer is not None and self._timer_kind != "head":
            self._cancel()
        if len(data) > PIPELINE_SLICE:
            self._feed_slices(memoryview(data))
        elif self._feed(data):
            self._arm_after_read()

    def _feed_slices(self, data: memoryview) -> None:
        """Parse ``data`` a slice at a time, holding the rest once the pipeline is full."""
        for start in range(0, len(data), PIPELINE_SLICE):
            if len(self.pipeline) >= MAX_PIPELINE:
                self._hold(data[start:])
                return
            if not self._feed(data[start : start + PIPELINE_SLICE]):
                return
        self._arm_after_read()

    def _hold(self, data: memoryview) -> None:
        """Keep ``data`` unparsed, and read no more, until the pipeline has room."""
        if self._unparsed is not None:
            data = memoryview(bytes(self._unparsed) + bytes(data))
        self._unparsed = data
        self.flow.held = True
        self.flow.pause_reading()
        # The caller has sent what it waits for: no head or body timer runs meanwhile.
        self._cancel()

    def _release(self) -> None:
        """An answer went out: parse what was held, while the pipeline has room."""
        held = self._unparsed
        if held is None or len(self.pipeline) >= MAX_PIPELINE or self._stopped:
            return
        self._unparsed = None
        self.flow.held = False
        self._unset_keepalive_if_required()
        self._feed_slices(held)
        if self._unparsed is None and not self._stopped:
            self.flow.resume_reading()

    def _feed(self, data: bytes | memoryview) -> bool:
        """Parse ``data``; False when the connection is done with (answered and closing)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.reason, cause.message)
            else:
                self._reject(400, "bad_request", "invalid HTTP request")
            return False
        except httptools.HttpParserError:
            self._reject(400, "bad_request", "invalid HTTP request")
            return False
        except httptools.HttpParserUpgrade:
            self._after_upgrade()
            return False
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                if self._header_count == 0 and len(self.url) >= self.limits.max_url_bytes:
                    self._reject(414, "uri_too_long", "the request line is too long")
                else:
                    self._reject(431, "headers_too_large", "the request head is too large")
                return False
        return True

    def _arm_after_read(self) -> None:
        """A read is parsed: time the head or the body still arriving."""
        if self._in_head:
            if self._timer is None:
                remaining = self._arrived_loop + self.limits.header_timeout - self.loop.time()
                if self._draining:
                    remaining = min(remaining, DRAIN_HEAD_GRACE)
                self._arm("head", remaining)
        elif self._discard or (
            self.cycle is not None and self.cycle.more_body and not self.cycle.disconnected
        ):
            self._arm_body()

    def _arm(self, kind: str, delay: float) -> None:
        self._cancel()
        self._timer_kind = kind
        self._timer = self.loop.call_later(max(0.0, delay), self._timed_out)

    def _arm_body(self) -> None:
        limits = self.limits
        left = self._arrived_loop + limits.request_timeout - self.loop.time()
        self._arm("body", min(limits.body_timeout, left))

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_kind = ""

    def _timed_out(self) -> None:
        kind = self._timer_kind
        self._timer = None
        self._timer_kind = ""
        if self.transport.is_closing():
            return
        if kind == "first":
            self._count_rejected("idle_timeout")
            self.transport.close()
        elif kind == "drain":
            if pending_bytes(self.transport) > 0:
                return  # a request has just arrived: it is read next, and answered
            self._close_softly(DRAIN_IDLE_LINGER)
        elif kind == "head":
            self._reject(408, "header_timeout", "the request head did not arrive in time")
        elif kind == "body":
            cycle = self.cycle
            if self._discard or cycle is None or cycle.response_started:
                self._count_rejected("body_timeout")
                self.transport.close()
                return
            self._reject(408, "body_timeout", "the request body stopped arriving")

    def _should_upgrade(self) -> bool:
        """Never: servepath speaks neither WebSocket nor h2c, and an ``Upgrade`` request is
        answered as the plain HTTP request it also is (RFC 9110 §7.8 lets a server ignore
        the header), not handed to a WebSocket handler the app does not have (a 500)."""
        return False

    def _after_upgrade(self) -> None:
        """The parser stops at an ``Upgrade`` request (what follows would be another
        protocol's bytes): answer the request, then close."""
        self._stopped = True
        if self.pipeline:
            self.pipeline[0][0].keep_alive = False
        elif self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif not self.transport.is_closing():
            self._close_softly()  # answered already (a fast path): written, then closed

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if (name == b"content-length" and value.strip(b"0 ")) or name == b"transfer-encoding":
                return True
        return False

    def _reject(self, status: int, reason: str, message: str) -> None:
        """Answer ``status`` and close: the connection cannot carry another request."""
        self._stopped = True
        self._count_rejected(reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is working on this request (a body that stopped): it must not answer.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        if not self.transport.is_closing():
            self.transport.write(
                canned_response(
                    status,
                    {"error": message, "reason": reason},
                    request_id=request_id_for(self._head.request_id),
                    defaults=self.server_state.default_headers,
                )
            )
            self._linger()

    def _linger(self, seconds: float = LINGER_TIME) -> None:
        """Close after an answer without resetting it away.

        Closing a socket with unread input makes the kernel send RST, which discards what
        of the answer is still unsent and makes the caller's read fail, so a client still
        sending (an endless header, pipelined requests, a request sent as the connection
        closed) may lose the answer before it reads it. As nginx's lingering close: send
        FIN, read and drop what still comes until the caller closes too (or for a moment),
        then close.
        """
        transport = self.transport
        self._stopped = True
        self._lingering = LINGER_BYTES
        self._unparsed = None
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.close()
                return
            self._cancel()
            self._unset_keepalive_if_required()
            self._timer_kind = "linger"
            self._timer = self.loop.call_later(seconds, transport.close)
            self.flow.held = False
            self.flow.resume_reading()
        else:
            transport.close()

    def _close_softly(self, linger: float = LINGER_TIME) -> None:
        """Close a connection the caller may be sending on: no request of its can have been
        read (an idle one), but one may be arriving; it gets FIN, never RST."""
        if not self.transport.is_closing() and not self._lingering:
            self._linger(linger)

    def _close_after_response(self) -> None:
        """A response said ``Connection: close``: close, lingering if input waits unread
        (pipelined requests past the answered one), which would otherwise reset it away."""
        transport = self.transport
        if transport.is_closing() or self._lingering:
            return
        if self.flow.read_paused or self._unparsed is not None or pending_bytes(transport):
            self._linger()
        else:
            self._stopped = True
            transport.close()

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        self._close_softly()

    def _count_rejected(self, reason: str) -> None:
        if self.gate is not None:
            self.gate.metrics.count_rejected(reason)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_stuck)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_stuck(self) -> None:
        self._send_timer = None
        self._count_rejected("send_timeout")
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.flow.resume_writing()
        self.transport.abort()

    def on_response_complete(self) -> None:
        if self._stopped:
            self.server_state.total_requests += 1
            if self._lingering or self.transport.is_closing():
                return
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._close_softly()
            return
        super().on_response_complete()
        if self._unparsed is not None:
            self._release()
        elif self._draining and self.timeout_keep_alive_task is not None:
            # Answered with keep-alive (its body was still arriving at the drain): idle now,
            # it closes as the drain closes idle connections, not at the keep-alive timeout.
            self._unset_keepalive_if_required()
            self._arm("drain", DRAIN_IDLE_GRACE)

    def begin_drain(self) -> None:
        """Answer what comes on this connection with ``Connection: close``."""
        self._draining = True

    def shutdown(self) -> None:
        """The server is stopping: answer what was received, then close."""
        self._draining = True
        if self._stopped or self.transport.is_closing():
            return  # closing already, once its answers are out
        if self.pipeline:
            last = self.pipeline[0][0]
            # The last request queued ends the answers, unless its body is still to come
            # (held, or on the way): then it is read and answered, and the next ends them.
            if not last.more_body:
                last.keep_alive = False
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            return
        if self._in_head:
            # Part of a request has arrived: give the rest a moment, not a full timeout.
            left = self._arrived_loop + self.limits.header_timeout - self.loop.time()
            self._arm("head", min(left, DRAIN_HEAD_GRACE))
            return
        if self._discard or pending_bytes(self.transport) > 0:
            return  # a request waits unread (or a body to drop): read it, answer it, close
        # Idle. Its caller may be sending the next request this very moment (it has just
        # had an answer): that request is answered with Connection: close if it comes
        # within the grace; then FIN, and what comes after it is read and dropped, not
        # reset (a caller that sees FIN before any answer knows its request went unread).
        self._unset_keepalive_if_required()
        self._arm("drain", DRAIN_IDLE_GRACE)

    # --- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A keep-alive timer armed after a request answered here must not run into this one.
        self._unset_keepalive_if_required()
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._hosts = 0
        self._host = b""
        self._head = Head()
        self._arrived = time.perf_counter()
        self._arrived_loop = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            raise _Reject(414, "uri_too_long", "the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        limits = self.limits
        if self._header_count > limits.max_headers:
            raise _Reject(431, "too_many_headers", f"more than {limits.max_headers} headers")
        if self._header_bytes > limits.max_header_bytes:
            raise _Reject(431, "headers_too_large", "the request headers are too large")
        super().on_header(name, value)
        key = self.headers[-1][0]
        if key in _NOTED:
            if key == b"host":
                self._hosts += 1
                self._host = value
            else:
                self._head.note(key, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._timer_kind == "head":
            self._cancel()
        self._requests += 1
        parser = self.parser
        http_version = parser.get_http_version()
        if self._hosts != 1 and (self._hosts or http_version != "1.0"):
            # RFC 9112 §3.2: a request with no Host (HTTP/1.1) or with two is a 400, lest a
            # proxy in front route by one Host and this server read the other.
            raise _Reject(400, "bad_host", "the request must carry exactly one Host header")
        if self._hosts and not _HOST.fullmatch(self._host):
            raise _Reject(400, "bad_host", "the Host header is not a valid host[:port]")
        method = parser.get_method().decode("ascii")
        self.scope["method"] = method
        if http_version != "1.1":
            self.scope["http_version"] = http_version
        if parser.should_upgrade() and self._declares_body():
            # llhttp hands everything after an Upgrade request's head to the new protocol,
            # body included: the app would see an empty body. Say so instead.
            raise _Reject(
                400,
                "upgrade_with_body",
                "this server does not switch protocols (Upgrade); send the request with a "
                "body without the Upgrade header",
            )
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        full_path = self.root_path + path
        self.scope["path"] = full_path
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = parsed_url.query or b""
        keep_alive = http_version != "1.0" and parser.should_keep_alive() and not self._draining

        existing = self.cycle
        idle = (existing is None or existing.response_complete) and not self.pipeline
        gate = self.gate
        ticket = None
        if idle and gate is not None:
            answered, ticket = self._fast_path(gate, method, full_path, keep_alive)
            if answered:
                return

        cycle = Cycle(
            scope=self.scope,
            transport=self._cycle_transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.arrived = self._arrived
        cycle.ticket = ticket
        cycle.head = self._head
        self.scope["extensions"] = {"servepath": cycle}  # type: ignore[dict-item]
        self.cycle = cycle
        if idle:
            self._start_asgi_task(cycle, self.app)
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def _fast_path(self, gate: Gate, method: str, path: str, keep_alive: bool) -> tuple[bool, Any]:
        """Answer liveness, or admit or shed a prediction, without an ASGI task.

        Returns (answered here, the admission ticket for the app or None). Admitting here,
        not in the app, is what bounds the building: the requests one loop iteration reads
        are all decided before the first of them runs.
        """
        if path == gate.live_path and method in ("GET", "HEAD"):
            self._answer(gate, 200, LIVE_BODY, path, method, keep_alive, ())
            return True, None
        if self._health_only:  # no prediction here: the app says where they go
            return False, None
        template = gate.predict_template(method, path)
        if template is None:
            return False, None
        decision = gate.admit(self._head.declared_length)
        if not isinstance(decision, Decision):
            return False, decision  # admitted (a ticket for the app), or not decided here
        payload, extra = refusal(decision)
        self._answer(gate, gate.shed_status, payload, template, method, keep_alive, extra)
        return True, None

    def _answer(
        self,
        gate: Gate,
        status: int,
        payload: dict[str, Any],
        template: str,
        method: str,
        keep_alive: bool,
        extra: tuple[tuple[bytes, bytes], ...],
    ) -> None:
        elapsed = time.perf_counter() - self._arrived
        request_id = request_id_for(self._head.request_id)
        response = canned_response(
            status,
            payload,
            request_id=request_id,
            close=not keep_alive,
            extra=extra,
            elapsed_ms=elapsed * 1000,
            defaults=self.server_state.default_headers,
        )
        if method == "HEAD":
            response = response[: response.index(b"\r\n\r\n") + 4]
        self.transport.write(response)
        gate.metrics.observe_request(template, method, status, elapsed)
        seen = gate.seen
        if seen is not None and status >= 400:
            # A prediction refused on its head: the live page counts it like any other answer.
            seen(status, elapsed, template, request_id, self.scope.get("client"), self.headers, [])
        self._discard = True
        self._discard_keep_alive = keep_alive

    def on_body(self, body: bytes) -> None:
        if self._discard:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._discard:
            self._discard = False
            self._cancel()
            if not self._discard_keep_alive:
                self._close_after_response()
            elif self._draining:
                self._close_softly()  # the answer said keep-alive: the caller may send on
            elif not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
            return
        if self._timer_kind == "body":
            self._cancel()
        super().on_message_complete()
