"""The overload benchmark's clients: the open-loop generator (``openloop.c``, built here), health
probes on new connections (as the kubelet does), slow-header connections and an endless head.

Python cannot offer several times a fast server's capacity from one core; the C generator
does, open loop (each request due at a fixed time, its latency counted from then), with one
thread and epoll. Probes and attacks are plain sockets in threads.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
#: Outcomes besides HTTP statuses, as openloop.c writes them.
TIMEOUT, CONNECT_ERROR, CLOSED = 0, -1, -2
_RECORD = struct.Struct("<ddii")


def build_openloop(directory: Path) -> Path:
    """Compile openloop.c into ``directory`` (gcc -O2); the binary's path."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("the overload benchmark needs a C compiler (apt-get install gcc)")
    binary = directory / "openloop"
    subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(binary), str(HERE / "openloop.c")],
        check=True,
        capture_output=True,
    )
    return binary


@dataclass(frozen=True)
class Result:
    """One request: when it was due (seconds from the start), its latency, its outcome."""

    due: float
    latency: float
    status: int
    retry_after: bool


@dataclass(frozen=True)
class OpenLoopRun:
    results: tuple[Result, ...]
    sent: int
    max_lag: float  # how late the generator itself sent a request (its own saturation)
    connections_opened: int

    def with_status(self, status: int) -> list[Result]:
        return [r for r in self.results if r.status == status]


def write_requests(path: Path, requests: Sequence[bytes]) -> None:
    with path.open("wb") as f:
        for request in requests:
            f.write(struct.pack("<I", len(request)) + request)


def run_openloop(
    binary: Path,
    *,
    port: int,
    rate: float,
    duration: float,
    requests_file: Path,
    out_file: Path,
    timeout: float = 10.0,
    max_connections: int = 256,
    core: int | None = 0,
) -> OpenLoopRun:
    argv = [str(binary), "127.0.0.1", str(port), f"{rate:.1f}", f"{duration:g}", f"{timeout:g}"]
    argv += [str(max_connections), str(requests_file), str(out_file)]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout + 60)
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed: {done.stderr.strip()}")
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    data = out_file.read_bytes()
    results = tuple(
        Result(due, latency, status, bool(retry))
        for due, latency, status, retry in _RECORD.iter_unpack(data[: len(data) // 24 * 24])
    )
    return OpenLoopRun(
        results,
        int(summary["sent"]),
        float(summary["max_lag_s"]),
        int(summary["connections_opened"]),
    )


def http_post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- probes --------------------------------------------------------------------------------


def probe_once(port: int, path: str, timeout: float) -> tuple[float, int]:
    """GET ``path`` on a new connection: (seconds, status); status 0 on timeout or error."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.perf_counter() - started)))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    except (OSError, ValueError):
        status = 0
    return time.perf_counter() - started, status


@dataclass
class Prober:
    """Probe ``paths`` every ``interval`` s in a thread, each on a new connection."""

    port: int
    paths: Sequence[str]
    interval: float = 0.1
    timeout: float = 2.0
    samples: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples = {p: [] for p in self.paths}

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                at = time.perf_counter()
                took, status = probe_once(self.port, path, self.timeout)
                self.samples[path].append((at, took, status))
            self._stop.wait(self.interval)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


# --- slow clients --------------------------------------------------------------------------


@dataclass
class SlowHeads:
    """``count`` connections that send the start of a request head and then nothing."""

    port: int
    count: int
    opened: list[tuple[socket.socket, float]] = field(default_factory=list)
    closed_after: list[float] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)
    failed_to_open: int = 0

    def open(self) -> None:
        for i in range(self.count):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.sendall(f"GET /slow-{i} HTTP/1.1\r\nHost: slow\r\nX-Wait: ".encode())
            except OSError:
                self.failed_to_open += 1
                continue
            s.setblocking(False)
            self.opened.append((s, time.perf_counter()))

    def watch(self, until: float) -> None:
        """Note when each connection is closed by the server (and what it said) until then."""
        import selectors

        sel = selectors.DefaultSelector()
        for s, opened in self.opened:
            sel.register(s, selectors.EVENT_READ, opened)
        while sel.get_map() and time.perf_counter() < until:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    status = int(data[9:12])
                    self.answers[status] = self.answers.get(status, 0) + 1
                    with contextlib.suppress(OSError):
                        more = s.recv(65536)
                        if more:
                            continue
                if not data or data.startswith(b"HTTP/1.1 "):
                    self.closed_after.append(time.perf_counter() - key.data)
                    sel.unregister(s)
                    s.close()
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)

    def close(self) -> None:
        for s, _ in self.opened:
            with contextlib.suppress(OSError):
                s.close()


@dataclass
class EndlessHead:
    """One connection sending a header line that never ends, as fast as it is read."""

    port: int
    sent: int = 0
    answer: bytes = b""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        chunk = b"a" * 65536
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: endless\r\nX-Endless: ")
                    self.sent += 40
                    while not self._stop.is_set():
                        s.sendall(chunk)
                        self.sent += len(chunk)
            except OSError:
                pass  # cut off: start again, for as long as the phase lasts
            time.sleep(0.05)

    def __enter__(self) -> EndlessHead:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
