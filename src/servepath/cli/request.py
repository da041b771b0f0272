"""`servepath request URL`: send the model's example request and show what came back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from servepath.cli._app import (
    EXIT_OK,
    EXIT_PROBLEM,
    app,
    base_settings,
    failure_context,
    get_output,
)
from servepath.cli._client_options import (
    ApiKeyOption,
    CafileOption,
    InsecureOption,
    ProxyOption,
    read_input,
)
from servepath.errors import ClientFailure, ExampleUnavailable, InputNotRead
from servepath.render.text_request import render_request

if TYPE_CHECKING:
    from servepath.client import RequestResult
    from servepath.output import Output


def _load_data(data: str) -> Any:
    import orjson

    raw = read_input(data)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputNotRead(data, str(exc)) from exc


@app.command()
def request(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="e.g. http://127.0.0.1:8080/decisions; a bare origin (http://HOST:PORT) "
            "means the server's own predict route.",
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", metavar="FILE", help="JSON body from FILE, or - for stdin."),
    ] = None,
    proxy: ProxyOption = None,
    cafile: CafileOption = None,
    insecure: InsecureOption = False,
    api_key: ApiKeyOption = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds for connect and for the answer.")
    ] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send the model's example request and show the answer.

    POSTs the example instance the server documents in its OpenAPI (or the body given with
    --data) and prints the status, the time of the request itself, the server's
    Server-Timing and the answer. A failure is named (dns, refused, connect_timeout,
    read_timeout, tls, proxy, redirect, http_status, ...) with what to do about it.
    Exit 0 on a 2xx answer, 1 otherwise, 2 on bad usage.
    """
    from servepath.client import (
        Trust,
        auth_headers,
        example_from_spec,
        fetch_spec,
        fetch_v2_example,
        names_no_route,
        predict_url,
        send_request,
    )
    from servepath.contract import v2_metadata_route
    from servepath.netdiag.answerer import ask_the_proxy, name_the_answerer, refused_on_the_way

    out = get_output()
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{url!r} is not an http:// or https:// URL (e.g. http://{url.split('/')[0]}/decisions)",
            param_hint="URL",
        )
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile} is not a file", param_hint="--cafile")
    settings = base_settings()
    env = settings.proxy
    trust = Trust.resolve(str(cafile) if cafile else None, insecure, settings.ssl_cert_file)
    auth = auth_headers(api_key or settings.api_key)
    spec: dict[str, Any] | None = None
    payload: Any = None
    if url.startswith("https://"):
        trust.context()  # a CA bundle that cannot be read is bad usage, before any request
    if data is not None:
        payload = _load_data(data)
        if names_no_route(url):
            # only the server knows its predict route; without its document, the default
            try:
                spec = fetch_spec(
                    url, proxy_env=env, proxy=proxy, timeout=timeout, trust=trust, headers=auth
                )
            except (ExampleUnavailable, ClientFailure):  # then the default route
                spec = None
    else:
        try:
            spec = fetch_spec(
                url, proxy_env=env, proxy=proxy, timeout=timeout, trust=trust, headers=auth
            )
            payload = example_from_spec(spec, url)
            if v2_metadata_route(urlsplit(url).path) is not None:
                payload = fetch_v2_example(
                    url, payload, proxy_env=env, proxy=proxy, timeout=timeout, trust=trust,
                    headers=auth,
                )  # fmt: skip
        except ClientFailure as exc:  # the failed request is the result this command shows
            _finish(out, json_out, None, name_the_answerer(exc.result, url))
        except ExampleUnavailable as exc:
            if exc.result is not None:
                # a proxy's answer is no missing example: --data would meet the same proxy
                _finish(out, json_out, None, name_the_answerer(exc.result, url))
            failure_context(url=url, stage="openapi")
            hints = exc.hints or ("pass the body with --data FILE",)
            raise ExampleUnavailable(str(exc), failure=exc.failure, hints=hints) from exc
    target = predict_url(url, spec)
    result = send_request(
        target, payload, proxy_env=env, proxy=proxy, timeout=timeout, trust=trust,
        headers=auth,
    )  # fmt: skip
    if ask_the_proxy(result, sent_body=payload is not None):
        again = send_request(
            target, None, method="GET", proxy_env=env, proxy=proxy, timeout=timeout,
            trust=trust, headers=auth,
        )  # fmt: skip
        result = refused_on_the_way(result, again)
    _finish(out, json_out, payload, name_the_answerer(result))


def _finish(out: Output, json_out: bool, payload: Any, result: RequestResult) -> None:
    if json_out:
        out.json({"request": payload, **result.to_json()})
    else:
        render_request(out, result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_PROBLEM)
