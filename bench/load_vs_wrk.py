"""`servepath load` against wrk on the same fast local endpoint, side by side.

    .venv/bin/python bench/load_vs_wrk.py [--seconds 5] [--connections 64] [--pin]

Starts a trivial ASGI app (uvicorn + httptools + uvloop, one process) answering POST with a
small JSON body, then measures on it, in turn:

1. wrk, closed loop, one thread, ``--connections`` connections, POSTing the same body (a Lua
   script sets method, body and content type);
2. ``servepath load --concurrency N``, closed loop, one process;
3. ``servepath load --rate R``, open loop, one process, at rising rates: the highest rate
   it kept (every request sent within 10 ms of its intended time, less than 1% late).

and prints requests per second and the ratio of servepath's closed loop to wrk's. With
``--pin`` the server runs on CPU 0 and the clients on CPU 1 (``taskset``), so that neither
steals the other's core on a two-core machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = b'{"income": 52000.0, "age": 38, "home_ownership": "rent"}'
RESPONSE = b'{"decision":"approve","probability":0.92}'


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"server-timing", b"total;dur=0.01"),
                (b"x-cache", b"MISS"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": RESPONSE})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cpu: int | None, command: list[str]) -> list[str]:
    if cpu is None:
        return command
    return ["taskset", "-c", str(cpu), *command]


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the benchmark server did not start")


def _wrk(url: str, seconds: float, connections: int, cpu: int | None, tmp: Path) -> float:
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(BODY.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        _pinned(
            cpu,
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def _servepath(url: str, cpu: int | None, data: Path, *args: str) -> dict:  # type: ignore[type-arg]
    command = [sys.executable, "-m", "servepath", "load", url, "--data", str(data), "--json"]
    result = subprocess.run(
        _pinned(cpu, [*command, *args]), capture_output=True, text=True, timeout=300
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise SystemExit(f"servepath load failed ({result.returncode}):\n{result.stderr}")
    report: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, clients on CPU 1")
    parser.add_argument("--rates", default="2000,3000,4000,5000,6000,7000,8000")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvicorn

        uvicorn.run(
            "load_vs_wrk:app",
            app_dir=str(Path(__file__).parent),
            port=args.serve,
            log_level="warning",
            access_log=False,
            http="httptools",
            loop="uvloop",
        )
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    server_cpu, client_cpu = (0, 1) if args.pin else (None, None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/decisions"
    server = subprocess.Popen(
        _pinned(server_cpu, [sys.executable, __file__, "--serve", str(port)]),
    )
    try:
        _wait_port(port)
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            data = tmp / "instance.json"
            data.write_bytes(BODY)
            # Warm the server once so neither client pays for its first connections.
            _wrk(url, 1, args.connections, client_cpu, tmp)
            wrk_rps = _wrk(url, args.seconds, args.connections, client_cpu, tmp)
            closed = _servepath(
                url,
                client_cpu,
                data,
                "--concurrency",
                str(args.connections),
                "--duration",
                f"{args.seconds:g}",
            )
            kept: list[tuple[float, dict]] = []  # type: ignore[type-arg]
            for rate in (float(r) for r in args.rates.split(",")):
                run = _servepath(
                    url, client_cpu, data, "--rate", f"{rate:g}", "--duration", f"{args.seconds:g}"
                )
                ok = run["generator"]["kept_rate"] and run["failed"] == 0
                print(
                    f"  open loop {rate:>6.0f} req/s: achieved {run['achieved_rate']:8.1f}, "
                    f"late {run['generator']['late']:>6}, CPU "
                    f"{run['generator']['cpu_percent'][0]:.0f}%, "
                    f"p99 {run['latency']['p99_ms']:.2f} ms -> {'kept' if ok else 'not kept'}",
                    flush=True,
                )
                if not ok:
                    break
                kept.append((rate, run))
    finally:
        server.terminate()
        server.wait(10)

    sp_rps = closed["achieved_rate"]
    print()
    print(f"endpoint: trivial uvicorn+httptools app, POST {len(BODY)} bytes, loopback")
    print(f"closed loop, {args.connections} connections, {args.seconds:g} s, one client process")
    print(f"  wrk (1 thread)              {wrk_rps:10.0f} req/s")
    print(
        f"  servepath load (1 process)  {sp_rps:10.0f} req/s   "
        f"CPU {closed['generator']['cpu_percent'][0]:.0f}% of a core"
    )
    print(f"  ratio servepath / wrk       {sp_rps / wrk_rps:10.2f}")
    if kept:
        best_rate, best = kept[-1]
        print(
            f"open loop, one process: kept {best_rate:.0f} req/s "
            f"(achieved {best['achieved_rate']:.0f}, scheduling lag p99 "
            f"{best['generator']['sched_lag']['p99_ms']:.2f} ms)"
        )
    else:
        print("open loop, one process: kept none of the rates tried")


if __name__ == "__main__":
    main()
