"""What the live page's ring (``GET /_ui``) costs the request path.

    .venv/bin/python bench/ui_ring.py [--requests N] [--rounds R] [--json]

Two measurements, in process (no sockets, so that nothing but the app's own work is timed):

* ``SeenRing.note()`` alone: the call ``_http`` makes after each answer to a predict route;
* one whole ``POST /decisions`` through the ASGI app — answered from the memory cache, the
  cheapest prediction there is, so the ring's share is as large as it gets — with the page
  on (``--ui /_ui``) and off (``--ui off``), in alternating rounds; the median of the rounds.
  The heap is frozen first, as the server freezes it once its model has loaded. The medians
  differ by a few µs from run to run even between two identical apps: compare the difference
  with the spread of the rounds, and the fastest rounds.
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
import timeit
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson

from servepath.cache import open_cache
from servepath.config import Settings
from servepath.model.example import EXAMPLE_APPLICANT, write_example
from servepath.model.loaded import load_model
from servepath.service.app import ServepathApp
from servepath.service.ui import SeenRing
from servepath.store.base import NoLog


def note_ns(n: int = 1_000_000) -> float:
    ring = SeenRing()
    headers = [(b"host", b"x"), (b"content-type", b"application/json")]
    timings: list[Any] = [("cache", 0.01, "hit")]
    client = ("127.0.0.1", 5000)
    note = ring.note
    seconds = timeit.timeit(
        lambda: note(200, 0.0001, "/decisions", "id", client, headers, timings), number=n
    )
    return seconds / n * 1e9


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
        (b"x-forwarded-for", b"198.51.100.7"),
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
    started = time.perf_counter()
    for _ in range(n):
        await app(scope(), receive, send)
    return (time.perf_counter() - started) / n * 1e6


async def _app(model_path: Path, ui: str | None) -> ServepathApp:
    settings = Settings(ui_route=ui, cache_url="memory", store_url="off", access_log=False)
    app = ServepathApp(
        settings, model=load_model(model_path), cache=open_cache(settings), store=NoLog()
    )
    await app.startup()
    return app


async def request_us(model_path: Path, n: int, rounds: int) -> dict[str, Any]:
    apps = {"on": await _app(model_path, "/_ui"), "off": await _app(model_path, None)}
    # As the server does once its model has loaded (app._settle_heap): the long-lived heap
    # is frozen, so that a full collection does not walk the model on every run.
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
    return {
        "requests_per_round": n,
        "rounds": rounds,
        "us_per_request_ui_on": round(on, 2),
        "us_per_request_ui_off": round(off, 2),
        "us_difference": round(on - off, 2),
        # The fastest round of each: the least disturbed by the machine and the collector.
        "us_min_ui_on": round(min(runs["on"]), 2),
        "us_min_ui_off": round(min(runs["off"]), 2),
        "ratio_on_off": round(on / off, 4),
        # How far apart the rounds of one setting are: a difference inside it is noise.
        "spread_us_off": round(max(runs["off"]) - min(runs["off"]), 2),
        "rounds_on": [round(x, 2) for x in runs["on"]],
        "rounds_off": [round(x, 2) for x in runs["off"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "example-model.joblib"
        write_example(model_path)
        result = {
            "note_ns": round(note_ns(), 1),
            **asyncio.run(request_us(model_path, args.requests, args.rounds)),
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"SeenRing.note(): {result['note_ns']:.0f} ns per call")
        print(
            f"POST /decisions (cache hit, in process): {result['us_per_request_ui_off']:.2f} µs"
            f" with --ui off, {result['us_per_request_ui_on']:.2f} µs with the page on:"
            f" {result['us_difference']:+.2f} µs, ratio {result['ratio_on_off']:.4f}"
            f" (rounds of --ui off spread over {result['spread_us_off']:.2f} µs)"
        )
        print(
            f"fastest rounds: {result['us_min_ui_off']:.2f} µs off,"
            f" {result['us_min_ui_on']:.2f} µs on"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
