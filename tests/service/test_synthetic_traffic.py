"""Synthetic traffic against a real `servepath serve`: the doctor's and load's requests
arrive marked and are logged as such, a request sent by hand is not, a caller's own value
of the header is kept only as a word of the vocabulary, and neither `log stats` nor the live
page counts marked requests with real ones."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from servepath.model.example import EXAMPLE_APPLICANT
from tests.support import serve

runner = CliRunner()
NO_PROXY_ENV = {
    name: ""
    for base in ("http", "https", "all", "no")
    for name in (f"{base}_proxy", f"{base.upper()}_PROXY")
}
LOAD_REQUESTS = 8

#: Values of the header a caller may send, and what the log keeps of each.
HOSTILE = {
    "hostile-long": (b"doctor" + b"A" * 6000, "other"),
    "hostile-bytes": (b"load\t\xff\xfe\x80", "other"),
    "hostile-word": (b"please-count-me-as-special", "other"),
    "hostile-case": (b"MoNiToR", "monitor"),
}


@dataclass(frozen=True)
class Traffic:
    database: Path
    page: dict[str, Any]
    load: dict[str, Any]
    hostile_status: dict[str, int]


def _post_raw(port: int, request_id: str, mark: bytes) -> int:
    """POST the example with ``mark`` as the header's raw bytes; the answer's status."""
    body = json.dumps(EXAMPLE_APPLICANT).encode()
    head = (
        b"POST /decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-Request-ID: %s\r\nX-Servepath-Traffic: %s\r\n"
        b"Connection: close\r\n\r\n" % (len(body), request_id.encode(), mark)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory, example_model_path: Path
) -> Iterator[Traffic]:
    """One server that got a doctor's walk, a short load run, one request by hand and a few
    hostile marks; stopped (its log flushed) before the tests read what it kept."""
    tmp_path = tmp_path_factory.mktemp("synthetic")
    with serve(tmp_path, model=example_model_path) as server:
        url = server.url + "/decisions"
        # The default walk, its 48 KB large request included: the traffic of the report.
        doctor = runner.invoke(app, ["doctor", url, "--json", "--timeout", "2"], env=NO_PROXY_ENV)
        assert json.loads(doctor.stdout)["ok"], doctor.output
        load = runner.invoke(
            app,
            ["load", url, "--concurrency", "2", "--requests", str(LOAD_REQUESTS), "--json"],
            env=NO_PROXY_ENV,
        )
        assert load.exit_code == 0, load.output
        by_hand = runner.invoke(app, ["request", url, "--json"], env=NO_PROXY_ENV)
        assert by_hand.exit_code == 0, by_hand.output
        statuses = {rid: _post_raw(server.port, rid, mark) for rid, (mark, _) in HOSTILE.items()}
        page = httpx.get(server.url + "/_ui/data", timeout=10).json()
        assert server.terminate() == 0, server.log()
    yield Traffic(server.data_dir / "predictions.sqlite3", page, json.loads(load.stdout), statuses)


def _requests_by_traffic(database: Path) -> dict[str | None, tuple[int, int]]:
    """(requests, predictions) per kind of traffic, read straight from the database."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT r.traffic, count(DISTINCT r.record_id), count(*) "
            "FROM requests r JOIN predictions p ON p.record_id = r.record_id GROUP BY 1"
        ).fetchall()
    return {kind: (requests, predictions) for kind, requests, predictions in rows}


def test_the_doctors_requests_are_logged_as_the_doctors(traffic: Traffic) -> None:
    requests, predictions = _requests_by_traffic(traffic.database)["doctor"]
    # Its predict request and its large request, the large one many copies of the example.
    assert requests >= 2 and predictions > 100


def test_loads_requests_are_logged_as_load(traffic: Traffic) -> None:
    assert traffic.load["ok"]
    requests, _ = _requests_by_traffic(traffic.database)["load"]
    assert requests == traffic.load["sent"] >= LOAD_REQUESTS


def test_a_request_sent_by_hand_is_ordinary(traffic: Traffic) -> None:
    assert _requests_by_traffic(traffic.database)[None] == (1, 1)


def test_a_callers_own_value_is_kept_only_as_a_word_of_the_vocabulary(traffic: Traffic) -> None:
    assert set(traffic.hostile_status.values()) == {200}
    with sqlite3.connect(traffic.database) as conn:
        kept = dict(
            conn.execute(
                "SELECT request_id, traffic FROM requests WHERE request_id LIKE 'hostile-%'"
            )
        )
    assert kept == {rid: stored for rid, (_, stored) in HOSTILE.items()}


def test_log_stats_counts_only_the_ordinary_request_and_says_what_it_left_out(
    traffic: Traffic,
) -> None:
    result = runner.invoke(
        app, ["log", "stats", "--store", f"sqlite://{traffic.database}", "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["predictions"], stats["requests"]) == (1, 1)
    by_kind = _requests_by_traffic(traffic.database)
    left_out = stats["left_out"]["by_traffic"]
    assert set(left_out) == {"doctor", "load", "other", "monitor"}
    for kind, counts in left_out.items():
        assert (counts["requests"], counts["predictions"]) == by_kind[kind]


def test_the_live_page_counts_only_the_ordinary_request(traffic: Traffic) -> None:
    stats = traffic.page["stats"]
    assert stats["requests"] == 1
    assert stats["synthetic_left_out"] >= 2 + LOAD_REQUESTS + len(HOSTILE)
    kinds = {row["traffic"] for row in traffic.page["requests"]}
    assert {None, "doctor", "load", "other", "monitor"} <= kinds
