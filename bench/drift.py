"""`servepath drift` on a big log: one million logged predictions against the training data.

    .venv/bin/python bench/drift.py [--rows 1000000] [--keep DIR] [--json]

Writes a SQLite prediction log in the log's own schema (the store's migrations, then bulk
inserts of the rows its writer would write: one instance per request, the example model's
ten features and its answer), with the example model's applicants, income and loan amounts
shifted in the newer half; writes 20,000 training rows as the reference CSV; then times,
side by side in one run:

* ``servepath drift --reference train.csv`` as a command, pinned to one core
  (``taskset -c 0``), start to exit: the number the target is about (≤ 10 s);
* the same in-process, split into its parts: reading the window (SQL, JSON parsing, the
  per-feature arrays and counts) and the statistics;
* reading the same rows with every column (``log --json``'s query) for comparison: what
  reading only the needed columns saves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from servepath.model.example import generate_applicants  # noqa: E402
from servepath.store.schema import migrate_sqlite  # noqa: E402
from servepath.store.sqlite import INSERT, INSERT_REQUEST  # noqa: E402


def write_log(path: Path, rows: int) -> float:
    """A log of ``rows`` predictions over the last two hours; returns the seconds it took."""
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    migrate_sqlite(conn)
    frame = generate_applicants(rows, seed=7)
    half = rows // 2
    # The newer half drifts: incomes 30% higher and loans twice the size.
    frame.loc[half:, "income"] *= 1.3
    frame.loc[half:, "loan_amount"] *= 2.0
    labels = frame.pop("decision").tolist()
    columns = list(frame.columns)
    values = [frame[c].tolist() for c in columns]
    now = time.time()
    step = 7200.0 / rows
    chunk = 100_000
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        requests = []
        predictions = []
        for i in range(start, stop):
            record_id = f"r{i:09d}"
            instance = {c: values[j][i] for j, c in enumerate(columns)}
            output = {"decision": labels[i], "probability": 0.5}
            requests.append((record_id, record_id, now - 7200 + i * step, "decisions", "credit",
                             "v1", 0.3, None, "127.0.0.1", None, None, None, None, None,
                             None, None, None))  # fmt: skip
            predictions.append(
                (record_id, 0, orjson.dumps(instance).decode(), orjson.dumps(output).decode(),
                 0, None)
            )  # fmt: skip
        conn.execute("BEGIN")
        conn.executemany(INSERT_REQUEST, requests)
        conn.executemany(INSERT, predictions)
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def timed_command(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall and CPU seconds (user + system) of the command, its exit code and output."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*pin, *argv], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode, done.stdout


def in_process(store: Path, reference: Path) -> dict[str, float]:
    import importlib

    from servepath.config import Settings
    from servepath.drift import DriftRequest

    # the module, not the function the package exports under the same name
    drift_run = importlib.import_module("servepath.drift.run")

    os.sched_setaffinity(0, {0})
    settings = Settings().with_values(store_url=f"sqlite://{store}")
    # CPU time: on a machine others share, wall time says more about them than about this.
    clock = time.process_time
    started = clock()
    report = drift_run.run(DriftRequest(settings=settings, reference_file=reference))
    total = clock() - started

    # The read alone: the same window, the same builders, no statistics.
    from servepath.store.reader import SQLiteReader

    kinds = {f.name: f.kind for v in report.versions for f in (*v.features, *v.prediction)}
    started = clock()
    with SQLiteReader(store) as reader:
        drift_run._read_log(reader, None, None, "ordinary", list(kinds), kinds, None)  # type: ignore[arg-type]
    read = clock() - started

    # Every column, as `servepath log` reads records, for comparison (no grouping).
    started = clock()
    with SQLiteReader(store) as reader:
        reader.recent(limit=10**9)
    every_column = clock() - started
    return {"run_cpu_s": total, "read_cpu_s": read, "statistics_cpu_s": total - read,
            "read_every_column_cpu_s": every_column}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Keep the log and reference in this directory.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="servepath-drift-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / "predictions.sqlite3"
    reference = directory / "train.csv"
    try:
        wrote = write_log(store, args.rows) if not store.exists() else 0.0
        generate_applicants(20_000).to_csv(reference, index=False)
        argv = [sys.executable, "-m", "servepath", "drift", "--store", f"sqlite://{store}",
                "--reference", str(reference), "--json"]  # fmt: skip
        command_s, command_cpu, code, stdout = timed_command(argv)
        report = json.loads(stdout)
        parts = in_process(store, reference)
        result = {
            "rows": args.rows,
            "db_mb": round(store.stat().st_size / 1e6, 1),
            "write_s": round(wrote, 2),
            "command_one_core_s": round(command_s, 2),
            "command_cpu_s": round(command_cpu, 2),
            "exit_code": code,
            **{k: round(v, 2) for k, v in parts.items()},
            "drifted": [
                f["name"] for v in report["versions"] for f in v["features"] if f["drifted"]
            ],
            "tests": sorted({f["test"] for v in report["versions"] for f in v["features"]}),
        }
        if args.json:
            print(json.dumps(result))
            return
        for key, value in result.items():
            print(f"{key:>22}  {value}")
        ratio = parts["read_every_column_cpu_s"] / parts["read_cpu_s"]
        print(f"{'every column / needed':>22}  {ratio:.2f}×")
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
