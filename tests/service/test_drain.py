"""SIGTERM with keep-alive and pipelining callers, on a real `servepath serve` process: every
request the server read is answered in full, and a connection it closes ends with FIN, never
RST. A caller may see its connection end before any byte of an answer (its request went
unread: safe to send again, as every HTTP client does on a reused connection), or a refused
connect once the listener is closed; never a reset and never half an answer."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.helpers.slowmodel import write_slow_model
from tests.support import TESTS_DIR, ServerProcess, serve

#: A prediction for the slow model of tests/helpers/slowmodel.py.
PREDICT = (
    b"POST /decisions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Content-Length: 20\r\n\r\n" + orjson.dumps({"x": 1.0, "y": 2.0}).ljust(20)
)


@pytest.fixture(scope="module")
def queueing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("drain") / "queueing.joblib"
    write_slow_model(path, delay=0.02)
    return path


@contextlib.contextmanager
def server(tmp_path: Path, model: Path) -> Iterator[ServerProcess]:
    with serve(
        tmp_path,
        model=model,
        args=["--store", "off", "--cache", "off", "--grace-period", "15"],
        env={"SERVEPATH_MAX_BATCH": "1"},
        # This checkout's servepath, whichever one the environment has installed.
        extra_pythonpath=[TESTS_DIR.parent / "src", TESTS_DIR.parent],
    ) as s:
        yield s


def draining(s: ServerProcess, timeout: float = 20) -> None:
    """Until the server says it has begun to drain (uvicorn logs it as it closes the listener
    and turns to the open connections)."""
    deadline = time.monotonic() + timeout
    while "Shutting down" not in s.log():
        assert s.process.poll() is None, s.log()
        assert time.monotonic() < deadline, s.log()
        time.sleep(0.002)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Broken(Exception):
    """The connection ended inside an answer (truncated) or was reset."""


class Reader:
    """Content-Length framed answers off one socket, telling a clean end from a broken one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as exc:
            raise Broken(f"reset after {self.buf[:80]!r}") from exc
        self.buf += chunk
        return bool(chunk)

    def next(self) -> Answer | None:
        """The next answer; None when the connection ended cleanly before any byte of it."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                if self.buf:
                    raise Broken(f"truncated head: {self.buf[:80]!r}")
                return None
        head, _, _ = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) - len(head) - 4 < length:
            if not self._more():
                raise Broken(f"truncated body after {self.buf[:80]!r}")
        body = self.buf[len(head) + 4 : len(head) + 4 + length]
        self.buf = self.buf[len(head) + 4 + length :]
        return Answer(int(lines[0].split()[1]), headers, body)

    def end(self) -> None:
        """The connection must now end cleanly: FIN, nothing more, no reset."""
        if self._more() or self.buf:
            raise Broken(f"more after the last answer: {self.buf[:80]!r}")


def test_a_request_sent_on_an_idle_keep_alive_connection_as_draining_starts_is_answered(
    tmp_path: Path, queueing_model: Path
) -> None:
    with server(tmp_path, queueing_model) as s:
        conn = socket.create_connection(("127.0.0.1", s.port), timeout=20)
        with conn:
            reader = Reader(conn)
            conn.sendall(PREDICT)
            first = reader.next()
            assert first is not None and first.status == 200
            assert first.headers.get("connection") != "close"
            # The connection is idle, as a keep-alive caller's is between two requests.
            s.process.send_signal(signal.SIGTERM)
            draining(s)
            conn.sendall(PREDICT)
            answer = reader.next()
            assert answer is not None, "the request was dropped: the connection closed"
            assert answer.status == 200, answer
            assert answer.headers["connection"] == "close"
            reader.end()
        assert s.process.wait(30) == 0


def test_pipelined_requests_caught_by_the_drain_are_answered_in_order_then_fin(
    tmp_path: Path, queueing_model: Path
) -> None:
    # Far more pipelined predictions than the server parses ahead (more than one read of
    # them): on SIGTERM it answers the ones it has parsed, the last with Connection: close,
    # and closes without a reset though the rest still waits unread in its socket.
    count = 5000
    with server(tmp_path, queueing_model) as s:
        conn = socket.create_connection(("127.0.0.1", s.port), timeout=20)
        with conn:
            reader = Reader(conn)
            sender = threading.Thread(target=_send_quietly, args=(conn, PREDICT * count))
            sender.start()
            first = reader.next()
            assert first is not None and first.status == 200
            s.process.send_signal(signal.SIGTERM)
            answers = [first]
            while (answer := reader.next()) is not None:
                answers.append(answer)
                if answer.headers.get("connection") == "close":
                    break
            reader.end()
            sender.join(30)
        assert s.process.wait(30) == 0
    assert 2 <= len(answers) < count
    assert [a.status for a in answers] == [200] * len(answers)
    assert answers[-1].headers["connection"] == "close"
    assert all(a.headers.get("connection") != "close" for a in answers[:-1])


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server stops reading once it drains
        conn.sendall(data)


def test_sigterm_under_keep_alive_load_answers_every_request_it_read(
    tmp_path: Path, queueing_model: Path
) -> None:
    """Eight keep-alive callers in a loop; SIGTERM once each has had a few answers. Each
    attempt ends in a whole answer, a refused connect, or (on a reused connection) an end
    before any byte of an answer: never a reset, never half an answer."""
    callers, per_caller = 8, 2000
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    answered = [0] * callers
    lock = threading.Lock()
    stop = threading.Event()

    def caller(i: int, port: int) -> None:
        conn: socket.socket | None = None
        reader: Reader | None = None
        for _ in range(per_caller):
            if stop.is_set():
                break
            try:
                if conn is None:
                    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
                    reader, reused = Reader(conn), False
                assert reader is not None
                conn.sendall(PREDICT)
                answer = reader.next()
            except ConnectionRefusedError:
                with lock:
                    outcomes["refused"] += 1
                stop.wait(0.01)
                continue
            except (Broken, OSError) as exc:
                with lock:
                    problems.append(f"caller {i}: {exc!r}")
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if answer is None:
                with lock:
                    outcomes["closed before any byte" + (" (reused)" if reused else "")] += 1
                conn.close()
                conn = None
                continue
            reused = True
            with lock:
                outcomes[str(answer.status)] += 1
                answered[i] += 1
            if answer.headers.get("connection") == "close":
                with lock:
                    outcomes["connection: close"] += 1
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    with server(tmp_path, queueing_model) as s:
        threads = [threading.Thread(target=caller, args=(i, s.port)) for i in range(callers)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 30
            while min(answered) < 5:
                assert time.monotonic() < deadline, answered
                time.sleep(0.01)
            s.process.send_signal(signal.SIGTERM)
            code = s.process.wait(30)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert problems == [], (problems, outcomes)
    assert set(outcomes) <= {
        "200", "503", "refused", "connection: close", "closed before any byte (reused)",
    }, outcomes  # fmt: skip
    # The drain answered the callers it caught with Connection: close.
    assert outcomes["connection: close"] >= 1, outcomes
    assert code == 0
