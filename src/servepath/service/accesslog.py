"""The access log's view of a request: what the caller sent, escaped as nginx escapes it.

A caller chooses its request target. Logged decoded and raw, ``%0a`` ends the line and
forges the next one, and ``%1b[31m`` reaches the terminal of whoever tails the log. The
target is logged as it came off the wire (undecoded, ``raw_path`` and the query), and every
byte below 0x20, ``"``, ``\\`` and every byte from 0x7f up is written ``\\xXX``, as nginx's
``log_format`` escaping does: a line is one request, and a reader can undo the escape.
Pure: no logging, no ASGI beyond reading the scope.
"""

from __future__ import annotations

import re

from servepath.service.asgi import Scope

__all__ = ["escaped", "request_target"]

_UNSAFE = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
#: A target is logged at most this long (the rest is cut and marked): a log line stays a line.
MAX_TARGET_BYTES = 8192


def _hex(match: re.Match[bytes]) -> bytes:
    return b"\\x%02X" % match.group()[0]


def escaped(data: bytes | str) -> str:
    """``data`` with bytes < 0x20, ``"``, ``\\`` and >= 0x7f written as ``\\xXX``."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if _UNSAFE.search(raw) is None:
        return raw.decode("ascii")
    return _UNSAFE.sub(_hex, raw).decode("ascii")


def request_target(scope: Scope) -> str:
    """The request target as the caller sent it (path and query, undecoded), escaped."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes | bytearray):
        # Another server gave no raw path: the decoded one, its bytes escaped all the same.
        raw = scope["path"].encode("utf-8", "surrogateescape")
    query = scope.get("query_string") or b""
    target = bytes(raw) + (b"?" + query if query else b"")
    cut = len(target) > MAX_TARGET_BYTES
    text = escaped(target[:MAX_TARGET_BYTES])
    return text + "...(cut)" if cut else text
