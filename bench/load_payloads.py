"""What a fresh instance costs `servepath load`, beside a repeated one, in one run.

    .venv/bin/python bench/load_payloads.py [--requests 200000] [--batch 1]

Times ``PayloadSource.body`` for the example model's instance: repeated (a pre-encoded
body), fresh from the pools of drawn values (what the generator sends by default), and
fresh drawn whole per request (``InstanceSpace.draw`` + orjson, what pools replace). The
ratio to the repeated body is what reads across machines.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from servepath.load.payloads import PayloadSource
from servepath.load.sampling import InstanceSpace

EXAMPLE = {
    "income": 52000.0,
    "age": 38,
    "employment_years": 6.5,
    "loan_amount": 12000.0,
    "term_months": 36,
    "debt_to_income": 0.28,
    "credit_history_years": 12.0,
    "past_defaults": 0,
    "home_ownership": "mortgage",
    "purpose": "car",
}
SCHEMA = {
    "properties": {
        "home_ownership": {"enum": ["rent", "mortgage", "own", "other"]},
        "purpose": {"enum": ["debt_consolidation", "home_improvement", "car", "education"]},
    }
}


def per_call_us(call: object, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        call(i)  # type: ignore[operator]
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    space = InstanceSpace.from_schema(SCHEMA, EXAMPLE)
    repeated = PayloadSource([EXAMPLE], unique=0.0, batch=args.batch, space=space)
    pooled = PayloadSource([EXAMPLE], unique=1.0, batch=args.batch, space=space)
    started = time.perf_counter()
    pooled.prepare()
    prepare_s = time.perf_counter() - started
    rng = random.Random(1)

    def whole(_: int) -> bytes:
        return orjson.dumps([space.draw(rng) for _ in range(args.batch)])

    rows = {
        "repeated body": per_call_us(repeated.body, args.requests),
        "fresh, from pools": per_call_us(pooled.body, args.requests),
        "fresh, drawn whole": per_call_us(whole, args.requests // 10),
    }
    base = rows["repeated body"]
    print(f"{'body':<22}{'µs per request':>16}{'× repeated':>12}")
    for name, us in rows.items():
        print(f"{name:<22}{us:>16.2f}{us / base:>12.1f}")
    print(f"drawing the pools: {prepare_s * 1000:.0f} ms once per generator process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
