"""A model that does not load stops the server non-zero, unless asked to stay up unready."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support import serve


@pytest.fixture
def broken_model(tmp_path: Path) -> Path:
    path = tmp_path / "bad.joblib"
    path.write_bytes(b"this is no joblib file")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_does_not_load_stops_the_server_non_zero_after_saying_why(
    tmp_path: Path, broken_model: Path, workers: int
) -> None:
    args = ["--store", "off", "--workers", str(workers)]
    with serve(tmp_path, model=broken_model, args=args, wait=False) as server:
        code = server.process.wait(120)
        log = server.log()
    assert code == 1, log
    # The banner first, then the failure, so that it is the last thing an operator reads.
    assert "model failed to load" in log, log
    assert log.rindex("model failed to load") > log.index("servepath listening on"), log
    assert "bad.joblib" in log[log.rindex("model failed to load") :], log


def test_on_model_failure_stay_keeps_the_process_up_and_unready(
    tmp_path: Path, broken_model: Path
) -> None:
    args = ["--store", "off", "--on-model-failure", "stay"]
    with serve(tmp_path, model=broken_model, args=args, wait=False) as server:
        deadline = time.monotonic() + 60
        while "serving on, unready" not in server.log():
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        health = httpx.get(server.url + "/", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert server.process.poll() is None
        assert server.terminate() == 0


def test_an_unknown_failure_policy_is_a_usage_error(tmp_path: Path, broken_model: Path) -> None:
    args = ["--on-model-failure", "retry"]
    with serve(tmp_path, model=broken_model, args=args, wait=False) as server:
        code = server.process.wait(60)
    assert code == 2
