"""What the HTTPS listener costs and keeps: memory after bursts of connections that never
finish a handshake, and CPU per request and per handshake, this tree beside another.

    .venv/bin/python bench/tls_listener.py [--compare OTHER_SRC_DIR] [--cycles 5] [--burst 2000]

Each tree serves the example model with ``--tls-cert/--tls-key`` (a CA made here) as a real
``python -m servepath serve`` process on loopback, one at a time; ``--compare`` runs the
other tree's server first (e.g. the main checkout's ``src``, before this listener).

1. **memory**: on one fresh server, ``--cycles`` bursts of ``--burst`` connections opened and
   then closed without a byte, then as many bursts that send a 5-byte TLS record header and
   close. After each burst the script waits until the server has closed every socket (its
   ``/proc/net/tcp``), then 1.5 s, and reads ``VmRSS`` from ``/proc/PID/status``.
2. **hot path**: ``--requests`` liveness requests (answered in the protocol) and as many
   predictions over one keep-alive HTTPS connection, then ``--handshakes`` new connections
   each with one liveness request; the server's CPU (utime + stime from ``/proc/PID/stat``)
   per request and per connection, and the client's wall-clock rate. Three rounds,
   alternating the trees; the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import trustme

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def server_sockets(port: int) -> int:
    """Connections the server still holds on ``port`` (established, closing, half-closed)."""
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                # 0A listening, 06 TIME_WAIT (the client closed first: only its side waits)
                if int(local.rsplit(":", 1)[1], 16) == port and state not in ("0A", "06"):
                    held += 1
    return held


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(src: Path, tmp: Path, model: Path, cert: Path, key: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVEPATH_")}
    env.update(PYTHONPATH=str(src), SERVEPATH_DATA_DIR=str(tmp / f"data-{port}"))
    command = [sys.executable, "-m", "servepath", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--model", str(model), "--store", "off"]
    command += ["--tls-cert", str(cert), "--tls-key", str(key)]
    log = (tmp / f"server-{port}.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp / f"server-{port}.log").read_text()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def settle(port: int) -> None:
    deadline = time.monotonic() + 90
    while server_sockets(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)


def memory(port: int, pid: int, cycles: int, burst: int) -> dict[str, list[float]]:
    result: dict[str, list[float]] = {}
    for name, payload in (
        ("connect, close", b""),
        ("5-byte header, close", b"\x16\x03\x01\x02\x00"),
    ):
        series = [rss_mb(pid)]
        for _ in range(cycles):
            held = []
            for _ in range(burst):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                if payload:
                    s.sendall(payload)
                held.append(s)
            for s in held:
                s.close()
            settle(port)
            series.append(rss_mb(pid))
        result[name] = series
    return result


def read_response(tls: ssl.SSLSocket, buf: bytearray) -> None:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(buf) >= end + 4 + length:
                del buf[: end + 4 + length]
                return
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: b\r\n\r\n"


def predict_request() -> bytes:
    from servepath.model.example import EXAMPLE_APPLICANT

    body = orjson.dumps(EXAMPLE_APPLICANT)
    return (
        b"POST /decisions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def keep_alive(
    port: int, pid: int, context: ssl.SSLContext, request: bytes, n: int
) -> tuple[float, float]:
    """(server CPU µs per request, requests/s) over one keep-alive connection."""
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        buf = bytearray()
        for _ in range(50):
            tls.sendall(request)
            read_response(tls, buf)
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        for _ in range(n):
            tls.sendall(request)
            read_response(tls, buf)
        wall = time.perf_counter() - wall
        cpu = cpu_seconds(pid) - cpu
    return cpu / n * 1e6, n / wall


def handshakes(port: int, pid: int, context: ssl.SSLContext, n: int) -> tuple[float, float]:
    """(server CPU µs per connection, connections/s): a handshake and one request each."""
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    for _ in range(n):
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(LIVE)
            read_response(tls, bytearray())
    wall = time.perf_counter() - wall
    return (cpu_seconds(pid) - cpu) / n * 1e6, n / wall


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another src/ directory, measured first")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("memory", "hotpath"), help="run one part")
    args = parser.parse_args()

    trees = {}
    if args.compare is not None:
        trees["compared"] = args.compare.resolve()
    trees["this tree"] = ROOT / "src"

    with tempfile.TemporaryDirectory(prefix="tls-bench-") as name:
        tmp = Path(name)
        ca = trustme.CA()
        issued = ca.issue_cert("localhost", "127.0.0.1")
        cert, key, cafile = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
        cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key))
        ca.cert_pem.write_to_path(str(cafile))
        context = ssl.create_default_context(cafile=str(cafile))
        from servepath.model.example import write_example

        model = tmp / "model.joblib"
        write_example(model)

        if args.only != "hotpath":
            memory_table(trees, tmp, model, cert, key, args.cycles, args.burst)
        if args.only != "memory":
            hotpath_table(trees, tmp, model, cert, key, context, args)


def memory_table(
    trees: dict[str, Path], tmp: Path, model: Path, cert: Path, key: Path, cycles: int, burst: int
) -> None:
    print(f"## memory: {cycles} bursts of {burst:,} connections, RSS MB after each\n")
    print("| tree | bursts | RSS MB: start, after each burst | growth MB |")
    print("|---|---|---|---:|")
    for label, src in trees.items():
        with server(src, tmp, model, cert, key) as (port, pid):
            for kind, series in memory(port, pid, cycles, burst).items():
                text = ", ".join(f"{x:.0f}" for x in series)
                print(f"| {label} | {kind} | {text} | {series[-1] - series[0]:+.0f} |")


def hotpath_table(
    trees: dict[str, Path],
    tmp: Path,
    model: Path,
    cert: Path,
    key: Path,
    context: ssl.SSLContext,
    args: argparse.Namespace,
) -> None:
    predict = predict_request()
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {t: {} for t in trees}
    for _ in range(args.rounds):
        for label, src in trees.items():
            with server(src, tmp, model, cert, key) as (port, pid):
                cell = rows[label]
                cell.setdefault("liveness", []).append(
                    keep_alive(port, pid, context, LIVE, args.requests)
                )
                cell.setdefault("prediction", []).append(
                    keep_alive(port, pid, context, predict, args.requests)
                )
                cell.setdefault("new connection", []).append(
                    handshakes(port, pid, context, args.handshakes)
                )
    print(f"\n## hot path over HTTPS (median of {args.rounds} rounds)\n")
    print("| what | " + " | ".join(f"{t} CPU µs | {t} per s" for t in trees) + " |")
    print("|---|" + "---:|---:|" * len(trees))
    for what in ("liveness", "prediction", "new connection"):
        cells = []
        for label in trees:
            runs = rows[label][what]
            cells.append(f"{statistics.median(r[0] for r in runs):.1f}")
            cells.append(f"{statistics.median(r[1] for r in runs):,.0f}")
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
