"""The HTTPS listener: each accepted connection is counted, given a handshake deadline, and
upgraded to TLS by the server itself before the HTTP protocol sees it.

The loop's own TLS server (``create_server(ssl=...)``) hides a connection from the server
until its handshake completes: the protocol's ``connection_made`` runs only then. A
connection that sends nothing, five bytes of a record header, or a ClientHello one byte a
second is therefore not counted against ``max_connections`` and is dropped only by the loop's
default handshake timeout (60 s). Here the listener accepts plain TCP and, when a
connection's first byte arrives, installs the same TLS protocol the loop's server would
have (uvloop's, compiled: the request path is the loop's own):

* **counted from accept**: a handshaking connection sits in the server's connection set
  beside the HTTP connections; past ``max_connections`` a new one is closed at once, with the
  plain port's rate-limited log line and its ``connections`` rejection count. It is closed,
  not answered 503: an answer would need a TLS session, and the handshake is the very CPU
  work the limit bounds.
* **deadline**: the handshake must complete within ``header_timeout`` of the accept (as
  nginx's ``client_header_timeout`` bounds its TLS handshake); the first request's head then
  has ``header_timeout`` of its own, as on the plain port.
* **memory**: see :mod:`servepath.service.heap`: the TLS read buffers freed when connections
  end are given back to the operating system after a burst.

Once the handshake completes, the HTTP protocol is made and handed the TLS transport, as the
loop's TLS server would have done: certificates reloaded into the same context (SIGHUP) serve
the next handshake. A server draining when a handshake completes answers that connection's
request with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
from collections.abc import Callable
from typing import Any, cast

from uvicorn.server import ServerState

from servepath.service.gate import Gate, HttpLimits
from servepath.service.heap import HeapTrim

# One limiter for both ports (a flood of either is one line per interval), and the same
# look at a socket's unread bytes the HTTP protocol drains by.
from servepath.service.protocol import CONNECTION_LIMIT_WARNING, pending_bytes

#: Makes the HTTP protocol for a connection whose handshake completed.
MakeProtocol = Callable[[], asyncio.Protocol]


class TlsListener:
    """What the listening socket's connections share: the TLS context, the limits, the
    server's connection set, and how to make the HTTP protocol. :meth:`accept` is the
    protocol factory to give ``loop.create_server`` (with no ``ssl``)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        make_protocol: MakeProtocol,
        state: ServerState,
        limits: HttpLimits,
        gate: Gate | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.context = context
        self.make_protocol = make_protocol
        self.state = state
        self.limits = limits
        self.gate = gate
        self.loop = loop
        self.draining = False
        self.heap = HeapTrim(loop, lambda: len(state.connections))

    def accept(self) -> asyncio.Protocol:
        return Handshake(self)

    def begin_drain(self) -> None:
        """Connections whose handshake completes from now on answer with ``Connection: close``."""
        self.draining = True

    @property
    def connections(self) -> set[Any]:
        return cast(set[Any], self.state.connections)

    def count_rejected(self, reason: str) -> None:
        if self.gate is not None:
            self.gate.metrics.count_rejected(reason)


class Handshake(asyncio.Protocol):
    """One accepted connection until its TLS handshake ends; in the server's connection
    set meanwhile (uvicorn's shutdown calls :meth:`shutdown` on it like on any other).

    The TLS protocol is made when the first byte arrives, not at accept: a connection that
    sends nothing costs its socket and a timer, not a TLS session and its read buffer. It is
    installed from inside this protocol's callbacks, so no byte can be read in between (the
    loop starts reading as soon as ``connection_made`` returns; ``loop.start_tls`` installs
    its protocol a loop iteration later, and a ClientHello already waiting would be lost).
    """

    def __init__(self, listener: TlsListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.tls: asyncio.BaseProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self.listener
        self.transport = transport = cast(asyncio.Transport, transport)
        connections = listener.connections
        connections.add(self)
        listener.heap.accepted()
        limit = listener.limits.max_connections
        if len(connections) > limit:
            connections.discard(self)
            CONNECTION_LIMIT_WARNING.note(f"{len(connections)} open, the limit is {limit}")
            listener.count_rejected("connections")
            transport.close()
            return
        timeout = listener.limits.header_timeout
        self.deadline = listener.loop.time() + timeout
        self.timer = listener.loop.call_later(timeout, self._silent)

    def data_received(self, data: bytes) -> None:
        """The first bytes of the ClientHello: the TLS protocol takes the connection over,
        with what is left of the deadline, and is handed these bytes."""
        listener, transport = self.listener, self.transport
        assert transport is not None
        self._cancel()
        loop = listener.loop
        waiter = loop.create_future()
        waiter.add_done_callback(self._ended)
        tls = tls_protocol_class(loop)(
            loop,
            _Handoff(self),
            listener.context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=max(0.001, self.deadline - loop.time()),
        )
        self.tls = tls
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(data)
        while view and not transport.is_closing():
            buffer = tls.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]

    def eof_received(self) -> bool | None:
        return None  # before any byte: close

    def connection_lost(self, exc: Exception | None) -> None:
        # Called only while no TLS protocol has taken the connection over.
        self._cancel()
        self.listener.connections.discard(self)

    def _silent(self) -> None:
        self.timer = None
        self.listener.count_rejected("idle_timeout")
        if self.transport is not None:
            self.transport.close()

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _handed_off(self) -> None:
        self.listener.connections.discard(self)

    def _ended(self, waiter: asyncio.Future[Any]) -> None:
        """The handshake is over, completed or not: this connection is no longer counted
        here (a completed one is counted by its HTTP protocol now)."""
        self.listener.connections.discard(self)
        self.tls = None
        if waiter.cancelled():
            return
        exc = waiter.exception()  # retrieved, so that a failed handshake is not logged
        if isinstance(exc, ConnectionAbortedError):
            self.listener.count_rejected("header_timeout")

    def shutdown(self) -> None:
        """The server stops: a connection that has sent nothing is closed; a handshake under
        way (or a ClientHello waiting unread) may complete, its deadline still bounding it,
        and the request that follows is answered with ``Connection: close``."""
        self.listener.begin_drain()
        transport = self.transport
        if self.tls is None and transport is not None and pending_bytes(transport) == 0:
            self._cancel()
            transport.close()


class _Handoff(asyncio.Protocol):
    """The TLS transport's protocol until the handshake completes; then the HTTP protocol
    replaces it, as the loop's TLS server would have made it."""

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handshake = self.handshake
        listener = handshake.listener
        # Counted once: the HTTP protocol adds itself to the same set (and checks the limit).
        handshake._handed_off()
        protocol = listener.make_protocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if listener.draining:
            begin_drain = getattr(protocol, "begin_drain", None)
            if begin_drain is not None:
                begin_drain()


def tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS protocol the loop's own TLS server uses: uvloop's (compiled) on uvloop,
    asyncio's elsewhere. Both take (loop, app protocol, context, waiter, server_side, ...)."""
    try:
        import uvloop
        import uvloop.loop
    except ImportError:
        return asyncio.sslproto.SSLProtocol
    if isinstance(loop, uvloop.Loop):
        # Not in uvloop's type stubs, but the class its own server and start_tls make.
        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    return asyncio.sslproto.SSLProtocol
