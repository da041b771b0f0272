"""The doctor's repetition against a real peer that does not keep connections alive.

tinyproxy answers through HTTP/1.1 without ``Connection: close`` and closes the connection
after the answer. On a busy machine its close can come after the client has sent the next
request over the kept connection, which is then reset. The peer here always loses that race
(it closes once the next request has arrived, unanswered), so the doctor sees it every run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.tcpserver import scripted_server

SRC = str(Path(__file__).resolve().parents[3] / "src")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


def _answer_once(conn: socket.socket) -> None:
    if conn.recv(65536):
        conn.sendall(ANSWER)
        conn.recv(65536)  # the next request over the kept connection: closed unanswered


@pytest.fixture
def closes_after_each_answer() -> Iterator[int]:
    with scripted_server(_answer_once) as port:
        yield port


def test_a_peer_closing_each_connection_is_a_warning_not_an_intermittent_failure(
    closes_after_each_answer: int,
) -> None:
    url = f"http://127.0.0.1:{closes_after_each_answer}/"
    proc = subprocess.run(
        [sys.executable, "-m", "servepath", "doctor", url, "--json", "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, (report["cause"], proc.stderr)
    assert report["ok"] and report["cause"] == "ok"
    repeat = next(s for s in report["stages"] if s["name"] == "repeat")
    assert repeat["status"] == "warn", repeat
    assert "closes each connection after its answer" in repeat["summary"]
    attempts = repeat["data"]["repetitions"][0]["attempts"]
    # the resets are on reused connections; the request after each opened a fresh one
    assert {a["connection"] for a in attempts if a["failed"]} == {"reused"}
    assert all(a["connection"] != "reused" for a in attempts if not a["failed"])
