"""Peers' virtualenvs, and starting, checking and stopping a stack's server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench.stacks import (
    ANSWER_TOLERANCE,
    CEILING,
    HOST,
    INCOME_PLACEHOLDER,
    PEERS_DIR,
    ROOT,
    SERVEPATH,
    TUTORIAL,
    VENVS_DIR,
    Stack,
    answer_probability,
)

log = logging.getLogger(__name__)


class PeerUnavailable(Exception):
    """A stack could not be installed, started, or did not answer correctly."""


def requirements_file(peer: str) -> Path:
    return PEERS_DIR / "requirements" / f"{peer}.txt"


def ensure_venv(peer: str, *, install: bool, base_python: str) -> Path:
    """The peer's interpreter, installing its pinned requirements when they changed."""
    venv = VENVS_DIR / peer
    python = venv / "bin" / "python"
    reqs = requirements_file(peer)
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()
    stamp = venv / ".bench-installed"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    if not install:
        raise PeerUnavailable(f"not installed in {venv} (run without --no-install)")
    log.info("installing %s into %s (pins: %s) ...", peer, venv, reqs.relative_to(ROOT))
    if not python.exists():
        _run_install([base_python, "-m", "venv", str(venv)], f"creating {venv}")
    _run_install(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(reqs),
        ],
        f"pip install -r {reqs.relative_to(ROOT)}",
    )
    stamp.write_text(digest + "\n")
    return python


def _run_install(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"{what} took over 20 minutes") from exc
    if done.returncode != 0:
        # pip's notes on unreadable find-links locations say nothing about the failure.
        lines = [
            ln
            for ln in (done.stderr + done.stdout).splitlines()
            if not ln.startswith("WARNING: Location")
        ]
        raise PeerUnavailable(f"{what} failed: " + " | ".join(lines[-6:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    stack: Stack
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    #: The server's processes seen so far; psutil handles survive PID reuse, unlike numbers.
    procs: dict[int, Any] = field(default_factory=dict)

    def track(self) -> None:
        """Note the server's current process tree (workers come and go while it starts)."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in found:
            self.procs.setdefault(proc.pid, proc)

    def cpu_seconds(self) -> float:
        """User and system CPU time of the tree's live processes."""
        import psutil

        self.track()
        total = 0.0
        for proc in self.procs.values():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.stack.path}"

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(ln.strip() for ln in text[-lines:] if ln.strip())


def server_command(
    stack: Stack, *, python: str, port: int, model: Path, work: Path
) -> tuple[list[str], Path, dict[str, str]]:
    """The command, working directory and extra environment that start ``stack``."""
    bindir = Path(python).parent
    env: dict[str, str] = {}
    if stack.name == SERVEPATH:
        env["SERVEPATH_DATA_DIR"] = str(work / "servepath-data")
        argv = [python, "-m", "servepath", "serve", "--model", str(model)]
        return [*argv, "--host", HOST, "--port", str(port)], ROOT, env
    if stack.name == CEILING:
        return (
            [python, str(PEERS_DIR / "ceiling.py"), "--host", HOST, "--port", str(port)],
            ROOT,
            env,
        )
    if stack.name == TUTORIAL:
        env["MODEL_PATH"] = str(model)
        argv = [
            str(bindir / "uvicorn"),
            "tutorial_fastapi:app",
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        return argv, PEERS_DIR, env
    if stack.name == "bentoml":
        env.update(
            MODEL_PATH=str(model),
            BENTOML_HOME=str(work / "bentoml-home"),
            BENTOML_DO_NOT_TRACK="True",
        )
        argv = [str(bindir / "bentoml"), "serve", "bentoml_service:LoanDecisions"]
        return [*argv, "--host", HOST, "--port", str(port)], PEERS_DIR, env
    if stack.name == "mlserver":
        folder = work / "mlserver"
        folder.mkdir(parents=True, exist_ok=True)
        settings = json.loads((PEERS_DIR / "mlserver" / "settings.json").read_text())
        settings.update(host=HOST, http_port=port, grpc_port=free_port(), metrics_port=free_port())
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        shutil.copy(PEERS_DIR / "mlserver" / "model-settings.json", folder / "model-settings.json")
        shutil.copy(model, folder / "model.joblib")
        return [str(bindir / "mlserver"), "start", str(folder)], folder, env
    if stack.name == "litserve":
        argv = [python, str(PEERS_DIR / "litserve_server.py"), "--model", str(model)]
        return [*argv, "--host", HOST, "--port", str(port)], work, env
    raise ValueError(f"unknown stack {stack.name!r}")


def child_env(extra: Mapping[str, str], home: Path) -> dict[str, str]:
    """A plain environment for a server: no proxies, no servepath or Vertex settings."""
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@contextlib.contextmanager
def running(
    stack: Stack, *, python: str, model: Path, work: Path, core: int | None, timeout: float
) -> Iterator[Server]:
    """Start ``stack`` pinned to ``core``, wait until it answers, and always stop it."""
    port = free_port()
    argv, cwd, extra = server_command(stack, python=python, port=port, model=model, work=work)
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    home = work / "home"
    home.mkdir(exist_ok=True)
    log_path = work / f"{stack.name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(extra, home),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(stack, port, process, log_path)
    try:
        wait_ready(server, timeout)
        server.track()
        yield server
    finally:
        stop(server)


def wait_ready(server: Server, timeout: float) -> None:
    url = f"http://{HOST}:{server.port}{server.stack.health}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PeerUnavailable(
                f"exited with status {server.process.returncode} while starting: "
                + server.log_tail()
            )
        server.track()
        try:
            with _no_proxy_open(url, None, 2.0) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise PeerUnavailable(f"not ready within {timeout:.0f} s ({last}): {server.log_tail()}")


def _no_proxy_open(url: str, body: bytes | None, timeout: float) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return opener.open(urllib.request.Request(url, data=body, headers=headers), timeout=timeout)


def check_answer(server: Server, body_template: str, expected: float | None) -> float | None:
    """POST the example applicant once; the probability it answered, checked when expected."""
    body = body_template.replace(INCOME_PLACEHOLDER, "52000.0").encode()
    try:
        with _no_proxy_open(server.url, body, 30.0) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise PeerUnavailable(f"the example request got HTTP {exc.code}: {detail}") from exc
    except (OSError, ValueError) as exc:
        raise PeerUnavailable(f"the example request failed: {exc}") from exc
    if not server.stack.has_model:
        return None
    try:
        got = answer_probability(server.stack.fmt, data)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PeerUnavailable(f"unexpected answer shape: {str(data)[:200]}") from exc
    if expected is not None and abs(got - expected) > ANSWER_TOLERANCE:
        raise PeerUnavailable(
            f"answered probability {got} for the example, scikit-learn says {expected}"
        )
    return got


def stop(server: Server, grace: float = 10.0) -> None:
    """Stop the server and everything it started: SIGINT (every stack here drains on it; some
    leave workers behind on SIGTERM), then SIGTERM, then SIGKILL what is still alive."""
    import psutil

    server.track()
    procs = list(server.procs.values())
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGINT)
    _, alive = psutil.wait_procs(procs, timeout=grace / 2)
    # Some stacks put workers in sessions of their own; their parent normally stops them.
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=grace / 2)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(5)
