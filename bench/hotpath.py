"""The serving hot path, side by side: servepath trees against each other and the trivial app.

    .venv/bin/python bench/hotpath.py [--tree LABEL=SRC_DIR ...] [--rounds 3] [--seconds 8]

Each server runs pinned to core 1, wrk to core 0, c=64, one after another in interleaved
rounds (A B trivial, A B trivial, ...) so that the machine's drift lands on all of them alike.
Per server and round: answered req/s and the server process's CPU per request (µs), for cache
misses (every request a new applicant) and cache hits (one instance resent). The trivial app
is uvicorn + httptools + uvloop reading the body and answering constant JSON: the transport's
own cost, the yardstick every figure is divided by. ``--tree`` (repeatable) names a checkout's
``src`` directory to serve from (default: this tree), e.g. the tree before a change:

    git worktree add /tmp/before HEAD~3
    .venv/bin/python bench/hotpath.py --tree before=/tmp/before/src --tree after=src

``--traces`` also serves this checkout's own tree with tracing on, sampling 1% and 100% of
the requests, to an OTLP/HTTP receiver that accepts and discards (on the client's core, as a
collector would be elsewhere): the cost of tracing, side by side with tracing off:

    .venv/bin/python bench/hotpath.py --tree before=/tmp/before/src --tree after=src --traces

Prints a table and writes nothing; the medians over rounds are the figures to quote.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "lua"
SERVER_CORE, CLIENT_CORE = "1", "0"

TRIVIAL = """
import sys, uvicorn
BODY = b'{"decision":"approve","probability":0.9123456789,"model_version":"trivial"}'
HEAD = {"type": "http.response.start", "status": 200, "headers": [
    (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}
async def app(scope, receive, send):
    if scope["type"] != "http":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"}); return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(HEAD)
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


#: An OTLP/HTTP receiver that takes every export and keeps nothing (HTTP/1.1 keep-alive,
#: as the exporter's session expects).
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@dataclass
class Point:
    rps: float
    cpu_us: float  # server CPU seconds per answered request, in µs
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    label: str, src: Path | None, data_dir: Path, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {**os.environ, "SERVEPATH_DATA_DIR": str(data_dir)}
    if src is None:
        argv = [sys.executable, "-c", TRIVIAL, str(port)]
        health = f"http://127.0.0.1:{port}/"
    else:
        env["PYTHONPATH"] = str(src)
        argv = [sys.executable, "-m", "servepath", "serve", "--host", "127.0.0.1",
                "--port", str(port), *extra]  # fmt: skip
        health = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{label}: the server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: not healthy within 120 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wrk(url: str, body_file: Path, unique: bool, offset: int, seconds: float) -> tuple[int, int]:
    """(requests answered 2xx, non-2xx or socket errors) of one wrk run."""
    script = LUA / ("unique.lua" if unique else "fixed.lua")
    argv = ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", "-c64", f"-d{seconds:g}s",
            "-s", str(script), url + "/decisions", "--", str(body_file), str(offset)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    total = errors = 0
    for line in out.splitlines():
        words = line.split()
        if "requests in" in line:
            total = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            errors += int(words[-1])
        elif line.strip().startswith("Socket errors"):
            errors += sum(int(w.rstrip(",")) for w in words[3::2])
    return total - errors, errors


def measure(url: str, proc: psutil.Process, body: Path, unique: bool, offset: int,
            seconds: float) -> Point:  # fmt: skip
    wrk(url, body, unique, offset + 50_000_000, 2)  # warm up (and fill the cache for hits)
    before = proc.cpu_times()
    started = time.monotonic()
    ok, errors = wrk(url, body, unique, offset, seconds)
    wall = time.monotonic() - started
    after = proc.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return Point(ok / wall, cpu / max(1, ok) * 1e6, errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="LABEL=SRC_DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--traces",
        action="store_true",
        help="also serve this checkout's tree tracing 1%% and 100%% to a discarding receiver",
    )
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in args.tree]
    if not trees:
        trees = [("servepath", ROOT / "src")]
    servers: list[tuple[str, Path | None, tuple[str, ...]]] = []
    receiver_port = free_port()
    endpoint = f"http://127.0.0.1:{receiver_port}"
    for label, src in trees:
        servers.append((label, src, ()))
        if args.traces and src == (ROOT / "src").resolve():
            for share in ("0.01", "1"):
                traced = ("--otlp-endpoint", endpoint, "--trace-sample", share)
                servers.append((f"{label} traced {float(share):.0%}", src, traced))
    servers.append(("trivial", None, ()))
    results: dict[tuple[str, str], list[Point]] = {}
    with contextlib.ExitStack() as stack:
        if args.traces:
            stack.enter_context(receiver(receiver_port))
        return run(args, servers, results)


@contextlib.contextmanager
def receiver(port: int) -> Iterator[None]:
    proc = subprocess.Popen(["taskset", "-c", CLIENT_CORE, sys.executable, "-c", RECEIVER,
                             str(port)])  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def run(
    args: argparse.Namespace,
    servers: list[tuple[str, Path | None, tuple[str, ...]]],
    results: dict[tuple[str, str], list[Point]],
) -> int:
    with tempfile.TemporaryDirectory(prefix="servepath-hotpath-") as tmp:
        work = Path(tmp)
        body = work / "body.json"
        offset = 0
        for round_ in range(args.rounds):
            for label, src, extra in servers:
                data_dir = work / "data"  # shared: the example model is trained once
                with server(label, src, data_dir, extra) as (url, proc):
                    if not body.exists():
                        spec = httpx.get(url + "/openapi.json", timeout=10).json()
                        example = spec["paths"]["/decisions"]["post"]["requestBody"]["content"][
                            "application/json"
                        ]["example"]
                        example["income"] = "@INCOME@"
                        body.write_bytes(orjson.dumps(example).replace(b'"@INCOME@"', b"@INCOME@"))
                    for mode in ("miss", "hit"):
                        offset += 1_000_000
                        point = measure(url, proc, body, mode == "miss", offset, args.seconds)
                        results.setdefault((label, mode), []).append(point)
                        print(f"round {round_ + 1} {label:>20} {mode}: {point.rps:8.0f} req/s "
                              f"{point.cpu_us:6.1f} µs CPU/req  errors {point.errors}",
                              flush=True)  # fmt: skip
    print()
    print("| server | mode | req/s (median) | µs CPU/req (median) | × trivial CPU | share of "
          "trivial req/s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for mode in ("miss", "hit"):
        base = results[("trivial", mode)]
        base_cpu = statistics.median(p.cpu_us for p in base)
        base_rps = statistics.median(p.rps for p in base)
        for label, _, _ in servers:
            pts = results[(label, mode)]
            rps = statistics.median(p.rps for p in pts)
            cpu = statistics.median(p.cpu_us for p in pts)
            print(f"| {label} | {mode} | {rps:,.0f} | {cpu:.1f} | {cpu / base_cpu:.2f} | "
                  f"{rps / base_rps:.0%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
