"""A request's answer as text: the status line, Server-Timing, the body, the failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servepath.client import RequestResult
    from servepath.output import Output


def render_request(out: Output, result: RequestResult) -> None:
    import orjson

    proxy = result.proxy.proxy
    via = f" via proxy {proxy}" if proxy else ""
    took = "" if result.elapsed_ms is None else f" in {result.elapsed_ms:.1f} ms"
    if result.status is not None:
        colour = "green" if result.ok else "red"
        out.print(f"{result.method} {result.url}{via} -> ", (str(result.status), colour), took)
        timing = result.headers.get("server-timing")
        if timing:
            out.print(f"server-timing: {timing}")
        if result.body not in (None, ""):
            out.print(
                result.body
                if isinstance(result.body, str)
                else orjson.dumps(result.body, option=orjson.OPT_INDENT_2).decode()
            )
    else:
        after = "" if result.elapsed_ms is None else f" after {result.elapsed_ms:.1f} ms"
        out.print(f"{result.method} {result.url}{via} -> ", ("failed", "red"), after)
    if not result.ok:
        out.error(f"{result.failure}: {result.message}", result.hints)
