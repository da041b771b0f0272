"""The certificate chain a TLS server presents, and the issuer it leaves out.

"Works in the browser, fails in curl": a server that sends its leaf without the intermediate
that issued it. Browsers fill the gap from their cache or the certificate's AIA URL; other
clients do not, and their error (unable to get the local issuer) reads like an untrusted
private CA. :func:`presented_chain` reads the chain as the server sent it, in TLS 1.2 or
1.3, from OpenSSL's unverified peer chain; :func:`missing_issuer` (pure) finds the gap;
:func:`check_chain` fetches the missing issuer from the AIA URL and asks whether the trust
store vouches for it.
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


def presented_chain(address: str, port: int, servername: str, timeout: float) -> tuple[bytes, ...]:
    """The certificates the server presents, leaf first (DER), in whatever TLS version it
    speaks (1.3 encrypts them: they are read after the handshake, not off the wire); () when
    the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the chain as sent, trusted or not, is the point
    sni = None if is_ip_literal(servername) else servername
    try:
        with (
            socket.create_connection((address, port), timeout) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            return tuple(_der(cert) for cert in _unverified_chain(tls))
    except (OSError, ValueError):
        return ()


def _unverified_chain(tls: ssl.SSLSocket) -> list[Any]:
    """OpenSSL's peer chain as sent. Public from Python 3.13; 3.10 to 3.12 have it on the
    socket's private SSL object, under the same name."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return list(public() or [])
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    return list(private() or []) if private is not None else []


def _der(cert: Any) -> bytes:
    # 3.13 returns DER bytes; 3.10 to 3.12 return _ssl.Certificate objects
    if isinstance(cert, bytes):
        return cert
    return bytes(cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]


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
    checked against the trust store. None when the chain cannot be read."""
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
