"""The stacks under test, their request formats, and where their files live."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

BENCH_DIR = Path(__file__).resolve().parents[1]
ROOT = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
LUA_DIR = BENCH_DIR / "lua"
VENVS_DIR = BENCH_DIR / ".venvs"
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"

Variant = Literal["miss", "hit"]
RequestFormat = Literal["instance", "bentoml", "v2"]
INCOME_PLACEHOLDER = "@INCOME@"
#: Each measured or warm-up wrk run starts its unique-applicant counter this far past the last,
#: more than any run sends, so no run repeats an instance an earlier one sent.
OFFSET_STRIDE = 10_000_000
#: Largest difference tolerated between a stack's probability and scikit-learn's, for the
#: example applicant: responses are rounded to six decimals.
ANSWER_TOLERANCE = 2e-6

TUTORIAL = "tutorial"
CEILING = "ceiling"
SERVEPATH = "servepath"
BATCHING_PEERS = ("bentoml", "mlserver", "litserve")


@dataclass(frozen=True)
class Stack:
    """One HTTP stack under test and how to reach it."""

    name: str
    label: str
    path: str
    health: str
    fmt: RequestFormat
    has_cache: bool
    has_model: bool
    venv: str | None  # None: servepath's own interpreter
    config: str


_ALL = (
    Stack(
        SERVEPATH, "servepath", path="/decisions", health="/", fmt="instance",
        has_cache=True, has_model=True, venv=None,
        config="defaults: in-process cache, SQLite prediction log, 1 worker",
    ),
    Stack(
        TUTORIAL, "tutorial FastAPI", path="/decisions", health="/", fmt="instance",
        has_cache=False, has_model=True, venv="tutorial",
        config="pydantic model, plain def endpoint, predict_proba on a 1-row DataFrame, uvicorn",
    ),
    Stack(
        "bentoml", "BentoML", path="/predict", health="/readyz", fmt="bentoml",
        has_cache=False, has_model=True, venv="bentoml",
        config="1 worker, adaptive batching (max 64)",
    ),
    Stack(
        "mlserver", "MLServer", path="/v2/models/decision/infer",
        health="/v2/models/decision/ready", fmt="v2",
        has_cache=False, has_model=True, venv="mlserver",
        config="mlserver-sklearn runtime, 1 parallel worker, adaptive batching (max 64, 5 ms)",
    ),
    Stack(
        "litserve", "LitServe", path="/predict", health="/health", fmt="instance",
        has_cache=False, has_model=True, venv="litserve",
        config="1 worker on CPU, batching (max 64, 5 ms)",
    ),
    Stack(
        CEILING, "transport ceiling", path="/decisions", health="/", fmt="instance",
        has_cache=False, has_model=False, venv=None,
        config="uvicorn + httptools + uvloop, constant JSON, no model",
    ),
)  # fmt: skip
#: Every stack by name, in the order runs and tables use.
STACKS: dict[str, Stack] = {s.name: s for s in _ALL}


def request_body(fmt: RequestFormat, instance: Mapping[str, float | str]) -> str:
    """One request for ``instance`` in a stack's format, income replaced by the placeholder."""
    fields: dict[str, Any] = dict(instance)
    fields["income"] = INCOME_PLACEHOLDER
    if fmt == "instance":
        doc: Any = fields
    elif fmt == "bentoml":
        doc = {"applicants": [fields]}
    else:
        doc = {
            "parameters": {"content_type": "pd"},
            "inputs": [_v2_input(k, v) for k, v in fields.items()],
        }
    text = json.dumps(doc, separators=(",", ":"))
    return text.replace(f'"{INCOME_PLACEHOLDER}"', INCOME_PLACEHOLDER)


def _v2_input(name: str, value: Any) -> dict[str, Any]:
    if value == INCOME_PLACEHOLDER or isinstance(value, float):
        return {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
    if isinstance(value, int):
        return {"name": name, "shape": [1], "datatype": "INT64", "data": [value]}
    return {
        "name": name,
        "shape": [1],
        "datatype": "BYTES",
        "parameters": {"content_type": "str"},
        "data": [value],
    }


def answer_probability(fmt: RequestFormat, body: Any) -> float:
    """The probability of the decided class in a stack's response body."""
    if fmt == "instance":
        return float(body["probability"])
    if fmt == "bentoml":
        return float(body[0]["probability"])
    outputs = body["outputs"]
    return float(max(outputs[0]["data"]))
