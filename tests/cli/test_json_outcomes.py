"""`--json` prints a JSON document on every outcome, failures and bad usage included, with
the same named failure the table shows; exit codes stay 0 (ok), 1 (a problem), 2 (usage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from servepath.cli import app
from tests.support import free_port

runner = CliRunner()
NO_PROXY = {k: "" for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                            "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")}  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    result = runner.invoke(app, list(args), env={**NO_PROXY, **(env or {})})
    document, _ = json.JSONDecoder().raw_decode(result.stdout)
    return result.exit_code, document, result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["ports", "127.0.0.1", "not-a-port", "--json"],
        ["trace", "127.0.0.1", "--protocol", "icmp", "--port", "80", "--json"],
        ["dns", "example.test", "--timeout", "0", "--json"],
        ["tls", "localhost:0", "--json"],
        ["http", "ftp://localhost/", "--json"],
        ["http", "http://localhost/", "-H", "no-colon", "--json"],
        ["request", "127.0.0.1:8080", "--json"],
        ["load", "http://127.0.0.1:1", "--rate", "-3", "--json"],
        ["log", "--since", "yesterday", "--json"],
        ["regions", "matrix", "--regions", "no-such-region", "--json"],
        ["listen", "70000", "--json"],
        ["ports", "127.0.0.1", "--timeout", "abc", "--json"],  # rejected by the parser itself
    ],
)
def test_bad_usage_under_json_is_a_json_document_and_exit_2(args: list[str]) -> None:
    code, document, _ = run(*args)
    assert code == 2
    assert document["ok"] is False and document["failure"] == "usage"
    assert document["message"]


def test_a_name_that_does_not_resolve_is_a_json_failure_for_ports_and_trace() -> None:
    for command in ("ports", "trace"):
        code, document, _ = run(command, "no-such-host.invalid", "--json")
        assert code == 1, command
        assert document["ok"] is False and document["failure"] == "dns", command
        assert "no-such-host.invalid" in document["message"]


def test_ports_still_answers_a_list_when_it_ran() -> None:
    code, document, _ = run("ports", "127.0.0.1", str(free_port()), "--json")
    assert code == 1
    assert isinstance(document, list) and document[0]["state"] == "closed"


def test_a_missing_prediction_log_is_a_json_failure(tmp_path: Path) -> None:
    code, document, _ = run("log", "--store", f"sqlite://{tmp_path}/none.sqlite3", "--json")
    assert code == 1
    assert document["failure"] == "store_unavailable" and "no such file" in document["message"]


def test_a_model_that_cannot_load_is_a_json_failure(tmp_path: Path) -> None:
    code, document, _ = run("model", "info", str(tmp_path / "missing.joblib"), "--json")
    assert code == 1
    assert document["failure"] == "model_load"


def test_http_failures_are_the_report_with_its_error() -> None:
    port = free_port()
    code, document, _ = run("http", f"http://[::1]:{port}/", "--json")
    assert code == 1
    assert document["error"]["kind"] == "refused"
    assert document["hops"][0]["remote"] == f"[::1]:{port}"


def test_tls_failures_are_the_report_with_its_failure() -> None:
    code, document, _ = run("tls", f"127.0.0.1:{free_port()}", "--json", "--timeout", "1")
    assert code == 1
    assert document["ok"] is False and document["failure"] == "refused"


def test_the_table_and_the_json_name_the_same_failure() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/decisions"
    code, document, _ = run("request", url, "--json")
    table = runner.invoke(app, ["request", url], env=NO_PROXY)
    assert code == table.exit_code == 1
    assert f"{document['failure']}: {document['message']}" in table.output
