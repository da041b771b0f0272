"""The chain a server presents and the issuer it leaves out: pure parts on built certificates
and handshake bytes, the driver on a real TLS server on loopback."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from servepath.netdiag.chain import (
    check_chain,
    issuer_urls,
    missing_issuer,
    presented_chain,
)

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *,
    ca: bool, aia: str | None = None, ip: str | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
    """A certificate for ``cn`` signed by ``issuer`` (itself when None)."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    if aia is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_missing_issuer_is_found_walking_up_from_the_leaf() -> None:
    root = issue("Root", None, ca=True)
    inter = issue("Intermediate", root, ca=True)
    leaf = issue("api.test", inter, ca=False, aia="http://ca.test/int.der")
    assert missing_issuer([leaf[0]]) is leaf[0]
    assert missing_issuer([leaf[0], inter[0]]) is inter[0]  # the root is never sent: fine
    assert missing_issuer([leaf[0], inter[0], root[0]]) is None
    assert issuer_urls(leaf[0]) == ("http://ca.test/int.der",)
    assert issuer_urls(inter[0]) == ()


@pytest.fixture(params=[ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def incomplete(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """A TLS server on loopback sending its leaf only, speaking TLS 1.2 at most or TLS 1.3
    only (where the chain travels encrypted); the intermediate at its AIA URL."""
    root = issue("Servepath Test Root", None, ca=True)
    inter = issue("Servepath Test Intermediate", root, ca=True)
    der = inter[0].public_bytes(serialization.Encoding.DER)

    class Aia(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(der)))
            self.end_headers()
            self.wfile.write(der)

        def log_message(self, *args: object) -> None:
            pass

    aia = ThreadingHTTPServer(("127.0.0.1", 0), Aia)
    url = f"http://127.0.0.1:{aia.server_address[1]}/int.der"
    leaf = issue("127.0.0.1", inter, ca=False, aia=url, ip="127.0.0.1")
    (tmp_path / "leaf.pem").write_bytes(pem(leaf[0]))
    key = leaf[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    (tmp_path / "leaf.key").write_bytes(key)
    (tmp_path / "root.pem").write_bytes(pem(root[0]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = request.param
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    (tmp_path / "full.pem").write_bytes(pem(leaf[0]) + pem(inter[0]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Aia)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (aia, server)]
    for t in threads:
        t.start()
    try:
        yield server.server_address[1], tmp_path / "root.pem"
    finally:
        for s in (aia, server):
            s.shutdown()
            s.server_close()


def test_a_server_sending_its_leaf_alone_is_caught_and_its_issuer_fetched(
    incomplete: tuple[int, Path],
) -> None:
    port, root = incomplete
    chain = presented_chain("127.0.0.1", port, "127.0.0.1", 2.0)
    assert len(chain) == 1
    check = check_chain("127.0.0.1", port, "127.0.0.1", cafile=str(root), timeout=2.0)
    assert check is not None
    assert check.missing == "CN=Servepath Test Intermediate"
    assert check.issuer_trusted is True
    other = check_chain("127.0.0.1", port, "127.0.0.1", cafile=None, timeout=2.0)
    assert other is not None and other.issuer_trusted is False  # the system store: not its root


def test_a_full_chain_is_read_leaf_first_over_tls_1_3(incomplete: tuple[int, Path]) -> None:
    folder = incomplete[1].parent
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(folder / "full.pem", folder / "leaf.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        chain = [
            x509.load_der_x509_certificate(d)
            for d in presented_chain("127.0.0.1", port, "127.0.0.1", 2.0)
        ]
        assert [c.subject.rfc4514_string() for c in chain] == [
            "CN=127.0.0.1",
            "CN=Servepath Test Intermediate",
        ]
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_that_speaks_no_tls_presents_no_chain() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_plain() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer_plain, daemon=True)
        thread.start()
        assert presented_chain("127.0.0.1", port, "127.0.0.1", 2.0) == ()
        thread.join(5)
