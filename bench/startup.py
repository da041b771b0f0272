"""Start-up time of the servepath command line: the bare interpreter, `import servepath.cli`,
every command's `--help` and three real runs into a pipe, side by side with `curl
--version` and `nc -h`.

    .venv/bin/python bench/startup.py [--runs 7] [--compare OTHER_SRC_DIR] [--json]

Each figure is the best (``--stat min``, the default) or the median wall time of ``--runs``
fresh processes (the first run of each is discarded: it may pay for a cold page cache); on
a machine other work shares, the best run is the one least disturbed by it. The figure that
matters is the cost *above the bare interpreter* (``python -c pass``), which is what
servepath itself adds. ``--clock cpu`` reports the CPU time the process used instead of
wall-clock time. ``--compare``
runs the same commands with another copy of the source tree first on ``PYTHONPATH`` (for
instance a checkout of an older commit's ``src/``), in the same run and the same venv, and
prints both with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    "serve",
    "request",
    "dns",
    "ports",
    "trace",
    "http",
    "tls",
    "listen",
    "doctor",
    "load",
    "regions",
    "log",
    "model",
)


STAT = {"min": min, "median": statistics.median}
_stat = ["min"]


_clock = ["wall"]


def wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    """Time of ``runs`` runs of ``argv`` (best or median), in seconds (one discarded run
    first): wall-clock, or the CPU time (user + system) the process itself used, which
    other work on a shared machine disturbs far less."""
    times: list[float] = []
    for i in range(runs + 1):
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if i:
            times.append(cpu if _clock[0] == "cpu" else time.perf_counter() - started)
    return float(STAT[_stat[0]](times))


def measure(src: Path | None, runs: int) -> dict[str, float]:
    env = dict(os.environ, COLUMNS="100")
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    python = sys.executable
    results = {
        "python -c pass": wall([python, "-c", "pass"], env, runs),
        "import servepath.cli": wall([python, "-c", "import servepath.cli"], env, runs),
        "servepath --help": wall([python, "-m", "servepath", "--help"], env, runs),
        "servepath --version": wall([python, "-m", "servepath", "--version"], env, runs),
    }
    for command in COMMANDS:
        results[f"servepath {command} --help"] = wall(
            [python, "-m", "servepath", command, "--help"], env, runs
        )
    # Real runs into a pipe, against loopback ports nothing listens on (answered at once).
    for label, argv in (
        ("servepath ports 127.0.0.1 1", ["ports", "127.0.0.1", "1"]),
        ("servepath http (refused)", ["http", "http://127.0.0.1:1/"]),
        ("servepath request (refused)", ["request", "http://127.0.0.1:1/decisions"]),
    ):
        results[label] = wall([python, "-m", "servepath", *argv], env, runs)
    return results


def peers(runs: int) -> dict[str, float]:
    found: dict[str, float] = {}
    env = dict(os.environ)
    for name, argv in (("curl --version", ["curl", "--version"]), ("nc -h", ["nc", "-h"])):
        if shutil.which(argv[0]):
            found[name] = wall(argv, env, runs)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compare", type=Path, help="another src/ directory to time first")
    parser.add_argument("--stat", choices=list(STAT), default="min")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="wall-clock or CPU time"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _stat[0] = args.stat
    _clock[0] = args.clock
    here = Path(__file__).resolve().parents[1] / "src"
    columns: dict[str, dict[str, float]] = {}
    if args.compare is not None:
        columns["compared"] = measure(args.compare.resolve(), args.runs)
    columns["this tree"] = measure(here, args.runs)
    reference = peers(args.runs)
    if args.json:
        document = {
            "runs": args.runs,
            "stat": args.stat,
            "clock": args.clock,
            "columns": columns,
            "peers": reference,
        }
        print(json.dumps(document, indent=2))
        return 0
    names = list(columns)
    bare = {name: columns[name]["python -c pass"] for name in names}
    head = f"{'command':<28}" + "".join(f"{n + ' s':>14}{'above python':>14}" for n in names)
    if len(names) == 2:
        head += f"{'ratio':>8}"
    print(head)
    for row in columns[names[-1]]:
        line = f"{row:<28}"
        for name in names:
            value = columns[name][row]
            line += f"{value:>14.3f}{value - bare[name]:>14.3f}"
        if len(names) == 2:
            old, new = (columns[n][row] - bare[n] for n in names)
            line += f"{old / new:>7.1f}x" if new > 0.001 else f"{'-':>8}"
        print(line)
    for name, value in reference.items():
        print(f"{name:<28}{value:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
