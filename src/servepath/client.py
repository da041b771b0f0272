"""The HTTP client `servepath request` (and the doctor) use: proxy-aware, with failures named.

Which route a request goes to and which example it carries are read from the server's
OpenAPI document through :mod:`servepath.contract`, as `doctor` and `load` read them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from servepath.config import ProxyEnv
from servepath.contract import OPENAPI_ROUTE, ServerContract, example_for, instances_of
from servepath.errors import ServepathError
from servepath.netdiag.errors_map import HttpErrorKind, classify_http_error
from servepath.netdiag.proxy import ProxyChoice, choose_proxy


@dataclass(frozen=True)
class RequestResult:
    url: str
    ok: bool
    status: int | None
    elapsed_ms: float
    proxy: ProxyChoice
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    failure: HttpErrorKind | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "status": self.status,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "proxy": self.proxy.to_json(),
            "failure": self.failure,
            "message": self.message,
            "headers": self.headers,
            "body": self.body,
        }


class ExampleUnavailable(ServepathError):
    """The server's OpenAPI document has no example for the route (or there is no document)."""


def _client(proxy: ProxyChoice, timeout: float, verify: bool | str = True) -> httpx.Client:
    return httpx.Client(
        proxy=proxy.proxy, timeout=timeout, trust_env=False, verify=verify, follow_redirects=False
    )


def origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def names_no_route(url: str) -> bool:
    """Whether ``url`` is a bare origin, whose predict route is the server's to say."""
    return urlsplit(url).path in ("", "/")


def fetch_spec(
    url: str, *, proxy_env: ProxyEnv, proxy: str | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The OpenAPI document of ``url``'s server.

    Raises :class:`ExampleUnavailable` when the server answers without one, and
    ``httpx.HTTPError`` when it does not answer.
    """
    spec_url = origin(url) + OPENAPI_ROUTE
    choice = choose_proxy(spec_url, proxy_env, proxy)
    with _client(choice, timeout) as client:
        response = client.get(spec_url)
    if response.status_code != 200:
        raise ExampleUnavailable(f"GET {spec_url} answered {response.status_code}")
    try:
        spec = response.json()
    except ValueError:
        raise ExampleUnavailable(f"GET {spec_url} answered with no JSON document") from None
    if not isinstance(spec, dict):
        raise ExampleUnavailable(f"GET {spec_url} answered JSON that is not an OpenAPI document")
    return spec


def predict_url(url: str, spec: Mapping[str, Any] | None) -> str:
    """Where a predict request for ``url`` goes: the route ``url`` names, or for a bare origin
    the predict route the server's document gives (the default one without a document)."""
    parts = urlsplit(url)
    route = ServerContract.from_spec(spec).route_for(parts.path, spec)
    if route == parts.path:
        return url
    return urlunsplit((parts.scheme, parts.netloc, route, parts.query, ""))


def example_from_spec(spec: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The example body ``spec`` documents for the route a request to ``url`` goes to: one
    instance, or the Vertex form."""
    route = urlsplit(predict_url(url, spec)).path
    example = example_for(spec, route)
    spec_url = origin(url) + OPENAPI_ROUTE
    if example is None:
        raise ExampleUnavailable(f"{spec_url} documents no example for POST {route}")
    if not isinstance(example, Mapping) or instances_of(example) is None:
        raise ExampleUnavailable(
            f"the example {spec_url} documents for POST {route} is not an instance or a Vertex body"
        )
    return dict(example)


def fetch_example(
    url: str, *, proxy_env: ProxyEnv, proxy: str | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The example body the server documents for the route a request to ``url`` goes to."""
    spec = fetch_spec(url, proxy_env=proxy_env, proxy=proxy, timeout=timeout)
    return example_from_spec(spec, url)


def send_request(
    url: str,
    payload: Any,
    *,
    proxy_env: ProxyEnv,
    proxy: str | None = None,
    timeout: float = 10.0,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> RequestResult:
    """Send ``payload`` as JSON and report the outcome; never raises for network failures."""
    choice = choose_proxy(url, proxy_env, proxy)
    body = orjson.dumps(payload) if payload is not None else None
    sent_headers = {"content-type": "application/json", **(headers or {})}
    start = time.perf_counter()
    try:
        with _client(choice, timeout) as client:
            response = client.request(method, url, content=body, headers=sent_headers)
    except httpx.HTTPError as exc:
        kind, message = classify_http_error(exc, proxy=choice.proxy)
        return RequestResult(
            url,
            False,
            None,
            (time.perf_counter() - start) * 1000,
            choice,
            failure=kind,
            message=message,
        )
    elapsed = (time.perf_counter() - start) * 1000
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = response.text[:2000]
    ok = 200 <= response.status_code < 300
    message = "" if ok else _status_message(response.status_code, parsed)
    return RequestResult(
        url,
        ok,
        response.status_code,
        elapsed,
        choice,
        parsed,
        dict(response.headers),
        None if ok else "http_status",
        message,
    )


def _status_message(status: int, body: Any) -> str:
    detail = body.get("error") if isinstance(body, dict) else None
    base = f"HTTP {status}"
    if status in (502, 503, 504):
        base += (
            " (a proxy or load balancer could not reach a healthy server behind it)"
            if status != 503
            else " (the service is unavailable or not ready yet)"
        )
    return f"{base}: {detail}" if detail else base
