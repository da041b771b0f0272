"""The cost of tracing per prediction request, in process, side by side: off, 1%, 100%.

    PYTHONPATH=src .venv/bin/python bench/traces.py [--rounds 40] [--requests 640]

Three apps of this tree (``create_app``, the default memory cache and SQLite log, the example
model) serve the same requests called straight through ASGI, 64 at a time, in interleaved
rounds (off, 1%, 100%, off, ...) so that a busy machine's drift lands on all of them alike.
The traced apps export to an OTLP/HTTP receiver on loopback that takes every export and keeps
nothing, in another process (as a collector would be elsewhere), through the standard
exporter. The figure per app is the process's CPU time (every thread's: the export thread's
encoding included) per answered request, in its best round and the median, for cache
misses (every request a new applicant) and hits (one instance resent). No HTTP, no sockets
to the app: the denominators are smaller than a served request's, so the ratios are upper
bounds of what tracing adds to a served request; ``bench/hotpath.py --traces`` measures the
served one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT, write_example
from servepath.model.loaded import load_model
from servepath.service.app import ServepathApp, create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpath import RECEIVER, free_port

CONCURRENCY = 64


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def call(app: ServepathApp, body: bytes) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/decisions",
        "raw_path": b"/decisions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def one_round(app: ServepathApp, bodies: list[bytes]) -> tuple[float, int]:
    """(CPU seconds of the process, answered requests) for ``bodies``."""
    answered = 0
    cpu = time.process_time()
    for i in range(0, len(bodies), CONCURRENCY):
        statuses = await asyncio.gather(*(call(app, b) for b in bodies[i : i + CONCURRENCY]))
        answered += sum(s == 200 for s in statuses)
    # Let the export thread catch up, so its encoding is counted in this round's CPU.
    tracer = app.tracer
    if tracer is not None:
        tracer.flush()
        deadline = time.monotonic() + 5
        while tracer.to_json()["queued"] and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
    return time.process_time() - cpu, answered


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="servepath-traces-") as tmp, receiver() as url:
        work = Path(tmp)
        write_example(work / "model.joblib")
        model = load_model(work / "model.joblib")
        variants = {
            "off": Settings(data_dir=work / "off"),
            # A second app without tracing: the spread between the two is the noise floor.
            "off again": Settings(data_dir=work / "off2"),
            "1%": Settings(data_dir=work / "one", otlp_endpoint=url, trace_sample=0.01),
            "100%": Settings(data_dir=work / "all", otlp_endpoint=url, trace_sample=1.0),
        }
        apps = {name: create_app(s, model=model) for name, s in variants.items()}
        for app in apps.values():
            await app.startup()
        results: dict[tuple[str, str], list[float]] = {}
        income = 10_000.0
        try:
            names = list(apps)
            for round_ in range(args.rounds + 1):  # the first round warms up
                # Each round in another order, each app after a collection: whoever runs
                # first or after the heaviest must not be the one that looks cheaper.
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for mode in ("miss", "hit"):
                    for name in order:
                        app = apps[name]
                        gc.collect()
                        bodies = []
                        for _ in range(args.requests):
                            income += 0.01 if mode == "miss" else 0.0
                            row = {**EXAMPLE_APPLICANT, "income": round(income, 2)}
                            bodies.append(orjson.dumps(row))
                        cpu, answered = await one_round(app, bodies)
                        if round_:
                            results.setdefault((name, mode), []).append(cpu / answered * 1e6)
                if round_:
                    print(f"round {round_}: " + "  ".join(
                        f"{n} {m} {results[(n, m)][-1]:.1f}" for m in ("miss", "hit")
                        for n in apps), flush=True)  # fmt: skip
        finally:
            for app in apps.values():
                await app.shutdown()
        # The best round is the one least disturbed by the rest of the machine: on a busy
        # one the medians wander by more than the differences sought, the minima much less.
        print()
        print("| mode | tracing | µs CPU/request (best round) | × off | (median) | × off |")
        print("|---|---|---|---|---|---|")
        for mode in ("miss", "hit"):
            off_min = min(results[("off", mode)])
            off_med = statistics.median(results[("off", mode)])
            for name in apps:
                low = min(results[(name, mode)])
                med = statistics.median(results[(name, mode)])
                print(f"| {mode} | {name} | {low:.1f} | {low / off_min:.3f} | {med:.1f} | "
                      f"{med / off_med:.3f} |")  # fmt: skip
        for name, app in apps.items():
            if app.tracer is not None:
                print(f"{name}: {app.tracer.to_json()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=640)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
