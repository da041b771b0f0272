"""A JSON request body: which media types may carry one, and the one way it is parsed.

Everything here is pure. Every body either parses to one unambiguous value or raises a
:class:`~servepath.errors.RequestError` (a 400 or 415 at the HTTP edge), whatever the bytes:

* **orjson first** (the hot path). It refuses nesting past 1,024 levels, lone surrogates and
  numbers beyond a double, and keeps the *last* of duplicate keys.
* **Duplicate keys are refused**, naming the key: a filter in front that keeps the first
  would judge another document than the model sees. Proving there are none costs a count of
  ``:`` bytes and a walk over the parsed containers (every key in the source is followed by
  one colon; only colons inside strings or a duplicate make the counts differ), about what
  the parse itself costs; only when the counts differ does a second, slower parse (the
  standard library's, with a hook that sees every key) run to find the key or clear the body.
* **NaN and Infinity** literals (and numbers that overflow a double, such as ``1e999``) parse
  through the standard library, so that validation can name the field that holds them. That
  parser is held to what orjson refuses: its recursion error, Python's 4,300-digit limit on
  integers and lone surrogates all become a 400, never an exception past this module.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from servepath.errors import DuplicateKey, MalformedJSON, UnsupportedMediaType, clip

_COLON = b":"
#: The escapes that put a colon into a parsed string which the raw bytes do not show.
_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")
#: ``application/json`` and the ``application/*+json`` structured suffix (RFC 6839), e.g.
#: ``application/vnd.api+json``; the subtype is an RFC 9110 token.
_JSON_MEDIA = re.compile(r"application/(?:json|[a-z0-9!#$&^_.-][a-z0-9!#$&^_.+-]*\+json)")
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii"})


def check_json_media_type(value: str | None) -> None:
    """Accept ``application/json`` and ``application/*+json`` (a ``charset`` other than
    UTF-8 refused: JSON is UTF-8, RFC 8259), or no Content-Type at all; else raise
    :class:`UnsupportedMediaType` (415)."""
    if value is None:
        return
    mime, _, params = value.partition(";")
    if not _JSON_MEDIA.fullmatch(mime.strip().lower()):
        raise UnsupportedMediaType(value)
    if params:
        for param in params.split(";"):
            name, _, given = param.partition("=")
            if name.strip().lower() == "charset" and given.strip().strip('"').lower() not in _UTF8:
                raise UnsupportedMediaType(value)


def _constant(name: str) -> float:
    return float(name.replace("Infinity", "inf").replace("NaN", "nan"))


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def _stdlib(body: bytes) -> Any:
    """The standard library's parse: NaN and Infinity allowed, duplicate keys refused."""
    try:
        return json.loads(body, parse_constant=_constant, object_pairs_hook=_unique_object)
    except RecursionError:
        raise MalformedJSON("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the integer digit limit
        if "digits" in str(exc):
            raise MalformedJSON("a number has too many digits") from None
        raise MalformedJSON(clip(str(exc), 200)) from None


def parse_json(body: bytes) -> Any:
    """Parse a request body (see the module docstring); raise a RequestError for bad bytes."""
    if not body.strip():
        raise MalformedJSON("the body is empty")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _fallback(body, exc)
    colons, keys = body.count(_COLON), _count_keys(value)
    if colons != keys:
        _check_duplicates(body, value, colons - keys)
    return value


def _fallback(body: bytes, exc: orjson.JSONDecodeError) -> Any:
    reason = str(exc)
    # Only a literal orjson does not know (NaN, Infinity) or a number past a double's range is
    # worth a second parser; anything else is as malformed to one as to the other.
    if "infinity" not in reason and b"NaN" not in body and b"Infinity" not in body:
        raise MalformedJSON(reason) from None
    value = _stdlib(body)
    nonfinite, surrogate = _scan(value)
    if surrogate:
        raise MalformedJSON("a string holds a lone surrogate (not valid Unicode)")
    if not nonfinite:
        raise MalformedJSON(reason)
    return value


def _check_duplicates(body: bytes, value: Any, unexplained: int) -> None:
    """``unexplained`` colons are not the parsed keys': if the strings hold exactly that many
    (and no escape makes a colon the bytes do not show), there is no duplicate; otherwise
    find it (slow)."""
    escaped = any(e in body for e in _ESCAPED_COLONS)
    if not escaped and _count_string_colons(value) == unexplained:
        return
    _stdlib(body)  # raises DuplicateKey if there is one


def _count_keys(value: Any) -> int:
    """Keys in every object of ``value``, without recursion (orjson allows 1,024 levels)."""
    t = type(value)
    if t is not dict and t is not list:
        return 0
    n = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is dict:
            n += len(item)
            children = item.values()
        else:
            children = item
        for child in children:
            tc = type(child)
            if tc is dict or tc is list:
                push(child)
    return n


def _count_string_colons(value: Any) -> int:
    """Colons inside the keys and strings of ``value`` (scalars are looked at in place, not
    pushed: this walk runs on every body whose strings hold a colon)."""
    if type(value) is str:
        return value.count(":")
    n = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is dict:
            for key in item:
                if ":" in key:
                    n += key.count(":")
            children = item.values()
        else:
            children = item
        for child in children:
            tc = type(child)
            if tc is str:
                if ":" in child:
                    n += child.count(":")
            elif tc is dict or tc is list:
                push(child)
    return n


def _scan(value: Any) -> tuple[bool, bool]:
    """(holds a non-finite number, holds a lone surrogate in a key or a string)."""
    nonfinite = surrogate = False
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        t = type(item)
        if t is float:
            nonfinite = nonfinite or not math.isfinite(item)
        elif t is str:
            surrogate = surrogate or _has_surrogate(item)
        elif t is dict:
            for key, child in item.items():
                surrogate = surrogate or _has_surrogate(key)
                push(child)
        elif t is list:
            stack.extend(item)
    return nonfinite, surrogate


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
