"""Overload benchmark: servepath offered more than it can serve, and attacked by slow and greedy
clients, with the issue's targets judged in one run.

    .venv/bin/python bench/overload.py [--quick] [--phases load,slow,redis,cost]

Two models: the example model (fast: a cache miss costs HTTP, JSON and validation more than
the model) and a deliberately slow one (2 ms per row, no gain from batching). The server
(``servepath serve`` with its defaults: memory cache, SQLite log, one worker) is pinned to
core 1, the clients to core 0. Per model:

* **capacity**: wrk, closed loop, 64 connections, every request a new instance: 200s/s;
* **unloaded**: open loop at 10% of capacity: the p99 of the 200s;
* **2x and 4x**: open loop (``openloop.c``: request ``i`` due at ``i / rate``, latency from
  then) at 2x and 4x capacity, and 2x again with a new connection per request (``Connection:
  close``, as serverless callers and clients without a pool send; up to 8,192 open, so that
  the wait is the server's accept queue, not the client's), with ``/`` and
  ``/v2/health/live`` probed every 100 ms on new
  connections (2 s timeout, as the kubelet does) and the server's RSS sampled; then the
  unloaded rate again, to see how soon latency is normal.

Then the slow clients (10,000 connections that send half a head and stop, plus one endless
header line, while normal requests go on), the Redis cache at the memory cache's saturation
rate, and the cost of the HTTP protocol's limits against uvicorn's own protocol, side by side.
It writes ``bench/results/overload.md`` (tables, the targets with PASS/FAIL) and
``overload.json``. Exit status 0 when no target failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from overloadbench.client import (
    CLOSED,
    CONNECT_ERROR,
    TIMEOUT,
    EndlessHead,
    OpenLoopRun,
    Prober,
    SlowHeads,
    build_openloop,
    http_post,
    percentile,
    run_openloop,
    write_requests,
)
from overloadbench.slowmodel import write_slow_model
from servebench.wrk import busy_share, core_times, parse_wrk

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
SERVER_CORE, CLIENT_CORE = 1, 0


# --- the server ------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proc(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def rss(self) -> int:
        return int(self.proc().memory_info().rss)

    def cpu(self) -> float:
        t = self.proc().cpu_times()
        return float(t.user + t.system)

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, by its full name with labels."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    model: Path, work: Path, name: str, args: Sequence[str] = ()
) -> Iterator[Server]:
    port = free_port()
    data_dir = work / f"data-{name}"
    log_path = work / f"server-{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEPATH_", "AIP_"))}
    env.update(SERVEPATH_DATA_DIR=str(data_dir), PYTHONPATH=str(BENCH))
    argv = [sys.executable, "-m", "servepath", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--model", str(model), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(port, process, data_dir, log_path)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- load -------------------------------------------------------------------------------


@dataclass
class Workload:
    """How to make request ``i`` for one model (each a new instance: a cache miss)."""

    name: str
    template: str  # JSON body with @INCOME@ where a unique number goes

    def request(self, i: int, close: bool = False) -> bytes:
        request = http_post(
            "/decisions", self.template.replace("@INCOME@", f"{30000 + i / 100:.2f}").encode()
        )
        if close:
            request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        return request


#: The overload phases: (name, times capacity, a new connection per request).
PHASES = (("2x", 2, False), ("4x", 4, False), ("2x new connections", 2, True))


def example_workload() -> Workload:
    from servepath.model.example import EXAMPLE_APPLICANT

    fields = dict(EXAMPLE_APPLICANT)
    fields["income"] = "@INCOME@"
    text = orjson.dumps(fields).decode().replace('"@INCOME@"', "@INCOME@")
    return Workload("example", text)


def slow_workload() -> Workload:
    return Workload("slow", '{"x": @INCOME@, "y": 1.0}')


def wrk_run(
    server: Server, workload: Workload, work: Path, seconds: int, offset: int, connections: int = 64
) -> dict[str, Any]:
    body = work / f"body-{workload.name}.json"
    body.write_text(workload.template)
    argv = ["taskset", "-c", str(CLIENT_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--latency"]
    argv += ["--timeout", "10s", "-s", str(BENCH / "lua" / "unique.lua"), server.url + "/decisions"]
    argv += ["--", str(body), str(offset)]
    cpu0 = server.cpu()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu = server.cpu() - cpu0
    result = parse_wrk(out)
    ok = result.requests - result.non_2xx
    return {
        "rps_200": ok / result.duration_s,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        "cpu_us_per_200": 1e6 * cpu / ok if ok else None,
    }


def wrk_capacity(
    server: Server, workload: Workload, work: Path, seconds: int, offset: int
) -> dict[str, Any]:
    """The most 200s a second of closed loops at 8 and at 64 connections: 64 saturates a
    fast model's event loop; a slow model is saturated by 8 already, and 64 would only
    measure its shedding."""
    runs = [
        {**wrk_run(server, workload, work, seconds, offset + i * 5_000_000, c), "connections": c}
        for i, c in enumerate((8, 64))
    ]
    return max(runs, key=lambda r: r["rps_200"])


_offset = [0]


def open_loop(
    binary: Path,
    server: Server,
    workload: Workload,
    work: Path,
    rate: float,
    seconds: float,
    close: bool = False,
) -> OpenLoopRun:
    n = max(1, int(rate * seconds))
    start = _offset[0]
    _offset[0] += n + 1000
    requests = work / "requests.bin"
    write_requests(requests, [workload.request(start + i, close) for i in range(n)])
    return run_openloop(
        binary,
        port=server.port,
        rate=rate,
        duration=seconds,
        requests_file=requests,
        out_file=work / "results.bin",
        core=CLIENT_CORE,
        max_connections=8192 if close else 1024,
    )


@dataclass
class Sampler:
    """The server's RSS every 0.25 s in a thread."""

    server: Server
    rss: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.rss.append(self.server.rss())
            self._stop.wait(0.25)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summarize(run: OpenLoopRun, seconds: float) -> dict[str, Any]:
    ok = [r.latency for r in run.results if r.status == 200]
    shed = [r for r in run.results if r.status == 503]
    other = [r for r in run.results if r.status not in (200, 503)]
    counts: dict[str, int] = {}
    for r in run.results:
        key = {TIMEOUT: "timeout", CONNECT_ERROR: "connect_error", CLOSED: "closed"}.get(
            r.status, str(r.status)
        )
        counts[key] = counts.get(key, 0) + 1
    return {
        "sent": run.sent,
        "outcomes": counts,
        "goodput": len(ok) / seconds,
        "p50_200_ms": ms(percentile(ok, 0.5)),
        "p99_200_ms": ms(percentile(ok, 0.99)),
        "p99_503_ms": ms(percentile([r.latency for r in shed], 0.99)),
        "shed_with_retry_after": sum(r.retry_after for r in shed),
        "not_200": len(shed) + len(other),
        "five_hundreds": sum(1 for r in run.results if 500 <= r.status < 600 and r.status != 503),
        "client_max_lag_ms": round(run.max_lag * 1000, 1),
        "connections_opened": run.connections_opened,
    }


def recovery_seconds(run: OpenLoopRun, normal_p99: float) -> float | None:
    """Seconds after the load stopped until every later 0.5 s window's p99 (of 200s) is
    within twice the unloaded p99 and nothing failed; None if never."""
    windows: dict[int, list[float]] = {}
    bad: set[int] = set()
    for r in run.results:
        w = int(r.due / 0.5)
        if r.status == 200:
            windows.setdefault(w, []).append(r.latency)
        else:
            bad.add(w)
    last_bad = -1
    for w in sorted(set(windows) | bad):
        p = percentile(windows.get(w, []), 0.99)
        if w in bad or p is None or p > 2 * normal_p99:
            last_bad = w
    if last_bad == max(set(windows) | bad, default=-1):
        return None
    return (last_bad + 1) * 0.5


def health_summary(prober: Prober) -> dict[str, Any]:
    out = {}
    for path, samples in prober.samples.items():
        took = [t for _, t, _ in samples]
        out[path] = {
            "probes": len(samples),
            "failed": sum(1 for _, _, status in samples if status != 200),
            "p99_ms": ms(percentile(took, 0.99)),
            "max_ms": ms(max(took, default=None)),
        }
    return out


def predictions_computed(metrics: dict[str, float]) -> float:
    return sum(
        v
        for k, v in metrics.items()
        if k.startswith("servepath_predictions_total{") and 'cache="miss"' in k
    )


def overload_suite(
    binary: Path, server: Server, workload: Workload, work: Path, seconds: float, quick: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["capacity"] = capacity = wrk_capacity(
        server, workload, work, 5 if quick else 10, 10_000_000
    )
    c = capacity["rps_200"]
    unloaded = open_loop(binary, server, workload, work, max(5.0, 0.1 * c), 5 if quick else 10)
    out["unloaded"] = summarize(unloaded, 5 if quick else 10)
    normal_p99 = percentile([r.latency for r in unloaded.results if r.status == 200], 0.99) or 0.01
    for name, factor, close in PHASES:
        before_metrics = server.metrics()
        rss_before = server.rss()
        cpu0 = server.cpu()
        core0 = core_times(SERVER_CORE)
        wall0 = time.perf_counter()
        with Prober(server.port, ["/", "/v2/health/live"]) as prober, Sampler(server) as sampler:
            run = open_loop(binary, server, workload, work, factor * c, seconds, close)
        cpu = server.cpu() - cpu0
        wall = time.perf_counter() - wall0
        busy = busy_share(core0, core_times(SERVER_CORE))
        time.sleep(0.2)
        after = open_loop(binary, server, workload, work, max(5.0, 0.1 * c), 5)
        after_metrics = server.metrics()
        phase = summarize(run, seconds)
        phase["offered"] = factor * c
        phase["goodput_share"] = phase["goodput"] / c if c else None
        phase["health"] = health_summary(prober)
        phase["rss_growth_mb"] = round((max(sampler.rss, default=rss_before) - rss_before) / 1e6, 1)
        phase["recovery_s"] = recovery_seconds(after, normal_p99)
        computed = predictions_computed(after_metrics) - predictions_computed(before_metrics)
        answered = len(run.with_status(200)) + len(after.with_status(200))
        phase["computed_for_gone_callers"] = max(0, int(computed - answered))
        phase["server_cpu_s"] = round(cpu, 2)
        phase["server_cpu_share"] = round(cpu / wall, 3)
        # What else ran on the server's core meanwhile (other processes of the machine).
        phase["others_on_server_core"] = None if busy is None else round(busy - cpu / wall, 3)
        phase["shed_metric"] = sum(
            after_metrics.get(k, 0) - before_metrics.get(k, 0)
            for k in after_metrics
            if k.startswith("servepath_requests_shed_total")
        )
        phase["dropped_metric"] = sum(
            after_metrics.get(k, 0) - before_metrics.get(k, 0)
            for k in after_metrics
            if k.startswith("servepath_requests_dropped_total")
        )
        out[name] = phase
        time.sleep(2)
    add_costs(out, seconds)
    return out


def add_costs(out: dict[str, Any], seconds: float) -> None:
    """Server CPU per answered request (from the closed-loop capacity run, nearly all 200s)
    and per 503 (what the overload phases used beyond their 200s), and from them the best
    goodput any admission policy could reach in each phase: with the server's share ``u``
    of its core, ``served * f + shed * r <= u``, so at most ``(u - offered * r) / (f - r)``.
    The phases over kept-alive connections only: the capacity run's were kept alive too."""
    if out["capacity"]["non_2xx"]:
        return  # the capacity run shed: its CPU per 200 includes the 503s
    f = (out["capacity"].get("cpu_us_per_200") or 0.0) / 1e6
    kept = [name for name, _, close in PHASES if not close]
    rs = []
    for factor in kept:
        p = out[factor]
        served, shed = p["goodput"] * seconds, p["not_200"]
        if shed:
            rs.append(max(0.0, (p["server_cpu_s"] - served * f) / shed))
    if not f or not rs:
        return
    r = sum(rs) / len(rs)
    out["cost_us"] = {"per_200": round(f * 1e6, 1), "per_503": round(r * 1e6, 1)}
    for factor in kept:
        p = out[factor]
        u = p["server_cpu_share"] + max(
            0.0, 1.0 - p["server_cpu_share"] - (p["others_on_server_core"] or 0.0)
        )
        best = (u - p["offered"] * r) / (f - r) if f > r else None
        p["best_goodput"] = None if best is None else round(max(0.0, min(best, p["offered"])), 1)


# --- slow clients -----------------------------------------------------------------------


def slow_clients(
    binary: Path, server: Server, workload: Workload, work: Path, count: int, quick: bool
) -> dict[str, Any]:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    capacity = wrk_capacity(server, workload, work, 3, 20_000_000)["rps_200"]
    rate = max(5.0, 0.1 * capacity)
    unloaded = open_loop(binary, server, workload, work, rate, 5)
    normal_p99 = percentile([r.latency for r in unloaded.results if r.status == 200], 0.99)
    rss_before = server.rss()
    heads = SlowHeads(server.port, count)
    opened_at = time.perf_counter()
    heads.open()
    header_timeout = 10.0
    with Sampler(server) as sampler, EndlessHead(server.port) as endless:
        watcher = threading.Thread(
            target=heads.watch, args=(time.perf_counter() + header_timeout + 8,), daemon=True
        )
        watcher.start()
        during = open_loop(binary, server, workload, work, rate, header_timeout)
        watcher.join(header_timeout + 15)
        endless_sent = endless.sent
    heads.close()
    closed = heads.closed_after
    metrics = server.metrics()
    return {
        "connections": len(heads.opened),
        "failed_to_open": heads.failed_to_open,
        "opened_in_s": round(time.perf_counter() - opened_at, 1),
        "unloaded_p99_ms": ms(normal_p99),
        "during": summarize(during, header_timeout),
        "during_p99_ratio": (
            (percentile([r.latency for r in during.results if r.status == 200], 0.99) or 0)
            / normal_p99
            if normal_p99
            else None
        ),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "rss_peak_mb": round(max(sampler.rss, default=rss_before) / 1e6, 1),
        "closed": len(closed),
        "closed_after_s": {
            "min": round(min(closed), 2) if closed else None,
            "p50": round(percentile(closed, 0.5) or 0, 2) if closed else None,
            "max": round(max(closed), 2) if closed else None,
        },
        "answers": heads.answers,
        "endless_bytes_sent": endless_sent,
        "header_timeouts_metric": metrics.get(
            'servepath_http_rejected_total{reason="header_timeout"}', 0
        ),
        "headers_too_large_metric": metrics.get(
            'servepath_http_rejected_total{reason="headers_too_large"}', 0
        ),
        "header_timeout_s": header_timeout,
        "quick": quick,
    }


# --- Redis ------------------------------------------------------------------------------


@contextlib.contextmanager
def own_redis(work: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def redis_phase(
    binary: Path, model: Path, work: Path, rate: float, seconds: float
) -> dict[str, Any]:
    workload = example_workload()
    with (
        own_redis(work) as port,
        running_server(model, work, "redis", ["--cache", f"redis://127.0.0.1:{port}/0"]) as server,
    ):
        capacity = wrk_capacity(server, workload, work, 5, 30_000_000)
        before = server.metrics()
        run = open_loop(binary, server, workload, work, rate, seconds)
        after = server.metrics()
    lookups = {
        result: after.get(f'servepath_cache_lookups_total{{result="{result}"}}', 0)
        - before.get(f'servepath_cache_lookups_total{{result="{result}"}}', 0)
        for result in ("hit", "miss", "error")
    }
    total = sum(lookups.values())
    return {
        "rate": rate,
        "capacity_with_redis": capacity,
        "run": summarize(run, seconds),
        "lookups": lookups,
        "error_share": lookups["error"] / total if total else None,
    }


# --- the protocol's own cost --------------------------------------------------------------

_STOCK = """
import sys
from pathlib import Path
from servepath.config import Settings
from servepath.service import server as s
from servepath.service.app import create_app
port, model = int(sys.argv[1]), Path(sys.argv[2])
settings = Settings.from_env().with_values(host="127.0.0.1", port=port, model_path=model)
app = create_app(settings)
config = s.uvicorn_config(settings, app, app.gate)
if sys.argv[3] == "stock":
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    config.http = HttpToolsProtocol
    config.loaded = False
server = s.ServepathServer(config)
server.run(sockets=[s.bind_listener("127.0.0.1", port)])
"""


def protocol_cost(model: Path, work: Path, rounds: int) -> dict[str, Any]:
    """Server CPU per request, servepath's protocol against uvicorn's, same app, side by side."""
    workload = example_workload()
    samples: dict[str, list[float]] = {"stock": [], "servepath": []}
    rps: dict[str, list[float]] = {"stock": [], "servepath": []}
    for i in range(rounds):
        for kind in ("stock", "servepath"):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("SERVEPATH_")}
            env.update(SERVEPATH_DATA_DIR=str(work / f"cost-{kind}-{i}"), SERVEPATH_STORE_URL="off")
            argv = [sys.executable, "-c", _STOCK, str(port), str(model), kind]
            process = subprocess.Popen(
                ["taskset", "-c", str(SERVER_CORE), *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            server = Server(port, process, work, work / "cost.log")
            try:
                deadline = time.monotonic() + 180
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(server.url + "/", timeout=2).status_code == 200:
                            break
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"{kind} server did not start")
                    time.sleep(0.2)
                result = wrk_run(server, workload, work, 8, 40_000_000 + i * 1_000_000)
                samples[kind].append(result["cpu_us_per_200"])
                rps[kind].append(result["rps_200"])
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
    med = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    return {
        "cpu_us_per_request": med,
        "added_us": round(med["servepath"] - med["stock"], 1),
        "rps": {k: [round(x) for x in v] for k, v in rps.items()},
        "samples": samples,
    }


def admission_cost() -> dict[str, float]:
    """In-process cost of the admission controller per request (decide + enter + leave)."""
    import timeit

    from servepath.service.admission import Admission

    adm = Admission()
    for rows in (1, 8, 1, 8):
        adm.observe_call(rows, 0.0005 * rows)
    now = time.perf_counter

    def one() -> None:
        t = now()
        adm.observe_queue(0, 0, 0, 0, None)
        adm.decide(t)
        ticket = adm.enter(t)
        adm.leave(t, ticket)

    n = 200_000
    best = min(timeit.repeat(one, number=n, repeat=5)) / n
    return {"decide_enter_leave_us": round(best * 1e6, 3)}


# --- targets and the report --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    value: str
    limit: str
    passed: bool | None  # None: not measured


def judge(results: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []

    def add(name: str, value: Any, limit: str, ok: bool | None) -> None:
        targets.append(Target(name, str(value), limit, ok))

    for model in ("example", "slow"):
        suite = results.get(model)
        if not suite:
            continue
        unloaded = suite["unloaded"]["p99_200_ms"] or 0
        for factor, _, _ in PHASES:
            p = suite[factor]
            label = f"{model} {factor}"
            share = p["goodput_share"]
            add(f"{label}: goodput / capacity", f"{share:.2f}", ">= 0.90", share >= 0.9)
            ratio = (p["p99_200_ms"] or math.inf) / unloaded if unloaded else math.inf
            shown = f"{ratio:.1f} ({p['p99_200_ms']} / {unloaded} ms)"
            add(f"{label}: p99 of 200s / unloaded p99", shown, "<= 10", ratio <= 10)
            rest, with_retry = p["not_200"], p["shed_with_retry_after"]
            part = with_retry / rest if rest else 1.0
            add(f"{label}: the rest are 503 + Retry-After", f"{part:.3f} of {rest}", "= 1.000",
                part >= 0.999)  # fmt: skip
            p99_503 = p["p99_503_ms"]
            add(f"{label}: p99 of the 503s", f"{p99_503} ms", "<= 10 ms",
                p99_503 is None or p99_503 <= 10)  # fmt: skip
            health = max((h["p99_ms"] or math.inf) for h in p["health"].values())
            failed = sum(h["failed"] for h in p["health"].values())
            add(f"{label}: health p99 (/, live)", f"{health} ms, {failed} failed",
                "<= 50 ms, 0 failed", health <= 50 and failed == 0)  # fmt: skip
            growth = p["rss_growth_mb"]
            add(f"{label}: RSS growth", f"{growth} MB", "<= 50 MB", growth <= 50)
            rec = p["recovery_s"]
            add(f"{label}: normal latency after the load", f"{rec} s", "<= 2 s",
                rec is not None and rec <= 2)  # fmt: skip
            gone = p["computed_for_gone_callers"]
            add(f"{label}: predictions for callers gone", gone, "= 0", gone == 0)
    slow = results.get("slow_clients")
    if slow:
        ratio = slow["during_p99_ratio"]
        add("slow clients: normal p99 / unloaded p99", f"{ratio:.2f}" if ratio else ratio,
            "<= 2", ratio is not None and ratio <= 2)  # fmt: skip
        growth = slow["rss_peak_mb"] - slow["rss_before_mb"]
        add("slow clients: RSS growth, 10,000 held + an endless head", f"{growth:.1f} MB",
            "bounded (<= 100 MB)", growth <= 100)  # fmt: skip
        closed, timeout = slow["closed_after_s"], slow["header_timeout_s"]
        on_time = (
            closed["min"] is not None
            and closed["min"] >= timeout * 0.9
            and closed["max"] <= timeout + 3
            and slow["closed"] == slow["connections"]
        )
        shown = f"{slow['closed']} of {slow['connections']} after {closed['min']}-{closed['max']} s"
        add("slow clients: closed at the header timeout", shown, f"all, at {timeout:g} s", on_time)
    redis = results.get("redis")
    if redis:
        share = redis["error_share"]
        add("redis at the memory cache's saturation rate: lookup errors",
            f"{share:.4f}" if share is not None else share, "<= 0.01",
            share is not None and share <= 0.01)  # fmt: skip
    fives = sum(
        results[m][f]["five_hundreds"]
        for m in ("example", "slow")
        if m in results
        for f, _, _ in PHASES
    )
    if slow:
        fives += slow["during"]["five_hundreds"]
    if redis:
        fives += redis["run"]["five_hundreds"]
    add("no 500 in any phase", fives, "= 0", fives == 0)
    lost = results.get("log_check")
    if lost:
        add("answered 200 and not in the log", lost["missing"], "= 0", lost["missing"] == 0)
    return targets


def _suite_lines(model: str, suite: dict[str, Any]) -> list[str]:
    cap = suite["capacity"]
    lines = [
        f"## {model} model",
        "",
        f"Capacity (wrk, the better of 8 and 64 connections: {cap.get('connections', 64)}): "
        f"{cap['rps_200']:.0f} 200s/s, p99 {cap['p99_ms']:.1f} "
        f"ms, {cap['non_2xx']} non-2xx. Unloaded (open loop at 10%): p99 "
        f"{suite['unloaded']['p99_200_ms']} ms.",
        "",
    ]
    if "cost_us" in suite:
        c = suite["cost_us"]
        lines += [
            f"Server CPU per answered request {c['per_200']} µs (the capacity run), per 503 "
            f"{c['per_503']} µs (what the overload phases used beyond their 200s). *At best* is "
            "the goodput no admission policy could exceed with the core the server had: "
            "`(u - offered x per_503) / (per_200 - per_503)`, `u` the server's share of its "
            "core (what other processes left it).",
            "",
        ]
    lines += [
        "| offered (server core use) | goodput | p50 / p99 of 200s | p99 of 503s | outcomes "
        "| health p99 (/, live) "
        "| RSS growth | recovery | computed for gone callers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for factor, _, _ in PHASES:
        p = suite[factor]
        health = ", ".join(f"{h['p99_ms']} ms ({h['failed']} failed)" for h in p["health"].values())
        lines.append(
            f"| {factor}: {p['offered']:.0f}/s, server CPU {p['server_cpu_share']:.0%}, others "
            f"{p['others_on_server_core']} | {p['goodput']:.0f}/s ({p['goodput_share']:.0%}); "
            f"at best {p.get('best_goodput')}/s "
            f"| {p['p50_200_ms']} / {p['p99_200_ms']} ms | {p['p99_503_ms']} ms | {p['outcomes']} "
            f"| {health} | {p['rss_growth_mb']} MB | {p['recovery_s']} s "
            f"| {p['computed_for_gone_callers']} |"
        )
    return [*lines, ""]


def render(results: dict[str, Any], targets: list[Target], info: dict[str, Any]) -> str:
    lines = [
        "# Overload benchmark",
        "",
        f"Run {info['when']} on {info['machine']}; load average before {info['load_before']}, "
        f"after {info['load_after']}.",
        "",
        "Server pinned to core 1, clients to core 0 (`taskset`); `servepath serve` defaults "
        "(memory cache, SQLite log, one worker); every request a new instance (a cache miss). "
        f"Overload phases of {info['seconds']:g} s. `bench/overload.py` says what each number is.",
        "",
        "## Targets",
        "",
        "| target | measured | limit | |",
        "|---|---|---|---|",
    ]
    for t in targets:
        verdict = "N/A" if t.passed is None else ("PASS" if t.passed else "**FAIL**")
        lines.append(f"| {t.name} | {t.value} | {t.limit} | {verdict} |")
    lines.append("")
    for model in ("example", "slow"):
        if results.get(model):
            lines += _suite_lines(model, results[model])
    slow = results.get("slow_clients")
    if slow:
        during = slow["during"]
        lines += [
            "## Slow clients",
            "",
            f"{slow['connections']} connections each sent half a request head and stopped, "
            "while one connection sent an endless header line "
            f"({slow['endless_bytes_sent'] / 1e6:.1f} MB offered) and normal requests went on "
            "at 10% of capacity.",
            "",
            f"* normal requests: p99 {during['p99_200_ms']} ms (unloaded "
            f"{slow['unloaded_p99_ms']} ms), outcomes {during['outcomes']}",
            f"* server RSS {slow['rss_before_mb']} MB before, {slow['rss_peak_mb']} MB at the peak",
            f"* slow connections closed by the server: {slow['closed']} after "
            f"{slow['closed_after_s']} s (answers {slow['answers']}); header timeouts counted "
            f"{slow['header_timeouts_metric']:.0f}, oversized heads "
            f"{slow['headers_too_large_metric']:.0f}",
            "",
        ]
    redis = results.get("redis")
    if redis:
        run = redis["run"]
        lines += [
            "## Redis cache",
            "",
            f"Open loop at {redis['rate']:.0f}/s (the memory cache's capacity) against a server "
            f"on its own redis-server: lookups {redis['lookups']}, error share "
            f"{redis['error_share']}; goodput {run['goodput']:.0f}/s, p99 {run['p99_200_ms']} ms. "
            f"Closed-loop capacity with Redis: {redis['capacity_with_redis']['rps_200']:.0f}/s.",
            "",
        ]
    cost = results.get("protocol_cost")
    if cost:
        us = cost["cpu_us_per_request"]
        admission = results.get("admission_cost", {}).get("decide_enter_leave_us")
        lines += [
            "## What the limits cost",
            "",
            "Server CPU per cache-miss request (wrk, 64 connections, medians of "
            f"{len(cost['samples']['stock'])} interleaved rounds): uvicorn's httptools protocol "
            f"{us['stock']:.1f} µs, servepath's {us['servepath']:.1f} µs: {cost['added_us']} µs "
            f"added (req/s {cost['rps']}). Admission control in process: {admission} µs per "
            "request.",
            "",
        ]
    lines += ["## Raw", "", "Every number above, and more, is in `overload.json`.", ""]
    return "\n".join(lines)


def log_check(server: Server, answered_ids: int) -> dict[str, int]:
    path = server.data_dir / "predictions.sqlite3"
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    return {
        "answered_200": answered_ids,
        "stored": int(stored),
        "missing": max(0, answered_ids - int(stored)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s phases, fewer rounds")
    parser.add_argument("--seconds", type=float, help="seconds per overload phase (default 30)")
    parser.add_argument("--phases", default="load,slow,redis,cost")
    parser.add_argument("--models", default="example,slow", help="models of the load phase")
    parser.add_argument("--slow-connections", type=int, default=10_000)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite overload.md from overload.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads((args.out_dir / "overload.json").read_text())
        results, info = saved["results"], saved["info"]
        for model in ("example", "slow"):
            if model in results:
                add_costs(results[model], float(info["seconds"]))
        targets = judge(results)
        (args.out_dir / "overload.md").write_text(render(results, targets, info))
        saved["results"], saved["targets"] = results, [dataclasses.asdict(t) for t in targets]
        (args.out_dir / "overload.json").write_text(json.dumps(saved, indent=2, default=str))
        return 0 if all(t.passed is not False for t in targets) else 1
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    phases = set(args.phases.split(","))
    info = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "seconds": seconds,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="servepath-overload-") as tmp:
        work = Path(tmp)
        binary = build_openloop(work)
        from servepath.model.example import write_example

        example_model = work / "example.joblib"
        write_example(example_model)
        slow_model = write_slow_model(work / "slow.joblib")
        if "load" in phases:
            suites = (
                ("example", example_model, example_workload()),
                ("slow", slow_model, slow_workload()),
            )
            for name, model, workload in suites:
                if name not in args.models.split(","):
                    continue
                print(f"{name}: overload phases ...", flush=True)
                with running_server(model, work, name) as server:
                    results[name] = overload_suite(
                        binary, server, workload, work, seconds, args.quick
                    )
                    answered = sum(
                        results[name][k].get("outcomes", {}).get("200", 0)
                        for k in ("unloaded", *(name for name, _, _ in PHASES))
                    )
                    if name == "example":
                        flushed = server
                if name == "example":
                    # The server has been stopped (SIGTERM): its log is flushed. Recovery runs
                    # answered 200s too; they are in the log as well, so count only a floor.
                    results["log_check"] = log_check(flushed, answered)
        if "slow" in phases:
            print("slow clients ...", flush=True)
            with running_server(example_model, work, "slowclients", ["--store", "off"]) as server:
                results["slow_clients"] = slow_clients(
                    binary, server, example_workload(), work, args.slow_connections, args.quick
                )
        if "redis" in phases:
            print("redis ...", flush=True)
            rate = results.get("example", {}).get("capacity", {}).get("rps_200")
            if rate is None:
                with running_server(example_model, work, "memcap") as server:
                    rate = wrk_capacity(server, example_workload(), work, 5, 50_000_000)["rps_200"]
            results["redis"] = redis_phase(binary, example_model, work, rate, min(seconds, 15.0))
        if "cost" in phases:
            print("protocol cost ...", flush=True)
            results["protocol_cost"] = protocol_cost(example_model, work, 1 if args.quick else 2)
            results["admission_cost"] = admission_cost()
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    targets = judge(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "overload.md").write_text(render(results, targets, info))
    (args.out_dir / "overload.json").write_text(
        json.dumps(
            {"info": info, "results": results, "targets": [dataclasses.asdict(t) for t in targets]},
            indent=2,
            default=str,
        )
    )
    for t in targets:
        verdict = "PASS" if t.passed else "FAIL" if t.passed is False else "N/A "
        print(f"{verdict}  {t.name}: {t.value} ({t.limit})")
    return 0 if all(t.passed is not False for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
