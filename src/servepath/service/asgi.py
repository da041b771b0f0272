"""Small ASGI primitives: reading a bounded JSON body and sending a response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from servepath.errors import PayloadTooLarge, RequestAborted
from servepath.service.jsonbody import check_json_media_type
from servepath.service.jsonbody import parse_json as parse_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


def check_content_type(scope: Scope) -> None:
    """Accept JSON (``application/json``, ``application/*+json``), or no declared type at
    all; reject anything else, two Content-Type headers included, with 415."""
    values = header_values(scope, b"content-type")
    check_json_media_type(", ".join(values) if values else None)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit, None)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def json_response(
    status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> Response:
    return Response(
        status,
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        b"application/json",
        headers or [],
    )


def response_headers(
    response: Response, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The headers ``response`` goes out with: its type and length, its own, then ``extra``."""
    return [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        *response.headers,
        *extra,
    ]


async def send_response(
    send: Send, response: Response, extra: list[tuple[bytes, bytes]], head: bool = False
) -> None:
    headers = response_headers(response, extra)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})
