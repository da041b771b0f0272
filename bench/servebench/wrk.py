"""wrk: the command for one load run, and reading its --latency output."""

from __future__ import annotations

import dataclasses
import re
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servebench.stacks import LUA_DIR, Variant


class WrkParseError(ValueError):
    """wrk's output lacks a line the benchmark needs."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    client_cpu: float | None = None  # wrk's CPU time over wall time, 0-1 (one thread)
    server_cpu: float | None = None  # the server's process tree, CPU time over wall time
    others_on_core: float | None = None  # the server core's busy share not due to the server

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)


def to_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read throughput, latency percentiles and errors from ``wrk --latency`` output."""
    percentiles = {m.group(1): to_ms(m.group(2), m.group(3)) for m in _PERCENTILE.finditer(output)}
    missing = [p for p in ("50", "90", "99") if p not in percentiles]
    if missing:
        raise WrkParseError(
            f"no {', '.join(p + '%' for p in missing)} latency line (ran with --latency?)"
        )
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None:
        raise WrkParseError("no 'N requests in' or 'Requests/sec:' line")
    socket_errors = 0
    sock = _SOCKET.search(output)
    if sock:
        socket_errors = sum(int(g) for g in sock.groups())
    non = _NON_2XX.search(output)
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=to_ms(requests.group(2), requests.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p90_ms=percentiles["90"],
        p99_ms=percentiles["99"],
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=socket_errors,
    )


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    duration_s: int
    warmup_s: int
    repeats: int
    client_core: int | None
    server_core: int | None


def wrk_command(
    plan: Plan,
    url: str,
    variant: Variant,
    body_file: Path,
    offset: int,
    concurrency: int,
    duration: int,
) -> list[str]:
    script = LUA_DIR / ("unique.lua" if variant == "miss" else "fixed.lua")
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    argv += ["-s", str(script), url, "--", str(body_file), str(offset)]
    if plan.client_core is not None:
        argv = ["taskset", "-c", str(plan.client_core), *argv]
    return argv


def core_times(core: int | None, stat: str | None = None) -> tuple[float, float] | None:
    """(busy, total) jiffies of one CPU from /proc/stat, or None when unknown."""
    if core is None:
        return None
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return None
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == f"cpu{core}":
            values = [float(v) for v in fields[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
            return sum(values[:8]) - idle, sum(values[:8])
    return None


def busy_share(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_wrk(
    argv: list[str], duration: int, server_cpu_seconds: Callable[[], float], server_core: int | None
) -> WrkResult:
    """Run wrk; its result with wrk's, the server's and the server core's CPU use."""
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = server_cpu_seconds()
    before_core = core_times(server_core)
    start = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish within {duration + 60} s") from exc
    wall = time.monotonic() - start
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = max(0.0, (server_cpu_seconds() - before_server) / wall)
    core_busy = busy_share(before_core, core_times(server_core))
    client = (after_children.ru_utime + after_children.ru_stime) - (
        before_children.ru_utime + before_children.ru_stime
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()[:300]}")
    result = parse_wrk(done.stdout)
    # What kept the server's core busy besides the server: other work on the machine.
    others = None if core_busy is None else max(0.0, core_busy - server_cpu)
    return dataclasses.replace(
        result, client_cpu=client / wall, server_cpu=server_cpu, others_on_core=others
    )
