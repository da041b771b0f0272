"""Which protocol a TCP port speaks, when an HTTP request to it failed with a protocol error,
a reset or an empty reply ("this port speaks Redis, not HTTP").

The pure part reads bytes: :func:`classify_banner` for what a server sends first, unasked
(SSH, SMTP, MySQL…), :func:`classify_reply` for its answer to one of our probes, and
:func:`next_probe` / :func:`conclude` decide which probe comes next and what the exchanges
add up to. :func:`sniff_protocol` is the thin driver: one fresh TCP connection per probe, to
the given address only, all within about ``3 × timeout``.

The probe order follows how the usual suspects treat an HTTP request. PostgreSQL and Redis
(≥ 6.2, which drops a client that sends a ``Host:`` line) both close without a word, so the
empty reply is followed by ``PING`` (Redis answers ``+PONG`` or ``-NOAUTH`` at once, and
PostgreSQL closes at once, reading ``PING`` as an absurd packet length), then PostgreSQL's
SSLRequest (which Redis would sit on, waiting for a newline), then a TLS ClientHello (an
OpenSSL server resets an HTTP request without an alert, and PostgreSQL 17 could take a
ClientHello as direct TLS, so it comes last).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servepath.net.endpoints import host_port

__all__ = [
    "DEFAULT_TIMEOUT",
    "SSL_REQUEST",
    "Ending",
    "Exchange",
    "Probe",
    "ProtocolGuess",
    "ProtocolName",
    "classify_banner",
    "classify_reply",
    "client_hello",
    "conclude",
    "describe_connect_error",
    "next_probe",
    "printable",
    "probe_payload",
    "sniff_protocol",
]

ProtocolName = Literal[
    "http",
    "http2",
    "tls",
    "redis",
    "postgresql",
    "mysql",
    "ssh",
    "smtp",
    "ftp",
    "pop3",
    "imap",
    "memcached",
    "mongodb",
    "amqp",
    "nats",
    "vnc",
    "unknown",
    "silent",
]
#: What we send on one connection; ``banner`` sends nothing and listens.
Probe = Literal["banner", "http", "ping", "ssl_request", "client_hello"]
#: How the read on one connection ended.
Ending = Literal["data", "closed", "reset", "timeout"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 1.0
#: PostgreSQL's SSLRequest: length 8, then the code 1234/5679.
SSL_REQUEST = bytes.fromhex("0000000804d2162f")

_LABELS: dict[ProtocolName, str] = {
    "http": "HTTP",
    "http2": "HTTP/2",
    "tls": "TLS",
    "redis": "Redis",
    "postgresql": "PostgreSQL",
    "mysql": "MySQL",
    "ssh": "SSH",
    "smtp": "SMTP",
    "ftp": "FTP",
    "pop3": "POP3",
    "imap": "IMAP",
    "memcached": "memcached",
    "mongodb": "MongoDB",
    "amqp": "AMQP",
    "nats": "NATS",
    "vnc": "VNC",
    "unknown": "an unknown protocol",
    "silent": "nothing (silent)",
}
_PROBE_TEXT: dict[Probe, str] = {
    "http": "an HTTP request",
    "ping": "PING",
    "ssl_request": "a PostgreSQL SSLRequest",
    "client_hello": "a TLS ClientHello",
}
_EVIDENCE_BYTES = 60
_FIRST_BYTES = 64
#: Waiting longer for a greeting costs every sniff; SSH, SMTP and MySQL greet at once.
_BANNER_WAIT = 0.3
#: After the first bytes, how long a pause ends the answer.
_SETTLE = 0.05
_READ_LIMIT = 4096


# ---- pure part ----------------------------------------------------------------------------


def printable(data: bytes, limit: int | None = _EVIDENCE_BYTES) -> str:
    """``data`` as one line of ASCII: control bytes escaped, cut to ``limit`` characters."""
    out: list[str] = []
    size = 0
    for byte in data:
        if byte == 0x5C:
            piece = "\\\\"
        elif byte == 0x22:
            piece = '\\"'
        elif 0x20 <= byte < 0x7F:
            piece = chr(byte)
        elif byte in _ESCAPES:
            piece = _ESCAPES[byte]
        else:
            piece = f"\\x{byte:02x}"
        if limit is not None and size + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


@dataclass(frozen=True)
class ProtocolGuess:
    """What a port speaks, and the bytes that say so."""

    name: ProtocolName
    evidence: str
    first_bytes: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_bytes", bytes(self.first_bytes[:_FIRST_BYTES]))

    @property
    def label(self) -> str:
        """A human name: "Redis", "PostgreSQL", "SSH"."""
        return _LABELS[self.name]

    @property
    def identified(self) -> bool:
        """A protocol was named (not ``unknown`` and not ``silent``)."""
        return self.name not in ("unknown", "silent")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "evidence": self.evidence,
            "first_bytes": printable(self.first_bytes, limit=None),
        }


def _line(data: bytes) -> str:
    """The first line of ``data``, printable and quoted."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    return f'"{printable(first)}"'


# A greeting: the server speaks first, unasked.

_SSH = re.compile(rb"SSH-\d")
_REPLY_220 = re.compile(rb"220[ -]")
_SMTP_WORDS = re.compile(rb"\bE?SMTP\b", re.IGNORECASE)
_SMTP_SOFTWARE = re.compile(rb"postfix|exim|sendmail|haraka|opensmtpd", re.IGNORECASE)
_FTP_WORDS = re.compile(rb"ftp", re.IGNORECASE)
_IMAP = re.compile(rb"\* (OK|PREAUTH|BYE)\b")
_VNC = re.compile(rb"RFB \d{3}\.\d{3}\n")
_NATS = re.compile(rb"INFO \{")


def classify_banner(data: bytes) -> ProtocolGuess | None:
    """What a server's unsolicited first bytes say it speaks; None when it sent nothing."""
    if not data:
        return None
    greeted = f"the server greeted with {_line(data)}"
    if _SSH.match(data):
        return ProtocolGuess("ssh", greeted, data)
    if _REPLY_220.match(data):
        first = data.split(b"\n", 1)[0]
        if _SMTP_WORDS.search(first) or _SMTP_SOFTWARE.search(first):
            return ProtocolGuess("smtp", greeted, data)
        if _FTP_WORDS.search(first):
            return ProtocolGuess("ftp", greeted, data)
        return ProtocolGuess("unknown", f"{greeted} (an SMTP or FTP greeting)", data)
    if data.startswith(b"+OK"):
        return ProtocolGuess("pop3", greeted, data)
    if _IMAP.match(data):
        return ProtocolGuess("imap", greeted, data)
    if (mysql := _mysql(data)) is not None:
        return mysql
    if data.startswith(b"-DENIED ") or (
        data.startswith(b"-ERR ") and b"max number of clients" in data.split(b"\n", 1)[0]
    ):
        # Protected mode and maxclients are refused at accept, before any command.
        return ProtocolGuess("redis", greeted, data)
    if _VNC.match(data):
        return ProtocolGuess("vnc", greeted, data)
    if _NATS.match(data):
        return ProtocolGuess("nats", greeted, data)
    if (h2 := _http2(data)) is not None:
        return ProtocolGuess("http2", f"the server opened with {h2}", data)
    return ProtocolGuess(
        "unknown",
        f'the server greeted with {len(data)} bytes of no protocol we know: "{printable(data)}"',
        data,
    )


def _mysql(data: bytes) -> ProtocolGuess | None:
    """A MySQL/MariaDB first packet: 3-byte little-endian length, sequence 0, then either
    protocol version 10 and a NUL-terminated version string, or an error (0xff)."""
    if len(data) < 8 or data[3] != 0:
        return None
    length = int.from_bytes(data[0:3], "little")
    if data[4] == 0x0A:
        end = data.find(b"\0", 5)
        version = data[5:end]
        if (
            end < 0
            or not 1 <= len(version) <= 64
            or not version[:1].isdigit()
            or not all(0x20 <= b < 0x7F for b in version)
            or length < len(version) + 20
        ):
            return None
        flavour = " (MariaDB)" if b"mariadb" in version.lower() else ""
        return ProtocolGuess(
            "mysql",
            f'the server greeted with a MySQL handshake{flavour}, version "{printable(version)}"',
            data,
        )
    if data[4] == 0xFF:
        code = int.from_bytes(data[5:7], "little")
        message = data[7 : 4 + length]
        if (
            length != len(data) - 4
            or not 1000 <= code < 20000
            or not message
            or not all(0x20 <= b < 0x7F for b in message)
        ):
            return None
        return ProtocolGuess(
            "mysql", f'the server refused with MySQL error {code}: "{printable(message)}"', data
        )
    return None


_H2_FRAMES = {4: "SETTINGS", 7: "GOAWAY"}


def _http2(data: bytes) -> str | None:
    """An HTTP/2 connection-level frame (SETTINGS or GOAWAY on stream 0), as a phrase."""
    if len(data) < 9:
        return None
    length, kind, flags = int.from_bytes(data[0:3], "big"), data[3], data[4]
    stream = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
    if kind not in _H2_FRAMES or stream != 0 or length > 16384:
        return None
    if kind == 4 and not ((flags == 0 and length % 6 == 0) or (flags == 1 and length == 0)):
        return None
    if kind == 7 and (flags != 0 or length < 8):
        return None
    return f"an HTTP/2 {_H2_FRAMES[kind]} frame (HTTP/2 only, as gRPC servers are)"


# An answer: what the server said to one of our probes.

_HTTP = re.compile(rb"HTTP/\d")
_REDIS = re.compile(
    rb"(\+PONG|-(ERR|NOAUTH|WRONGPASS|DENIED|NOPERM|LOADING|BUSY|MISCONF|READONLY"
    rb"|MASTERDOWN|CLUSTERDOWN)( [^\r\n]*)?)\r\n"
)
_MEMCACHED = re.compile(rb"(ERROR|(CLIENT|SERVER)_ERROR [^\r\n]*)\r\n")
_TLS_ON_HTTP = (
    b"The plain HTTP request was sent to HTTPS port",  # nginx
    b"Client sent an HTTP request to an HTTPS server",  # Go's net/http
)
_MONGODB_ON_HTTP = b"access MongoDB over HTTP on the native driver port"
_TLS_RECORDS = {0x15: "alert", 0x16: "handshake record"}
_TLS_ALERTS = {
    10: "unexpected_message",
    40: "handshake_failure",
    47: "illegal_parameter",
    50: "decode_error",
    70: "protocol_version",
    80: "internal_error",
    112: "unrecognized_name",
    120: "no_application_protocol",
}
_PG_SEVERITIES = (b"ERROR", b"FATAL", b"PANIC")


def classify_reply(probe: Probe, data: bytes) -> ProtocolGuess | None:
    """What a server's answer to ``probe`` says it speaks; None when it answered nothing.

    Bytes that match no protocol give an ``unknown`` guess that quotes them.
    """
    if not data:
        return None
    if probe == "banner":
        return classify_banner(data)
    asked = f"answered {_PROBE_TEXT[probe]}"
    if _HTTP.match(data):
        if any(marker in data for marker in _TLS_ON_HTTP):
            return ProtocolGuess("tls", f"{asked} with {_line(data)}: the port expects TLS", data)
        if _MONGODB_ON_HTTP in data:
            quote = '"It looks like you are trying to access MongoDB over HTTP..."'
            return ProtocolGuess("mongodb", f"{asked} with {quote}", data)
        return ProtocolGuess("http", f"{asked} with {_line(data)}", data)
    if (tls := _tls_record(data)) is not None:
        return ProtocolGuess("tls", f"{asked} with a TLS {tls}", data)
    if _REDIS.match(data):
        return ProtocolGuess("redis", f"{asked} with {_line(data)}", data)
    if probe == "ssl_request" and data in (b"N", b"S"):
        offer = "TLS not offered" if data == b"N" else "TLS offered"
        return ProtocolGuess("postgresql", f'{asked} with "{data.decode()}" ({offer})', data)
    if (pg := _postgres_error(data)) is not None:
        return ProtocolGuess("postgresql", f"{asked} with an ErrorResponse: {pg}", data)
    if _MEMCACHED.match(data):
        return ProtocolGuess(
            "memcached", f"{asked} with {_line(data)}, memcached's word for it", data
        )
    if data.startswith(b"AMQP") and len(data) >= 8:
        version = "AMQP 0-9-1" if data[4:8] == b"\x00\x00\x09\x01" else "AMQP"
        return ProtocolGuess(
            "amqp", f'{asked} with the {version} protocol header "{printable(data[:8])}"', data
        )
    if (h2 := _http2(data)) is not None:
        return ProtocolGuess("http2", f"{asked} with {h2}", data)
    if (greeting := classify_banner(data)) is not None and greeting.identified:
        # A greeting that came late, after our probe went out.
        return greeting
    what = "that are not HTTP" if probe == "http" else "of no protocol we know"
    return ProtocolGuess(
        "unknown", f'{asked} with {len(data)} bytes {what}: "{printable(data)}"', data
    )


def _tls_record(data: bytes) -> str | None:
    """A TLS alert or handshake record header (type, version 3.x, plausible length)."""
    if len(data) < 5 or data[0] not in _TLS_RECORDS or data[1] != 3 or data[2] > 4:
        return None
    if int.from_bytes(data[3:5], "big") > 16384 + 2048:
        return None
    if data[0] == 0x15 and len(data) >= 7:
        return f"alert ({_TLS_ALERTS.get(data[6], f'description {data[6]}')})"
    if data[0] == 0x16 and len(data) >= 6 and data[5] == 2:
        return "handshake record (ServerHello)"
    return _TLS_RECORDS[data[0]]


def _postgres_error(data: bytes) -> str | None:
    """A PostgreSQL ErrorResponse ('E', int32 length, NUL-terminated fields, 'S' first)."""
    if len(data) < 8 or data[:1] != b"E" or data[5:6] != b"S":
        return None
    length = int.from_bytes(data[1:5], "big")
    if not 8 <= length <= 16384:
        return None
    fields: dict[bytes, bytes] = {}
    for part in data[5 : 1 + length].split(b"\0"):
        if part:
            fields[part[:1]] = part[1:]
    # 'S' is translated; 'V' (PostgreSQL 9.6 and later) is not.
    severity = fields.get(b"V", fields.get(b"S", b""))
    if severity not in _PG_SEVERITIES:
        return None
    return f'{severity.decode()} "{printable(fields.get(b"M", b""))}"'


# The plan: which probe comes next, and what the exchanges add up to.


@dataclass(frozen=True)
class Exchange:
    """What one connection said to one probe: the planner's whole input."""

    probe: Probe
    data: bytes
    ending: Ending
    waited: float


def next_probe(exchanges: Sequence[Exchange]) -> Probe | None:
    """The probe to send next, or None when the exchanges so far settle it."""
    if not exchanges:
        return "banner"
    last = exchanges[-1]
    if last.data:
        return None
    if last.probe == "banner":
        return "http"
    if last.probe == "http":
        # A server that holds an HTTP request without a word is hung, not picky: PostgreSQL
        # and Redis both close at once, so further probes would only wait the same again.
        return None if last.ending == "timeout" else "ping"
    if last.probe == "ping":
        return "ssl_request"
    if last.probe == "ssl_request":
        return "client_hello"
    return None


def conclude(exchanges: Sequence[Exchange]) -> ProtocolGuess:
    """The guess the exchanges support: the first answer decides; no answer is ``silent``."""
    for exchange in exchanges:
        guess = classify_reply(exchange.probe, exchange.data)
        if guess is not None:
            return guess
    if not exchanges:
        return ProtocolGuess("unknown", "no probe was sent")
    # The banner wait is a short look, not a verdict; what counts is the probes' silence.
    probes = [e for e in exchanges if e.probe != "banner"] or list(exchanges)
    if any(e.ending in ("closed", "reset") for e in probes):
        return ProtocolGuess("silent", "accepted the connection and closed it without a word")
    waited = max(e.waited for e in probes)
    return ProtocolGuess(
        "silent", f"accepted the connection and said nothing within {_seconds(waited)} s"
    )


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def client_hello(server_name: str | None = None) -> bytes:
    """A TLS ClientHello, made by the ssl module in memory (no socket)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def probe_payload(probe: Probe, host: str, port: int, server_name: str | None = None) -> bytes:
    """The bytes ``probe`` sends to ``host``:``port`` (``server_name`` for Host and SNI)."""
    if probe == "banner":
        return b""
    if probe == "http":
        authority = host_port(server_name or host.split("%", 1)[0], port)
        return f"GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
    if probe == "ping":
        return b"PING\r\n"
    if probe == "ssl_request":
        return SSL_REQUEST
    return client_hello(server_name)


def describe_connect_error(error: OSError, timeout: float) -> str:
    """A connect failure as evidence: refused, timed out, or the system's words."""
    if isinstance(error, ConnectionRefusedError):
        return "refused the connection (nothing listens on the port)"
    if isinstance(error, TimeoutError):
        return f"did not accept a connection within {_seconds(timeout)} s"
    return f"could not connect: {error.strerror or error}"


# ---- I/O: the driver --------------------------------------------------------------------


def sniff_protocol(
    address: str,
    port: int,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    server_name: str | None = None,
) -> ProtocolGuess:
    """Which protocol ``address``:``port`` speaks, from a few probes on fresh connections.

    ``address`` is an IP address (the caller has resolved the name; nothing else is
    contacted). ``timeout`` bounds each connect and each wait for an answer; the whole sniff
    ends within ``3 × timeout``. ``server_name`` goes into the Host header and TLS SNI.
    Never raises for network trouble: a refused or unanswered connect is an ``unknown``
    guess that says so.
    """
    host = address.strip("[]")
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )[0]
    except (OSError, UnicodeError):
        return ProtocolGuess("unknown", f"{address!r} is not an IP address")
    deadline = time.monotonic() + 3 * timeout
    exchanges: list[Exchange] = []
    while (probe := next_probe(exchanges)) is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait = min(timeout, _BANNER_WAIT) if probe == "banner" else timeout
        payload = probe_payload(probe, host, port, server_name)
        connect_timeout = min(timeout, remaining)
        try:
            exchange = _exchange(family, sockaddr, probe, payload, connect_timeout, wait, deadline)
        except OSError as exc:
            log.debug("%s: connect for %s failed: %s", host_port(host, port), probe, exc)
            if not exchanges:
                return ProtocolGuess("unknown", describe_connect_error(exc, connect_timeout))
            break  # the server went away between probes: judge what it said before
        log.debug(
            "%s: %s -> %s, %d bytes after %.3f s",
            host_port(host, port), probe, exchange.ending, len(exchange.data), exchange.waited,
        )  # fmt: skip
        exchanges.append(exchange)
    return conclude(exchanges)


def _exchange(
    family: socket.AddressFamily,
    sockaddr: Any,
    probe: Probe,
    payload: bytes,
    connect_timeout: float,
    wait: float,
    deadline: float,
) -> Exchange:
    """One connection: connect (OSError escapes), send ``payload``, read the first answer."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(connect_timeout)
        sock.connect(sockaddr)
        started = time.monotonic()
        wait = min(wait, deadline - started)
        if wait <= 0:
            return Exchange(probe, b"", "timeout", 0.0)
        if payload:
            # Closed on us: whatever it said before is still in the buffer.
            with contextlib.suppress(OSError):
                sock.sendall(payload)
        data, ending = _read(sock, wait, deadline)
        return Exchange(probe, data, ending, time.monotonic() - started)


def _read(sock: socket.socket, wait: float, deadline: float) -> tuple[bytes, Ending]:
    """The first answer: up to ``wait`` for a byte, then what follows without a pause."""
    sock.settimeout(wait)
    try:
        data = sock.recv(_READ_LIMIT)
    except TimeoutError:
        return b"", "timeout"
    except ConnectionResetError:
        return b"", "reset"
    except OSError:
        return b"", "closed"
    if not data:
        return b"", "closed"
    while len(data) < _READ_LIMIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(min(_SETTLE, remaining))
        try:
            chunk = sock.recv(_READ_LIMIT - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data, "data"
