"""Swapping the model on real servers while callers keep calling: no request is lost.

Each test runs `servepath serve` as a process on loopback with a model repository (see
``versions_support``) and a client thread that keeps predicting (bounded in count and time)
while versions are loaded, refused, or swapped in by SIGHUP.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from servepath.model.loaded import load_model
from tests.service.versions_support import admin, build_repository, user, write_keys
from tests.support import serve

#: Requests the background caller sends at most, and for at most this long.
MAX_REQUESTS = 1_000_000
MAX_SECONDS = 280.0  # under the suite's 300 s per test: swaps on a loaded host are slow


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, example_model_path: Path) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo"), example_model_path)


class Caller(threading.Thread):
    """Predicts over keep-alive until stopped: every status and every version it saw."""

    def __init__(self, url: str, row: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.row, self.headers = url, row, headers
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.answers: list[tuple[float, str]] = []  # (when, version label)
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30) as client:
            while not self.stop.is_set() and len(self.statuses) < MAX_REQUESTS:
                if time.monotonic() > deadline:
                    break
                try:
                    response = client.post("/decisions", json=self.row, headers=self.headers)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.answers.append((time.monotonic(), response.headers["x-model-version"]))

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.statuses) < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.01)
        assert len(self.statuses) >= count, "the caller stopped making progress"

    def answered_after(self, when: float, count: int) -> list[str]:
        """The versions of the first ``count`` answers received after ``when`` (waits for them)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.is_alive():
            later = [v for t, v in self.answers if t > when]
            if len(later) >= count:
                return later
            time.sleep(0.01)
        raise AssertionError(f"the caller stopped making progress after {when}")

    def finish(self) -> None:
        self.stop.set()
        self.join(30)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return write_keys(tmp_path / "keys")


def _server_args(repository: Path, keys: Path, *extra: str) -> list[str]:
    return [
        "--model-repository", str(repository), "--model", "1",
        "--model-control", "explicit", "--api-key-file", str(keys), "--admin-keys", "admin",
        *extra,
    ]  # fmt: skip


def _example(repository: Path) -> dict[str, Any]:
    return load_model(repository / "1" / "model.joblib").schema.example()


def _load(url: str, version: str, **parameters: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v2/repository/models/fraud/load",
        json={"parameters": {"version": version, **parameters}},
        headers=admin(),
        timeout=300,
        trust_env=False,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_swaps_under_load_lose_no_request_and_the_new_version_answers_at_once(
    repository: Path, tmp_path: Path, keys: Path, workers: int
) -> None:
    args = _server_args(repository, keys, "--workers", str(workers))
    with serve(tmp_path, model=None, args=args) as server:
        caller = Caller(server.url, _example(repository), user())
        caller.start()
        try:
            caller.wait_for(50)
            # v1 → v2 → v1 (→ v2 with one worker): there and back, on every worker.
            swaps = ["2", "1", "2"] if workers == 1 else ["2", "1"]
            for version in swaps:
                response = _load(server.url, version)
                assert response.status_code == 200, response.text
                done = time.monotonic()
                body = response.json()
                assert body["serving"]["primary"]["label"] == version
                assert len(body["workers"]) == workers
                assert set(body["workers"].values()) == {"applied"}
                # Answers received 50 ms after the swap was acknowledged come from the new
                # version; wait for enough of them, however fast or slow the machine is.
                later = caller.answered_after(done + 0.05, 50)
                assert set(later) == {version}, (version, set(later))
        finally:
            caller.finish()
    assert caller.errors == []
    assert set(caller.statuses) == {200}


def test_a_broken_version_is_refused_while_callers_are_answered(
    repository: Path, tmp_path: Path, keys: Path
) -> None:
    repo = tmp_path / "fraud"
    shutil.copytree(repository, repo)
    (repo / "7").mkdir()
    (repo / "7" / "model.joblib").write_bytes(b"\x80\x04 torn in transit")
    with serve(tmp_path, model=None, args=_server_args(repo, keys)) as server:
        caller = Caller(server.url, _example(repo), user())
        caller.start()
        try:
            caller.wait_for(50)
            refused = _load(server.url, "7")
            assert refused.status_code == 400
            assert refused.json()["reason"] == "load_failed"
            seen = len(caller.statuses)
            caller.wait_for(seen + 50)
        finally:
            caller.finish()
        index = httpx.post(
            f"{server.url}/v2/repository/index", headers=admin(), trust_env=False
        ).json()
        assert {e["version"]: e["state"] for e in index}["7"] == "UNAVAILABLE"
    assert caller.errors == []
    assert set(caller.statuses) == {200}
    assert {v for _, v in caller.answers} == {"1"}


def test_sighup_swaps_in_a_changed_model_file_without_a_lost_request(
    repository: Path, tmp_path: Path
) -> None:
    artifact = tmp_path / "live" / "model.joblib"
    artifact.parent.mkdir()
    shutil.copy(repository / "1" / "model.joblib", artifact)
    first = load_model(artifact).version
    with serve(tmp_path, model=artifact) as server:
        caller = Caller(server.url, _example(repository), {})
        caller.start()
        try:
            caller.wait_for(50)
            server.process.send_signal(signal.SIGHUP)  # unchanged: nothing happens
            deadline = time.monotonic() + 60
            while "unchanged, still serving it" not in server.log():
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
            staged = artifact.with_name(".staged")
            shutil.copy(repository / "2" / "model.joblib", staged)
            staged.replace(artifact)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if caller.answers and caller.answers[-1][1] != first:
                    break
                time.sleep(0.05)
            seen = len(caller.statuses)
            caller.wait_for(seen + 20)
        finally:
            caller.finish()
    assert caller.errors == []
    assert set(caller.statuses) == {200}
    versions = [v for _, v in caller.answers]
    assert versions[0] == first and versions[-1] != first
