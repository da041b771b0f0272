"""Model-zoo benchmark: servepath against the tutorial FastAPI service, MLServer and BentoML,
on the models people serve, side by side in one run.

    .venv/bin/python bench/zoo.py [--models random_forest,xgboost,...] [--quick]

Each zoo model (bench/zoomodels.py) is fitted here on seeded applicants (5 numeric and 2
categorical columns; nothing is downloaded) and served by every stack in turn, pinned to one
core while wrk loads it from the other: cache misses (every request a new applicant) at
concurrency 1 and 64, and for servepath the cache-hit path too. Before it is loaded, each
stack's answers to 32 fresh applicants are checked against the model's own library.
servepath's load is timed in-process twice: converting and racing, and from its cache (the
conversions and the race's outcome).
Throughput counts answered requests (2xx) only; servepath runs with its default settings
except ``--max-queue-wait 30``, so that like the peers it queues rather than sheds.

Results: bench/results/zoo.md (tables, targets PASS/FAIL), zoo.json and zoo.png.

The peers run from their own virtualenvs, bench/.venvs/zoo-<peer>, installed from the pins in
bench/peers/requirements/zoo-<peer>.txt (the serving benchmark's pins plus XGBoost and
LightGBM); MLServer serves each model with the runtime its docs give for it (sklearn,
xgboost, lightgbm), or is reported as unable to.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zoomodels
from servebench.servers import (
    PeerUnavailable,
    Server,
    _no_proxy_open,
    child_env,
    ensure_venv,
    free_port,
    stop,
    wait_ready,
)
from servebench.stacks import HOST, INCOME_PLACEHOLDER, PEERS_DIR, RESULTS_DIR, ROOT, Stack
from servebench.wrk import Plan, WrkResult, run_wrk, wrk_command

log = logging.getLogger("bench.zoo")

ZOO_PEERS_DIR = PEERS_DIR / "zoo"
#: The models of a full run: at least one of every kind in the issue's list.
BENCH_MODELS = (
    "random_forest",
    "extra_trees",
    "logistic_3class",
    "xgboost",
    "xgboost_numeric",
    "lightgbm",
    "lightgbm_numeric",
    "hist_gb",
    "gradient_boosting",
    "svm",
    "mlp",
    "ridge",
)
QUICK_MODELS = ("random_forest", "xgboost_numeric", "logistic_3class")
STACK_ORDER = ("servepath", "tutorial", "mlserver", "bentoml")
PROBES = 32
TOLERANCE = 1e-6
#: servepath's --max-queue-wait here: past wrk's 10 s timeout, so that nothing is shed.
SERVEPATH_QUEUE_WAIT_S = 30


def _stack(name: str, label: str, path: str, health: str, fmt: str, venv: str | None) -> Stack:
    return Stack(name, label, path, health, fmt, name == "servepath", True, venv, "")  # type: ignore[arg-type]


STACKS = {
    "servepath": _stack("servepath", "servepath", "/decisions", "/", "instance", None),
    "tutorial": _stack(
        "tutorial", "tutorial FastAPI", "/decisions", "/", "instance", "zoo-tutorial"
    ),
    "bentoml": _stack("bentoml", "BentoML", "/predict", "/readyz", "bentoml", "zoo-bentoml"),
    "mlserver": _stack(
        "mlserver", "MLServer", "/v2/models/zoo/infer", "/v2/models/zoo/ready", "v2", "zoo-mlserver"
    ),
}
CEILING = Stack(
    "ceiling", "transport ceiling", "/decisions", "/", "instance", False, False, None, ""
)


# --- the models ----------------------------------------------------------------------------


@dataclass
class Prepared:
    entry: zoomodels.ZooModel
    path: Path
    estimator: Any
    columns: list[str]
    categories: dict[str, list[str]]  # columns the model wants as pandas categories
    instance: dict[str, Any]  # the applicant each load run varies the income of
    probes: list[dict[str, Any]]
    expected: list[float]  # the library's probability of its decision, or its prediction
    regression: bool
    mlserver_files: dict[str, Path] = field(default_factory=dict)


def prepare(name: str, work: Path) -> Prepared:
    import joblib
    import pandas as pd

    entry = zoomodels.by_name(name)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator, frame = zoomodels.fit(entry, "bench")
    log.info("%s: fitted (%s) in %.1f s", name, entry.covers, time.perf_counter() - started)
    folder = work / name
    folder.mkdir(parents=True)
    path = folder / "model.joblib"
    joblib.dump(estimator, path)
    columns = [str(c) for c in estimator.feature_names_in_]
    categories = {
        c: [str(v) for v in frame[c].cat.categories]
        for c in columns
        if isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    fresh, _ = zoomodels.applicants(PROBES + 1, seed=777)
    rows = [{c: _plain(r[c]) for c in columns} for r in fresh.to_dict("records")]
    instance, probes = rows[0], rows[1:]
    test = pd.DataFrame.from_records(probes)[columns]
    for c, cats in categories.items():
        test[c] = pd.Categorical(test[c], categories=cats)
    regression = not hasattr(estimator, "predict_proba")
    if regression:
        expected = [float(v) for v in estimator.predict(test)]
    else:
        expected = [float(p.max()) for p in estimator.predict_proba(test)]
    prepared = Prepared(
        entry, path, estimator, columns, categories, instance, probes, expected, regression
    )
    if entry.mlserver == "xgboost":
        prepared.mlserver_files["model.json"] = folder / "model.json"
        estimator.save_model(folder / "model.json")
    elif entry.mlserver == "lightgbm":
        prepared.mlserver_files["model.txt"] = folder / "model.txt"
        estimator.booster_.save_model(folder / "model.txt")
    return prepared


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- request bodies and answers ------------------------------------------------------------


def body(stack: str, model: Prepared, instance: dict[str, Any]) -> Any:
    if stack in ("servepath", "tutorial"):
        return dict(instance)
    if stack == "bentoml":
        return {"applicants": [dict(instance)]}
    runtime = model.entry.mlserver
    if runtime == "sklearn":
        return {
            "parameters": {"content_type": "pd"},
            "inputs": [_v2_column(k, v) for k, v in instance.items()],
        }
    values = [instance[c] for c in model.columns]
    return {
        "inputs": [
            {"name": "input-0", "shape": [1, len(values)], "datatype": "FP32", "data": values}
        ]
    }


def _v2_column(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {
            "name": name,
            "shape": [1],
            "datatype": "BYTES",
            "parameters": {"content_type": "str"},
            "data": [value],
        }
    return {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}


#: A number no applicant has: it marks the income in a body, which then takes wrk's placeholder
#: (a number, so that every format types the field as one).
_INCOME_MARK = 987654321.25


def template(stack: str, model: Prepared) -> str:
    """The request body with the income replaced by wrk's placeholder."""
    marked = {**model.instance, "income": _INCOME_MARK}
    text = json.dumps(body(stack, model, marked), separators=(",", ":"))
    assert text.count(repr(_INCOME_MARK)) == 1, text
    return text.replace(repr(_INCOME_MARK), INCOME_PLACEHOLDER)


def answer(stack: str, model: Prepared, data: Any) -> float:
    """The probability of the decision (or the prediction) in a stack's answer."""
    key = "prediction" if model.regression else "probability"
    if stack in ("servepath", "tutorial"):
        return float(data[key])
    if stack == "bentoml":
        return float(data[0][key])
    outputs = data["outputs"]
    values = [float(v) for v in outputs[0]["data"]]
    if model.regression:
        return values[0]
    if len(values) == 1:  # a binary model's probability of class 1
        return max(values[0], 1.0 - values[0])
    return max(values)


def check_answers(server: Server, stack: str, model: Prepared) -> float:
    """The largest difference between the stack's answers and the library's, over the probes."""
    worst = 0.0
    for instance, want in zip(model.probes, model.expected, strict=True):
        raw = json.dumps(body(stack, model, instance)).encode()
        url = f"http://{HOST}:{server.port}{server.stack.path}"
        try:
            with _no_proxy_open(url, raw, 30.0) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise PeerUnavailable(f"HTTP {exc.code} for a probe applicant: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise PeerUnavailable(f"a probe request failed: {exc}") from exc
        try:
            got = answer(stack, model, data)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PeerUnavailable(f"unexpected answer shape: {str(data)[:200]}") from exc
        scale = max(1.0, abs(want)) if model.regression else 1.0
        worst = max(worst, abs(got - want) / scale)
    return worst


# --- servers -------------------------------------------------------------------------------


def mlserver_folder(model: Prepared, work: Path, port: int) -> Path:
    folder = work / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,
        "host": HOST,
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 1,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    runtime = model.entry.mlserver
    if runtime == "sklearn":
        shutil.copy(model.path, folder / "model.joblib")
        params: dict[str, Any] = {
            "uri": "./model.joblib",
            "extra": {"predict_fn": "predict" if model.regression else "predict_proba"},
        }
        implementation = "mlserver_sklearn.SKLearnModel"
    elif runtime == "xgboost":
        shutil.copy(model.mlserver_files["model.json"], folder / "model.json")
        params = {"uri": "./model.json", "extra": {"predict_fn": "predict_proba"}}
        implementation = "mlserver_xgboost.XGBoostModel"
    else:
        shutil.copy(model.mlserver_files["model.txt"], folder / "model.txt")
        params = {"uri": "./model.txt"}
        implementation = "mlserver_lightgbm.LightGBMModel"
    settings_doc = {
        "name": "zoo",
        "implementation": implementation,
        "max_batch_size": 64,
        "max_batch_time": 0.005,
        "parameters": params,
    }
    (folder / "model-settings.json").write_text(json.dumps(settings_doc, indent=2))
    return folder


def command(
    stack: str, model: Prepared, python: str, port: int, work: Path, data_dir: Path
) -> tuple[list[str], Path, dict[str, str]]:
    bindir = Path(python).parent
    env = {"MODEL_PATH": str(model.path), "ZOO_CATEGORIES": json.dumps(model.categories)}
    if stack == "servepath":
        env = {"SERVEPATH_DATA_DIR": str(data_dir)}
        # No shedding: the peers queue every request, and so does servepath here, so that
        # throughput counts answers only (its default sheds what would wait past its budget).
        argv = [python, "-m", "servepath", "serve", "--model", str(model.path)]
        argv += ["--max-queue-wait", str(SERVEPATH_QUEUE_WAIT_S)]
        return [*argv, "--host", HOST, "--port", str(port)], ROOT, env
    if stack == "ceiling":
        argv = [python, str(PEERS_DIR / "ceiling.py"), "--host", HOST, "--port", str(port)]
        return argv, ROOT, {}
    if stack == "tutorial":
        argv = [str(bindir / "uvicorn"), "tutorial_zoo:app", "--host", HOST, "--port", str(port)]
        return argv, ZOO_PEERS_DIR, env
    if stack == "bentoml":
        env.update(BENTOML_HOME=str(work / "bentoml-home"), BENTOML_DO_NOT_TRACK="True")
        argv = [str(bindir / "bentoml"), "serve", "bentoml_zoo:ZooModel"]
        return [*argv, "--host", HOST, "--port", str(port)], ZOO_PEERS_DIR, env
    folder = mlserver_folder(model, work, port)
    return [str(bindir / "mlserver"), "start", str(folder)], folder, {}


@contextlib.contextmanager
def running(
    stack: Stack,
    model: Prepared,
    *,
    python: str,
    work: Path,
    data_dir: Path,
    core: int | None,
    timeout: float,
) -> Iterator[tuple[Server, float]]:
    """Start a stack pinned to ``core``; yields the server and the seconds it took to be ready."""
    port = free_port()
    argv, cwd, extra = command(stack.name, model, python, port, work, data_dir)
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    home = work / "home"
    home.mkdir(exist_ok=True)
    log_path = work / f"{stack.name}.log"
    started = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(extra, home),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(stack, port, process, log_path)
    try:
        wait_ready(server, timeout)
        ready = time.monotonic() - started
        server.track()
        yield server, ready
    finally:
        stop(server)


def mlserver_python(install: bool) -> str:
    """MLServer's virtualenv, with mlserver-xgboost added without its dependencies: it wants
    the full xgboost package (and 350 MB of NCCL) where xgboost-cpu provides the same module."""
    python = ensure_venv("zoo-mlserver", install=install, base_python=sys.executable)
    stamp = python.parent.parent / ".mlserver-xgboost"
    if not stamp.exists():
        if not install:
            raise PeerUnavailable("mlserver-xgboost is not installed (run without --no-install)")
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "mlserver-xgboost==1.7.1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise PeerUnavailable(f"installing mlserver-xgboost failed: {done.stderr[-300:]}")
        stamp.write_text("mlserver-xgboost==1.7.1\n")
    return str(python)


# --- one run -------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    stack: str
    rps_c64: float | None = None
    p50_c1: float | None = None
    p99_c1: float | None = None
    p50_c64: float | None = None
    hit_rps_c64: float | None = None
    errors: int = 0
    difference: float | None = None
    ready_s: float | None = None
    unavailable: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Startup:
    model: str
    engine: str
    summary: str
    convert_load_s: float
    cached_load_s: float
    ready_s: float | None = None
    rejected: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def time_loads(model: Prepared, cache: Path) -> Startup:
    """servepath's model load in-process: first converting and racing, then from the cache
    (the conversions and the race's outcome)."""
    from servepath.model.loaded import load_model

    started = time.perf_counter()
    first = load_model(model.path, cache_dir=cache)
    convert_s = time.perf_counter() - started
    started = time.perf_counter()
    second = load_model(model.path, cache_dir=cache)
    cached_s = time.perf_counter() - started
    report = second.report
    assert report is not None
    rejected = [
        f"{t.name}: slower ({t.one_row_ms:.2f} / {t.batch_ms:.2f} ms)"
        if t.agrees and t.one_row_ms is not None and t.batch_ms is not None
        else f"{t.name}: {t.verdict}"
        for t in report.trials
        if t.name not in second.engine.split("+")
    ]
    log.info(
        "%s: servepath engine %s (first load %.2f s, cached %.2f s)",
        model.entry.name,
        report.summary(),
        convert_s,
        cached_s,
    )
    del first
    return Startup(
        model.entry.name, second.engine, report.summary(), convert_s, cached_s, None, rejected
    )


def measure(
    server: Server, stack: str, model: Prepared, plan: Plan, work: Path, offset: list[int]
) -> Row:
    row = Row(model.entry.name, stack)
    body_file = work / f"{stack}-body.json"
    body_file.write_text(template(stack, model))
    url = f"http://{HOST}:{server.port}{server.stack.path}"
    variants = ["miss", "hit"] if stack == "servepath" else ["miss"]
    for variant in variants:
        for c in plan.concurrency if variant == "miss" else (64,):
            if plan.warmup_s:
                offset[0] += 10_000_000
                argv = wrk_command(plan, url, variant, body_file, offset[0], c, plan.warmup_s)  # type: ignore[arg-type]
                run_wrk(argv, plan.warmup_s, server.cpu_seconds, plan.server_core)
            offset[0] += 10_000_000
            argv = wrk_command(plan, url, variant, body_file, offset[0], c, plan.duration_s)  # type: ignore[arg-type]
            r: WrkResult = run_wrk(argv, plan.duration_s, server.cpu_seconds, plan.server_core)
            row.errors += r.errors
            answered = max(0, r.requests - r.errors) / r.duration_s  # 2xx only
            log.info(
                "  %-10s %-4s c=%-3d %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d",
                stack,
                variant,
                c,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.errors,
            )
            if variant == "hit":
                row.hit_rps_c64 = answered
            elif c == 1:
                row.p50_c1, row.p99_c1 = r.p50_ms, r.p99_ms
            elif c == 64:
                row.rps_c64, row.p50_c64 = answered, r.p50_ms
    return row


def run(
    models: Sequence[str],
    stacks: Sequence[str],
    plan: Plan,
    *,
    install: bool,
    start_timeout: float,
    out_dir: Path,
) -> Path:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    t0 = time.monotonic()
    rows: list[Row] = []
    startups: list[Startup] = []
    pythons: dict[str, str] = {}
    offset = [0]
    ceiling_rps: float | None = None
    with tempfile.TemporaryDirectory(prefix="servepath-zoo-") as tmp:
        work = Path(tmp)
        for stack in stacks:
            try:
                if stack == "servepath":
                    pythons[stack] = sys.executable
                elif stack == "mlserver":
                    pythons[stack] = mlserver_python(install)
                else:
                    venv = STACKS[stack].venv
                    assert venv is not None
                    pythons[stack] = str(
                        ensure_venv(venv, install=install, base_python=sys.executable)
                    )
            except PeerUnavailable as exc:
                log.warning("%s cannot run: %s", stack, exc)
        install_s = time.monotonic() - t0
        for name in models:
            model = prepare(name, work / "models")
            startups.append(time_loads(model, work / "load-cache" / name))
            for stack in stacks:
                if stack not in pythons:
                    rows.append(Row(name, stack, unavailable="not installed"))
                    continue
                if stack == "mlserver" and model.entry.mlserver is None:
                    rows.append(
                        Row(name, stack, unavailable="no MLServer runtime takes pandas categories")
                    )
                    continue
                stack_work = work / name / stack
                stack_work.mkdir(parents=True)
                data_dir = work / name / "servepath-data"
                try:
                    with running(
                        STACKS[stack],
                        model,
                        python=pythons[stack],
                        work=stack_work,
                        data_dir=data_dir,
                        core=plan.server_core,
                        timeout=start_timeout,
                    ) as (server, ready):
                        difference = check_answers(server, stack, model)
                        row = measure(server, stack, model, plan, stack_work, offset)
                        row.difference, row.ready_s = difference, ready
                        rows.append(row)
                        if stack == "servepath":
                            startups[-1].ready_s = ready
                except (PeerUnavailable, RuntimeError) as exc:
                    log.warning("%s on %s: %s", stack, name, exc)
                    rows.append(Row(name, stack, unavailable=str(exc)[:300]))
        ceiling_work = work / "ceiling"
        ceiling_work.mkdir()
        try:
            model = prepare(models[0], work / "ceiling-model")
            with running(
                CEILING,
                model,
                python=sys.executable,
                work=ceiling_work,
                data_dir=ceiling_work,
                core=plan.server_core,
                timeout=start_timeout,
            ) as (server, _):
                only_64 = dataclasses.replace(plan, concurrency=(64,))
                ceiling_rps = measure(
                    server, "ceiling", model, only_64, ceiling_work, offset
                ).rps_c64
        except (PeerUnavailable, RuntimeError) as exc:
            log.warning("transport ceiling: %s", exc)
    elapsed = time.monotonic() - t0
    result = {
        "started": started_at,
        "elapsed_s": round(elapsed, 1),
        "install_s": round(install_s, 1),
        "plan": {
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "concurrency": list(plan.concurrency),
            "client_core": plan.client_core,
            "server_core": plan.server_core,
        },
        "ceiling_rps_c64": ceiling_rps,
        "rows": [r.to_json() for r in rows],
        "startups": [s.to_json() for s in startups],
        "models": {n: zoomodels.by_name(n).covers for n in models},
        "load": [round(x, 2) for x in os.getloadavg()],
        "cpu": _cpu_model(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "zoo.json").write_text(json.dumps(result, indent=1) + "\n")
    from zooreport import render_chart, render_markdown

    render_chart(result, out_dir / "zoo.png")
    md = out_dir / "zoo.md"
    md.write_text(render_markdown(result, "zoo.png"))
    return md


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help=f"comma-separated (default: {','.join(BENCH_MODELS)})")
    parser.add_argument("--peers", default=",".join(STACK_ORDER), help="stacks, comma-separated")
    parser.add_argument("--quick", action="store_true", help="3 models, 2 s points, 1 s warm-up")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 5)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per point (default 2)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-install", dest="install", action="store_false")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    models = (
        [m for m in args.models.split(",") if m]
        if args.models
        else list(QUICK_MODELS if args.quick else BENCH_MODELS)
    )
    unknown = [m for m in models if m not in {z.name for z in zoomodels.ZOO}]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    stacks = [s for s in STACK_ORDER if s in args.peers.split(",")]
    duration = args.duration or (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    cores = sorted(os.sched_getaffinity(0))
    client, server = (
        (cores[0], cores[1]) if len(cores) >= 2 and shutil.which("taskset") else (None, None)
    )
    plan = Plan((1, 64), duration, warmup, 1, client, server)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        md = run(
            models,
            stacks,
            plan,
            install=args.install,
            start_timeout=args.start_timeout,
            out_dir=args.out_dir,
        )
    except KeyboardInterrupt:
        log.warning("interrupted; servers stopped, no results written")
        return 130
    log.info("wrote %s", md)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
