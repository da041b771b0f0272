"""Changing the model under load: swaps, and a shadow, measured against the same load without.

Runs `servepath serve` with a model repository of two versions of the example model (the
same fitted pipeline written twice, so the versions differ in bytes and not in cost), then:

1. capacity: a closed-loop run (`servepath load --concurrency 16`);
2. swaps: an open-loop run at half that rate, with no swap, then the same run while
   version 1 and 2 are swapped in turn ``--swaps`` times: non-2xx answers, connection
   errors, p99 in both, whether every answer more than 1 s after a swap's 200 carried the
   new version (read from the prediction log), and the server's RSS after each swap;
3. shadow: a server with the other version as shadow at share 1.0, the same half-capacity
   run (p99 against no shadow), then twice capacity: requests shed, and copies made.

Each server runs pinned to core 1 and each client to core 0 (as ``bench/hotpath.py`` does), so
that what is measured is the server's own core: a version being prepared (a child process
of the server's, on the server's core) competes with the requests it must not slow. The
runs with and without swaps (and with and without a shadow) alternate ``--pairs`` times;
the ratio reported is the median of the pairs' ratios, so that a machine whose speed drifts
during the run lands on both sides of each pair alike.

Usage: ``.venv/bin/python bench/versions.py [--swaps 10] [--seconds 20] [--pairs 3]``. Prints
a table and writes nothing else; results worth keeping go to ``bench/results/versions.md``
by hand. Numbers need a quiet machine: run nothing else beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = "1", "0"
PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if PIN else command


ADMIN = "a" * 24
USER = "u" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_repository(root: Path) -> Path:
    import joblib

    from servepath.model.example import write_example

    repo = root / "fraud"
    write_example(repo / "1" / "model.joblib")
    (repo / "2").mkdir()
    joblib.dump(joblib.load(repo / "1" / "model.joblib"), repo / "2" / "model.joblib", compress=3)
    return repo


class Server:
    def __init__(self, root: Path, repo: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / f"data-{self.port}"
        keys = root / "keys"
        keys.write_text(f"admin:{ADMIN}\nuser:{USER}\n")
        keys.chmod(0o600)
        env = {**os.environ, "SERVEPATH_DATA_DIR": str(self.data)}
        command = [
            PYTHON, "-m", "servepath", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--model-repository", str(repo), "--model", "1", "--model-control", "explicit",
            "--api-key-file", str(keys), "--admin-keys", "admin", *args,
        ]  # fmt: skip
        self.log = open(root / f"server-{self.port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            pinned(SERVER_CORE, command), stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/", timeout=1, trust_env=False).json()["status"] == "ok":
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, name: str) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics", headers={"X-API-Key": USER}, trust_env=False).text
        found = {}
        for line in text.splitlines():
            if line.startswith(name):
                key, value = line.rsplit(" ", 1)
                found[key] = float(value)
        return found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.log.close()


def load(url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        pinned(
            CLIENT_CORE,
            [PYTHON, "-m", "servepath", "load", url, "--api-key", USER, "--json", *args],
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    return dict(json.loads(out.stdout))


def swap(url: str, version: str) -> tuple[int, float]:
    response = httpx.post(
        f"{url}/v2/repository/models/fraud/load",
        json={"parameters": {"version": version}},
        headers={"X-API-Key": ADMIN},
        timeout=300,
        trust_env=False,
    )
    return response.status_code, time.time()


def late_answers(data: Path, swaps: list[tuple[str, float]], end: float) -> tuple[int, int]:
    """Answers logged more than 1 s after a swap's 200 that still carried the old version:
    all of them, and those whose request also arrived more than 1 s after it (the log's
    time is the answer's; the latency says when the request came). The first count less the
    second are requests admitted before the switch that finished on the old version late."""
    with sqlite3.connect(data / "predictions.sqlite3") as conn:
        rows = conn.execute("SELECT ts, latency_ms, model_label FROM requests").fetchall()
    answered = arrived = 0
    for i, (version, at) in enumerate(swaps):
        until = swaps[i + 1][1] if i + 1 < len(swaps) else end
        for ts, latency_ms, label in rows:
            if at + 1 < ts < until and label != version:
                answered += 1
                arrived += ts - latency_ms / 1000 > at + 1
    return answered, arrived


def swapping_run(server: Server, rate: str, seconds: float, swaps: int) -> dict[str, Any]:
    """One open-loop run at ``rate`` while versions 2 and 1 are swapped in turn: the load's
    report, plus the control's statuses, the swaps' moments and the RSS after each."""
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.update(load(server.url, "--rate", rate, "--duration", f"{seconds}s"))
    )
    runner.start()
    time.sleep(1.0)
    gap = max(0.5, (seconds - 3) / swaps)
    statuses, moments, rss = [], [], []
    for n in range(swaps):
        version = "2" if n % 2 == 0 else "1"
        status, at = swap(server.url, version)
        statuses.append(status)
        moments.append((version, at))
        rss.append(server.rss_mb())
        time.sleep(gap)
    runner.join()
    result["_swaps"] = (statuses, moments, rss)
    return result


def p99(run: dict[str, Any]) -> float:
    return float(run["latency"]["p99_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=3)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="servepath-versions-"))
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        repo = build_repository(root)
        seconds = f"{options.seconds}s"
        server = Server(root, repo)
        swap_ratios: list[float] = []
        wrong = [0, 0]  # answered late on the old version; of them, requests that came late
        statuses: list[int] = []
        rss: list[float] = []
        try:
            capacity = load(server.url, "--concurrency", "16", "--duration", "8s",
                            "--warmup", "2s")["achieved_rate"]  # fmt: skip
            half = f"{capacity / 2:.0f}"
            for pair in range(options.pairs):
                quiet = load(server.url, "--rate", half, "--duration", seconds)
                result = swapping_run(server, half, options.seconds, options.swaps)
                pair_statuses, moments, pair_rss = result.pop("_swaps")
                statuses += pair_statuses
                rss += pair_rss
                late = late_answers(server.data, moments, time.time())
                wrong = [wrong[0] + late[0], wrong[1] + late[1]]
                swap_ratios.append(p99(result) / p99(quiet))
                label = f"pair {pair + 1}"
                rows += [(f"{label}: half capacity, no swap", quiet),
                         (f"{label}: same, with {options.swaps} swaps", result)]  # fmt: skip
        finally:
            server.stop()

        shadowed = Server(root, repo, "--shadow", "2", "--shadow-share", "1.0")
        plain = Server(root, repo)
        shadow_ratios: list[float] = []
        try:
            for pair in range(options.pairs):
                with_shadow = load(shadowed.url, "--rate", half, "--duration", seconds,
                                   "--warmup", "2s")  # fmt: skip
                without = load(plain.url, "--rate", half, "--duration", seconds, "--warmup", "2s")
                shadow_ratios.append(p99(with_shadow) / p99(without))
                rows += [(f"pair {pair + 1}: half capacity, shadow 1.0", with_shadow),
                         (f"pair {pair + 1}: half capacity, no shadow", without)]  # fmt: skip
            plain.stop()
            before = shadowed.metric("servepath_shadow_total")
            overload = load(shadowed.url, "--rate", f"{capacity * 2:.0f}", "--duration", seconds)
            after = shadowed.metric("servepath_shadow_total")
            shed = sum(shadowed.metric("servepath_requests_shed_total").values())
            rows.append(("2x capacity, shadow 1.0", overload))
        finally:
            shadowed.stop()
            if plain.process.poll() is None:
                plain.stop()

        calls = {
            k.split("outcome=")[1].split(",")[0].strip('"}'): after[k] - before.get(k, 0)
            for k in after
        }
        print(f"capacity (closed loop, c=16): {capacity:,.0f} req/s; half: {half} req/s"
              f"{'' if PIN else ' (not pinned: taskset or a second core is missing)'}")  # fmt: skip
        print(f"swaps: {options.swaps} per pair, control answers {sorted(set(statuses))}")
        print("| run | sent | failed | connection errors | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|")
        for name, run in rows:
            errors = run["errors"]
            print(f"| {name} | {run['sent']} | {run['failed']} | {errors['connect']} | "
                  f"{run['latency']['p50_ms']} | {p99(run)} |")  # fmt: skip
        print("p99 with swaps / without, per pair: "
              + ", ".join(f"{r:.2f}" for r in swap_ratios)
              + f"; median {statistics.median(swap_ratios):.2f}")  # fmt: skip
        print("p99 with shadow / without, per pair: "
              + ", ".join(f"{r:.2f}" for r in shadow_ratios)
              + f"; median {statistics.median(shadow_ratios):.2f}")  # fmt: skip
        print(f"answers >1 s after a swap's 200 with the old version: {wrong[0]}, of which "
              f"the request too came >1 s after it: {wrong[1]}")  # fmt: skip
        print("RSS after each swap, MB: " + ", ".join(f"{r:.0f}" for r in rss))
        print(f"RSS after the last swap - after the first: {rss[-1] - rss[0]:+.0f} MB")
        print(f"at 2x capacity: {shed:.0f} requests shed (all runs), shadow copies: {calls}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
