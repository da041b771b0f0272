"""What an httpx failure means for the path: one pure mapping, shared by every HTTP caller.

httpx wraps the socket and TLS errors that tell the story (``socket.gaierror``,
``ConnectionRefusedError``, ``ssl.SSLCertVerificationError``) in its own exceptions, keeping
the original in the ``__cause__`` chain; the mapping reads that chain.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Literal, NamedTuple

import httpx

__all__ = ["HttpErrorClass", "HttpErrorKind", "cause_chain", "classify_http_error"]

HttpErrorKind = Literal[
    "dns",  # the name did not resolve
    "refused",  # nothing listens on the port (or a firewall REJECTs)
    "unreachable",  # no route to the host or network
    "reset",  # the peer (or a middlebox) reset or closed the connection
    "connect_timeout",  # no answer to the connection attempt: dropped on the way, or down
    "read_timeout",  # connected, but the server did not answer in time
    "write_timeout",
    "pool_timeout",
    "tls",  # the TLS handshake or certificate check failed
    "proxy",  # the forward proxy could not be reached, or refused to forward
    "protocol",  # the server broke HTTP (or is not an HTTP server)
    "http_status",  # an HTTP answer with an error status
    "too_many_redirects",
    "invalid_url",
    "other",
]


# glibc's getaddrinfo messages, for chains where the gaierror object itself was not kept.
_GAI_TEXTS = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "No address associated with hostname",
    "nodename nor servname provided",
)


class HttpErrorClass(NamedTuple):
    kind: HttpErrorKind
    message: str


def cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _first(chain: list[BaseException], kind: type[BaseException]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, kind)), None)


def _errno(chain: list[BaseException]) -> int | None:
    for e in chain:
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, socket.gaierror):
            return e.errno
    return None


def _reason(chain: list[BaseException]) -> str:
    # The innermost message names the system call's complaint; the outer ones repeat it.
    for e in reversed(chain):
        text = str(e)
        if text:
            return text
    return type(chain[0]).__name__


def _tls_message(chain: list[BaseException]) -> str:
    verify = _first(chain, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {verify.verify_message}"
    err = _first(chain, ssl.SSLError)
    reason = getattr(err, "reason", None) or _reason(chain)
    text = str(reason).upper()
    if any(s in text for s in ("WRONG_VERSION_NUMBER", "RECORD_LAYER", "HTTP_REQUEST", "PACKET")):
        return (
            f"TLS handshake failed ({reason}): the server does not speak TLS on this port "
            "(plain HTTP where https:// was asked?)"
        )
    return f"TLS handshake failed: {reason}"


def classify_http_error(exc: BaseException, *, proxy: str | None = None) -> HttpErrorClass:
    """The kind of failure ``exc`` (an httpx exception) is, and a sentence explaining it.

    ``proxy``: the forward proxy the request went through, if any; connection failures are
    then the proxy's, since the client never connects to the target itself.
    """
    chain = cause_chain(exc)
    reason = _reason(chain)
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return HttpErrorClass(
            "http_status",
            f"HTTP {response.status_code} {response.reason_phrase} for "
            f"{exc.request.method} {exc.request.url}",
        )
    if isinstance(exc, httpx.TooManyRedirects):
        return HttpErrorClass("too_many_redirects", str(exc))
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return HttpErrorClass("invalid_url", str(exc))
    if isinstance(exc, httpx.ProxyError):
        return HttpErrorClass("proxy", f"the forward proxy {proxy or ''} refused: {reason}")
    if isinstance(exc, httpx.PoolTimeout):
        return HttpErrorClass("pool_timeout", "no free connection in the pool in time")
    if isinstance(exc, httpx.WriteTimeout):
        return HttpErrorClass("write_timeout", "the server stopped accepting the request body")
    if isinstance(exc, httpx.ReadTimeout):
        return HttpErrorClass(
            "read_timeout",
            "connected, but no response in time: the server (or a proxy) accepted the request "
            "and is slow or stuck",
        )
    kind, message = _connect_failure(exc, chain, reason)
    if proxy and kind in ("dns", "refused", "unreachable", "connect_timeout"):
        return HttpErrorClass("proxy", f"cannot reach the forward proxy {proxy}: {message}")
    return HttpErrorClass(kind, message)


def _connect_failure(
    exc: BaseException, chain: list[BaseException], reason: str
) -> tuple[HttpErrorKind, str]:
    gai = _first(chain, socket.gaierror)
    if isinstance(gai, socket.gaierror):
        return "dns", f"the name did not resolve: {gai.strerror or gai}"
    if any(text in reason for text in _GAI_TEXTS):  # the gaierror itself was dropped
        return "dns", f"the name did not resolve: {reason}"
    if _first(chain, ssl.SSLError) is not None:
        return "tls", _tls_message(chain)
    if isinstance(exc, httpx.ConnectTimeout):
        return (
            "connect_timeout",
            "no answer to the connection attempt in time: packets dropped by a firewall, "
            "or the host is down",
        )
    code = _errno(chain)
    if code == errno.ECONNREFUSED:
        return "refused", "connection refused: nothing listens on that port (or a firewall REJECTs)"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable", f"no route: {reason}"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset", f"the connection was reset: {reason}"
    if isinstance(exc, httpx.RemoteProtocolError):
        if "without sending" in reason or "disconnected" in reason:
            return "reset", f"the server closed the connection without answering: {reason}"
        return "protocol", f"the server broke HTTP: {reason}"
    if isinstance(exc, httpx.TimeoutException):
        return "read_timeout", reason
    if isinstance(exc, httpx.LocalProtocolError | httpx.DecodingError):
        return "protocol", reason
    return "other", reason
