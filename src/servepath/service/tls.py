"""TLS for the model API: the server's certificate, reloaded on SIGHUP, and the plain-HTTP
port that redirects callers to HTTPS.

The certificate and key are checked before the port is bound (a bad file is a usage error,
not a worker's traceback). uvicorn builds the listening socket's :class:`ssl.SSLContext`
from the same files; on SIGHUP :func:`reload_certificate` loads them again into that very
context, so new handshakes present the new certificate while open connections carry on. A
file that no longer loads leaves the old certificate serving and says why in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from servepath.errors import ConfigError
from servepath.net.certificates import EXPIRY_WARNING_DAYS

log = logging.getLogger(__name__)

#: A redirect answers only a request head this small; anything larger is refused.
REDIRECT_MAX_HEAD = 8192
#: Seconds a caller of the redirect port has to send its request head.
REDIRECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Certificate:
    """What a served certificate says, for the start banner and the reload log."""

    subject: str
    names: tuple[str, ...]
    not_after: datetime

    def describe(self) -> str:
        names = ", ".join(self.names) or self.subject
        return f"{names} (expires {self.not_after:%Y-%m-%d})"


def check_certificate(cert: Path, key: Path) -> Certificate:
    """Load ``cert`` (PEM, leaf first, chain after) with ``key``; ConfigError naming the
    file and the problem when they do not load or do not belong together."""
    for path, what in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not path.is_file():
            raise ConfigError(f"{what} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}"
        if "KEY_VALUES_MISMATCH" in text:
            hint = "the key does not belong to the certificate"
        elif "PEM" in text:
            hint = "they are not a PEM certificate chain and its PEM private key"
        else:
            hint = str(exc)
        raise ConfigError(f"cannot use {cert} with {key}: {hint}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {cert} or {key}: {exc.strerror or exc}") from exc
    return describe_certificate(cert)


def describe_certificate(cert: Path) -> Certificate:
    """The leaf certificate's subject, DNS/IP names and expiry (read with ``cryptography``)."""
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return Certificate(leaf.subject.rfc4514_string(), tuple(names), leaf.not_valid_after_utc)


def harden(context: ssl.SSLContext) -> None:
    """No TLS below 1.2 (every current client speaks 1.2 or 1.3); no renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION


def reload_certificate(context: ssl.SSLContext, cert: Path, key: Path) -> Certificate | None:
    """Load ``cert`` and ``key`` into the serving ``context`` again. On failure the old
    certificate keeps serving and the reason is logged; returns what now serves, or None."""
    try:
        described = check_certificate(cert, key)
        context.load_cert_chain(str(cert), str(key))
    except (ConfigError, ssl.SSLError, OSError, ValueError) as exc:
        log.error("SIGHUP: kept the old certificate: %s", exc)
        return None
    log.info("SIGHUP: now serving the certificate for %s", described.describe())
    return described


# --- the plain-HTTP port that sends callers to HTTPS -------------------------------------


def redirect_location(head: bytes, tls_port: int, fallback_host: str) -> str | None:
    """Where a plain-HTTP request should go instead: the same host and target on HTTPS.

    ``head`` is the request head (request line and headers). Returns None when it is not
    an HTTP request head at all."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    target = parts[1].decode("latin-1")
    if not target.startswith("/") or any(c in target for c in "\r\n\t "):
        target = "/"
    host = fallback_host
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = _host_without_port(value.strip().decode("latin-1")) or fallback_host
            break
    port = "" if tls_port == 443 else f":{tls_port}"
    return f"https://{host}{port}{target}"


def _host_without_port(value: str) -> str:
    if not value or any(c in value for c in "/\\@?#\r\n\t "):
        return ""
    if value.startswith("["):  # [2001:db8::1]:8080
        end = value.find("]")
        return value[: end + 1] if end > 0 else ""
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value if ":" not in value else f"[{value}]"


class RedirectServer:
    """A plain-HTTP listener, on a thread of its own, answering every request with a 308 to
    the same target over HTTPS (``Connection: close``). It serves only redirects, so it
    runs beside the workers whatever their number."""

    def __init__(self, sock: socket.socket, tls_port: int, fallback_host: str) -> None:
        self.sock = sock
        self.tls_port = tls_port
        self.fallback_host = fallback_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="servepath-redirect", daemon=True
        )
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        server = await asyncio.start_server(self._answer, sock=self.sock, limit=REDIRECT_MAX_HEAD)
        ready.set()
        async with server:
            while not self._stopped.is_set():
                await asyncio.sleep(0.1)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REDIRECT_TIMEOUT)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, OSError):
            head = b""
        location = redirect_location(head, self.tls_port, self.fallback_host) if head else None
        if location is None:
            body = b'{"error": "this port answers plain HTTP requests with a redirect to HTTPS"}'
            status = b"400 Bad Request"
            extra = b""
        else:
            body = b'{"error": "use HTTPS", "location": "' + location.encode() + b'"}'
            status = b"308 Permanent Redirect"
            extra = b"location: " + location.encode() + b"\r\n"
        response = (
            b"HTTP/1.1 " + status + b"\r\n" + extra + b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"x-content-type-options: nosniff\r\nconnection: close\r\n\r\n" + body
        )
        with contextlib.suppress(OSError):
            writer.write(response)
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def certificate_age_note(cert: Certificate, now: datetime | None = None) -> str | None:
    """A warning for the start banner when the certificate is expired or about to be."""
    now = now or datetime.now(UTC)
    days = (cert.not_after - now).total_seconds() / 86400
    if days < 0:
        return f"the certificate expired {-days:.0f} days ago: callers will refuse it"
    if days < EXPIRY_WARNING_DAYS:
        return f"the certificate expires in {days:.0f} days"
    return None
