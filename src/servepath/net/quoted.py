"""HTTP header values with quoted strings (RFC 9110 5.6.4): split a list outside the quotes,
unquote a value, tell an unterminated string.

``Forwarded`` (the service, on every request behind a proxy) and ``Server-Timing`` (the
client's reading of a response) share these. An unterminated quoted string runs to the end
of the text, so a separator inside it never splits. Pure, and regular expressions rather
than a loop over characters: a forwarded header may be 16 KiB long.
"""

from __future__ import annotations

import functools
import re

__all__ = ["split_outside_quotes", "unquote", "unterminated"]

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@functools.cache
def _chunk_pattern(sep: str) -> re.Pattern[str]:
    # Chunks: a quoted string (an unterminated one runs to the end), a run of other
    # characters, a separator. Every position matches one, so the chunks are the whole text.
    s = re.escape(sep)
    return re.compile(rf'"(?:[^"\\]|\\.)*(?:"|\\?$)|[^"{s}]+|{s}', re.DOTALL)


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` that is not inside a quoted string (one character)."""
    parts: list[str] = []
    current: list[str] = []
    for match in _chunk_pattern(sep).finditer(text):
        chunk = match.group(0)
        if chunk == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(chunk)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """``value`` stripped, and if it is a quoted string, its content with escapes undone."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPE.sub(r"\1", value[1:-1])
    return value


def unterminated(text: str) -> bool:
    """Whether ``text`` ends inside a quoted string."""
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
    return quoted
