"""classify_http_error: httpx failures named for the path, from real sockets where possible."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest
import trustme

from servepath.net.http_errors import cause_chain, classify_http_error
from tests.helpers.tcpserver import scripted_server
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)


def _get(url: str, **client: object) -> BaseException:
    with httpx.Client(trust_env=False, timeout=1, **client) as c:  # type: ignore[arg-type]
        try:
            c.get(url)
        except httpx.HTTPError as exc:
            return exc
    raise AssertionError(f"GET {url} succeeded")


def test_nothing_listening_is_refused() -> None:
    kind, message = classify_http_error(_get(f"http://127.0.0.1:{free_port()}/"))
    assert kind == "refused"
    assert "nothing listens" in message


def test_a_refused_proxy_is_a_proxy_error() -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    exc = _get("http://127.0.0.1:9/", proxy=proxy)
    kind, message = classify_http_error(exc, proxy=proxy)
    assert kind == "proxy"
    assert proxy in message and "refused" in message


def test_a_silent_server_is_a_read_timeout_not_a_connect_timeout() -> None:
    with scripted_server(lambda conn: conn.recv(65536) and threading.Event().wait(2)) as port:
        exc = _get(f"http://127.0.0.1:{port}/")
    assert isinstance(exc, httpx.ReadTimeout)
    assert classify_http_error(exc).kind == "read_timeout"


def test_a_server_that_hangs_up_without_answering_is_reset() -> None:
    with scripted_server(lambda conn: conn.recv(65536) and None) as port:
        kind, message = classify_http_error(_get(f"http://127.0.0.1:{port}/"))
    assert kind == "reset"
    assert "without" in message


def test_a_tcp_reset_is_reset() -> None:
    def rst(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with scripted_server(rst) as port:
        kind, _ = classify_http_error(_get(f"http://127.0.0.1:{port}/"))
    assert kind == "reset"


def test_a_non_http_answer_is_a_protocol_error() -> None:
    junk = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
    with scripted_server(lambda conn: conn.recv(65536) and conn.sendall(junk)) as port:
        kind, message = classify_http_error(_get(f"http://127.0.0.1:{port}/"))
    assert kind == "protocol"
    assert "broke HTTP" in message


@pytest.fixture(scope="module")
def tls_port() -> Iterator[int]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    def handshake(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)

    with scripted_server(handshake) as port:
        yield port


def test_an_untrusted_certificate_is_a_tls_error_naming_the_reason(tls_port: int) -> None:
    exc = _get(f"https://localhost:{tls_port}/")
    kind, message = classify_http_error(exc)
    assert kind == "tls"
    assert "certificate not accepted" in message and "issuer" in message


def test_https_to_plain_http_says_the_port_does_not_speak_tls() -> None:
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    with scripted_server(lambda conn: conn.recv(65536) and conn.sendall(answer)) as port:
        kind, message = classify_http_error(_get(f"https://127.0.0.1:{port}/"))
    assert kind == "tls"
    assert "does not speak TLS" in message


def test_unsupported_scheme_is_an_invalid_url() -> None:
    assert classify_http_error(_get("ftp://127.0.0.1/")).kind == "invalid_url"


# --- constructed where a real one needs a network the test may not make ---------------------


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def test_name_resolution_failure_is_dns() -> None:
    inner = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    exc = _raised_from(httpx.ConnectError("[Errno -2] Name or service not known"), inner)
    assert classify_http_error(exc) == (
        "dns",
        "the name did not resolve: Name or service not known",
    )


def test_dns_is_recognised_from_the_message_when_the_cause_was_dropped() -> None:
    exc = httpx.ConnectError("[Errno -3] Temporary failure in name resolution")
    assert classify_http_error(exc).kind == "dns"


def test_a_connect_timeout_is_told_apart_from_a_read_timeout() -> None:
    kind, message = classify_http_error(httpx.ConnectTimeout("timed out"))
    assert kind == "connect_timeout" and "firewall" in message
    assert classify_http_error(httpx.ConnectTimeout("timed out"), proxy="http://p:1")[0] == "proxy"


@pytest.mark.parametrize(
    ("errno_", "kind"), [(113, "unreachable"), (101, "unreachable"), (104, "reset")]
)
def test_errno_of_the_cause_decides(errno_: int, kind: str) -> None:
    exc = _raised_from(httpx.ConnectError("failed"), OSError(errno_, "x"))
    assert classify_http_error(exc).kind == kind


def test_a_proxy_that_refuses_to_tunnel_is_a_proxy_error() -> None:
    kind, message = classify_http_error(httpx.ProxyError("502 Bad Gateway"), proxy="http://p:3")
    assert kind == "proxy"
    assert "502 Bad Gateway" in message


def test_an_error_status_names_status_method_and_url() -> None:
    request = httpx.Request("POST", "http://api.test/decisions")
    response = httpx.Response(503, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        assert classify_http_error(exc) == (
            "http_status",
            "HTTP 503 Service Unavailable for POST http://api.test/decisions",
        )


def test_other_timeouts_and_redirects_have_their_own_kinds() -> None:
    request = httpx.Request("GET", "http://api.test/")
    assert classify_http_error(httpx.WriteTimeout("w")).kind == "write_timeout"
    assert classify_http_error(httpx.PoolTimeout("p")).kind == "pool_timeout"
    redirects = httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
    assert classify_http_error(redirects).kind == "too_many_redirects"


def test_cause_chain_stops_at_cycles() -> None:
    a = ValueError("a")
    b = ValueError("b")
    a.__cause__ = b
    b.__cause__ = a
    assert cause_chain(a) == [a, b]
