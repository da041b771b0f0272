"""`servepath serve` as a real process: start banner, SIGTERM drain, several workers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.slowmodel import write_slow_model
from tests.support import TESTS_DIR, serve

#: The server runs this checkout's servepath (whichever the environment has installed), and
#: finds the tests' slow model class.
THIS_CHECKOUT = [TESTS_DIR.parent / "src", TESTS_DIR.parent]


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slow") / "slow.joblib"
    write_slow_model(path, delay=1.0)
    return path


def test_start_banner_lists_reachable_addresses_with_their_kind(
    tmp_path: Path, example_model_path: Path
) -> None:
    with serve(tmp_path, model=example_model_path, host="0.0.0.0", args=["--store", "off"]) as s:
        text = s.log()
    assert re.search(rf"http://127\.0\.0\.1:{s.port}\s+lo\s+loopback", text), text
    assert "reachable at:" in text


def test_loopback_bind_is_called_out_at_start(tmp_path: Path, example_model_path: Path) -> None:
    with serve(tmp_path, model=example_model_path, args=["--store", "off"]) as s:
        text = s.log()
    assert "bound to loopback only" in text


def test_a_taken_port_fails_at_once_naming_who_holds_it(
    tmp_path: Path, example_model_path: Path
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "servepath", "serve", "--host", "127.0.0.1"),
                *("--port", str(port), "--model", str(example_model_path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SERVEPATH_DATA_DIR": str(tmp_path)},
        )
    finally:
        holder.close()
    assert proc.returncode == 1, proc.stderr
    message = " ".join(proc.stderr.split())
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in message
    assert f"(pid {os.getpid()})" in message, message
    assert "--port" in message
    # Refused before the model loads: no listening banner, no model announced.
    assert "listening on" not in proc.stdout and "serving with" not in proc.stderr
    assert time.monotonic() - started < 30


def test_every_interface_on_ipv6_also_accepts_ipv4(
    tmp_path: Path, example_model_path: Path
) -> None:
    with serve(tmp_path, model=example_model_path, host="::", args=["--store", "off"]) as s:
        v6 = httpx.get(f"http://[::1]:{s.port}/_path", timeout=10).json()
        v4 = httpx.get(f"http://127.0.0.1:{s.port}/_path", timeout=10).json()
    assert v6["peer"]["address"] == "::1"
    # An IPv4 caller of the dual-stack socket is reported as IPv4, not ::ffff:127.0.0.1.
    assert v4["peer"]["address"] == "127.0.0.1" and v4["server"]["address"] == "127.0.0.1"


def test_missing_model_file_is_a_usage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "servepath", "serve", "--model", str(tmp_path / "nope.joblib")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_sigterm_finishes_every_in_flight_request(tmp_path: Path, slow_model: Path) -> None:
    with serve(
        tmp_path,
        model=slow_model,
        args=["--store", "off", "--cache", "off", "--grace-period", "15"],
        extra_pythonpath=THIS_CHECKOUT,
    ) as s:
        from tests.service.live import post, read_until_closed, status_of

        results: list[int | str | None] = []
        lock = threading.Lock()
        # Connected first, so that the eight requests go out together (a thread building an
        # HTTP client can take longer than the model's second on a busy machine).
        conns = [socket.create_connection(("127.0.0.1", s.port), timeout=30) for _ in range(8)]

        def call(i: int) -> None:
            try:
                conns[i].sendall(post("/decisions", {"x": float(i), "y": 1.0}))
                outcome: int | str | None = status_of(read_until_closed(conns[i]))
            except OSError as exc:
                outcome = repr(exc)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        # All eight in flight (one in the model, seven queued behind it), as the server says.
        wait_in_flight(s.url, 8)
        started = time.monotonic()
        s.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        code = s.process.wait(30)
        took = time.monotonic() - started
        for conn in conns:
            conn.close()
    assert results == [200] * 8, results
    assert code == 0
    assert took < 15


def test_new_connections_are_refused_once_draining(tmp_path: Path, slow_model: Path) -> None:
    with serve(
        tmp_path,
        model=slow_model,
        args=["--store", "off", "--cache", "off"],
        extra_pythonpath=THIS_CHECKOUT,
    ) as s:
        from tests.service.live import post, read_until_closed

        conn = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        conn.sendall(post("/decisions", {"x": 1.0, "y": 1.0}))
        inflight = threading.Thread(target=read_until_closed, args=(conn,))
        inflight.start()
        wait_in_flight(s.url, 1)
        s.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(s.url + "/", timeout=2)
        inflight.join(30)
        conn.close()
        assert s.process.wait(30) == 0


def test_several_workers_report_every_worker_in_every_scrape_and_log_every_start(
    tmp_path: Path, example_model_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with serve(
        tmp_path,
        model=example_model_path,
        args=["--workers", "2", "--store", "off", "--access-log"],
        env={"TMPDIR": str(scratch)},
    ) as s:
        assert list(scratch.glob("servepath-metrics-*")), "the workers share a directory"
        # serve() returned on the first healthy answer. A worker still loading its model does
        # not accept from the shared socket, so from here on no request may see 503 "loading".
        pids = set()
        for i in range(40):
            with httpx.Client(timeout=10) as c:  # a new connection each time
                r = c.post(
                    s.url + "/decisions",
                    json={**_example(s.url), "income": 40000.0 + i},
                    headers={"x-request-id": f"worker-test-{i}"},
                )
                assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(timeout=10) as c:
                pids.add(c.get(s.url + "/_path").json()["pid"])
        scrapes = []
        for _ in range(6):  # new connections: the kernel spreads them over both workers
            with httpx.Client(timeout=10) as c:
                scrapes.append(c.get(s.url + "/metrics").text)
        log = s.log()
    assert len(pids) == 2, "the kernel spreads connections over both workers"
    # The workers' shared directory went with the server.
    assert not list(scratch.glob("servepath-metrics-*"))
    for text in scrapes:
        match = re.search(
            r'servepath_http_requests_total\{method="POST",route="/decisions",status="200"\} (\S+)',
            text,
        )
        assert match, text
        assert float(match.group(1)) == 40.0
        # Each worker's own state is in every scrape, whichever worker answered it.
        for pid in pids:
            assert f'servepath_prediction_log_healthy{{backend="off",pid="{pid}"}} 1.0' in text
            assert f'servepath_requests_in_flight{{pid="{pid}"}}' in text
    # servepath's own start-up line, from each worker, with its pid.
    ready = re.findall(
        r"\[(\d+)\] servepath\.service\.dataplane: model decision version \w+ ready", log
    )
    assert set(map(int, ready)) == pids, log
    # --access-log: one line per request with its id, status and times.
    lines = [line for line in log.splitlines() if "worker-test-" in line]
    assert len(lines) == 40, log
    assert re.search(r'"POST /decisions" 200 \d+ id=worker-test-\d+ total=[\d.]+ms', lines[0])


def wait_in_flight(url: str, count: int, timeout: float = 20) -> None:
    """Until the server says ``count`` prediction requests are in flight."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(url + "/metrics", timeout=5).text
        match = re.search(r"^servepath_requests_in_flight (\S+)$", text, re.M)
        if match and float(match.group(1)) >= count:
            return
        assert time.monotonic() < deadline, f"never {count} requests in flight"
        time.sleep(0.02)


_examples: dict[str, dict] = {}


def _example(url: str) -> dict:
    if url not in _examples:
        spec = httpx.get(url + "/openapi.json").json()
        _examples[url] = spec["paths"]["/decisions"]["post"]["requestBody"]["content"][
            "application/json"
        ]["example"]
    return _examples[url]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cache", "mongodb://x/[0]", "cache"),
        ("--store", "mysql://x", "store"),
        ("--log-level", "verbose", "log level"),
        ("--max-queue-wait", "soon", "max-queue-wait"),
        ("--header-timeout", "0", "header_timeout"),
    ],
)
def test_bad_flag_values_are_usage_errors_not_tracebacks(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "servepath", "serve", flag, value, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SERVEPATH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr and value in result.stderr


@pytest.fixture(scope="module")
def queueing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("queueing") / "queueing.joblib"
    write_slow_model(path, delay=0.05)
    return path


def test_sigterm_under_overload_answers_every_request_already_sent(
    tmp_path: Path, queueing_model: Path
) -> None:
    """Each request sent before or during the drain gets a whole answer: 200, or a clean 503
    (shed) — never a reset or an empty read — and the process exits 0 within the grace."""
    from tests.service.live import post, read_until_closed, status_of

    with serve(
        tmp_path,
        model=queueing_model,
        args=["--store", "off", "--cache", "off", "--max-queue-wait", "0.5",
              "--grace-period", "10"],
        env={"SERVEPATH_MAX_BATCH": "1"},
        extra_pythonpath=THIS_CHECKOUT,
    ) as s:  # fmt: skip
        outcomes: list[bytes] = []
        lock = threading.Lock()

        def call(i: int, delay: float) -> None:
            time.sleep(delay)
            try:
                with socket.create_connection(("127.0.0.1", s.port), timeout=20) as conn:
                    conn.sendall(post("/decisions", {"x": float(i), "y": 1.0}))
                    data = read_until_closed(conn)
            except OSError as exc:
                data = repr(exc).encode()
            with lock:
                outcomes.append(data)

        # 40 at once (a queue forms and the rest is shed), 20 more while SIGTERM lands.
        threads = [threading.Thread(target=call, args=(i, 0.0)) for i in range(40)]
        threads += [threading.Thread(target=call, args=(i, 0.45 + i * 0.002)) for i in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        started = time.monotonic()
        s.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        code = s.process.wait(30)
        took = time.monotonic() - started
    statuses = [status_of(o) for o in outcomes]
    refused = [o for o in outcomes if status_of(o) is None]
    # A connection that arrives after the listener closed is refused outright (the caller
    # retries elsewhere); one that was accepted is always answered.
    assert all(b"ConnectionRefused" in o for o in refused), refused
    assert set(statuses) - {None} <= {200, 503}, statuses
    assert statuses.count(200) >= 5
    for o in outcomes:
        if status_of(o) == 503:
            assert b"retry-after:" in o.lower()
    assert code == 0
    assert took < 10
