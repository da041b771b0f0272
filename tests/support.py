"""Helpers shared by the whole suite: requirement checks that fail under CI instead of skipping."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("SERVEPATH_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false, or fail under SERVEPATH_REQUIRE_ALL=1.

    CI sets SERVEPATH_REQUIRE_ALL=1 so that a missing server, binary or privilege cannot
    hide behind a skip.
    """
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required for this test but missing: {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (ip netns, iptables)")


# --- a real `servepath serve` process -------------------------------------------------

import contextlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.helpers.waiting import wait_until_answers  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    port: int
    process: subprocess.Popen[str]
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    *,
    model: Path | None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    health: str = "/",
    wait: bool = True,
    extra_pythonpath: Sequence[Path] = (),
) -> Iterator[ServerProcess]:
    """Run `servepath serve` as a real process on loopback until the block ends (SIGTERM)."""
    port = port or free_port(host)
    data_dir = tmp_path / f"data-{port}"
    log_path = tmp_path / f"server-{port}.log"
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVEPATH_", "AIP_")) and k.lower() not in _PROXY_VARS
    }
    base_env["SERVEPATH_DATA_DIR"] = str(data_dir)
    if extra_pythonpath:
        base_env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_pythonpath)
    base_env.update(env or {})
    command = [sys.executable, "-m", "servepath", "serve", "--host", host, "--port", str(port)]
    if model is not None:
        command += ["--model", str(model)]
    command += list(args)
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=base_env, text=True
        )
    # Call a wildcard bind on loopback; IPv6 addresses go in brackets.
    dial = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    dial = f"[{dial}]" if ":" in dial else dial
    server = ServerProcess(f"http://{dial}:{port}", port, process, data_dir, log_path, base_env)
    try:
        if wait:
            try:
                wait_until_answers(server.url + health, timeout=60, process=process)
            except TimeoutError:
                process.kill()
                raise RuntimeError(f"server did not become healthy:\n{server.log()}") from None
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@contextlib.contextmanager
def tinyproxy(tmp_path: Path, *, allow: str = "127.0.0.1") -> Iterator[tuple[str, Path]]:
    """A real forward proxy (Debian's tinyproxy) on loopback; yields its URL and its log file.

    ``allow``: the clients it serves (another address than loopback's: it refuses us)."""
    binary = need_binary("tinyproxy")
    port = free_port()
    log_path = tmp_path / f"tinyproxy-{port}.log"
    conf = tmp_path / f"tinyproxy-{port}.conf"
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\nMaxClients 50\n"
        f'Allow {allow}\nViaProxyName "tinyproxy"\n'
    )
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [binary, "-d", "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"tinyproxy did not start: {log_path.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
