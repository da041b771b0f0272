"""Cache and prediction-log backends side by side, in one run.

    .venv/bin/python bench/cache_store.py [--redis URL] [--postgres ADMIN_URL] [--json]

Measures, on this machine and event loop (uvloop when installed):

* cache: the latency of one ``get_many([key])`` that hits, one miss, one
  ``set_many([(key, value)])``, and a 64-key ``get_many`` — memory vs Redis;
* prediction log: what ``record()`` costs the request path per call (the writer draining
  concurrently), the records/s each backend sustains committing (group commit), and
  ``record_durable()`` latency and throughput with 64 concurrent callers — SQLite,
  PostgreSQL and off.

and, end to end through `servepath serve` with wrk (skipped with ``--no-http`` or when wrk
is missing; the server on CPU 0, wrk on CPU 1):

* the latency of a request answered from the cache vs one computed (one connection), and
  the throughput of each (32 connections), memory vs Redis cache;
* request throughput with the prediction log off, on SQLite, on PostgreSQL, and on
  PostgreSQL with ``--durable`` (cache hits, so that logging is most of the work).

It creates its own PostgreSQL database and Redis key prefix and removes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import redis
from rich.console import Console
from rich.table import Table

from servepath.cache import Cache, cache_key, open_cache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT
from servepath.store import PredictionLog, PredictionRecord, open_log

VALUE = orjson.dumps({"decision": "approve", "probability": 0.912345})
INSTANCE = dict(EXAMPLE_APPLICANT)


@dataclass
class Timing:
    name: str
    backend: str
    samples_us: list[float]

    def row(self) -> dict[str, Any]:
        s = sorted(self.samples_us)
        return {
            "measure": self.name,
            "backend": self.backend,
            "n": len(s),
            "mean_us": statistics.fmean(s),
            "p50_us": s[len(s) // 2],
            "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))],
        }


async def time_calls(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await call(i)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return samples


async def bench_cache(cache: Cache, backend: str, prefix: str, n: int) -> list[Timing]:
    keys = [cache_key(prefix, "decision", "v1", {**INSTANCE, "age": i}) for i in range(n)]
    missing = [cache_key(prefix, "decision", "v0", {**INSTANCE, "age": i}) for i in range(n)]
    await cache.start()
    try:
        sets = await time_calls(n, lambda i: cache.set_many([(keys[i], VALUE)], 600))
        hits = await time_calls(n, lambda i: cache.get_many([keys[i]]))
        misses = await time_calls(n, lambda i: cache.get_many([missing[i]]))
        batch = [keys[j : j + 64] for j in range(0, n - 64, 64)]
        many = await time_calls(len(batch), lambda i: cache.get_many(batch[i]))
        assert (await cache.get_many([keys[0]]))[0] == VALUE
    finally:
        await cache.close()
    return [
        Timing("cache get, hit", backend, hits),
        Timing("cache get, miss", backend, misses),
        Timing("cache set", backend, sets),
        Timing("cache get_many x64", backend, many),
    ]


def make_records(n: int, run: str) -> list[PredictionRecord]:
    now = time.time()
    return [
        PredictionRecord(
            request_id=f"{run}-{i:08d}",
            index=0,
            ts=now,
            route="decisions",
            model_name="decision",
            model_version="v1",
            instance=INSTANCE,
            output={"decision": "approve", "probability": 0.912345},
            latency_ms=2.1,
            cache_hit=False,
            client_addr="127.0.0.1:50000",
            forwarded=None,
        )
        for i in range(n)
    ]


async def bench_log(
    settings: Settings, backend: str, n: int
) -> tuple[list[Timing], dict[str, Any]]:
    # 1. The request path: one record() per request, yielding to the loop as a server would.
    log: PredictionLog = open_log(settings)
    await log.start()
    records = make_records(n, "hot")
    samples = []
    for i, record in enumerate(records):
        one = [record]
        c0 = time.perf_counter_ns()
        log.record(one)
        samples.append((time.perf_counter_ns() - c0) / 1000)
        if i % 32 == 31:
            await asyncio.sleep(0)
    await log.close()

    # 2. Sustained commit rate: enqueue as fast as possible, until all are committed.
    log = open_log(settings)
    await log.start()
    records = make_records(n, "bulk")
    t0 = time.perf_counter()
    for j in range(0, n, 256):
        for record in records[j : j + 256]:
            log.record([record])
        await asyncio.sleep(0)
    await log.close()
    sustained = n / (time.perf_counter() - t0)

    # 3. Durable (--durable: SQLite also syncs every commit): 64 concurrent callers, each
    # waiting for its record's commit.
    log = open_log(settings.with_values(durable=True))
    await log.start()
    durable_records = make_records(min(n, 20_000), "durable")
    durable_us: list[float] = []

    async def caller(part: list[PredictionRecord]) -> None:
        for record in part:
            c0 = time.perf_counter_ns()
            await log.record_durable([record])
            durable_us.append((time.perf_counter_ns() - c0) / 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(durable_records[k::64]) for k in range(64)))
    durable_rate = len(durable_records) / (time.perf_counter() - t0)
    await log.close()
    status = log.status()
    return (
        [
            Timing("log record() call", backend, samples),
            Timing("log record_durable(), 64 callers", backend, durable_us),
        ],
        {
            "backend": backend,
            "sustained_records_per_s": sustained,
            "durable_records_per_s_64_callers": durable_rate,
            "healthy": status.healthy,
            "spooled": status.spooled,
        },
    )


LUA = Path(__file__).resolve().parent / "lua"
WRK_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class HttpConfig:
    label: str
    cache: str
    store: str
    body: str  # "fixed" (every request a cache hit after the first) or "unique" (all misses)
    durable: bool = False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(cpu: int | None, command: list[str]) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def _wrk(
    url: str, body_file: Path, kind: str, connections: int, seconds: float, cpu: int | None
) -> dict[str, float]:
    script = LUA / f"{kind}.lua"
    extra = [str(body_file)] + ([str(time.time_ns() % 10**9)] if kind == "unique" else [])
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        _pinned(cpu, [*command, url, "--", *extra]), capture_output=True, text=True, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    result = {"rps": float(rate.group(1)), "non_2xx": float(non2xx.group(1)) if non2xx else 0.0}
    for pct, value, unit in WRK_LATENCY.findall(out):
        result[f"p{pct}_ms"] = float(value) * UNIT_MS[unit]
    return result


def http_section(
    args: argparse.Namespace, pg_url: str, prefix: str, data: Path
) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        print("wrk is not installed: skipping the HTTP measures", file=sys.stderr)
        return []
    two_cpus = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    server_cpu, client_cpu = (0, 1) if two_cpus else (None, None)
    body_file = data / "body.json"
    body_file.write_text(
        orjson.dumps({**INSTANCE, "income": 0}).decode().replace('"income":0', '"income":@INCOME@')
    )
    configs = [
        HttpConfig("cache hit, memory", "memory", "off", "fixed"),
        HttpConfig("cache hit, redis", args.redis, "off", "fixed"),
        HttpConfig("cache miss, memory", "memory", "off", "unique"),
        HttpConfig("cache miss, redis", args.redis, "off", "unique"),
        HttpConfig("cache off", "off", "off", "unique"),
        HttpConfig("log sqlite", "memory", "sqlite", "fixed"),
        HttpConfig("log postgresql", "memory", pg_url, "fixed"),
        HttpConfig("log postgresql --durable", "memory", pg_url, "fixed", durable=True),
    ]
    rows = []
    for config in configs:
        port = _free_port()
        env = {
            **os.environ,
            "SERVEPATH_DATA_DIR": str(data / "http"),
            "SERVEPATH_CACHE_PREFIX": prefix,
            "SERVEPATH_LOG_LEVEL": "warning",
        }
        command = [
            sys.executable, "-m", "servepath", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--cache", config.cache, "--store", config.store,
        ]  # fmt: skip
        if config.durable:
            command.append("--durable")
        log_path = data / f"serve-{port}.log"
        with log_path.open("w") as log_file:
            server = subprocess.Popen(
                _pinned(server_cpu, command), env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, server, log_path)
            _wrk(url + "/decisions", body_file, config.body, 4, 1, client_cpu)  # warm up
            one = _wrk(url + "/decisions", body_file, config.body, 1, args.seconds, client_cpu)
            many = _wrk(url + "/decisions", body_file, config.body, 32, args.seconds, client_cpu)
        finally:
            server.terminate()
            server.wait(60)
        rows.append(
            {
                "config": config.label,
                "c1_p50_ms": one.get("p50_ms"),
                "c1_p99_ms": one.get("p99_ms"),
                "c32_rps": many["rps"],
                "c32_p99_ms": many.get("p99_ms"),
                "non_2xx": one["non_2xx"] + many["non_2xx"],
            }
        )
    return rows


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120  # the first start trains the example model
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = "\n".join(log_path.read_text().splitlines()[-20:])
            raise SystemExit(f"servepath serve exited with {server.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("servepath serve did not become healthy")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    timings: list[Timing] = []
    rates: list[dict[str, Any]] = []
    prefix = f"sp-bench-{uuid.uuid4().hex[:8]}"

    timings += await bench_cache(open_cache(Settings(cache_url="memory")), "memory", prefix, args.n)
    timings += await bench_cache(
        open_cache(Settings(cache_url=args.redis, cache_timeout=1.0)), "redis", prefix, args.n
    )
    dbname = f"sp_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    parts = urlsplit(args.postgres)
    pg_url = urlunsplit(parts._replace(path=f"/{dbname}"))
    http: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            for backend, url in (("off", "off"), ("sqlite", "sqlite"), ("postgresql", pg_url)):
                settings = Settings(data_dir=data / backend, store_url=url)
                found, rate = await bench_log(settings, backend, args.records)
                timings += found
                rates.append(rate)
            if args.http:
                http = await asyncio.to_thread(http_section, args, pg_url, prefix, data)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    return {"timings": [t.row() for t in timings], "log_throughput": rates, "http": http}


def render(result: dict[str, Any], loop: str) -> None:
    console = Console()
    table = Table(title=f"latency per call ({loop})")
    for column in ("measure", "backend", "n", "mean µs", "p50 µs", "p99 µs"):
        table.add_column(column, justify="left" if column in ("measure", "backend") else "right")
    for row in result["timings"]:
        table.add_row(
            row["measure"],
            row["backend"],
            str(row["n"]),
            f"{row['mean_us']:.1f}",
            f"{row['p50_us']:.1f}",
            f"{row['p99_us']:.1f}",
        )
    console.print(table)
    rates = Table(title="prediction log throughput")
    for column in ("backend", "sustained records/s", "durable records/s (64 callers)"):
        rates.add_column(column, justify="left" if column == "backend" else "right")
    for row in result["log_throughput"]:
        rates.add_row(
            row["backend"],
            f"{row['sustained_records_per_s']:,.0f}",
            f"{row['durable_records_per_s_64_callers']:,.0f}",
        )
    console.print(rates)
    if result["http"]:
        http = Table(title="end to end: servepath serve + wrk (POST /decisions)")
        for column in ("config", "c1 p50 ms", "c1 p99 ms", "c32 req/s", "c32 p99 ms", "non-2xx"):
            http.add_column(column, justify="left" if column == "config" else "right")
        for row in result["http"]:
            http.add_row(
                row["config"],
                _fmt(row["c1_p50_ms"], ".2f"),
                _fmt(row["c1_p99_ms"], ".2f"),
                _fmt(row["c32_rps"], ",.0f"),
                _fmt(row["c32_p99_ms"], ".2f"),
                str(int(row["non_2xx"])),
            )
        console.print(http)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("-n", type=int, default=20_000, help="cache calls per measure")
    parser.add_argument("--records", type=int, default=100_000, help="records per log run")
    parser.add_argument("--seconds", type=float, default=4.0, help="wrk run length")
    parser.add_argument("--no-http", dest="http", action="store_false")
    parser.add_argument("--json", action="store_true")
    parsed = parser.parse_args()
    try:
        import uvloop

        outcome = uvloop.run(main(parsed))
        loop_name = "uvloop"
    except ImportError:
        outcome = asyncio.run(main(parsed))
        loop_name = "asyncio"
    if parsed.json:
        print(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode())
    else:
        render(outcome, loop_name)
