"""`servepath request URL`: send the model's example request and show what came back."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from servepath.cli._app import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, app, base_settings, get_output
from servepath.client import (
    ExampleUnavailable,
    example_from_spec,
    fetch_spec,
    names_no_route,
    predict_url,
    send_request,
)
from servepath.netdiag.errors_map import classify_http_error


def _load_data(data: str) -> Any:
    raw = sys.stdin.buffer.read() if data == "-" else Path(data).read_bytes()
    return orjson.loads(raw)


@app.command()
def request(
    url: Annotated[
        str,
        typer.Argument(
            help="e.g. http://127.0.0.1:8080/decisions; a bare origin means its predict route"
        ),
    ],
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="JSON body from FILE, or - for stdin")
    ] = None,
    proxy: Annotated[str | None, typer.Option(help="Forward proxy URL (overrides *_PROXY)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for connect and for the answer")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """POST the model's example instance (or --data) to URL and print the answer and its time."""
    out = get_output()
    if not url.startswith(("http://", "https://")):
        out.error(f"{url!r} is not an http:// or https:// URL")
        raise typer.Exit(EXIT_USAGE)
    env = base_settings().proxy
    spec: dict[str, Any] | None = None
    if data is not None:
        try:
            payload = _load_data(data)
        except (OSError, orjson.JSONDecodeError) as exc:
            out.error(f"cannot read --data {data}: {exc}")
            raise typer.Exit(EXIT_USAGE) from exc
        if names_no_route(url):
            # only the server knows its predict route; without its document, the default one
            with contextlib.suppress(ExampleUnavailable, httpx.HTTPError):
                spec = fetch_spec(url, proxy_env=env, proxy=proxy, timeout=timeout)
    else:
        try:
            spec = fetch_spec(url, proxy_env=env, proxy=proxy, timeout=timeout)
            payload = example_from_spec(spec, url)
        except ExampleUnavailable as exc:
            out.error(f"{exc}; pass the body with --data FILE")
            raise typer.Exit(EXIT_PROBLEM) from exc
        except httpx.HTTPError as exc:
            kind, message = classify_http_error(exc, proxy=proxy)
            out.error(f"fetching the example from the server's OpenAPI failed ({kind}): {message}")
            out.error(f"to see where the path breaks: servepath doctor {url}")
            raise typer.Exit(EXIT_PROBLEM) from exc
    target = predict_url(url, spec)
    result = send_request(target, payload, proxy_env=env, proxy=proxy, timeout=timeout)
    if json_out:
        out.json({"request": payload, **result.to_json()})
    else:
        via = f" via proxy {result.proxy.proxy}" if result.proxy.proxy else ""
        if result.status is not None:
            out.print(f"POST {target}{via} -> {result.status} in {result.elapsed_ms:.1f} ms")
            timing = result.headers.get("server-timing")
            if timing:
                out.print(f"server-timing: {timing}")
            out.print(
                orjson.dumps(result.body, option=orjson.OPT_INDENT_2).decode()
                if not isinstance(result.body, str)
                else result.body
            )
        else:
            out.print(f"POST {target}{via} failed after {result.elapsed_ms:.1f} ms")
    if not result.ok:
        out.error(f"{result.failure}: {result.message}")
        out.error(f"to see where the path breaks: servepath doctor {url}")
        raise typer.Exit(EXIT_PROBLEM)
    raise typer.Exit(EXIT_OK)
