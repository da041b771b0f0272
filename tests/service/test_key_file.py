"""The key file as an attacker or an accident leaves it: a FIFO, a hung read, a file the whole
machine can read, a byte-order mark. None of them hangs the server or drops its keys."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servepath.errors import ConfigError
from servepath.service import auth
from servepath.service.auth import load_key_file
from tests.support import ServerProcess, serve

pytestmark = pytest.mark.timeout(60)

ALICE = "alice-key-" + "0123456789abcdef"


def keyfile(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_key_file(fifo)
    assert time.monotonic() - started < 2


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_key_file(tmp_path)


def test_a_read_that_hangs_gives_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hung(path: Path) -> bytes:
        release.wait(30)
        return b""

    monkeypatch.setattr(auth, "_read_regular", hung)
    try:
        with pytest.raises(ConfigError, match="not read within"):
            load_key_file(keyfile(tmp_path, f"alice:{ALICE}\n"), timeout=0.2)
    finally:
        release.set()


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    ring = load_key_file(keyfile(tmp_path, f"\ufeffalice:{ALICE}\r\n"))
    assert ring.names == ("alice",)


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True),
                                              (0o644, True), (0o604, True)])  # fmt: skip
def test_a_key_file_others_may_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="servepath.service.auth")
    load_key_file(keyfile(tmp_path, f"alice:{ALICE}\n", mode))
    text = caplog.text
    assert ("readable by group or others" in text) is warned
    assert ALICE not in text


def test_a_fifo_at_start_is_a_usage_error_not_a_hang(tmp_path: Path) -> None:
    import subprocess
    import sys

    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "servepath", "serve", "--port", "1", "--api-key-file", str(fifo)],
        capture_output=True, text=True, timeout=60,
        env={**base, "SERVEPATH_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr


@pytest.fixture
def keyed(tmp_path: Path, example_model_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    keys = keyfile(tmp_path, f"alice:{ALICE}\n")
    with serve(tmp_path, model=example_model_path, args=["--api-key-file", str(keys)]) as server:
        yield server, keys


def test_sighup_onto_a_fifo_keeps_serving_with_the_old_keys(
    keyed: tuple[ServerProcess, Path],
) -> None:
    server, keys = keyed
    keys.unlink()
    os.mkfifo(keys)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "kept the old API keys" not in server.log():
        assert time.monotonic() < deadline, server.log()
        answer = httpx.get(server.url + "/metrics", headers={"X-API-Key": ALICE}, timeout=5,
                           trust_env=False)  # fmt: skip
        assert answer.status_code == 200
    assert "not a regular file" in server.log()
    answer = httpx.get(server.url + "/metrics", headers={"X-API-Key": ALICE}, timeout=5,
                       trust_env=False)  # fmt: skip
    assert answer.status_code == 200
