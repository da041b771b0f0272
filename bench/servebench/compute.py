"""The compute ceiling: the model's own predict cost in-process, without HTTP."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ComputeCost:
    engine: str
    rows: int
    per_call_ms: float

    @property
    def per_row_us(self) -> float:
        return self.per_call_ms * 1000 / self.rows

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "per_row_us": self.per_row_us}


def measure_compute(model_path: Path, budget_s: float) -> list[ComputeCost]:
    """In-process predict cost of the artifact at 1, 64 and 4,096 rows, scikit-learn and
    servepath's compiled predictor (run this pinned to the server's core)."""
    import joblib

    from servepath.model.compiled import compile_pipeline
    from servepath.model.example import CATEGORICAL_FEATURES, NUMERIC_FEATURES, generate_applicants

    pipeline = joblib.load(model_path)
    compiled = compile_pipeline(pipeline)
    columns = list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)
    frame = generate_applicants(4096, seed=7)[columns]
    records: list[dict[str, float | str]] = frame.to_dict("records")
    costs = []
    for rows in (1, 64, 4096):
        sub = frame.iloc[:rows]
        sub_records = records[:rows]
        sklearn_ms = _time_call(pipeline.predict_proba, sub, budget_s)
        compiled_ms = _time_call(compiled.predict_proba, sub_records, budget_s)
        costs.append(ComputeCost("scikit-learn", rows, sklearn_ms))
        costs.append(ComputeCost("compiled", rows, compiled_ms))
    return costs


def _time_call(call: Callable[[Any], Any], arg: Any, budget_s: float) -> float:
    """Median milliseconds per ``call(arg)``, over as many calls as fit in ``budget_s``."""
    call(arg)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < 3 or (time.perf_counter() < deadline and len(samples) < 2000):
        t0 = time.perf_counter()
        call(arg)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def compute_ceiling(model: Path, core: int | None, budget_s: float) -> list[ComputeCost]:
    """Run :func:`measure_compute` in a child pinned to ``core`` (OpenMP sizes itself there)."""
    argv = [sys.executable, str(Path(__file__).resolve()), str(model), str(budget_s)]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"compute measurement failed: {done.stderr.strip()[-500:]}")
    return [ComputeCost(**c) for c in json.loads(done.stdout)]


if __name__ == "__main__":
    costs = measure_compute(Path(sys.argv[1]), float(sys.argv[2]))
    print(json.dumps([dataclasses.asdict(c) for c in costs]))
