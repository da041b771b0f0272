"""Small real HTTP servers with known behaviour, run as processes by the load tests.

``python -m tests.load.servers stall --port P --stall-after 1.5 --stall-for 1``: answers at
once, except that once, ``stall-after`` seconds after its first request, its event loop
blocks for ``stall-for`` seconds, holding every request (as a GC pause or a stuck dependency
would).

``python -m tests.load.servers limited --port P --slots 4 --service-ms 20``: at most
``slots`` requests are served at a time, each for ``service-ms``: its capacity is
``slots / service-ms`` requests per second, and requests beyond it queue.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop
from aiohttp import web

BODY = b'{"decision": "approve", "probability": 0.9}'
HEADERS = {"Content-Type": "application/json", "Server-Timing": "total;dur=0.05", "X-Cache": "MISS"}


def stall_app(stall_after: float, stall_for: float) -> web.Application:
    state: dict[str, float | bool] = {"first": 0.0, "stalled": False}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        if not state["first"]:
            state["first"] = now
        if not state["stalled"] and now - float(state["first"]) >= stall_after:
            state["stalled"] = True
            time.sleep(stall_for)  # blocks the whole server, on purpose
        return web.Response(body=BODY, headers=HEADERS)

    app = web.Application()
    app.router.add_post("/decisions", handle)
    return app


def limited_app(slots: int, service_s: float) -> web.Application:
    semaphore: list[asyncio.Semaphore] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if not semaphore:
            semaphore.append(asyncio.Semaphore(slots))
        async with semaphore[0]:
            # uvloop's timers round to the millisecond and fire up to ~1 ms late, so the
            # capacity is between slots / (service + 1 ms) and slots / service.
            await asyncio.sleep(service_s)
        return web.Response(body=BODY, headers=HEADERS)

    app = web.Application()
    app.router.add_post("/decisions", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["stall", "limited"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stall-after", type=float, default=1.0)
    parser.add_argument("--stall-for", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--service-ms", type=float, default=20.0)
    args = parser.parse_args()
    if args.kind == "stall":
        app = stall_app(args.stall_after, args.stall_for)
    else:
        app = limited_app(args.slots, args.service_ms / 1000)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
