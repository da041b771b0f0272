"""Who answered a client's request when the app did not: a forward proxy's own refusal, a
reverse proxy with no healthy app behind it. Pure.

The signs are the doctor's (:mod:`servepath.netdiag.doctor.signs`) and so are the words
(:func:`servepath.netdiag.doctor.causes.explain`): ``servepath request`` names the answerer
as ``servepath doctor`` does, on the one answer it got.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from servepath.net.endpoints import host_port
from servepath.netdiag.doctor.causes import Cause, explain
from servepath.netdiag.doctor.signs import (
    forward_proxy_page,
    from_servepath,
    header,
    one_line,
    reverse_proxy_seen,
    server_name,
)
from servepath.netdiag.http import HttpHop, HttpReport, Phases, parse_server_timing

if TYPE_CHECKING:
    from servepath.client import RequestResult

__all__ = ["ask_the_proxy", "name_the_answerer", "refused_on_the_way", "report_of"]

#: Failures a forward proxy causes when it refuses a request whose body is still being sent:
#: it writes its page and closes, and the unread body turns the close into a reset.
_CUT_OFF = frozenset({"reset", "protocol", "write_timeout"})


def report_of(result: RequestResult) -> HttpReport:
    """``result`` as the one-hop report the doctor's signs read."""
    body = result.body
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode()
    else:
        import orjson

        raw = orjson.dumps(body)
    headers = tuple(result.headers.items())
    hop = HttpHop(
        method=result.method,
        url=result.url,
        proxy=result.proxy,
        phases=Phases(total_ms=result.elapsed_ms or 0.0),
        status=result.status,
        headers=headers,
        server_timing=parse_server_timing(result.headers.get("server-timing", "")),
        location=result.location,
        body_bytes=len(raw),
        body=raw,
    )
    return HttpReport(result.url, result.method, (hop,), followed=False)


def _detail(result: RequestResult) -> str:
    body = result.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return one_line(body["error"], 200)
    text = one_line(body, 200) if isinstance(body, str) else ""
    return text or f"HTTP {result.status}"


def _context(result: RequestResult) -> dict[str, Any]:
    parts = urlsplit(result.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = result.proxy.proxy
    proxy_parts = urlsplit(proxy) if proxy else None
    proxy_endpoint = (
        host_port(proxy_parts.hostname or "", proxy_parts.port or 80)
        if proxy_parts is not None
        else "none"
    )
    return {
        "host": parts.hostname or "",
        "port": port,
        "proxy": proxy,
        "proxy_endpoint": proxy_endpoint,
        "route": parts.path or "/",
        "status": result.status,
        "detail": _detail(result),
        "total_ms": round(result.elapsed_ms or 0.0, 1),
    }


def _named(
    result: RequestResult, cause: Cause, context: dict[str, Any], about: str | None
) -> RequestResult:
    from servepath.output import shell_command

    told = explain(cause, context)
    hints = told.fix
    if cause != "proxy_denied":
        about = shell_command("servepath", "doctor", about or result.url)
        hints = (*hints, f"to see the whole path: {about}")
    return dataclasses.replace(
        result, ok=False, failure=cause, message=told.meaning, hints=tuple(hints)
    )


def name_the_answerer(result: RequestResult, about: str | None = None) -> RequestResult:
    """``result``, its failure renamed for who answered when that was a proxy rather than the
    app (``proxy_denied``, ``upstream_error``, ``upstream_timeout``); else unchanged.

    :param about: the URL the user asked for, when ``result`` is another (its OpenAPI
        document's); the doctor is pointed at it.
    """
    if result.ok:
        return result
    context = _context(result)
    if result.status is None:
        # a refused CONNECT: httpx says "refused", reaching the proxy says "cannot reach"
        if result.failure == "proxy" and not result.message.startswith("cannot reach"):
            detail = result.message.partition(": ")[2] or result.message
            context.update(status="CONNECT refused", detail=detail, auth=None)
            return _named(result, "proxy_denied", context, about)
        return result
    report = report_of(result)
    if forward_proxy_page(report, result.proxy.proxy):
        auth = header(report, "proxy-authenticate")
        return _named(result, "proxy_denied", {**context, "auth": auth}, about)
    if from_servepath(report):
        return result
    context["server"] = server_name(report) or "a proxy"
    if result.status == 504:
        return _named(result, "upstream_timeout", context, about)
    retried = header(report, "retry-after") is not None
    if result.status == 502 or (
        result.status == 503 and not retried and reverse_proxy_seen(report)
    ):
        return _named(result, "upstream_error", context, about)
    return result


def ask_the_proxy(result: RequestResult, *, sent_body: bool) -> bool:
    """Whether a request that failed on its way through a forward proxy should be asked
    again without a body, to read what the proxy says (a refusal it wrote while the body was
    still being sent is lost to the reset the unread body causes)."""
    return sent_body and result.proxy.proxy is not None and result.failure in _CUT_OFF


def refused_on_the_way(result: RequestResult, again: RequestResult) -> RequestResult:
    """``result`` (cut off on its way through the proxy) named for the proxy's refusal when
    ``again``, the same URL asked without a body, got the proxy's own page; else unchanged."""
    named = name_the_answerer(again)
    if named.failure != "proxy_denied":
        return result
    note = (
        f"; it closed the connection while the body was being sent ({result.failure}), and "
        f"a {again.method} without a body got its refusal"
    )
    return dataclasses.replace(
        result,
        failure="proxy_denied",
        message=f"{named.message}{note}",
        hints=named.hints,
    )
