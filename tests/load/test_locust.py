"""The written locustfile runs on Locust itself, headless, against a real `servepath serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.load.test_generator import _served_predictions
from tests.support import need

pytestmark = pytest.mark.timeout(120)


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVEPATH_", "AIP_", "LOCUST_")) and "proxy" not in k.lower()
    }


def _write(service_url: str, path: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servepath", "load", service_url, "--locustfile", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "locust -f" in result.stdout


def _run_locust(path: Path, host: str) -> subprocess.CompletedProcess[str]:
    locust = Path(sys.executable).parent / "locust"
    need(locust.exists(), "locust is not installed beside this Python (pip install locust)")
    return subprocess.run(
        [locust, "-f", str(path), "--headless", "-u", "5", "-r", "5", "-t", "4s", "--host", host,
         "--only-summary", "--stop-timeout", "5"],
        capture_output=True,
        text=True,
        timeout=90,
        env=_env(),
        cwd=path.parent,
    )  # fmt: skip


def test_the_written_locustfile_runs_headless_and_passes_a_met_slo(
    service_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "scenario.py"
    _write(service_url, path, "--slo", "p99=3s", "--error-budget", "1%", "--unique", "0.5")
    text = path.read_text()
    assert "class ServepathUser(HttpUser)" in text and "income" in text
    before = _served_predictions(service_url)
    result = _run_locust(path, service_url)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "SLO (p99 ≤ 3000 ms, errors ≤ 1%) met" in result.stdout + result.stderr
    assert _served_predictions(service_url) - before > 20


def test_the_locustfile_fails_the_run_when_the_slo_is_missed(
    service_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "strict.py"
    _write(service_url, path, "--slo", "p50=1us")
    result = _run_locust(path, service_url)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "missed" in result.stdout + result.stderr
