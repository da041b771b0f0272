"""Serving benchmark: servepath against the stacks users would otherwise pick, in one run.

    .venv/bin/python bench/serving.py [--peers servepath,tutorial,...] [--quick]

Every stack serves the same example model artifact on loopback; wrk (pinned to one core)
loads the server (pinned to the other) at concurrency 1, 16 and 64, with every request a new
applicant (cache miss) and with one fixed applicant (cache hit). Each point is warmed up, then
measured several times; medians and the spread go to ``bench/results/serving.md`` with a
chart, the issue's targets evaluated, and the model's in-process compute ceiling.

Peers run from their own virtualenvs under ``bench/.venvs/<peer>`` (installed from the exact
pins in ``bench/peers/requirements/``); a peer that cannot be installed, started or that
answers wrongly is reported with the reason, and the run goes on without it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servebench.compute import ComputeCost, compute_ceiling
from servebench.report import RunInfo, render_chart, render_markdown
from servebench.results import Point, TargetCheck, evaluate_targets
from servebench.servers import (
    PeerUnavailable,
    Server,
    check_answer,
    ensure_venv,
    running,
)
from servebench.stacks import (
    CEILING,
    OFFSET_STRIDE,
    RESULTS_DIR,
    ROOT,
    STACKS,
    Stack,
    Variant,
    request_body,
)
from servebench.wrk import Plan, WrkParseError, WrkResult, run_wrk, wrk_command

log = logging.getLogger("bench.serving")


class LoadRun:
    """Counts wrk runs so that each gets a fresh range of unique applicants."""

    def __init__(self) -> None:
        self.count = 0

    def next_offset(self) -> int:
        self.count += 1
        return self.count * OFFSET_STRIDE


def measure_round(
    server: Server,
    plan: Plan,
    body_file: Path,
    offsets: LoadRun,
    variants: Sequence[Variant],
    into: dict[tuple[str, Variant, int], list[WrkResult]],
) -> None:
    """One measured run of every point of a running stack, each after its own warm-up."""
    name = server.stack.name
    for variant in variants:
        for c in plan.concurrency:
            if plan.warmup_s > 0:
                argv = wrk_command(
                    plan, server.url, variant, body_file, offsets.next_offset(), c, plan.warmup_s
                )
                run_wrk(argv, plan.warmup_s, server.cpu_seconds, plan.server_core)
            argv = wrk_command(
                plan, server.url, variant, body_file, offsets.next_offset(), c, plan.duration_s
            )
            r = run_wrk(argv, plan.duration_s, server.cpu_seconds, plan.server_core)
            into.setdefault((name, variant, c), []).append(r)
            log.info(
                "  %-10s %-4s c=%-3d %9.0f req/s  p50 %8.2f ms  p99 %8.2f ms  errors %d",
                name, variant, c, r.rps, r.p50_ms, r.p99_ms, r.errors,
            )  # fmt: skip


def interpreter(stack: Stack, *, install: bool) -> str:
    """The Python that runs ``stack``: servepath's own, or the peer's virtualenv."""
    if stack.venv is None:
        return sys.executable
    return str(ensure_venv(stack.venv, install=install, base_python=sys.executable))


def pinning(cores: Sequence[int]) -> tuple[int | None, int | None]:
    """(client core, server core): the first two available cores, or no pinning."""
    if len(cores) >= 2 and shutil.which("taskset"):
        return cores[0], cores[1]
    return None, None


def expected_answer(model: Path) -> tuple[float, dict[str, float | str]]:
    import joblib
    import pandas as pd

    from servepath.model.example import EXAMPLE_APPLICANT

    pipeline = joblib.load(model)
    proba = pipeline.predict_proba(pd.DataFrame([EXAMPLE_APPLICANT]))[0]
    return round(float(proba.max()), 6), dict(EXAMPLE_APPLICANT)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return f"{head or 'unknown commit'}" + (" with uncommitted changes in src/" if dirty else "")


def _wrk_version() -> str:
    done = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (done.stdout + done.stderr).splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


@dataclass
class Outcome:
    runs: dict[tuple[str, Variant, int], list[WrkResult]] = field(default_factory=dict)
    answers: dict[str, float | None] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    incidents: dict[str, list[str]] = field(default_factory=dict)

    def points(self) -> list[Point]:
        order = list(STACKS)
        keys = sorted(self.runs, key=lambda k: (order.index(k[0]), k[1] != "miss", k[2]))
        return [Point(s, v, c, tuple(self.runs[(s, v, c)])) for s, v, c in keys]

    def has_runs(self, stack: str) -> bool:
        return any(k[0] == stack for k in self.runs)


def run_benchmark(
    stacks: Sequence[str],
    plan: Plan,
    *,
    model: Path | None,
    out_dir: Path,
    install: bool,
    compute_budget_s: float,
    start_timeout_s: float,
    chart: bool,
) -> tuple[Path, list[TargetCheck]]:
    """Measure ``stacks`` in rounds, then write serving.md, .json and .png to ``out_dir``.

    Each round starts every stack afresh and measures each of its points once, so a change in
    the machine's other load during the run spreads over all stacks instead of landing on
    whichever ran at the time.
    """
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    started = _utc_now()
    load_before = os.getloadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="servepath-bench-") as tmp:
        work = Path(tmp)
        if model is None:
            from servepath.model.example import write_example

            model = work / "model.joblib"
            log.info("training the example model into %s ...", model)
            write_example(model)
        expected, instance = expected_answer(model)
        offsets = LoadRun()
        pythons: dict[str, str] = {}
        for round_no in range(1, plan.repeats + 1):
            log.info("round %d of %d", round_no, plan.repeats)
            for name in stacks:
                if name in outcome.unavailable:
                    continue
                stack = STACKS[name]
                log.info("%s: %s", stack.label, stack.config)
                try:
                    if name not in pythons:
                        pythons[name] = interpreter(stack, install=install)
                    stack_work = work / f"{name}-{round_no}"
                    stack_work.mkdir()
                    body = request_body(stack.fmt, instance)
                    body_file = stack_work / "body.json"
                    body_file.write_text(body)
                    variants: list[Variant] = (
                        ["miss", "hit"] if stack.has_cache or name == CEILING else ["miss"]
                    )
                    with running(
                        stack,
                        python=pythons[name],
                        model=model,
                        work=stack_work,
                        core=plan.server_core,
                        timeout=start_timeout_s,
                    ) as server:
                        outcome.answers[name] = check_answer(
                            server, body, expected if stack.has_model else None
                        )
                        measure_round(server, plan, body_file, offsets, variants, outcome.runs)
                except (PeerUnavailable, RuntimeError, WrkParseError) as exc:
                    reason = str(exc) if isinstance(exc, PeerUnavailable) else f"under load: {exc}"
                    if outcome.has_runs(name):
                        log.warning("%s failed in round %d: %s", stack.label, round_no, reason)
                        outcome.incidents.setdefault(name, []).append(f"round {round_no}: {reason}")
                    else:
                        log.warning("%s could not run: %s", stack.label, reason)
                        outcome.unavailable[name] = reason
        compute: list[ComputeCost] = []
        if compute_budget_s > 0:
            log.info("measuring the compute ceiling in-process ...")
            compute = compute_ceiling(model, plan.server_core, compute_budget_s)
    points = outcome.points()
    for p in points:
        log.info(
            "%-10s %-4s c=%-3d median %9.0f req/s (%.0f-%.0f)  p50 %.2f ms  p99 %.2f ms",
            p.stack, p.variant, p.concurrency, p.rps, p.rps_min, p.rps_max, p.p50_ms, p.p99_ms,
        )  # fmt: skip
    checks = evaluate_targets(points, outcome.unavailable)
    info = RunInfo(
        started=started,
        finished=_utc_now(),
        load_before=load_before,
        load_after=os.getloadavg(),
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        plan=plan,
        wrk_version=_wrk_version(),
        servepath_commit=_commit(),
        answers=outcome.answers,
        unavailable=outcome.unavailable,
        incidents={k: "; ".join(v) for k, v in outcome.incidents.items()},
        stacks_run=tuple(stacks),
        expected_probability=expected,
    )
    chart_name = None
    if chart and points:
        chart_name = "serving.png"
        render_chart(points, out_dir / chart_name)
    md = out_dir / "serving.md"
    md.write_text(render_markdown(info, points, checks, compute, chart_name))
    raw = {
        "points": [p.to_json() for p in points],
        "targets": [c.to_json() for c in checks],
        "compute": [c.to_json() for c in compute],
        "unavailable": outcome.unavailable,
        "plan": dataclasses.asdict(plan),
        "load_before": load_before,
        "load_after": info.load_after,
    }
    (out_dir / "serving.json").write_text(json.dumps(raw, indent=1) + "\n")
    return md, checks


def parse_stacks(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown stack(s) {', '.join(unknown)}; choose from {', '.join(STACKS)}"
        )
    return [n for n in STACKS if n in names]  # canonical order


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peers",
        type=parse_stacks,
        default=list(STACKS),
        help=f"stacks to run, comma-separated (default: all of {','.join(STACKS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s points, 1 s warm-up, one repeat"
    )
    parser.add_argument(
        "--duration", type=int, help="seconds per measured run (default 10; quick 2)"
    )
    parser.add_argument(
        "--warmup", type=int, help="seconds of warm-up per point (default 2; quick 1)"
    )
    parser.add_argument("--repeats", type=int, help="measured runs per point (default 3; quick 1)")
    parser.add_argument(
        "--concurrency", type=parse_levels, default=(1, 16, 64), help="levels, comma-separated"
    )
    parser.add_argument(
        "--model", type=Path, help="model artifact (default: train the example model)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS_DIR, help="where serving.md/.png/.json go"
    )
    parser.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="use only peers already installed",
    )
    parser.add_argument("--no-chart", dest="chart", action="store_false")
    parser.add_argument(
        "--compute-budget", type=float, help="seconds per compute measurement, 0 skips it"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=180.0,
        help="seconds a stack may take to become ready",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    quick = args.quick
    duration = args.duration or (2 if quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    repeats = args.repeats or (1 if quick else 3)
    if duration < 1 or warmup < 0 or repeats < 1:
        parser.error("--duration and --repeats must be at least 1, --warmup at least 0")
    client_core, server_core = pinning(sorted(os.sched_getaffinity(0)))
    plan = Plan(tuple(args.concurrency), duration, warmup, repeats, client_core, server_core)
    budget = args.compute_budget if args.compute_budget is not None else (0.5 if quick else 3.0)

    # A SIGTERM unwinds like Ctrl-C, so the servers started so far are stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        md, checks = run_benchmark(
            args.peers,
            plan,
            model=args.model,
            out_dir=args.out_dir,
            install=args.install,
            compute_budget_s=budget,
            start_timeout_s=args.start_timeout,
            chart=args.chart,
        )
    except KeyboardInterrupt:
        log.warning("interrupted; servers stopped, no results written")
        return 130
    log.info("wrote %s", md)
    for c in checks:
        log.info("%-4s %s: %s", c.verdict, c.name, c.detail)
    return 1 if any(c.verdict == "FAIL" for c in checks) else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
