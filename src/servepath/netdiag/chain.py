"""The certificate chain a TLS server presents, and the issuer it leaves out.

"Works in the browser, fails in curl": a server that sends its leaf without the intermediate
that issued it. Browsers fill the gap from their cache or the certificate's AIA URL; other
clients do not, and their error (unable to get the local issuer) reads like an untrusted
private CA. Python's ssl module before 3.13 shows only the leaf, so :func:`presented_chain`
reads the chain from a TLS 1.2 handshake, where the Certificate message travels in the
clear; :func:`missing_issuer` (pure) finds the gap; :func:`check_chain` fetches the missing
issuer from the AIA URL and asks whether the trust store vouches for it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import AuthorityInformationAccessOID

from servepath.net.endpoints import is_ip_literal

__all__ = ["ChainCheck", "check_chain", "issuer_urls", "missing_issuer", "presented_chain"]

_HANDSHAKE, _ALERT = 22, 21
_CERTIFICATE, _SERVER_HELLO_DONE = 11, 14
_READ_LIMIT = 256_000


@dataclass(frozen=True)
class ChainCheck:
    """What the server presented, which issuer is missing, and whether the store trusts it."""

    presented: tuple[str, ...]  # the subjects, leaf first
    missing: str | None  # the issuer no presented certificate is
    issuer_url: str | None = None  # the AIA caIssuers URL of the certificate before the gap
    issuer_trusted: bool | None = None  # the fetched issuer chains to the trust store
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "presented": list(self.presented),
            "missing": self.missing,
            "issuer_url": self.issuer_url,
            "issuer_trusted": self.issuer_trusted,
            "detail": self.detail,
        }


def issuer_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's AIA caIssuers URLs: where its issuer's certificate can be fetched."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        str(d.access_location.value)
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    )


def missing_issuer(chain: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate whose issuer the chain does not carry (walking up from the leaf), or
    None when the chain reaches a self-issued root."""
    if not chain:
        return None
    current = chain[0]
    seen = {current.subject.public_bytes()}
    while current.issuer != current.subject:
        parent = next((c for c in chain if c.subject == current.issuer), None)
        if parent is None or parent.subject.public_bytes() in seen:
            return current if parent is None else None
        seen.add(parent.subject.public_bytes())
        current = parent
    return None


def _records(data: bytes) -> tuple[bytes, bool]:
    """The handshake bytes of the TLS records in ``data``, and whether an alert came."""
    out, alert, i = bytearray(), False, 0
    while i + 5 <= len(data):
        kind, length = data[i], int.from_bytes(data[i + 3 : i + 5], "big")
        if i + 5 + length > len(data):
            break
        if kind == _HANDSHAKE:
            out += data[i + 5 : i + 5 + length]
        elif kind == _ALERT:
            alert = True
        i += 5 + length
    return bytes(out), alert


def _certificates(handshake: bytes) -> tuple[tuple[bytes, ...] | None, bool]:
    """The DER certificates of the Certificate message, and whether the server is done."""
    i = 0
    while i + 4 <= len(handshake):
        kind, length = handshake[i], int.from_bytes(handshake[i + 1 : i + 4], "big")
        body = handshake[i + 4 : i + 4 + length]
        if len(body) < length:
            return None, False
        if kind == _CERTIFICATE:
            certs, j = [], 3
            while j + 3 <= len(body):
                size = int.from_bytes(body[j : j + 3], "big")
                certs.append(body[j + 3 : j + 3 + size])
                j += 3 + size
            return tuple(certs), True
        if kind == _SERVER_HELLO_DONE:
            return (), True
        i += 4 + length
    return None, False


def presented_chain(address: str, port: int, servername: str, timeout: float) -> tuple[bytes, ...]:
    """The certificates the server sends in a TLS 1.2 handshake, leaf first (DER); () when
    it speaks only TLS 1.3 or the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sni = None if is_ip_literal(servername) else servername
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    data = b""
    try:
        with socket.create_connection((address, port), timeout) as sock:
            sock.sendall(outgoing.read())
            while len(data) < _READ_LIMIT:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                handshake, alert = _records(data)
                certs, done = _certificates(handshake)
                if done or alert:
                    return certs or ()
    except OSError:
        pass
    return ()


def _store_certificates(cafile: str | None) -> list[x509.Certificate]:
    context = ssl.create_default_context(cafile=cafile)
    found = []
    with warnings.catch_warnings():  # a system store holds old roots cryptography frowns on
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for der in context.get_ca_certs(binary_form=True):
            with contextlib.suppress(ValueError):
                found.append(x509.load_der_x509_certificate(der))
    return found


def _fetch_certificate(url: str, timeout: float) -> x509.Certificate | None:
    if not url.startswith("http://"):  # AIA is plain HTTP by convention (RFC 5280)
        return None
    try:
        # no proxy from the environment: the probes receive their settings, they read none
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as answer:
            raw = answer.read(100_000)
    except (OSError, ValueError):
        return None
    for load in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
        with contextlib.suppress(ValueError):
            return load(raw)
    return None


def _vouched(cert: x509.Certificate, store: Sequence[x509.Certificate]) -> bool:
    for anchor in store:
        if anchor.subject != cert.issuer:
            continue
        with contextlib.suppress(ValueError, TypeError, InvalidSignature):
            cert.verify_directly_issued_by(anchor)
            return True
    return False


def check_chain(
    address: str, port: int, servername: str, *, cafile: str | None, timeout: float
) -> ChainCheck | None:
    """The server's chain and its gap; the missing issuer fetched from the AIA URL and
    checked against the trust store. None when the chain cannot be read (TLS 1.3 only)."""
    ders = presented_chain(address, port, servername, timeout)
    chain = []
    for der in ders:
        with contextlib.suppress(ValueError):
            chain.append(x509.load_der_x509_certificate(der))
    if not chain:
        return None
    presented = tuple(c.subject.rfc4514_string() for c in chain)
    last = missing_issuer(chain)
    if last is None:
        return ChainCheck(presented, None, detail="the chain reaches a root the server sends")
    missing = last.issuer.rfc4514_string()
    urls = issuer_urls(last)
    if not urls:
        return ChainCheck(presented, missing, detail="no AIA URL names where the issuer is")
    fetched = _fetch_certificate(urls[0], timeout)
    if fetched is None:
        return ChainCheck(presented, missing, urls[0], None, "the AIA URL gave no certificate")
    try:
        store = _store_certificates(cafile)
    except (ssl.SSLError, OSError):
        return ChainCheck(presented, missing, urls[0], None, "the trust store cannot be read")
    trusted = fetched.subject == last.issuer and _vouched(fetched, store)
    detail = (
        f"{urls[0]} has {missing}, which the trust store vouches for"
        if trusted
        else f"{urls[0]} has {fetched.subject.rfc4514_string()}, not vouched for by the store"
    )
    return ChainCheck(presented, missing, urls[0], trusted, detail)
