"""What one connection may send and for how long, on real sockets: oversized and endless heads,
slow heads and bodies, idle and half-open connections, pipelining floods, callers that never
read, and the connection cap. Every limit answers as nginx and Envoy do (414/431/400/408)
and closes; the server keeps serving everyone else; memory stays bounded."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from tests.service.live import (
    GET_LIVE,
    LiveServer,
    Responses,
    connect,
    live_server,
    post,
    read_response,
    read_until_closed,
    rss_bytes,
    status_of,
)

TIMEOUT = 1.0  # header, body, keep-alive and send timeouts of the server under test
#: Scheduling slack on a busy 2-core machine.
SLACK = 1.5


@pytest.fixture(scope="module")
def server(example_model: LoadedModel) -> Iterator[LiveServer]:
    settings = Settings(
        store_url="off",
        header_timeout=TIMEOUT,
        body_timeout=TIMEOUT,
        keepalive_timeout=TIMEOUT,
        send_timeout=TIMEOUT,
        request_timeout=3.0,
    )
    with live_server(settings, example_model) as live:
        yield live


def still_serves(server: LiveServer) -> None:
    r = httpx.get(server.url + "/", timeout=10)
    assert r.status_code == 200, r.text


def head(lines: list[bytes]) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(lines) + b"\r\n"


@pytest.mark.parametrize(
    ("name", "request_bytes", "status", "reason"),
    [
        ("10,000 headers", head([b"X-%d: a\r\n" % i for i in range(10_000)]), 431, "too_many"),
        ("one 10 MB header", head([b"X-Big: " + b"a" * 10_000_000 + b"\r\n"]), 431, "too_large"),
        ("100 headers of 8 KB", head([b"X-%d: %s\r\n" % (i, b"b" * 8000) for i in range(100)]),
         431, "too_large"),
        ("a 20 KB request line", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
         414, "uri_too_long"),
        ("TLS to a plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
         400, "bad_request"),
        ("a header without a colon", b"GET / HTTP/1.1\r\nHost: t\r\nnonsense\r\n\r\n", 400,
         "bad_request"),
    ],
)  # fmt: skip
def test_an_oversized_or_malformed_head_is_refused_with_its_status_and_closed(
    server: LiveServer, name: str, request_bytes: bytes, status: int, reason: str
) -> None:
    with connect(server.port) as s:
        with contextlib.suppress(OSError):  # the server stops reading once it has answered
            s.sendall(request_bytes)
        data = read_until_closed(s)
    assert status_of(data) == status, (name, data[:200])
    assert reason in data.decode("latin-1"), data
    assert b"connection: close" in data
    still_serves(server)


def test_an_endless_header_block_is_cut_off_with_memory_bounded(server: LiveServer) -> None:
    before = rss_bytes()
    sent = 0
    with connect(server.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        chunk = b"X-Endless: " + b"a" * 65_000 + b"\r\n"
        with contextlib.suppress(OSError):
            for _ in range(800):  # 52 MB, if the server kept reading it
                s.sendall(chunk)
                sent += len(chunk)
        data = read_until_closed(s)
    assert status_of(data) == 431, data[:200]
    assert sent < 20_000_000, "the server went on reading an endless head"
    assert rss_bytes() - before < 30_000_000
    still_serves(server)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        started = time.monotonic()
        data = read_until_closed(s)
        took = time.monotonic() - started
    assert data == b""
    assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK


def test_a_slow_head_gets_408_at_the_header_timeout_however_it_drips(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        # One byte every 0.2 s: each arrives well within any per-read timeout.
        with contextlib.suppress(OSError):
            for _ in range(int((TIMEOUT + SLACK) / 0.2) + 5):
                s.sendall(b"X")
                time.sleep(0.2)
                if status_of(_peek(s)) is not None:
                    break
        data = read_until_closed(s)
        took = time.monotonic() - started
    assert status_of(data) == 408, data[:200]
    assert b"header_timeout" in data
    assert took < TIMEOUT + SLACK + 0.5


def _peek(s: socket.socket) -> bytes:
    s.setblocking(False)
    try:
        return s.recv(65536, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
    finally:
        s.setblocking(True)


def test_a_body_shorter_than_its_content_length_gets_408(server: LiveServer) -> None:
    with connect(server.port) as s:
        s.sendall(
            b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"income": 1'
        )
        started = time.monotonic()
        data = read_until_closed(s)
        took = time.monotonic() - started
    assert status_of(data) == 408, data[:200]
    assert b"body_timeout" in data
    assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK


def test_a_body_that_drips_forever_is_cut_off_at_the_request_timeout(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        s.sendall(
            b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for _ in range(100):  # a byte every 0.5 s: never stalls for the body timeout
                s.sendall(b" ")
                time.sleep(0.5)
                if status_of(_peek(s)) is not None:
                    break
        data = read_until_closed(s)
        took = time.monotonic() - started
    assert status_of(data) == 408, data[:200]
    assert took < 3.0 + SLACK + 0.6  # the request timeout, not 100 x 0.5 s


def test_an_upload_that_drips_holds_no_other_caller_back(server: LiveServer) -> None:
    """A caller sends its body a byte at a time (a stalled upload, a slow link): it waits on
    itself. The predictions that come meanwhile, each after more than admission's interval
    in which nothing was answered, are answered, not shed."""
    from servepath.model.example import EXAMPLE_APPLICANT

    statuses, bodies = [], []
    with connect(server.port) as slow:
        slow.sendall(
            b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 48000\r\n\r\n["
        )
        for i in range(8):
            with contextlib.suppress(OSError):
                slow.sendall(b" ")  # under the body timeout: the upload stays open
            time.sleep(0.15)
            with connect(server.port) as s:
                s.sendall(post("/decisions", {**EXAMPLE_APPLICANT, "age": 20 + i}))
                status, _, body = read_response(s)
                statuses.append(status)
                bodies.append(body)
    assert statuses == [200] * 8, (statuses, bodies)


def test_an_idle_keep_alive_connection_closes_after_the_keepalive_timeout(
    server: LiveServer,
) -> None:
    with connect(server.port) as s:
        s.sendall(GET_LIVE)
        status, _, _ = read_response(s)
        assert status == 200
        started = time.monotonic()
        rest = read_until_closed(s)
        took = time.monotonic() - started
    assert rest == b""
    assert took < TIMEOUT + SLACK


def test_a_thousand_pipelined_predictions_are_all_answered_in_order_then_closed(
    server: LiveServer,
) -> None:
    # As nginx: past MAX_PIPELINE parsed ahead, the server reads the next requests only as
    # answers go out; none is dropped, and the last one's Connection: close ends it cleanly.
    from servepath.model.example import EXAMPLE_APPLICANT

    ids = [f"p-{i}" for i in range(1000)]
    # Each its own applicant: the model answers each one (no cache hit, no shared answer).
    bodies = [{**EXAMPLE_APPLICANT, "income": 20_000.0 + i} for i in range(len(ids))]
    batch = b"".join(
        post("/decisions", body, f"X-Request-ID: {i}\r\n")
        for i, body in zip(ids[:-1], bodies, strict=False)
    ) + post("/decisions", bodies[-1], f"X-Request-ID: {ids[-1]}\r\nConnection: close\r\n")
    with connect(server.port) as s:
        s.sendall(batch)
        responses = Responses(s)
        got = [responses.next() for _ in ids]
        rest = s.recv(65536)  # a reset would raise here
    assert [headers["x-request-id"] for _, headers, _ in got] == ids
    assert {status for status, _, _ in got} == {200}
    assert {headers["x-cache"] for _, headers, _ in got} == {"MISS"}
    assert got[-1][1]["connection"] == "close" and rest == b""


def test_a_pipelining_flood_read_slowly_is_all_answered_with_memory_bounded(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 30,000 pipelined requests (1 MB) to a caller that reads through a small window: the
    # server parses at most MAX_PIPELINE (and a slice) ahead, so what it holds does not
    # follow the sender; every request is answered, in order.
    # (pytest would keep a log record per answer in this same process: not the server's.)
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "disabled", True)
    request = b"GET /v2 HTTP/1.1\r\nHost: t\r\n\r\n"
    count = 30_000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.connect(("127.0.0.1", server.port))
    s.settimeout(10)
    before = rss_bytes()
    peak = before
    sender = threading.Thread(target=s.sendall, args=(request * count,))
    sender.start()
    try:
        responses = Responses(s)
        for i in range(count):
            status, _, _ = responses.next()
            assert status == 200, (i, status)
            if i % 2000 == 0:
                peak = max(peak, rss_bytes())
        sender.join(30)
    finally:
        s.close()
    assert peak - before < 30_000_000, peak - before
    still_serves(server)


def test_pipelined_requests_within_the_bound_are_all_answered_in_order(
    server: LiveServer,
) -> None:
    ids = [f"pipe-{i}" for i in range(10)]
    batch = b"".join(
        f"GET /v2 HTTP/1.1\r\nHost: t\r\nX-Request-ID: {i}\r\n\r\n".encode() for i in ids
    )
    with connect(server.port) as s:
        s.sendall(batch)
        responses = Responses(s)
        got = [responses.next()[1]["x-request-id"] for _ in ids]
    assert got == ids


def test_a_caller_that_never_reads_costs_bounded_memory_and_is_closed(
    server: LiveServer,
) -> None:
    # Pipelined requests, never a byte read: the server answers into the socket until it
    # cannot write, stops reading, and closes; its memory does not follow the sender.
    request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n"
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a tiny window
    s.connect(("127.0.0.1", server.port))
    s.settimeout(0.2)
    before = rss_bytes()
    sent = 0
    try:
        deadline = time.monotonic() + 3
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                sent += s.send(request * 64)
        assert rss_bytes() - before < 30_000_000
        still_serves(server)
        s.settimeout(10)
        read_until_closed(s, limit=1 << 26)
    finally:
        s.close()
    # It answers what its buffers hold, then stops reading, and is cut at the send timeout.
    assert sent < 10_000_000, "the server kept reading requests it would not answer"


@pytest.mark.anyio
async def test_a_connection_whose_answer_cannot_be_written_is_dropped_at_the_send_timeout(
    server: LiveServer,
) -> None:
    import asyncio

    from servepath.service.protocol import ServepathHttpProtocol

    # The protocol on one end of a real socket pair whose other end never reads: its writes
    # fill the kernel buffer, then its own, and writing pauses; the send timeout then cuts
    # the connection (the caller would otherwise hold the answer's memory for ever).
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    loop = asyncio.get_running_loop()
    config = server.server.config
    transport, protocol = await loop.connect_accepted_socket(
        lambda: ServepathHttpProtocol(config, server.server.server_state, {}, loop), ours
    )
    try:
        while not protocol.flow.write_paused:
            transport.write(b"x" * 65536)
            await asyncio.sleep(0)
        started = time.monotonic()
        while not transport.is_closing():
            assert time.monotonic() - started < TIMEOUT + SLACK
            await asyncio.sleep(0.05)
        assert time.monotonic() - started >= TIMEOUT * 0.9
    finally:
        transport.abort()
        theirs.close()


def test_many_idle_connections_are_all_closed_and_normal_requests_go_on(
    server: LiveServer,
) -> None:
    idle = []
    try:
        for _ in range(500):
            idle.append(connect(server.port))
        started = time.perf_counter()
        for _ in range(20):
            r = httpx.get(server.url + "/v2/health/live", timeout=5)
            assert r.status_code == 200
        assert time.perf_counter() - started < 5
        time.sleep(TIMEOUT + SLACK)
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                if s.recv(1) == b"":
                    closed += 1
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


def test_a_caller_that_hangs_up_mid_body_costs_nothing_and_breaks_nothing(
    server: LiveServer,
) -> None:
    for _ in range(20):
        with connect(server.port) as s:
            s.sendall(
                b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"income": '
            )
    still_serves(server)
    assert server.app.plane.admission.in_flight == 0


@pytest.fixture(scope="module")
def capped(example_model: LoadedModel) -> Iterator[LiveServer]:
    with live_server(Settings(store_url="off", max_connections=20), example_model) as live:
        yield live


def test_past_the_connection_cap_new_connections_get_503_and_a_log_line(
    capped: LiveServer, caplog: pytest.LogCaptureFixture, connection_limit_warning: None
) -> None:
    held = [connect(capped.port) for _ in range(20)]
    try:
        for s in held:  # each is served (keep-alive), so all twenty are open
            s.sendall(GET_LIVE)
            assert read_response(s)[0] == 200
        with (
            caplog.at_level("WARNING", logger="servepath.service.protocol"),
            connect(capped.port) as extra,
        ):
            data = read_until_closed(extra)
        assert status_of(data) == 503, data
        assert b"retry-after: 1" in data
        assert any("connection limit reached" in r.getMessage() for r in caplog.records)
    finally:
        for s in held:
            s.close()
    # Once they are gone, new connections are served again.
    deadline = time.monotonic() + 5
    while True:
        with connect(capped.port) as s:
            s.sendall(GET_LIVE)
            data = s.recv(65536)
        if status_of(data) == 200:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_http_layers_refusals_are_counted_by_reason(server: LiveServer) -> None:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'servepath_http_rejected_total{reason="too_many_headers"}' in text
    assert 'servepath_http_rejected_total{reason="header_timeout"}' in text


def test_every_fast_answer_carries_a_request_id_and_server_timing(server: LiveServer) -> None:
    with connect(server.port) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Request-ID: mine-1\r\n\r\n")
        status, headers, body = read_response(s)
    assert status == 200 and body == b'{"live":true}'
    assert headers["x-request-id"] == "mine-1"
    assert headers["server-timing"].startswith("total;dur=")
    assert "date" in headers


def test_liveness_answers_head_without_a_body(server: LiveServer) -> None:
    with connect(server.port) as s:
        s.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = read_until_closed(s)
    assert status_of(data) == 200
    assert data.endswith(b"\r\n\r\n")


def test_a_predict_request_is_still_answered_in_full(server: LiveServer) -> None:
    from servepath.model.example import EXAMPLE_APPLICANT

    with connect(server.port) as s:
        s.sendall(post("/decisions", EXAMPLE_APPLICANT))
        status, headers, body = read_response(s)
    assert status == 200, body
    assert headers["x-cache"] == "MISS"
    assert b"decision" in body
