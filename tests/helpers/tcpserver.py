"""A TCP server on loopback that runs a script on each connection: a server that greets,
closes at once, or holds the line without a word — for tests of probes that read bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Handler = Callable[[socket.socket], None]


@contextlib.contextmanager
def scripted_server(handle: Handler, host: str = "127.0.0.1") -> Iterator[int]:
    """Accept on ``host`` (IPv4 or IPv6) and run ``handle`` on each connection in a thread;
    the connection is closed when ``handle`` returns. Yields the port."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            handle(conn)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def hold(conn: socket.socket) -> None:
    """Say nothing; read until the client goes away."""
    while conn.recv(4096):
        pass


def close_at_once(conn: socket.socket) -> None:
    """Accept and close without reading or writing."""


def greet(banner: bytes, delay: float = 0.0) -> Handler:
    """Send ``banner`` unasked (after ``delay`` seconds), then hold the line."""

    def handle(conn: socket.socket) -> None:
        if delay:
            threading.Event().wait(delay)
        conn.sendall(banner)
        hold(conn)

    return handle
