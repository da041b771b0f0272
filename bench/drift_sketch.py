"""What live drift (``serve --reference-profile``) costs per row, side by side in one run.

    .venv/bin/python bench/drift_sketch.py [--requests N] [--rounds R] [--json]

Two measurements, in process (no sockets, so that nothing but the work itself is timed), on
the example model and a profile of its training data (10 features: 8 numbers, 2 categories):

* the sketch alone: ``Sketch.note()`` for every request plus the folds it sets off, per row,
  for requests of 1 row and of 64 rows, on rows parsed and validated one by one beforehand
  (the counting is done a chunk of rows at a time, so the per-row cost hardly depends on the
  request's size);
* one whole ``POST /decisions`` of one row through the ASGI app — answered from the memory
  cache, the cheapest prediction there is, so drift's share is as large as it gets — with
  the profile and without it, in alternating rounds; the median of the rounds and their
  ratio, and the median of each round's difference with the round beside it. The heap is
  frozen first, as the server freezes it once its model has loaded.

Times are the thread's CPU time, not the wall clock: on a machine shared with other work the
wall clock counts the waits for a core too. Compare the difference with the spread of the
rounds: two identical apps differ by a few µs from round to round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson

from servepath.cache import open_cache
from servepath.config import Settings
from servepath.model.example import (
    CATEGORICAL_FEATURES,
    EXAMPLE_APPLICANT,
    NUMERIC_FEATURES,
    generate_applicants,
    write_example,
)
from servepath.model.loaded import LoadedModel, load_model
from servepath.model.profile import Profile, build_profile, write_profile
from servepath.service.app import ServepathApp
from servepath.service.sketch import Sketch
from servepath.store.base import NoLog


def sketch_ns_per_row(profile: Profile, model: LoadedModel, rows: int, per_request: int) -> float:
    """CPU nanoseconds per row of noting ``rows`` fresh rows (each parsed and validated on
    its own beforehand, as the server's are: objects spread over the heap, not one hot row
    again and again) in requests of ``per_request``, the folds they set off included."""
    frame = generate_applicants(4_096, seed=5)[list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)]
    bodies = [orjson.dumps(r) for r in frame.to_dict("records")]
    validate = model.schema.validate_one
    fresh = [validate(orjson.loads(bodies[i % len(bodies)])) for i in range(rows)]
    requests = [fresh[i : i + per_request] for i in range(0, rows, per_request)]
    sketch = Sketch(profile)
    note = sketch.note
    started = time.thread_time()
    for request in requests:
        note(request)
    sketch.fold()
    return (time.thread_time() - started) / rows * 1e9


async def _requests(app: ServepathApp, n: int) -> float:
    body = orjson.dumps(EXAMPLE_APPLICANT)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": "/decisions",
            "headers": list(headers),
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "scheme": "http",
            "http_version": "1.1",
            "query_string": b"",
        }

    for _ in range(200):  # warm: fill the cache, settle the allocator
        await app(scope(), receive, send)
    started = time.thread_time()
    for _ in range(n):
        await app(scope(), receive, send)
    return (time.thread_time() - started) / n * 1e6


async def _app(model: LoadedModel, profile: Path | None) -> ServepathApp:
    settings = Settings(
        reference_profile=profile, cache_url="memory", store_url="off", access_log=False
    )
    app = ServepathApp(settings, model=model, cache=open_cache(settings), store=NoLog())
    await app.startup()
    return app


async def request_us(model: LoadedModel, profile: Path, n: int, rounds: int) -> dict[str, Any]:
    apps = {"on": await _app(model, profile), "off": await _app(model, None)}
    gc.collect()
    gc.freeze()
    runs: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for i in range(rounds):
            # Each order half the time: whichever runs second finds the caches warmer.
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                runs[name].append(await _requests(apps[name], n))
    finally:
        for app in apps.values():
            await app.shutdown()
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    # Paired: each round's on minus the off run beside it, so that a slower minute of a
    # shared machine weighs on both.
    paired = statistics.median(a - b for a, b in zip(runs["on"], runs["off"], strict=True))
    return {
        "requests_per_round": n,
        "rounds": rounds,
        "us_per_request_drift_on": round(on, 2),
        "us_per_request_drift_off": round(off, 2),
        "us_difference_paired": round(paired, 2),
        "ratio_on_off": round(on / off, 4),
        "us_min_drift_on": round(min(runs["on"]), 2),
        "us_min_drift_off": round(min(runs["off"]), 2),
        "spread_us_off": round(max(runs["off"]) - min(runs["off"]), 2),
        "rounds_on": [round(x, 2) for x in runs["on"]],
        "rounds_off": [round(x, 2) for x in runs["off"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000, help="per round")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "example-model.joblib"
        write_example(model_path)
        model = load_model(model_path)
        profile = build_profile(
            model.schema,
            generate_applicants(20_000),
            model_name=model.name,
            model_version=model.version,
        )
        profile_path = Path(tmp) / "profile.json"
        write_profile(profile, profile_path)
        result = {
            "features": len(profile.features),
            "sketch_ns_per_row_1_row_requests": round(
                sketch_ns_per_row(profile, model, 100_000, 1), 1
            ),
            "sketch_ns_per_row_64_row_requests": round(
                sketch_ns_per_row(profile, model, 100_000, 64), 1
            ),
            **asyncio.run(request_us(model, profile_path, args.requests, args.rounds)),
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"sketch alone ({result['features']} features): "
            f"{result['sketch_ns_per_row_1_row_requests'] / 1000:.2f} µs per row in 1-row "
            f"requests, {result['sketch_ns_per_row_64_row_requests'] / 1000:.2f} µs per row "
            "in 64-row requests"
        )
        print(
            f"POST /decisions of one row (cache hit, in process): "
            f"{result['us_per_request_drift_off']:.2f} µs without a profile, "
            f"{result['us_per_request_drift_on']:.2f} µs with one: "
            f"{result['us_difference_paired']:+.2f} µs (paired rounds), ratio "
            f"{result['ratio_on_off']:.4f} "
            f"(rounds without spread over {result['spread_us_off']:.2f} µs)"
        )
        print(
            f"fastest rounds: {result['us_min_drift_off']:.2f} µs off, "
            f"{result['us_min_drift_on']:.2f} µs on"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
