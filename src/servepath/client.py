"""The HTTP client `servepath request` (and `load`) use: proxy-aware, trust explicit,
failures named, times honest.

Which route a request goes to and which example it carries are read from the server's
OpenAPI document through :mod:`servepath.contract`, as `doctor` and `load` read them; which
proxy it goes through is decided by :func:`servepath.net.proxy.choose_proxy`, as for
`http` and `doctor`; which certificates it trusts by :class:`Trust`, the same for every
client command (``--cafile``, ``--insecure``, ``SSL_CERT_FILE``, else the system store).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson

from servepath.config import ProxyEnv
from servepath.contract import (
    OPENAPI_ROUTE,
    V2_FORM,
    NoExample,
    predict_url,
    request_example,
    v2_infer_body,
    v2_metadata_route,
)
from servepath.errors import ClientFailure, ExampleUnavailable, UsageError
from servepath.net.proxy import ProxyChoice, choose_proxy

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ClientFailure",
    "ExampleUnavailable",
    "RequestResult",
    "Trust",
    "example_from_spec",
    "fetch_example",
    "fetch_spec",
    "fetch_v2_example",
    "names_no_route",
    "origin",
    "predict_url",
    "send_request",
]

Stage = Literal["openapi", "predict"]

#: Failures a request can end in: the shared HTTP failure kinds, and the client's own.
#: (``redirect``: the server answered 3xx; ``no_example``: it documents no example body.)
CONNECTION_FAILURES = frozenset(
    {
        "dns",
        "refused",
        "unreachable",
        "reset",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "pool_timeout",
        "tls",
        "proxy",
        "protocol",
    }
)


# --- trust --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """Which server certificates a client accepts, and why (what the user said)."""

    cafile: str | None = None
    verify: bool = True
    source: str = "system"  # "system", "--cafile", "SSL_CERT_FILE" or "--insecure"

    @classmethod
    def resolve(cls, cafile: str | None, insecure: bool, ssl_cert_file: str | None) -> Trust:
        """``--insecure`` wins, then ``--cafile``, then ``SSL_CERT_FILE``, then the system."""
        if insecure:
            return cls(None, False, "--insecure")
        if cafile:
            return cls(cafile, True, "--cafile")
        if ssl_cert_file:
            return cls(ssl_cert_file, True, "SSL_CERT_FILE")
        return cls()

    def describe(self) -> str:
        if not self.verify:
            return "certificates not verified (--insecure)"
        if self.cafile is None:
            return "the system trust store"
        return f"{self.cafile} ({self.source})"

    def context(self) -> ssl.SSLContext:
        """The TLS context of this trust; a usage error when the CA bundle cannot be read."""
        if not self.verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cafile=self.cafile)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"cannot load the CA bundle {self.cafile} ({self.source}): {exc}"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        return {"cafile": self.cafile, "verify": self.verify, "source": self.source}


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestResult:
    """One request and its outcome. ``elapsed_ms`` is the request alone: from the first
    byte of work on the wire (connect included) to the last byte of the answer; building
    the client and its TLS context is not in it."""

    url: str
    ok: bool
    status: int | None
    elapsed_ms: float | None
    proxy: ProxyChoice
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    message: str = ""
    method: str = "POST"
    stage: Stage = "predict"
    location: str | None = None  # where a 3xx pointed
    hints: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "method": self.method,
            "stage": self.stage,
            "ok": self.ok,
            "status": self.status,
            "elapsed_ms": None if self.elapsed_ms is None else round(self.elapsed_ms, 3),
            "proxy": self.proxy.to_json(),
            "failure": self.failure,
            "message": self.message,
            "hints": list(self.hints),
            "location": self.location,
            "headers": self.headers,
            "body": self.body,
        }


# --- URLs and the contract ----------------------------------------------------------------


def origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def names_no_route(url: str) -> bool:
    """Whether ``url`` is a bare origin, whose predict route is the server's to say."""
    return urlsplit(url).path in ("", "/")


def example_from_spec(spec: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The example body ``spec`` documents for the route a request to ``url`` goes to: one
    instance, or the Vertex form."""
    example = request_example(spec, urlsplit(predict_url(url, spec)).path)
    try:
        example.require(origin(url) + OPENAPI_ROUTE)
    except NoExample as exc:
        raise ExampleUnavailable(str(exc)) from exc
    return dict(example.body)


# --- the driver ---------------------------------------------------------------------------


def _client(choice: ProxyChoice, timeout: float, trust: Trust) -> httpx.Client:
    import httpx

    # The trust store is read only when TLS is spoken: to the server, or to the proxy
    # (loading the system's takes tens of milliseconds, and plain HTTP has no use for it).
    tls = any((url or "").lower().startswith("https://") for url in (choice.url, choice.proxy))
    return httpx.Client(
        proxy=choice.proxy,
        timeout=timeout,
        trust_env=False,
        verify=trust.context() if tls else False,
        follow_redirects=False,
    )


def _warm_up() -> None:
    # The first connection of a process encodes its host with the idna codec (a lazy
    # import, about a millisecond): pay for it before a request is timed.
    "localhost".encode("idna")


def _exchange(
    url: str,
    *,
    method: str,
    content: bytes | None,
    headers: Mapping[str, str],
    proxy_env: ProxyEnv,
    proxy: str | None,
    timeout: float,
    trust: Trust,
    stage: Stage,
    about: str | None = None,
) -> tuple[RequestResult, httpx.Response | None]:
    """One request, never following redirects; network failures come back named (and the
    hints about them speak of ``about``, the URL the user asked for, when it is another)."""
    import httpx

    from servepath.net.http_errors import classify_http_error

    choice = choose_proxy(url, proxy_env, proxy)
    try:
        client = _client(choice, timeout, trust)
    except (ValueError, ImportError) as exc:  # a proxy URL httpx cannot use (socks://)
        raise UsageError(f"cannot use proxy {choice.proxy}: {exc}") from exc
    _warm_up()
    with client:
        start = time.perf_counter()
        try:
            response = client.request(method, url, content=content, headers=dict(headers))
            response.read()
        except httpx.HTTPError as exc:
            elapsed = (time.perf_counter() - start) * 1000
            kind, message = classify_http_error(exc, proxy=choice.proxy)
            result = RequestResult(
                url, False, None, elapsed, choice, failure=kind, message=message,
                method=method, stage=stage,
                hints=failure_hints(kind, about or url, choice=choice, trust=trust),
            )  # fmt: skip
            return result, None
        elapsed = (time.perf_counter() - start) * 1000
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = response.text[:2000]
    status = response.status_code
    ok = 200 <= status < 300
    location = response.headers.get("location")
    failure: str | None = None
    message = ""
    hints: tuple[str, ...] = ()
    if not ok:
        failure = "redirect" if 300 <= status < 400 else "http_status"
        target = urljoin(url, location) if location else None
        message = status_message(status, response.reason_phrase, parsed, method, url, target)
        hints = status_hints(status, parsed, about or url, target)
    result = RequestResult(
        url, ok, status, elapsed, choice, parsed, dict(response.headers), failure, message,
        method, stage, location, hints,
    )  # fmt: skip
    return result, response


def fetch_spec(
    url: str,
    *,
    proxy_env: ProxyEnv,
    proxy: str | None = None,
    timeout: float = 10.0,
    trust: Trust | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of ``url``'s server.

    Raises :class:`ExampleUnavailable` when the server answers without one (a redirect, a
    404, not JSON), and :class:`ClientFailure` when it does not answer.
    """
    spec_url = origin(url) + OPENAPI_ROUTE
    result, response = _exchange(
        spec_url, method="GET", content=None, headers=dict(headers or {}), proxy_env=proxy_env,
        proxy=proxy,
        timeout=timeout, trust=trust or Trust(), stage="openapi", about=url,
    )  # fmt: skip
    if response is None:
        raise ClientFailure(result)
    if result.status == 200 and isinstance(result.body, dict):
        return result.body
    if result.status is not None and 300 <= result.status < 400:
        moved = urljoin(spec_url, result.location or "")
        there = _same_route(url, moved) if result.location else None
        message = f"GET {spec_url} answered {result.status}: the server redirects to {moved}"
        hints = (f"send the request there: servepath request {there}",) if there else ()
        raise ExampleUnavailable(
            message, failure="redirect", result=_replace(result, message=message, hints=hints)
        )
    if result.status == 401:
        # the server is there and wants a key: that, not a missing example, is the news
        raise ClientFailure(result)
    if result.status == 200:
        message = f"GET {spec_url} answered with no JSON document"
    else:
        message = (
            f"GET {spec_url} answered {result.status}: no OpenAPI document to take the example from"
        )
    hints = ("pass the body with --data FILE",)
    raise ExampleUnavailable(
        message,
        failure="no_example",
        result=_replace(result, ok=False, failure="no_example", message=message, hints=hints),
    )


def _replace(result: RequestResult, **changes: Any) -> RequestResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _same_route(url: str, moved_spec_url: str) -> str:
    """``url`` on the origin a redirect of its server's OpenAPI document points to."""
    parts, moved = urlsplit(url), urlsplit(moved_spec_url)
    return urlunsplit((moved.scheme, moved.netloc, parts.path, parts.query, ""))


def fetch_example(
    url: str,
    *,
    proxy_env: ProxyEnv,
    proxy: str | None = None,
    timeout: float = 10.0,
    trust: Trust | None = None,
) -> dict[str, Any]:
    """The example body the server documents for the route a request to ``url`` goes to."""
    spec = fetch_spec(url, proxy_env=proxy_env, proxy=proxy, timeout=timeout, trust=trust)
    return example_from_spec(spec, url)


def fetch_v2_example(
    url: str,
    instance: Mapping[str, Any],
    *,
    proxy_env: ProxyEnv,
    proxy: str | None = None,
    timeout: float = 10.0,
    trust: Trust | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The V2 request for ``url`` (a ``/v2/models/NAME/infer`` URL): ``instance``'s values
    as the tensors the model's metadata (``GET /v2/models/NAME``) lists.

    Raises :class:`ClientFailure` when the metadata request fails (a model the server does
    not serve: its 404 names the one it does), :class:`ExampleUnavailable` when the tensors
    cannot be built from the example.
    """
    parts = urlsplit(url)
    route = v2_metadata_route(parts.path)
    if route is None:
        raise ValueError(f"{url} is not a V2 infer URL")
    meta_url = urlunsplit((parts.scheme, parts.netloc, route, "", ""))
    result, response = _exchange(
        meta_url, method="GET", content=None, headers=dict(headers or {}), proxy_env=proxy_env,
        proxy=proxy, timeout=timeout, trust=trust or Trust(), stage="openapi", about=url,
    )  # fmt: skip
    if response is None or not result.ok:
        raise ClientFailure(result)
    body = v2_infer_body(result.body, instance)
    if body is None:
        raise ExampleUnavailable(
            f"this is the V2 (Open Inference Protocol) route, and the model's metadata "
            f"(GET {meta_url}) names inputs the server's example does not fill",
            hints=(f"pass a V2 body with --data FILE: {V2_FORM}",),
        )
    return body


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header that carries an API key to servepath (RFC 6750 bearer token)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def send_request(
    url: str,
    payload: Any,
    *,
    proxy_env: ProxyEnv,
    proxy: str | None = None,
    timeout: float = 10.0,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    trust: Trust | None = None,
) -> RequestResult:
    """Send ``payload`` as JSON and report the outcome; never raises for network failures."""
    body = orjson.dumps(payload) if payload is not None else None
    sent_headers = {"content-type": "application/json", **(headers or {})}
    result, _ = _exchange(
        url, method=method, content=body, headers=sent_headers, proxy_env=proxy_env,
        proxy=proxy, timeout=timeout, trust=trust or Trust(), stage="predict",
    )  # fmt: skip
    return result


# --- what a failure means (pure) -----------------------------------------------------------

_STATUS_NOTES = {
    502: "a proxy or load balancer could not reach a healthy server behind it",
    503: "the service is unavailable or not ready yet",
    504: "a proxy or load balancer gave up waiting for the server behind it",
}


def status_message(
    status: int, reason: str, body: Any, method: str, url: str, location: str | None
) -> str:
    """What an answer with an error (or redirect) status says, in one sentence."""
    path = urlsplit(url).path or "/"
    head = f"HTTP {status} {reason}".rstrip()
    if 300 <= status < 400:
        where = f" to {location}" if location else " (with no Location header)"
        return f"{head}: the server redirects {method} {path}{where}"
    detail = body.get("error") if isinstance(body, dict) else None
    note = _STATUS_NOTES.get(status)
    if note:
        head += f" ({note})"
    return f"{head}: {detail}" if detail else head


def status_hints(status: int, body: Any, url: str, location: str | None) -> tuple[str, ...]:
    """What to do about an answer's status: a path problem gets the doctor, a payload problem
    the fields to fix, a redirect where to go."""
    from servepath.output import shell_command

    if 300 <= status < 400:
        if location:
            return (f"send the request there: {shell_command('servepath', 'request', location)}",)
        return ()
    if status in (400, 422) and v2_metadata_route(urlsplit(url).path) is not None:
        return (
            f"this is the V2 (Open Inference Protocol) route: its body is {V2_FORM}; leave "
            "out --data and the tensors are built from the model's metadata",
        )
    if status in (400, 422):
        return ("the server read the request and rejected its body: fix the fields it names, "
                "or send the server's own example (leave out --data)",)  # fmt: skip
    if status == 404:
        routes = body.get("routes") if isinstance(body, dict) else None
        if isinstance(routes, list) and routes:
            return (f"the routes the server has: {', '.join(map(str, routes))}",)
        return (f"no such route on this server; the doctor names what answers there: "
                f"{shell_command('servepath', 'doctor', url)}",)  # fmt: skip
    if status == 413:
        return ("the body is over the server's limit: send fewer instances per request",)
    if status == 415:
        return ("send the body as application/json",)
    if status == 401:
        return ("the server wants an API key: --api-key KEY (or SERVEPATH_API_KEY), sent as "
                "Authorization: Bearer KEY; a key it refuses is answered 401 too",)  # fmt: skip
    if status in (403, 407):
        return ("the server (or a proxy) wants credentials this request does not carry",)
    if status >= 500:
        return (f"to see where the path breaks: {shell_command('servepath', 'doctor', url)}",)
    return ()


def failure_hints(
    kind: str, url: str, *, choice: ProxyChoice | None = None, trust: Trust | None = None
) -> tuple[str, ...]:
    """What to do about a request that got no answer."""
    from servepath.output import shell_command

    hints: list[str] = []
    if kind == "proxy" and choice is not None and choice.proxy:
        if choice.reason == "--proxy":
            hints.append(f"the proxy {choice.proxy} (--proxy) did not carry the request")
        else:
            hints.append(
                f"the proxy {choice.proxy} comes from {choice.reason}: fix it, add the host to "
                "NO_PROXY, or pass --proxy"
            )
    if kind == "tls" and (trust is None or trust.verify):
        hints.append(
            "to trust the server's CA: --cafile FILE (or SSL_CERT_FILE); to skip the check: "
            "--insecure"
        )
    if kind in CONNECTION_FAILURES:
        hints.append(f"to see where the path breaks: {shell_command('servepath', 'doctor', url)}")
    return tuple(hints)
