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
        extra_pythonpath=[TESTS_DIR.parent],
    ) as s:
        results: list[int | str] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            try:
                r = httpx.post(s.url + "/decisions", json={"x": float(i), "y": 1.0}, timeout=30)
                outcome: int | str = r.status_code
            except httpx.HTTPError as exc:
                outcome = repr(exc)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.4)  # all eight are in flight: one in the model, seven queued behind it
        started = time.monotonic()
        s.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        code = s.process.wait(30)
        took = time.monotonic() - started
    assert results == [200] * 8, results
    assert code == 0
    assert took < 15


def test_new_connections_are_refused_once_draining(tmp_path: Path, slow_model: Path) -> None:
    with serve(
        tmp_path,
        model=slow_model,
        args=["--store", "off", "--cache", "off"],
        extra_pythonpath=[TESTS_DIR.parent],
    ) as s:
        inflight = threading.Thread(
            target=lambda: httpx.post(s.url + "/decisions", json={"x": 1.0, "y": 1.0}, timeout=30)
        )
        inflight.start()
        time.sleep(0.3)
        s.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(s.url + "/", timeout=2)
        inflight.join(30)
        assert s.process.wait(30) == 0


def test_metrics_are_summed_over_several_workers(tmp_path: Path, example_model_path: Path) -> None:
    with serve(tmp_path, model=example_model_path, args=["--workers", "2", "--store", "off"]) as s:
        # serve() returned on the first healthy answer. A worker still loading its model does
        # not accept from the shared socket, so from here on no request may see 503 "loading".
        pids = set()
        for i in range(40):
            with httpx.Client(timeout=10) as c:  # a new connection each time
                r = c.post(s.url + "/decisions", json={**_example(s.url), "income": 40000.0 + i})
                assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            with httpx.Client(timeout=10) as c:
                pids.add(c.get(s.url + "/_path").json()["pid"])
        text = httpx.get(s.url + "/metrics").text
    match = re.search(
        r'servepath_http_requests_total\{method="POST",route="/decisions",status="200"\} (\S+)',
        text,
    )
    assert match, text
    assert float(match.group(1)) == 40.0
    assert len(pids) == 2, "the kernel spreads connections over both workers"


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
    [("--cache", "mongodb://x/[0]", "cache"), ("--store", "mysql://x", "store")],
)
def test_bad_backend_url_is_a_usage_error_not_a_traceback(
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
