"""API keys on a real server process: who gets in where, what the log and metrics keep, and
the client commands that carry a key."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from servepath.cli import app
from tests.helpers.waiting import wait_until_answers
from tests.support import ServerProcess, serve

runner = CliRunner()
ALICE = "alice-key-" + "0123456789abcdef"
BOB = "bob-key-" + "fedcba9876543210"
NO_PROXY_ENV = {
    name: ""
    for base in ("http", "https", "all", "no")
    for name in (f"{base}_proxy", f"{base.upper()}_PROXY")
}
PROTECTED = ["/openapi.json", "/docs", "/metrics", "/_path", "/v2/models/decision"]
OPEN = ["/", "/v2/health/live", "/v2/health/ready", "/v2"]


def _get(
    server: ServerProcess, path: str, key: str | None = None, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.get(server.url + path, headers=headers, timeout=10, trust_env=False)


def _predict(server: ServerProcess, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(
        server.url + "/decisions",
        content=b'{"this body": "is never read without a key"',
        headers={"content-type": "application/json", **headers},
        timeout=10,
        trust_env=False,
    )


@pytest.fixture()
def keyed(tmp_path: Path, example_model_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# who may call\nalice:{ALICE}\n")
    args = ["--api-key-file", str(keys)]
    with serve(tmp_path, model=example_model_path, args=args) as server:
        yield server, keys


def test_predictions_and_operator_pages_need_a_key_and_health_stays_open(keyed) -> None:
    server, _ = keyed
    missing = _predict(server)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="servepath"'
    assert missing.json()["reason"] == "unauthorized" and "x-request-id" in missing.headers
    wrong = _predict(server, "not-the-key-0123456789")
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    for path in PROTECTED:
        assert _get(server, path).status_code == 401, path
        assert _get(server, path, ALICE).status_code == 200, path
    for path in OPEN:
        assert _get(server, path).status_code == 200, path

    example = _get(server, "/openapi.json", ALICE).json()
    body = example["paths"]["/decisions"]["post"]["requestBody"]["content"]["application/json"]
    for headers in ({"Authorization": f"Bearer {ALICE}"}, {"X-API-Key": ALICE}):
        answered = httpx.post(
            server.url + "/decisions", json=body["example"], headers=headers, trust_env=False
        )
        assert answered.status_code == 200, answered.text


def test_the_log_and_metrics_name_the_key_and_never_hold_it(keyed) -> None:
    server, _ = keyed
    example = _get(server, "/openapi.json", ALICE).json()
    body = example["paths"]["/decisions"]["post"]["requestBody"]["content"]["application/json"]
    sent = httpx.post(
        server.url + "/decisions",
        json=body["example"],
        headers={"X-API-Key": ALICE, "X-Request-ID": "keyed-1"},
        trust_env=False,
    )
    assert sent.status_code == 200
    _predict(server, "guess-guess-guess-guess")
    metrics = _get(server, "/metrics", ALICE).text
    assert 'servepath_api_key_requests_total{key="alice",outcome="accepted"}' in metrics
    assert 'servepath_api_key_requests_total{key="",outcome="invalid"} 1.0' in metrics
    assert server.terminate() == 0
    database = server.data_dir / "predictions.sqlite3"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT api_key FROM requests WHERE request_id = 'keyed-1'").fetchall()
    assert rows == [("alice",)]
    assert ALICE.encode() not in database.read_bytes()
    assert ALICE not in metrics and ALICE not in server.log()


def test_sighup_rereads_the_key_file_and_a_bad_file_keeps_the_old_keys(keyed) -> None:
    server, keys = keyed
    keys.write_text(f"bob:{BOB}\n")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while _get(server, "/metrics", BOB).status_code != 200:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert _get(server, "/metrics", ALICE).status_code == 401
    keys.write_text("bob:short\n")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "kept the old API keys" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert _get(server, "/metrics", BOB).status_code == 200
    assert "short" not in server.log().split("kept the old API keys", 1)[1].split("\n")[0]


def test_protected_health_and_opened_routes(tmp_path: Path, example_model_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice:{ALICE}\n")
    args = ["--api-key-file", str(keys), "--protect-health", "--open-routes", "/metrics,/docs"]
    with serve(tmp_path, model=example_model_path, args=args, wait=False) as server:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(server, "/", ALICE).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.process.poll() is None, server.log()
            time.sleep(0.1)
        for path in OPEN:
            assert _get(server, path).status_code == 401, path
            assert _get(server, path, ALICE).status_code == 200, path
        assert _get(server, "/metrics").status_code == 200
        assert _get(server, "/docs").status_code == 200
        assert _get(server, "/_path").status_code == 401


def test_request_load_and_doctor_carry_the_key(keyed) -> None:
    server, _ = keyed
    url = server.url + "/decisions"
    refused = runner.invoke(app, ["request", url, "--json"], env=NO_PROXY_ENV)
    assert refused.exit_code == 1
    data = json.loads(refused.stdout)
    assert data["status"] == 401 and any("--api-key" in hint for hint in data["hints"])
    flag = runner.invoke(app, ["request", url, "--api-key", ALICE, "--json"], env=NO_PROXY_ENV)
    assert flag.exit_code == 0, flag.output
    from_env = runner.invoke(
        app, ["request", url, "--json"], env={**NO_PROXY_ENV, "SERVEPATH_API_KEY": ALICE}
    )
    assert from_env.exit_code == 0, from_env.output

    load = runner.invoke(
        app,
        ["load", url, "--concurrency", "2", "--requests", "20", "--api-key", ALICE, "--json"],
        env=NO_PROXY_ENV,
    )
    assert load.exit_code == 0, load.output
    report = json.loads(load.stdout)
    assert report["ok"] and report["sent"] == 20 and report["failed"] == 0, report
    unkeyed = runner.invoke(
        app, ["load", url, "--concurrency", "2", "--requests", "5", "--json"], env=NO_PROXY_ENV
    )
    assert unkeyed.exit_code == 1 and "401" in unkeyed.stdout

    doctor = ["doctor", url, "--json", "--large-kb", "0", "--timeout", "1"]
    without = json.loads(runner.invoke(app, doctor, env=NO_PROXY_ENV).stdout)
    assert without["cause"] == "unauthorized", without["cause"]
    with_key = json.loads(
        runner.invoke(app, [*doctor, "--api-key", ALICE], env=NO_PROXY_ENV).stdout
    )
    assert with_key["ok"], with_key["cause"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("alice:short\n", "line 1: the key of 'alice' is 5 characters"),
        (f"alice:{ALICE}\nalice:{BOB}\n", "line 2: the name 'alice' is given twice"),
        ("", "holds no keys"),
    ],
)
def test_a_bad_key_file_stops_the_start_with_a_usage_error(
    tmp_path: Path, content: str, message: str
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(content)
    result = runner.invoke(
        app,
        ["serve", "--port", "1", "--api-key-file", str(keys), "--json"],
        env={"SERVEPATH_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 2, result.output
    failure = json.loads(result.stdout)
    assert message in failure["message"]
    assert BOB not in failure["message"] and ALICE not in failure["message"]


def test_the_server_warns_when_it_listens_beyond_loopback_with_no_keys(
    tmp_path: Path, example_model_path: Path
) -> None:
    with serve(tmp_path, model=example_model_path, host="0.0.0.0") as server:
        wait_until_answers(server.url + "/")
        assert "--api-key-file FILE locks them" in server.log()
