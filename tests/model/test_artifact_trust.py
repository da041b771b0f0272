"""A joblib/pickle artifact is a program: who may hand one to the server, and what it is told.

A file whose ``__reduce__`` writes a marker shows when code ran: never for a pinned file
whose digest differs, never for a plain http:// URL nobody allowed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from servepath.config import Settings
from servepath.errors import ConfigError, ModelDigestMismatch, ModelLoadError
from servepath.model.source import ModelSource, check_pin, parse_sha256, runs_code
from servepath.model.storage import fetch_model

pytestmark = pytest.mark.timeout(120)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def evil_joblib(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.joblib"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    return path, marker


def run_cli(
    tmp_path: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    return subprocess.run(
        [sys.executable, "-m", "servepath", *argv],
        capture_output=True,
        text=True,
        timeout=90,
        env={**base, "SERVEPATH_DATA_DIR": str(tmp_path / "data"), **(env or {})},
    )


def test_a_pinned_model_whose_digest_differs_never_loads_and_serve_exits_2(
    tmp_path: Path,
) -> None:
    path, marker = evil_joblib(tmp_path)
    proc = run_cli(tmp_path, "serve", "--port", "1", "--model", str(path),
                   "--model-sha256", "0" * 64, "--store", "off")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "SHA-256" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_pin_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    path, marker = evil_joblib(tmp_path)
    proc = run_cli(tmp_path, "serve", "--port", "1", "--model", str(path), "--store", "off",
                   env={"SERVEPATH_MODEL_SHA256": "f" * 64})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert not marker.exists()


def test_a_plain_http_model_url_is_refused_unless_allowed(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/model.joblib"
    with pytest.raises(ConfigError, match="http://"):
        Settings(model_uri=url)
    with pytest.raises(ConfigError, match="http://"):
        Settings.from_env({"SERVEPATH_MODEL": url})
    assert Settings(model_uri=url, allow_http_model=True).model_uri == url
    assert Settings.from_env({"SERVEPATH_MODEL": url, "SERVEPATH_ALLOW_HTTP_MODEL": "1"})
    proc = run_cli(tmp_path, "serve", "--port", "1", "--model", url)
    assert proc.returncode == 2, proc.stderr
    assert "http://" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/m.joblib", "HTTP://127.0.0.1:9/m.joblib"])
def test_the_fetcher_refuses_plain_http_before_it_connects(tmp_path: Path, url: str) -> None:
    # The same check guards every request the fetcher makes, a redirect's target included.
    with pytest.raises(ModelLoadError, match="plain http"):
        fetch_model(url, tmp_path)


def test_model_info_says_a_pickle_runs_code_before_loading_it(tmp_path: Path) -> None:
    path, marker = evil_joblib(tmp_path)
    proc = run_cli(tmp_path, "model", "info", str(path))
    assert "runs the code it holds" in proc.stderr and "ONNX" in proc.stderr
    assert marker.exists()  # and so it did: the warning is the truth
    marker.unlink()
    pinned = run_cli(tmp_path, "model", "info", str(path), "--sha256", "1" * 64)
    assert pinned.returncode == 2 and not marker.exists(), pinned.stderr


def test_a_matching_pin_passes_and_digests_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    check_pin(path, parse_sha256(f"sha256:{digest.upper()}"))
    assert ModelSource("path", str(path)).local_path(tmp_path, sha256=digest) == path
    with pytest.raises(ModelDigestMismatch):
        ModelSource("path", str(path)).local_path(tmp_path, sha256="a" * 64)
    assert Settings(model_path=path, model_sha256=digest.upper()).model_sha256 == digest
    with pytest.raises(ConfigError, match="64 hex"):
        Settings(model_sha256="abc")
    assert runs_code("m.joblib") and runs_code("M.PKL") and not runs_code(path)
