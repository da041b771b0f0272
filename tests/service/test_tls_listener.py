"""The HTTPS listener on real sockets: connections that never finish their TLS handshake
(silent, a record header, a ClientHello dripped a byte at a time) are closed within the
header timeout, are counted against the connection cap from accept, and a full cap refuses
new connections with a log line until they are gone; the heap is trimmed after a burst."""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service.heap import HeapTrim
from tests.service.live import GET_LIVE, LiveServer, connect, live_server, read_response

TIMEOUT = 1.0  # the header timeout of the server under test
#: Far below uvloop's own handshake timeout (60 s), far above TIMEOUT on a busy machine.
BOUND = 10.0
CAP = 6
RECORD_HEADER = b"\x16\x03\x01\x02\x00"  # a handshake record of 512 bytes, announced


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("tls")
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, cafile = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    return cert, key, cafile


def _serve(
    files: tuple[Path, Path, Path], model: LoadedModel, **limits: float
) -> Iterator[LiveServer]:
    cert, key, _ = files
    settings = Settings(store_url="off", tls_cert=cert, tls_key=key, **limits)  # type: ignore[arg-type]
    with live_server(settings, model) as live:
        yield live


@pytest.fixture(scope="module")
def server(files: tuple[Path, Path, Path], example_model: LoadedModel) -> Iterator[LiveServer]:
    yield from _serve(files, example_model, header_timeout=TIMEOUT)


@pytest.fixture(scope="module")
def capped(files: tuple[Path, Path, Path], example_model: LoadedModel) -> Iterator[LiveServer]:
    # A header timeout long enough that held handshakes outlive the test's requests.
    yield from _serve(files, example_model, header_timeout=60.0, max_connections=CAP)


def _client(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def https_live(port: int, cafile: Path) -> int:
    """One HTTPS request for liveness on a new connection: its status."""
    with (
        connect(port) as raw,
        _client(cafile).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(GET_LIVE)
        return read_response(tls)[0]  # type: ignore[arg-type]


def client_hello(cafile: Path) -> bytes:
    """The bytes a real TLS client opens with (its ClientHello), made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _client(cafile).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def seconds_until_closed(s: socket.socket, drip: bytes = b"") -> float:
    """Seconds until the server closes ``s`` (EOF or reset), sending ``drip`` a byte at a
    time meanwhile (one every 0.2 s); fails past BOUND."""
    s.settimeout(BOUND)
    start = time.monotonic()
    rest = drip
    while time.monotonic() - start < BOUND:
        readable, _, _ = select.select([s], [], [], 0.2)
        if readable:
            try:
                data = s.recv(4096)
            except OSError:
                return time.monotonic() - start
            assert data == b"", f"the server answered {data!r} before any handshake"
            return time.monotonic() - start
        if rest:
            try:
                s.send(rest[:1])
            except OSError:
                return time.monotonic() - start
            rest = rest[1:]
    raise AssertionError(f"the connection was still open after {BOUND} s")


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        assert seconds_until_closed(s) < BOUND


def test_a_lone_tls_record_header_is_closed_within_the_header_timeout(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        s.sendall(RECORD_HEADER)
        assert seconds_until_closed(s) < BOUND


def test_a_client_hello_dripped_a_byte_at_a_time_is_closed_within_the_header_timeout(
    server: LiveServer, files: tuple[Path, Path, Path]
) -> None:
    hello = client_hello(files[2])
    assert len(hello) > BOUND / 0.2  # it would take longer than BOUND to send it all
    with connect(server.port) as s:
        assert seconds_until_closed(s, drip=hello) < BOUND


def test_those_closes_are_counted_and_the_server_serves_tls_meanwhile(
    server: LiveServer, files: tuple[Path, Path, Path]
) -> None:
    with connect(server.port) as silent, connect(server.port) as header:
        header.sendall(RECORD_HEADER)
        assert https_live(server.port, files[2]) == 200
        seconds_until_closed(silent)
        seconds_until_closed(header)
    text = httpx.get(
        f"https://localhost:{server.port}/metrics", verify=_client(files[2]), trust_env=False
    ).text
    assert 'servepath_http_rejected_total{reason="idle_timeout"}' in text
    assert 'servepath_http_rejected_total{reason="header_timeout"}' in text


def _hold(port: int, count: int) -> list[socket.socket]:
    """``count`` connections in their handshake: half silent, half after a record header."""
    held = []
    for i in range(count):
        s = connect(port)
        if i % 2:
            s.sendall(RECORD_HEADER)
        held.append(s)
    return held


def _until_open(live: LiveServer, count: int) -> None:
    """Wait until the server holds ``count`` connections, handshaking ones included."""
    deadline = time.monotonic() + BOUND
    while len(live.server.server_state.connections) != count:
        assert time.monotonic() < deadline, len(live.server.server_state.connections)
        time.sleep(0.01)


def _wait_until_served(port: int, cafile: Path) -> None:
    deadline = time.monotonic() + BOUND
    while True:
        try:
            if https_live(port, cafile) == 200:
                return
        except (OSError, ConnectionError):
            pass
        assert time.monotonic() < deadline, "HTTPS was not served again"
        time.sleep(0.05)


def test_handshaking_connections_count_against_the_cap_and_past_it_new_ones_are_closed(
    capped: LiveServer,
    files: tuple[Path, Path, Path],
    caplog: pytest.LogCaptureFixture,
    connection_limit_warning: None,
) -> None:
    cafile = files[2]
    # One place left: a request is served, and its connection is counted once (after its
    # handshake it is an HTTP connection, no longer a handshaking one).
    held = _hold(capped.port, CAP - 1)
    try:
        _until_open(capped, CAP - 1)
        assert https_live(capped.port, cafile) == 200
        _until_open(capped, CAP - 1)  # that request's connection has closed
        held += _hold(capped.port, 1)
        _until_open(capped, CAP)
        with (
            caplog.at_level("WARNING", logger="servepath.service.protocol"),
            pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        ):
            https_live(capped.port, cafile)
        assert any(
            "connection limit reached" in r.getMessage() and f"the limit is {CAP}" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
    finally:
        for s in held:
            s.close()
    _wait_until_served(capped.port, cafile)


def test_the_heap_is_trimmed_once_enough_connections_of_a_burst_have_ended() -> None:
    open_now = [0]
    trims: list[int] = []

    async def burst() -> None:
        loop = asyncio.get_running_loop()
        heap = HeapTrim(loop, lambda: open_now[0], trim=lambda: trims.append(open_now[0]), after=4)
        for _ in range(10):
            open_now[0] += 1
            heap.accepted()
        assert heap.peak == 10 and heap._timer is not None
        open_now[0] = 7  # three ended: fewer than ``after``
        heap._look()
        assert trims == [] and heap._timer is not None  # still watching
        open_now[0] = 2
        heap._look()
        assert trims == [2]
        open_now[0] = 0
        heap._look()
        assert heap._timer is None and heap.peak == 0  # an idle server keeps no timer

    asyncio.run(burst())
    assert trims == [2]
