"""`servepath load` as a user runs it: a real process against a real `servepath serve`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.timeout(120)


def _load(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "servepath", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_a_healthy_run_exits_0_and_writes_json_csv_and_plot(
    service_url: str, tmp_path: Path
) -> None:
    series, picture = tmp_path / "series.csv", tmp_path / "latency.png"
    result = _load(
        service_url,
        "--rate", "100",
        "--duration", "2s",
        "--slo", "p99=2s",
        "--json",
        "--csv", str(series),
        "--plot", str(picture),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["ok"] and report["mode"] == "open"
    assert report["sent"] == 200 == report["succeeded"] + report["failed"]
    assert report["url"].endswith("/decisions")  # the predict route was added to the base URL
    assert report["slo"]["met"]
    assert result.stderr == ""  # no progress line when the output is JSON / not a terminal

    with series.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["second"]) for r in rows] == [0, 1]
    assert sum(int(r["sent"]) for r in rows) == 200
    assert all(float(r["p99_ms"]) > 0 for r in rows)

    import matplotlib.image

    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(picture)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600


def test_the_table_labels_both_latencies(service_url: str) -> None:
    result = _load(service_url, "--concurrency", "2", "--requests", "50")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "from intended send" in result.stdout
    assert "service time (from actual send)" in result.stdout
    assert "50 sent = 50 succeeded + 0 failed" in result.stdout


def test_a_missed_slo_exits_1(service_url: str) -> None:
    result = _load(
        service_url, "--concurrency", "2", "--requests", "50", "--slo", "p99=1us", "--json"
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["slo"]["met"] is False and "latency" in report["slo"]["failures"]
    assert report["problems"][0].startswith("SLO missed")


def test_rejected_requests_are_counted_by_status_and_exit_1(
    service_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"income": "lots"}\n')
    result = _load(
        service_url, "--concurrency", "2", "--requests", "20", "--data", str(data), "--json"
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == 20 == report["sent"]
    assert sum(report["errors"]["4xx"].values()) == 20


def test_an_unreachable_server_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    result = _load(f"http://127.0.0.1:{free_port()}", "--rate", "10", "--duration", "1")
    assert result.returncode == 1
    assert "openapi.json" in result.stderr and "Traceback" not in result.stderr


def test_connection_failures_are_classed_as_connect(tmp_path: Path) -> None:
    data = tmp_path / "one.json"
    data.write_text('{"income": 1.0}')
    url = f"http://127.0.0.1:{free_port()}/decisions"
    result = _load(url, "--rate", "20", "--duration", "1", "--data", str(data), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["errors"]["connect"] == report["sent"] == 20


@pytest.mark.parametrize(
    "args",
    [
        ["--rate", "10", "--concurrency", "2"],
        ["--rate", "10", "--slo", "p99"],
        ["--rate", "10", "--duration", "forever"],
        ["--find-max"],
        ["--rate", "-3"],
        ["--concurrency", "0"],
    ],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = _load(f"http://127.0.0.1:{free_port()}", *args)
    assert result.returncode == 2, result.stdout + result.stderr
