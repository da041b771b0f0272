"""The real server (uvicorn with servepath's HTTP protocol) on a loopback port, in this process,
and raw sockets to talk to it the way slow, greedy and vanishing clients do.

In-process so that a test can inject a model already loaded (no subprocess start-up, no
model load per test); the sockets, the protocol, the app and the backends are the real ones.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from servepath.config import Settings
from servepath.model.loaded import LoadedModel
from servepath.service import server as servepath_server
from servepath.service.app import ServepathApp, create_app


@dataclass
class LiveServer:
    app: ServepathApp
    port: int
    server: servepath_server.ServepathServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def live_server(settings: Settings, model: LoadedModel) -> Iterator[LiveServer]:
    """Serve ``model`` with ``settings`` on a free loopback port until the block ends."""
    sock = servepath_server.bind_listener("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    settings = settings.with_values(host="127.0.0.1", port=port)
    app = create_app(settings, model=model)
    # The test process keeps its own logging (pytest's capture).
    config = servepath_server.uvicorn_config(settings, app, app.gate, own_logging=False)
    server = servepath_server.ServepathServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(app, port, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket, limit: int = 1 << 22) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


class Responses:
    """Complete responses (Content-Length framed) read off one connection, in order."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = b""

    def _more(self) -> None:
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {self.buf[:200]!r}")
        self.buf += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            self._more()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return status, headers, rest[:length]


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One complete response, when nothing else is expected on the connection."""
    return Responses(s).next()


def status_of(data: bytes) -> int | None:
    return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None


def post(path: str, payload: object, extra: str = "") -> bytes:
    body = orjson.dumps(payload)
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


GET_LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)
