"""Which protocol a port speaks: the classifiers on bytes captured from (or built to the specs
of) each protocol, the probe plan without a network, and the driver against real servers on
loopback — the machine's Redis and PostgreSQL, http.server, a trustme TLS server, and
scripted TCP servers that greet, close at once or never answer, over IPv4 and IPv6."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
import redis
import trustme

from servepath.netdiag.protocols import (
    SSL_REQUEST,
    Exchange,
    ProtocolGuess,
    ProtocolName,
    classify_banner,
    classify_reply,
    client_hello,
    conclude,
    describe_connect_error,
    next_probe,
    printable,
    probe_payload,
    sniff_protocol,
)
from tests.helpers.tcpserver import close_at_once, greet, hold, scripted_server
from tests.support import free_port, need

pytestmark = pytest.mark.timeout(30)

LOOPBACKS = pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
#: Loopback servers in threads answer within milliseconds; this keeps the suite quick.
FAST = 0.2


def _mysql_packet(payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def _mysql_handshake(version: bytes) -> bytes:
    return _mysql_packet(
        b"\x0a" + version + b"\x00" + b"\x08\x00\x00\x00" + b"abcdefgh\x00" + b"\xff\xff"
        b"\xff\x02\x00\xff\xdf\x15" + b"\x00" * 10 + b"ijklmnopqrst\x00"
        b"caching_sha2_password\x00"
    )


def _pg_error(*fields: bytes) -> bytes:
    body = b"".join(f + b"\x00" for f in fields) + b"\x00"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


SETTINGS_FRAME = bytes.fromhex("000012040000000000") + bytes.fromhex(
    "000300000064000400100000000600002000"
)


# ---- greetings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("banner", "name", "evidence"),
    [
        (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "ssh",
         'the server greeted with "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"'),
        (b"SSH-1.99-Cisco-1.25\r\n", "ssh", 'the server greeted with "SSH-1.99-Cisco-1.25"'),
        (b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n", "smtp",
         'the server greeted with "220 mail.example.com ESMTP Postfix (Debian/GNU)"'),
        (b"220-mx.example.org Exim 4.96 ready\r\n220 go ahead\r\n", "smtp",
         'the server greeted with "220-mx.example.org Exim 4.96 ready"'),
        (b"220 (vsFTPd 3.0.3)\r\n", "ftp", 'the server greeted with "220 (vsFTPd 3.0.3)"'),
        (b"220 ProFTPD Server (Debian) [::ffff:10.0.0.5]\r\n", "ftp",
         'the server greeted with "220 ProFTPD Server (Debian) [::ffff:10.0.0.5]"'),
        (b"+OK Dovecot (Debian) ready.\r\n", "pop3",
         'the server greeted with "+OK Dovecot (Debian) ready."'),
        (b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS] Dovecot ready.\r\n", "imap",
         'the server greeted with "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS] '
         'Dovecot ..."'),
        (b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n",
         "redis", 'the server greeted with "-DENIED Redis is running in protected mode because '
         'protected..."'),
        (b"-ERR max number of clients reached\r\n", "redis",
         'the server greeted with "-ERR max number of clients reached"'),
        (b"RFB 003.008\n", "vnc", 'the server greeted with "RFB 003.008"'),
        (b'INFO {"server_id":"NABC","version":"2.10.4","go":"go1.21","host":"0.0.0.0"}\r\n',
         "nats", 'the server greeted with "INFO {\\"server_id\\":\\"NABC\\",'
         '\\"version\\":\\"2.10.4\\",\\"go\\":..."'),
        (SETTINGS_FRAME, "http2",
         "the server opened with an HTTP/2 SETTINGS frame (HTTP/2 only, as gRPC servers are)"),
    ],
)  # fmt: skip
def test_a_greeting_names_its_protocol(banner: bytes, name: str, evidence: str) -> None:
    guess = classify_banner(banner)
    assert guess == ProtocolGuess(typing.cast(ProtocolName, name), evidence, banner)


def test_a_mysql_handshake_is_mysql_with_its_version() -> None:
    guess = classify_banner(_mysql_handshake(b"8.0.36"))
    assert guess is not None
    assert (guess.name, guess.label) == ("mysql", "MySQL")
    assert guess.evidence == 'the server greeted with a MySQL handshake, version "8.0.36"'


def test_mariadb_speaks_the_mysql_protocol_and_says_which_it_is() -> None:
    guess = classify_banner(_mysql_handshake(b"5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert guess is not None and guess.name == "mysql"
    assert guess.evidence == (
        "the server greeted with a MySQL handshake (MariaDB), "
        'version "5.5.5-10.11.6-MariaDB-0+deb12u1"'
    )


def test_a_mysql_server_refusing_the_host_is_still_mysql() -> None:
    message = b"Host '10.0.0.9' is not allowed to connect to this MySQL server"
    guess = classify_banner(_mysql_packet(b"\xff" + (1130).to_bytes(2, "little") + message))
    assert guess is not None and guess.name == "mysql"
    assert guess.evidence.startswith("the server refused with MySQL error 1130: \"Host '10.0.0.9'")


@pytest.mark.parametrize(
    "banner",
    [
        b"\x3a\x00\x00\x00\x0a",  # a MySQL header cut before the version
        b"\x05\x00\x00\x00\x0aabc\x00x",  # a length too short for a handshake
        b"\x3a\x00\x00\x00\x0a\x01\x02\x03\x00" + b"\x00" * 53,  # a version that is not text
        b"\x10\x00\x00\x00\xff\x6a\x04abc",  # an error whose length does not match
    ],
)
def test_bytes_shaped_almost_like_mysql_are_not_claimed(banner: bytes) -> None:
    guess = classify_banner(banner)
    assert guess is not None and guess.name == "unknown"


def test_a_220_greeting_naming_neither_smtp_nor_ftp_is_not_guessed() -> None:
    guess = classify_banner(b"220 gateway ready\r\n")
    assert guess is not None
    assert guess.name == "unknown"
    assert guess.evidence == 'the server greeted with "220 gateway ready" (an SMTP or FTP greeting)'


def test_a_pop3_style_error_greeting_is_not_taken_for_redis() -> None:
    guess = classify_banner(b"-ERR [SYS/TEMP] too many connections\r\n")
    assert guess is not None and guess.name == "unknown"


def test_an_unknown_greeting_is_quoted_escaped_and_cut() -> None:
    data = bytes(range(0, 200))
    guess = classify_banner(data)
    assert guess is not None and guess.name == "unknown"
    assert guess.evidence.startswith('the server greeted with 200 bytes of no protocol we know: "')
    assert "\\x00\\x01\\x02\\x03" in guess.evidence
    assert guess.evidence.isprintable() and "\n" not in guess.evidence
    assert len(guess.evidence) < 140
    assert guess.first_bytes == data[:64]


def test_no_greeting_is_no_evidence() -> None:
    assert classify_banner(b"") is None


# ---- answers to probes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "reply", "name", "evidence"),
    [
        ("http", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "http",
         'answered an HTTP request with "HTTP/1.1 400 Bad Request"'),
        ("ping", b"HTTP/1.0 400 Bad request\r\n\r\n", "http",
         'answered PING with "HTTP/1.0 400 Bad request"'),
        ("http", b"\x15\x03\x01\x00\x02\x02\x46", "tls",
         "answered an HTTP request with a TLS alert (protocol_version)"),
        ("client_hello", b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03", "tls",
         "answered a TLS ClientHello with a TLS handshake record (ServerHello)"),
        ("client_hello", b"\x15\x03\x03\x00\x02\x02\x28", "tls",
         "answered a TLS ClientHello with a TLS alert (handshake_failure)"),
        ("http", b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n<html><center>The plain "
         b"HTTP request was sent to HTTPS port</center></html>", "tls",
         'answered an HTTP request with "HTTP/1.1 400 Bad Request": the port expects TLS'),
        ("http", b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS "
         b"server.\n", "tls",
         'answered an HTTP request with "HTTP/1.0 400 Bad Request": the port expects TLS'),
        ("http", b"-ERR wrong number of arguments for 'get' command\r\n", "redis",
         "answered an HTTP request with \"-ERR wrong number of arguments for 'get' command\""),
        ("ping", b"+PONG\r\n", "redis", 'answered PING with "+PONG"'),
        ("ping", b"-NOAUTH Authentication required.\r\n", "redis",
         'answered PING with "-NOAUTH Authentication required."'),
        ("ssl_request", b"N", "postgresql",
         'answered a PostgreSQL SSLRequest with "N" (TLS not offered)'),
        ("ssl_request", b"S", "postgresql",
         'answered a PostgreSQL SSLRequest with "S" (TLS offered)'),
        ("ssl_request", _pg_error(b"SFATAL", b"VFATAL", b"C53300",
                                  b"Msorry, too many clients already"), "postgresql",
         'answered a PostgreSQL SSLRequest with an ErrorResponse: FATAL "sorry, too many '
         'clients already"'),
        ("http", b"ERROR\r\nERROR\r\nERROR\r\n", "memcached",
         "answered an HTTP request with \"ERROR\", memcached's word for it"),
        ("http", b"AMQP\x00\x00\x09\x01", "amqp",
         'answered an HTTP request with the AMQP 0-9-1 protocol header "AMQP\\x00\\x00\\t\\x01"'),
        ("http", b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 85\r\n\r\nIt looks like you are trying to access MongoDB over HTTP "
         b"on the native driver port.\r\n", "mongodb",
         'answered an HTTP request with "It looks like you are trying to access MongoDB over '
         'HTTP..."'),
        ("http", bytes.fromhex("000008070000000000") + bytes(8), "http2",
         "answered an HTTP request with an HTTP/2 GOAWAY frame (HTTP/2 only, as gRPC servers are)"),
        ("http", b"SSH-2.0-OpenSSH_9.2p1\r\n", "ssh",
         'the server greeted with "SSH-2.0-OpenSSH_9.2p1"'),
    ],
)  # fmt: skip
def test_an_answer_names_its_protocol(probe: str, reply: bytes, name: str, evidence: str) -> None:
    guess = classify_reply(typing.cast(typing.Any, probe), reply)
    assert guess is not None
    assert (guess.name, guess.evidence) == (name, evidence)
    assert guess.first_bytes == reply[:64]


@pytest.mark.parametrize(
    ("probe", "reply"),
    [
        ("http", bytes.fromhex("8f3a11c2d94e07b5a1ff3c0e22d1907e4b5c6d7e8f")),
        ("http", b"<html><head><title>Welcome</title></head><body>hi</body></html>\n"),
        ("http", b"N"),  # one byte is PostgreSQL's only when it answers an SSLRequest
        ("ping", b"S"),
        ("http", b"-ERR"),  # no line end: a fragment, not a RESP error
        ("http", b"EXXXXSFATAL\x00"),  # an 'E' whose length is absurd
        ("ssl_request", b"\x16\x03\x09\x00\x02ab"),  # TLS 3.9 does not exist
        ("http", b"\x00\x00\x12\x04\x00\x00\x00\x00\x01"),  # SETTINGS on a stream is no preface
    ],
)
def test_bytes_that_match_no_protocol_are_quoted_not_guessed(probe: str, reply: bytes) -> None:
    guess = classify_reply(typing.cast(typing.Any, probe), reply)
    assert guess is not None
    assert guess.name == "unknown"
    assert f"with {len(reply)} bytes " in guess.evidence
    assert guess.evidence.isprintable()


def test_an_html_page_without_a_status_line_is_reported_as_not_http() -> None:
    page = b"<html><body>It works!</body></html>\n"
    guess = classify_reply("http", page)
    assert guess == ProtocolGuess(
        "unknown",
        'answered an HTTP request with 36 bytes that are not HTTP: "<html><body>It works!</body>'
        '</html>\\n"',
        page,
    )


def test_an_empty_answer_is_no_evidence() -> None:
    assert classify_reply("http", b"") is None
    assert classify_reply("ssl_request", b"") is None


# ---- the guess itself ---------------------------------------------------------------------


def test_printable_escapes_control_bytes_and_caps_the_length() -> None:
    assert printable(b'a"b\\c\r\n\t\x00\xff') == 'a\\"b\\\\c\\r\\n\\t\\x00\\xff'
    long = printable(b"x" * 100)
    assert long == "x" * 60 + "..."
    assert printable(b"\x00" * 100).endswith("...") and len(printable(b"\x00" * 100)) <= 63


def test_a_guess_keeps_64_bytes_and_serialises_them_printably() -> None:
    guess = ProtocolGuess("redis", 'answered PING with "+PONG"', b"+PONG\r\n" + b"\x00" * 100)
    assert len(guess.first_bytes) == 64
    assert guess.to_json() == {
        "name": "redis",
        "label": "Redis",
        "evidence": 'answered PING with "+PONG"',
        "first_bytes": "+PONG\\r\\n" + "\\x00" * 57,
    }
    assert guess.identified


def test_every_protocol_has_a_human_label() -> None:
    labels = {n: ProtocolGuess(n, "").label for n in typing.get_args(ProtocolName)}
    assert labels["postgresql"] == "PostgreSQL" and labels["ssh"] == "SSH"
    assert all(labels.values())
    assert not ProtocolGuess("silent", "").identified
    assert not ProtocolGuess("unknown", "").identified


# ---- the plan -----------------------------------------------------------------------------


def _x(probe: str, data: bytes = b"", ending: str = "closed", waited: float = 0.0) -> Exchange:
    if data:
        ending = "data"
    return Exchange(typing.cast(typing.Any, probe), data, typing.cast(typing.Any, ending), waited)


def test_the_probes_go_banner_http_ping_sslrequest_clienthello_while_nothing_is_said() -> None:
    seen: list[Exchange] = []
    order = []
    while (probe := next_probe(seen)) is not None:
        order.append(probe)
        seen.append(_x(probe, ending="timeout" if probe == "banner" else "closed"))
    assert order == ["banner", "http", "ping", "ssl_request", "client_hello"]
    assert conclude(seen) == ProtocolGuess(
        "silent", "accepted the connection and closed it without a word"
    )


def test_the_first_answer_ends_the_sniff() -> None:
    assert next_probe([_x("banner", b"SSH-2.0-x\r\n")]) is None
    assert next_probe([_x("banner", ending="timeout"), _x("http", b"HTTP/1.1 400 x\r\n")]) is None
    exchanges = [_x("banner", ending="timeout"), _x("http"), _x("ping", b"+PONG\r\n")]
    assert next_probe(exchanges) is None
    assert conclude(exchanges).name == "redis"


def test_a_server_that_holds_an_http_request_is_not_probed_further() -> None:
    exchanges = [_x("banner", ending="timeout", waited=0.3), _x("http", ending="timeout", waited=1)]
    assert next_probe(exchanges) is None
    assert conclude(exchanges) == ProtocolGuess(
        "silent", "accepted the connection and said nothing within 1 s"
    )


def test_a_server_that_closes_before_reading_is_still_probed() -> None:
    assert next_probe([_x("banner", ending="closed")]) == "http"


def test_the_http_probe_names_the_host_ipv6_in_brackets() -> None:
    assert probe_payload("http", "::1", 8080) == (
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n"
    )
    assert b"Host: api.example.com:80\r\n" in probe_payload(
        "http", "10.0.0.5", 80, "api.example.com"
    )
    assert b"Host: [fe80::1]:80\r\n" in probe_payload("http", "fe80::1%eth0", 80)
    assert probe_payload("ping", "::1", 1) == b"PING\r\n"
    assert (
        probe_payload("ssl_request", "::1", 1) == SSL_REQUEST == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    )
    assert probe_payload("banner", "::1", 1) == b""


def test_the_client_hello_is_a_tls_handshake_record_carrying_the_server_name() -> None:
    hello = client_hello("model.example.com")
    assert hello[:2] == b"\x16\x03" and hello[5] == 1  # handshake record, ClientHello
    assert b"model.example.com" in hello
    assert b"10.0.0.5" not in client_hello("10.0.0.5")  # no SNI for an address


def test_connect_failures_are_described_not_raised() -> None:
    assert describe_connect_error(ConnectionRefusedError(), 1) == (
        "refused the connection (nothing listens on the port)"
    )
    assert describe_connect_error(TimeoutError(), 0.5) == (
        "did not accept a connection within 0.5 s"
    )
    assert describe_connect_error(OSError(113, "No route to host"), 1) == (
        "could not connect: No route to host"
    )


# ---- the driver on real servers -----------------------------------------------------------


def _redis_answers(host: str) -> bool:
    try:
        client = redis.Redis(host=host, port=6379, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _postgres_answers() -> bool:
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@LOOPBACKS
def test_the_machines_redis_is_redis(host: str) -> None:
    need(_redis_answers(host), f"Redis at {host} port 6379")
    guess = sniff_protocol(host, 6379, timeout=0.5)
    assert guess.name == "redis", guess
    assert guess.evidence == 'answered PING with "+PONG"'


def test_the_machines_postgresql_is_postgresql() -> None:
    need(_postgres_answers(), "PostgreSQL at 127.0.0.1:5432 (user postgres, trust)")
    started = time.monotonic()
    guess = sniff_protocol("127.0.0.1", 5432, timeout=0.5)
    assert guess.name == "postgresql", guess
    assert guess.evidence.startswith("answered a PostgreSQL SSLRequest with ")
    assert time.monotonic() - started < 1.0  # it answers; no probe waits out its timeout


@contextlib.contextmanager
def http_server(host: str) -> Iterator[tuple[int, list[str]]]:
    """Python's http.server on loopback; yields its port and the Host headers it saw."""
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: typing.Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1]), hosts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@LOOPBACKS
def test_an_http_server_is_http(host: str) -> None:
    with http_server(host) as (port, hosts):
        guess = sniff_protocol(host, port, timeout=FAST)
    assert guess.name == "http", guess
    assert guess.evidence == 'answered an HTTP request with "HTTP/1.0 200 OK"'
    assert hosts == [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]


@pytest.fixture(scope="module")
def tls_context() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context


@LOOPBACKS
def test_a_tls_server_is_tls(host: str, tls_context: ssl.SSLContext) -> None:
    def handshake(conn: socket.socket) -> None:
        with tls_context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    with scripted_server(handshake, host) as port:
        guess = sniff_protocol(host, port, timeout=FAST, server_name="localhost")
    assert guess.name == "tls", guess
    assert guess.evidence.startswith("answered a ")


@LOOPBACKS
def test_a_server_that_greets_with_ssh_is_ssh(host: str) -> None:
    with scripted_server(greet(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), host) as port:
        started = time.monotonic()
        guess = sniff_protocol(host, port, timeout=FAST)
    assert guess.name == "ssh", guess
    assert guess.evidence == 'the server greeted with "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"'
    assert time.monotonic() - started < FAST  # a greeting ends the sniff at once


def test_a_greeting_that_comes_late_is_still_read_as_a_greeting() -> None:
    # Later than the 0.3 s look for a greeting, but within the HTTP probe's wait.
    with scripted_server(greet(b"SSH-2.0-dropbear\r\n", delay=0.35)) as port:
        guess = sniff_protocol("127.0.0.1", port, timeout=0.5)
    assert guess.name == "ssh", guess


@LOOPBACKS
def test_a_server_that_closes_at_once_is_silent(host: str) -> None:
    with scripted_server(close_at_once, host) as port:
        started = time.monotonic()
        guess = sniff_protocol(host, port, timeout=FAST)
    assert guess == ProtocolGuess("silent", "accepted the connection and closed it without a word")
    assert time.monotonic() - started < FAST * 2


@LOOPBACKS
def test_a_server_that_never_answers_is_silent_within_the_time_bound(host: str) -> None:
    with scripted_server(hold, host) as port:
        started = time.monotonic()
        guess = sniff_protocol(host, port, timeout=FAST)
        elapsed = time.monotonic() - started
    assert guess == ProtocolGuess("silent", "accepted the connection and said nothing within 0.2 s")
    assert elapsed < 3 * FAST


def test_the_sniff_never_outlasts_three_timeouts() -> None:
    """A server that drops an HTTP request at once but sits on every other probe."""

    def picky(conn: socket.socket) -> None:
        if conn.recv(4, socket.MSG_PEEK) != b"GET ":
            hold(conn)

    with scripted_server(picky) as port:
        started = time.monotonic()
        guess = sniff_protocol("127.0.0.1", port, timeout=FAST)
        elapsed = time.monotonic() - started
    assert guess.name == "silent"
    assert elapsed < 3 * FAST + 0.2  # the deadline is hard; the slack is for the scheduler


def test_a_refused_port_is_unknown_not_an_exception() -> None:
    guess = sniff_protocol("127.0.0.1", free_port(), timeout=FAST)
    assert guess == ProtocolGuess("unknown", "refused the connection (nothing listens on the port)")


def test_a_name_is_not_resolved_behind_the_callers_back() -> None:
    guess = sniff_protocol("localhost", 6379, timeout=FAST)
    assert guess == ProtocolGuess("unknown", "'localhost' is not an IP address")
