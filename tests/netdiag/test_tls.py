"""`servepath tls`: real TLS servers on loopback presenting good and bad certificates.

A trustme CA issues the valid, expired, not-yet-valid and wrong-name certificates; a
self-signed one is built with ``cryptography``; a uvicorn server speaks plain HTTP on a port
asked for TLS. Verdicts are checked against ``openssl s_client`` on the same servers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from servepath.cli import app
from servepath.errors import UsageError
from servepath.netdiag.tls import (
    Certificate,
    certificate_problems,
    classify_server_bytes,
    classify_verify_error,
    hostname_matches,
    parse_certificate,
    parse_target,
    probe_tls,
)
from tests.helpers.tcpserver import scripted_server
from tests.support import free_port, need_binary

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime.now(dt.UTC)


def tls_server(
    context: ssl.SSLContext | None, handle: Callable[[socket.socket], None] | None = None
) -> contextlib.AbstractContextManager[int]:
    """Accept on loopback; complete a TLS handshake with ``context`` (or run ``handle``)."""

    def handshake(conn: socket.socket) -> None:
        assert context is not None
        with context.wrap_socket(conn, server_side=True) as tls:
            while tls.recv(1024):
                pass

    return scripted_server(handle or handshake)


def _context_for(cert_pem: bytes, key_pem: bytes, tmp: Path, name: str) -> ssl.SSLContext:
    path = tmp / f"{name}.pem"
    path.write_bytes(key_pem + cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(path))
    return context


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass
class Servers:
    cafile: str
    valid: int
    expired: int
    not_yet_valid: int
    wrong_name: int
    expired_wrong_name: int
    self_signed: int
    plain_http: int
    silent: int
    hangs_up: int
    self_signed_pem: str = ""  # the self-signed server's certificate, to pin with --cafile


async def _plain_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"plain"})


@contextlib.contextmanager
def plain_http_server() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_plain_app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cafile = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))

    def issued(name: str, *names: str, **dates: dt.datetime) -> ssl.SSLContext:
        leaf = ca.issue_cert(*names, **dates)  # type: ignore[arg-type]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        return context

    day = dt.timedelta(days=1)
    self_cert, self_key = _self_signed("localhost")
    pinned = tmp / "self-signed-cert.pem"
    pinned.write_bytes(self_cert)
    contexts = {
        "valid": issued("valid", "localhost", "127.0.0.1"),
        "expired": issued("expired", "localhost", not_before=NOW - 30 * day,
                          not_after=NOW - 2 * day),
        "not_yet_valid": issued("nyv", "localhost", not_before=NOW + 5 * day,
                                not_after=NOW + 90 * day),
        "wrong_name": issued("wrong", "api.other.test"),
        "expired_wrong_name": issued("both", "api.other.test", not_before=NOW - 30 * day,
                                     not_after=NOW - 2 * day),
        "self_signed": _context_for(self_cert, self_key, tmp, "self"),
    }  # fmt: skip
    with contextlib.ExitStack() as stack:
        ports = {name: stack.enter_context(tls_server(c)) for name, c in contexts.items()}
        ports["plain_http"] = stack.enter_context(plain_http_server())
        silent = stack.enter_context(socket.socket())
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepted by the kernel, never by anyone: the handshake hangs
        ports["silent"] = silent.getsockname()[1]
        ports["hangs_up"] = stack.enter_context(tls_server(None, lambda conn: conn.recv(1024)))
        yield Servers(cafile=str(cafile), self_signed_pem=str(pinned), **ports)


def openssl_verify(port: int, name: str, cafile: str | None) -> tuple[int, str]:
    """What ``openssl s_client`` says of the same server: the verify code and message."""
    openssl = need_binary("openssl")
    argv = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
            "-verify_hostname", name]  # fmt: skip
    argv += ["-CAfile", cafile] if cafile else []
    proc = subprocess.run(argv, input="", capture_output=True, text=True, timeout=10)
    found = re.search(r"Verify return code: (\d+) \(([^)]*)\)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return int(found.group(1)), found.group(2)


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["tls", *args], env={"SSL_CERT_FILE": "", **(env or {})})
    return result.exit_code, result.output


# --- real servers ------------------------------------------------------------------------


def test_a_valid_certificate_trusted_through_cafile(servers: Servers) -> None:
    report = probe_tls("localhost", servers.valid, cafile=servers.cafile)
    assert report.ok and report.trusted and report.failure is None
    assert report.protocol == "TLSv1.3"
    assert report.cipher
    cert = report.certificate
    assert cert is not None
    assert cert.dns_names == ("localhost",) and cert.ip_addresses == ("127.0.0.1",)
    assert "trustme" in cert.issuer
    assert report.name_matches
    assert report.days_to_expiry is not None and report.days_to_expiry > 300
    assert openssl_verify(servers.valid, "localhost", servers.cafile) == (0, "ok")
    code, output = run_cli(f"localhost:{servers.valid}", "--cafile", servers.cafile, "--json")
    assert code == 0
    data = json.loads(output)
    assert data["ok"] and data["certificate"]["sans"] == {
        "dns": ["localhost"],
        "ip": ["127.0.0.1"],
    }
    assert data["trust_store"] == servers.cafile


def test_an_ip_target_is_checked_against_the_ip_san(servers: Servers) -> None:
    report = probe_tls("127.0.0.1", servers.valid, cafile=servers.cafile)
    assert report.ok and report.name_matches


def test_a_private_ca_is_an_unknown_issuer_to_the_system_store(servers: Servers) -> None:
    report = probe_tls("localhost", servers.valid)
    assert report.failure == "unknown_issuer" and not report.trusted
    assert report.certificate is not None  # shown even though it was refused
    assert "system trust store" in report.detail
    assert report.problems == ()  # nothing wrong with the certificate itself
    code, _ = openssl_verify(servers.valid, "localhost", None)
    assert classify_verify_error(code) == "unknown_issuer"
    exit_code, output = run_cli(f"localhost:{servers.valid}")
    assert exit_code == 1 and "unknown_issuer" in output


@pytest.mark.parametrize(
    ("server", "failure"),
    [
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
        ("wrong_name", "hostname_mismatch"),
        ("self_signed", "self_signed"),
    ],
)
def test_each_failure_is_named_as_openssl_names_it(
    servers: Servers, server: str, failure: str
) -> None:
    port = getattr(servers, server)
    cafile = None if server == "self_signed" else servers.cafile
    report = probe_tls("localhost", port, cafile=cafile)
    assert report.failure == failure
    assert not report.ok and not report.trusted
    assert failure in report.problems
    assert report.certificate is not None
    code, _ = openssl_verify(port, "localhost", cafile)
    assert classify_verify_error(code) == failure


def test_expired_detail_says_when_and_days_are_negative(servers: Servers) -> None:
    report = probe_tls("localhost", servers.expired, cafile=servers.cafile)
    assert report.days_to_expiry is not None and -3 < report.days_to_expiry < -1
    assert "expired on" in report.detail and "2 days ago" in report.detail


def test_wrong_name_detail_lists_the_names_the_certificate_is_for(servers: Servers) -> None:
    report = probe_tls("localhost", servers.wrong_name, cafile=servers.cafile)
    assert report.detail == "the certificate is for api.other.test, not for localhost"
    assert report.name_matches is False


def test_servername_decides_the_name_checked(servers: Servers) -> None:
    report = probe_tls(
        "127.0.0.1", servers.wrong_name, servername="api.other.test", cafile=servers.cafile
    )
    assert report.ok
    assert report.servername == "api.other.test"


def test_every_problem_is_listed_where_openssl_stops_at_the_first(servers: Servers) -> None:
    report = probe_tls("localhost", servers.expired_wrong_name, cafile=servers.cafile)
    assert report.failure == "hostname_mismatch"  # OpenSSL checks the name before the dates
    assert set(report.problems) == {"expired", "hostname_mismatch"}


def test_plain_http_on_the_port_is_recognised(servers: Servers) -> None:
    report = probe_tls("127.0.0.1", servers.plain_http, timeout=3)
    assert report.failure == "plain_http"
    assert "HTTP/1.1 400" in report.detail
    code, output = run_cli(f"127.0.0.1:{servers.plain_http}", "--timeout", "3")
    assert code == 1 and "plain_http" in output


def test_refused_and_timeout_are_told_apart(servers: Servers) -> None:
    refused = probe_tls("127.0.0.1", free_port(), timeout=1)
    assert refused.failure == "refused"
    start = time.perf_counter()
    silent = probe_tls("127.0.0.1", servers.silent, timeout=0.3)
    assert silent.failure == "timeout"
    assert "handshake" in silent.detail
    assert time.perf_counter() - start < 1.5


def test_a_server_that_hangs_up_on_the_hello_is_a_failed_handshake(servers: Servers) -> None:
    report = probe_tls("127.0.0.1", servers.hangs_up, timeout=2)
    assert report.failure == "handshake_failed"
    assert "closed the connection" in report.detail


def test_table_shows_certificate_fields(servers: Servers) -> None:
    code, output = run_cli(f"localhost:{servers.expired}", "--cafile", servers.cafile)
    assert code == 1
    for text in ("expired", "subject", "issuer", "localhost", "trusted"):
        assert text in output
    assert "expired 2 days ago" in output and "-2.0 days" not in output  # words, not signs
    code, output = run_cli(f"localhost:{servers.valid}", "--cafile", servers.cafile)
    assert code == 0
    assert re.search(r"expires\s+in \d+ days", output)


def test_a_self_signed_certificate_pinned_with_cafile_is_trusted_and_exits_0(
    servers: Servers,
) -> None:
    report = probe_tls("localhost", servers.self_signed, cafile=servers.self_signed_pem)
    assert report.ok and report.trusted and report.problems == ()
    assert report.certificate is not None and report.certificate.self_signed
    assert any("self-signed" in note and "pinned" in note for note in report.notes)
    code, output = run_cli(f"localhost:{servers.self_signed}", "--cafile", servers.self_signed_pem)
    assert code == 0, output
    assert "trusted and valid" in output
    assert f"yes (by {servers.self_signed_pem}, --cafile)" in output
    # unpinned, the same certificate is refused for what it is
    code, output = run_cli(f"localhost:{servers.self_signed}")
    assert code == 1 and "self_signed" in output


def test_ssl_cert_file_is_the_trust_store_when_no_cafile_is_given(servers: Servers) -> None:
    code, output = run_cli(f"localhost:{servers.valid}", env={"SSL_CERT_FILE": servers.cafile})
    assert code == 0, output
    assert f"yes (by {servers.cafile}, SSL_CERT_FILE)" in output
    # --cafile wins over it
    code, output = run_cli(
        f"localhost:{servers.valid}", "--cafile", servers.self_signed_pem,
        env={"SSL_CERT_FILE": servers.cafile},
    )  # fmt: skip
    assert code == 1 and "unknown_issuer" in output


def test_an_ipv6_target_prints_in_brackets_and_literally() -> None:
    code, output = run_cli("[::1]:1", "--timeout", "1")
    assert code == 1
    assert output.startswith("[::1]:1  servername ::1  refused")


@pytest.mark.parametrize("target", ["localhost:0", "localhost:http", ":443"])
def test_bad_targets_exit_2(target: str) -> None:
    code, _ = run_cli(target)
    assert code == 2


# --- pure parts --------------------------------------------------------------------------


def _cert(dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = (), cn: str | None = None,
          not_before: dt.datetime = NOW - dt.timedelta(days=1),
          not_after: dt.datetime = NOW + dt.timedelta(days=1),
          self_signed: bool = False) -> Certificate:  # fmt: skip
    return Certificate(
        subject=f"CN={cn}", common_name=cn, dns_names=dns_names, ip_addresses=ips,
        issuer="CN=ca", serial="1", not_before=not_before, not_after=not_after,
        self_signed=self_signed, is_ca=False, key="EC secp256r1",
        signature_algorithm="ecdsa-with-SHA256", sha256="00",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("api.test", "api.test", True),
        ("API.test", "api.TEST.", True),
        ("*.api.test", "eu.api.test", True),
        ("*.api.test", "api.test", False),
        ("*.api.test", "a.eu.api.test", False),
        ("*.test", "api.test", False),  # too broad: needs two labels after the wildcard
        ("ap*.test", "api.test", False),  # partial wildcards are not honoured
        ("api.test", "other.test", False),
    ],
)
def test_hostname_matching_follows_rfc_6125(pattern: str, name: str, matches: bool) -> None:
    assert hostname_matches(name, _cert((pattern,))) is matches


def test_ip_names_match_ip_sans_only() -> None:
    cert = _cert(("10.0.0.1",), ("10.0.0.2", "::1"))
    assert hostname_matches("10.0.0.2", cert)
    assert hostname_matches("[::1]", cert)
    assert not hostname_matches("10.0.0.1", cert)  # a DNS SAN spelling an IP does not count


def test_common_name_counts_only_without_sans() -> None:
    assert hostname_matches("api.test", _cert(cn="api.test"))
    assert not hostname_matches("api.test", _cert(("other.test",), cn="api.test"))


def test_certificate_problems_are_all_listed() -> None:
    cert = _cert(("x.test",), not_after=NOW - dt.timedelta(days=1), self_signed=True)
    assert certificate_problems(cert, "api.test", NOW) == (
        "expired",
        "hostname_mismatch",
        "self_signed",
    )
    early = _cert(("api.test",), not_before=NOW + dt.timedelta(hours=1))
    assert certificate_problems(early, "api.test", NOW) == ("not_yet_valid",)
    assert certificate_problems(_cert(("api.test",)), "api.test", NOW) == ()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", "http"),
        (b"<html>", "http"),
        (b"\x15\x03\x03\x00\x02\x02\x28", "tls"),  # an alert record
        (b"\x16\x03\x03\x00\x7a\x02", "tls"),  # a ServerHello
        (b"SSH-2.0-OpenSSH_9.6\r\n", "other"),
        (b"", "empty"),
    ],
)
def test_server_first_bytes_are_classified(data: bytes, kind: str) -> None:
    assert classify_server_bytes(data) == kind


@pytest.mark.parametrize(
    ("code", "failure"),
    [(10, "expired"), (9, "not_yet_valid"), (62, "hostname_mismatch"), (64, "hostname_mismatch"),
     (18, "self_signed"), (19, "unknown_issuer"), (20, "unknown_issuer"), (21, "unknown_issuer"),
     (23, "handshake_failed")],
)  # fmt: skip
def test_openssl_verify_codes_map_to_failures(code: int, failure: str) -> None:
    assert classify_verify_error(code) == failure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api.test", ("api.test", 443)),
        ("api.test:8443", ("api.test", 8443)),
        ("[::1]:8443", ("::1", 8443)),
        ("::1", ("::1", 443)),
        ("https://api.test:9443/path", ("api.test", 9443)),
    ],
)
def test_targets_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "api.test:0", "api.test:https", "[::1", "[::1]8443"])
def test_bad_targets_are_usage_errors_that_say_what_is_wrong(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target(text)
    assert str(info.value).startswith(f"{text!r}: ")


def test_a_cn_only_self_signed_certificate_parses() -> None:
    pem, _ = _self_signed("api.test")
    cert = parse_certificate(x509.load_pem_x509_certificate(pem).public_bytes(
        serialization.Encoding.DER))  # fmt: skip
    assert cert.self_signed and not cert.is_ca
    assert cert.common_name == "api.test" and cert.dns_names == ("api.test",)
    assert cert.key == "EC secp256r1"
    assert cert.signature_algorithm == "ecdsa-with-SHA256"
    assert len(cert.sha256.split(":")) == 32
