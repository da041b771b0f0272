"""The TLS handshake with a server: what it presented, and exactly why a client refuses it.

A verifying handshake says whether the certificate is trusted (by the system store, or by a
``cafile``); when it is not, a second, non-verifying handshake fetches the certificate anyway
so the report can show what was presented. When the handshake fails outright, the server's
first bytes in answer to a ClientHello tell a plain-HTTP port from a broken TLS one.
Certificates are parsed with ``cryptography``; the checks on them are pure functions.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from servepath.errors import UsageError
from servepath.net.certificates import expires_soon
from servepath.net.endpoints import host_port, is_ip_literal, parse_host_port

if TYPE_CHECKING:
    from servepath.netdiag.chain import ChainCheck

__all__ = [
    "Certificate",
    "ServerBytes",
    "TlsFailure",
    "TlsReport",
    "certificate_problems",
    "classify_server_bytes",
    "classify_verify_error",
    "hostname_matches",
    "parse_certificate",
    "parse_target",
    "probe_tls",
]

log = logging.getLogger(__name__)

TlsFailure = Literal[
    "expired",
    "not_yet_valid",
    "hostname_mismatch",
    "self_signed",
    "unknown_issuer",
    "plain_http",
    "handshake_failed",
    "refused",
    "timeout",
    "unreachable",
    "dns",
]
ServerBytes = Literal["tls", "http", "empty", "other"]

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
_VERIFY_CODES: dict[int, TlsFailure] = {
    2: "unknown_issuer",  # UNABLE_TO_GET_ISSUER_CERT
    9: "not_yet_valid",  # CERT_NOT_YET_VALID
    10: "expired",  # CERT_HAS_EXPIRED
    18: "self_signed",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown_issuer",  # SELF_SIGNED_CERT_IN_CHAIN: a root the store does not hold
    20: "unknown_issuer",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown_issuer",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: "hostname_mismatch",  # HOSTNAME_MISMATCH
    64: "hostname_mismatch",  # IP_ADDRESS_MISMATCH
}


# --- certificates (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    subject: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    self_signed: bool
    is_ca: bool
    key: str
    signature_algorithm: str
    sha256: str

    def days_to_expiry(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def names(self) -> tuple[str, ...]:
        return self.dns_names + self.ip_addresses

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "common_name": self.common_name,
            "sans": {"dns": list(self.dns_names), "ip": list(self.ip_addresses)},
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "self_signed": self.self_signed,
            "is_ca": self.is_ca,
            "key": self.key,
            "signature_algorithm": self.signature_algorithm,
            "sha256": self.sha256,
        }


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _signed_by_itself(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def parse_certificate(der: bytes) -> Certificate:
    """The fields of a DER certificate that a person checking a server needs."""
    cert = x509.load_der_x509_certificate(der)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    dns_names: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = list(san.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    oid = cert.signature_algorithm_oid
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        common_name=str(cn[0].value) if cn else None,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ips),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=_signed_by_itself(cert),
        is_ca=is_ca,
        key=_key_text(cert),
        signature_algorithm=getattr(oid, "_name", None) or oid.dotted_string,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
    )


def _wildcard_match(pattern: str, name: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern == name:
        return True
    # RFC 6125: a wildcard stands for exactly one whole label, the leftmost, and needs at
    # least two labels after it (no "*.com").
    if not pattern.startswith("*.") or pattern.count(".") < 2:
        return False
    head, _, tail = name.partition(".")
    return bool(head) and tail == pattern[2:]


def hostname_matches(name: str, cert: Certificate) -> bool:
    """Whether ``cert`` is for ``name`` (a DNS name or an IP literal), as TLS clients decide.

    The common name counts only when there are no SANs, as in OpenSSL with Python's default
    ``hostname_checks_common_name``.
    """
    name = name.strip("[]").rstrip(".").lower()
    if is_ip_literal(name):
        wanted = ipaddress.ip_address(name.split("%", 1)[0])
        return any(ipaddress.ip_address(ip) == wanted for ip in cert.ip_addresses)
    patterns = list(cert.dns_names)
    if not cert.dns_names and not cert.ip_addresses and cert.common_name:
        patterns = [cert.common_name]
    return any(_wildcard_match(p, name) for p in patterns)


def certificate_problems(cert: Certificate, name: str, now: datetime) -> tuple[TlsFailure, ...]:
    """Every problem with ``cert`` for ``name`` at ``now`` that can be seen in it alone.

    OpenSSL stops at its first complaint (a wrong name hides an expired date); this lists
    them all. Trust in the issuer cannot be judged from the certificate, so it is not here.
    """
    problems: list[TlsFailure] = []
    if now > cert.not_after:
        problems.append("expired")
    if now < cert.not_before:
        problems.append("not_yet_valid")
    if not hostname_matches(name, cert):
        problems.append("hostname_mismatch")
    if cert.self_signed:
        problems.append("self_signed")
    return tuple(problems)


def classify_verify_error(code: int) -> TlsFailure:
    """The failure an OpenSSL verification error code stands for."""
    return _VERIFY_CODES.get(code, "handshake_failed")


def classify_server_bytes(data: bytes) -> ServerBytes:
    """What the server's first bytes after a ClientHello were."""
    if not data:
        return "empty"
    if data.startswith(b"HTTP/") or data[:1] == b"<":
        return "http"
    # A TLS record: content type 20-23 (change_cipher_spec, alert, handshake, data), then
    # protocol major version 3.
    if data[0] in (20, 21, 22, 23) and data[1:2] == b"\x03":
        return "tls"
    return "other"


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsReport:
    host: str
    port: int
    servername: str
    trust_store: str  # "system" or the --cafile path
    checked_at: datetime
    address: str | None = None
    protocol: str | None = None
    cipher: str | None = None
    certificate: Certificate | None = None
    trusted: bool = False
    name_matches: bool | None = None
    failure: TlsFailure | None = None
    detail: str = ""
    problems: tuple[TlsFailure, ...] = ()
    connect_ms: float | None = None
    handshake_ms: float | None = None
    notes: tuple[str, ...] = field(default=())
    #: for an unknown issuer: the chain the server presented, and the issuer it left out
    chain: ChainCheck | None = None

    @property
    def ok(self) -> bool:
        """Trusted and valid now: what a default client would accept."""
        return self.trusted and self.failure is None and not self.problems

    @property
    def days_to_expiry(self) -> float | None:
        if self.certificate is None:
            return None
        return self.certificate.days_to_expiry(self.checked_at)

    @property
    def expires_soon(self) -> bool:
        """Valid, and within the warning every command gives before expiry (``serve`` too)."""
        days = self.days_to_expiry
        return days is not None and expires_soon(days)

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "host": self.host,
            "port": self.port,
            "servername": self.servername,
            "address": self.address,
            "ok": self.ok,
            "trusted": self.trusted,
            "trust_store": self.trust_store,
            "failure": self.failure,
            "detail": self.detail,
            "problems": list(self.problems),
            "protocol": self.protocol,
            "cipher": self.cipher,
            "name_matches": self.name_matches,
            "days_to_expiry": None
            if self.days_to_expiry is None
            else round(self.days_to_expiry, 2),
            "expires_soon": self.expires_soon,
            "certificate": None if self.certificate is None else self.certificate.to_json(),
            "connect_ms": r(self.connect_ms),
            "handshake_ms": r(self.handshake_ms),
            "checked_at": self.checked_at.isoformat(),
            "notes": list(self.notes),
            "chain": None if self.chain is None else self.chain.to_json(),
        }


def parse_target(text: str, default_port: int = 443) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, a bare IPv6 address, or an http(s) URL.

    A URL without a port still means ``default_port``: this checks TLS, whatever the scheme.
    Raises :class:`~servepath.errors.EndpointError` (a usage error, and a ``ValueError``).
    """
    return parse_host_port(text, default_port, allow_url=True)


def _describe(failure: TlsFailure, cert: Certificate | None, name: str, now: datetime,
              store: str) -> str:  # fmt: skip
    if cert is None:
        return failure
    if failure == "expired":
        return (
            f"the certificate expired on {cert.not_after:%Y-%m-%d %H:%M} UTC "
            f"({_ago(-cert.days_to_expiry(now))})"
        )
    if failure == "not_yet_valid":
        return f"the certificate is valid only from {cert.not_before:%Y-%m-%d %H:%M} UTC"
    if failure == "hostname_mismatch":
        names = ", ".join(cert.names()) or f"CN={cert.common_name}"
        return f"the certificate is for {names}, not for {name}"
    if failure == "self_signed":
        return (
            "the certificate signed itself (issuer = subject); nothing the client trusts "
            "vouches for it"
        )
    if failure == "unknown_issuer":
        where = "the system trust store" if store == "system" else store
        return f"issued by {cert.issuer}, which {where} does not trust (a private CA?)"
    return failure


def _ago(days: float) -> str:
    """``3 days ago``, ``1 day ago``, ``5 hours ago``: how long since, in words."""
    if days >= 1:
        whole = round(days)
        return f"{whole} day{'s' if whole != 1 else ''} ago"
    hours = max(round(days * 24), 1)
    return f"{hours} hour{'s' if hours != 1 else ''} ago"


# --- the driver -----------------------------------------------------------------------------


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _server_answer_to_hello(address: str, port: int, servername: str, timeout: float) -> bytes:
    """Send a ClientHello and return the raw bytes the server answers with (b"" for none)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sni = None if is_ip_literal(servername) else servername
    tls = _unverified_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    hello = outgoing.read()
    try:
        with socket.create_connection((address, port), timeout) as sock:
            sock.sendall(hello)
            return sock.recv(256)
    except OSError:
        return b""


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _connect_failure(
    exc: OSError, address: str, port: int, timeout: float
) -> tuple[TlsFailure, str]:
    endpoint = host_port(address, port)
    if isinstance(exc, TimeoutError):
        return "timeout", f"no answer to the connection to {endpoint} in {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"connection to {endpoint} refused: nothing listens there"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable", f"no route to {address}: {exc.strerror}"
    return "handshake_failed", f"cannot connect to {endpoint}: {exc.strerror or exc}"


def probe_tls(
    host: str,
    port: int = 443,
    *,
    servername: str | None = None,
    cafile: str | None = None,
    timeout: float = 5.0,
    now: datetime | None = None,
) -> TlsReport:
    """Handshake with ``host:port`` and report what the server presented and whether a
    client that trusts the system store (or ``cafile``) accepts it."""
    name = servername or host.strip("[]")
    store = cafile or "system"
    checked = now or datetime.now(UTC)
    base: dict[str, Any] = {
        "host": host, "port": port, "servername": name, "trust_store": store, "checked_at": checked,
    }  # fmt: skip
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return TlsReport(**base, failure="dns", detail=f"{host} does not resolve: {exc}")
    address = str(infos[0][4][0])
    base["address"] = address
    start = time.perf_counter()
    try:
        sock = _connect(address, port, timeout)
    except OSError as exc:
        failure, detail = _connect_failure(exc, address, port, timeout)
        return TlsReport(**base, failure=failure, detail=detail)
    base["connect_ms"] = (time.perf_counter() - start) * 1000
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot load the CA bundle {cafile}: {exc}") from exc
    sni = name if not is_ip_literal(name) else name.split("%", 1)[0]
    verify_error: ssl.SSLCertVerificationError | None = None
    start = time.perf_counter()
    try:
        with context.wrap_socket(sock, server_hostname=sni) as tls:
            base["handshake_ms"] = (time.perf_counter() - start) * 1000
            return _report_from(tls, base, name, checked, trusted=True)
    except ssl.SSLCertVerificationError as exc:
        base["handshake_ms"] = (time.perf_counter() - start) * 1000
        verify_error = exc
    except TimeoutError:
        return TlsReport(
            **base,
            failure="timeout",
            detail=f"connected, but the TLS handshake did not finish in {timeout:g}s",
        )
    except (ssl.SSLError, OSError) as exc:
        base["handshake_ms"] = (time.perf_counter() - start) * 1000
        return _handshake_failure(exc, base, address, port, name, timeout)
    finally:
        sock.close()
    # Not trusted: look again without verifying, to show what was presented.
    try:
        with (
            _connect(address, port, timeout) as raw,
            _unverified_context().wrap_socket(
                raw, server_hostname=None if is_ip_literal(name) else name
            ) as tls,
        ):
            report = _report_from(tls, base, name, checked, trusted=False)
    except (ssl.SSLError, OSError) as exc:
        log.debug("second handshake with %s:%s failed: %s", address, port, exc)
        failure = classify_verify_error(verify_error.verify_code)
        return TlsReport(**base, failure=failure, detail=verify_error.verify_message)
    failure = classify_verify_error(verify_error.verify_code)
    detail = _describe(failure, report.certificate, name, checked, store)
    if failure == "handshake_failed":
        detail = f"certificate not accepted: {verify_error.verify_message}"
    chain = None
    if failure == "unknown_issuer" and report.certificate and not report.certificate.self_signed:
        from servepath.netdiag.chain import check_chain

        chain = check_chain(address, port, name, cafile=cafile, timeout=timeout)
    return TlsReport(
        chain=chain,
        **base,
        protocol=report.protocol,
        cipher=report.cipher,
        certificate=report.certificate,
        trusted=False,
        name_matches=report.name_matches,
        failure=failure,
        detail=detail,
        problems=report.problems,
        notes=(f"OpenSSL: {verify_error.verify_message} (code {verify_error.verify_code})",),
    )


def _report_from(
    tls: ssl.SSLSocket, base: dict[str, Any], name: str, now: datetime, *, trusted: bool
) -> TlsReport:
    der = tls.getpeercert(binary_form=True)
    cert = parse_certificate(der) if der else None
    cipher = tls.cipher()
    problems = certificate_problems(cert, name, now) if cert else ()
    notes: tuple[str, ...] = ()
    if trusted and "self_signed" in problems:
        # A self-signed certificate the trust store holds is trusted by that store: pinned,
        # as `--cafile cert.pem` means. Nothing else vouches for it, which is not a fault.
        problems = tuple(p for p in problems if p != "self_signed")
        notes = (f"the certificate is self-signed; {base['trust_store']} holds it, so it is "
                 "trusted as it stands (pinned)",)  # fmt: skip
    return TlsReport(
        **base,
        protocol=tls.version(),
        cipher=cipher[0] if cipher else None,
        certificate=cert,
        trusted=trusted,
        name_matches=hostname_matches(name, cert) if cert else None,
        problems=problems,
        detail="trusted and valid" if trusted and not problems else "",
        notes=notes,
    )


def _handshake_failure(
    exc: BaseException, base: dict[str, Any], address: str, port: int, name: str, timeout: float
) -> TlsReport:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    answer = _server_answer_to_hello(address, port, name, timeout)
    kind = classify_server_bytes(answer)
    preview = answer[:40].decode("latin-1").split("\r\n", 1)[0]
    if kind == "http":
        return TlsReport(
            **base, failure="plain_http",
            detail=f"the port speaks plain HTTP, not TLS: it answered the ClientHello with "
            f"{preview!r}; use http://, or the TLS port",
        )  # fmt: skip
    if kind == "empty":
        detail = f"the server closed the connection during the handshake ({reason})"
    elif kind == "other":
        detail = f"the server does not speak TLS here ({reason}); it answered {preview!r}"
    else:
        detail = f"the TLS handshake failed: {reason}"
    return TlsReport(**base, failure="handshake_failed", detail=detail)
