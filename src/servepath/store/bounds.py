"""What one record of the prediction log may weigh, and the server's own record ids.

A record holds what callers sent (instances, request ids, forwarded headers). Each field a
caller can make large is cut to a bound here, before it is queued, spooled or written, and
the record names what was cut (its ``truncated`` field), so that a reader can tell a cut
value from a real one. Pure.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

#: One instance (and one output) is stored whole up to this many bytes of JSON.
MAX_INSTANCE_BYTES = 4096
MAX_OUTPUT_BYTES = 4096
#: A string value inside an instance is kept to this many characters when the instance
#: is too large.
MAX_VALUE_CHARS = 256
#: Text fields a caller controls: the claimed forwarded chain, addresses.
MAX_FORWARDED_BYTES = 1024
MAX_ADDRESS_CHARS = 64
#: The key under which a cut instance says so, beside what was kept.
TRUNCATED_KEY = "_truncated"


def new_record_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: unique, and sorted by time.

    Time-ordered ids land at the end of the primary-key index, not at random places in it.
    """
    # Ids are not secrets: 74 random bits within one millisecond keep them unique.
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def bounded_text(value: str | None, limit: int) -> tuple[str | None, bool]:
    """``value`` cut to at most ``limit`` UTF-8 bytes, ending in a marker when cut."""
    if value is None or len(value) <= limit // 4:
        return value, False
    data = value.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return value, False
    marker = f"…(+{len(data) - limit} bytes)"
    kept = data[: max(0, limit - len(marker.encode()))].decode("utf-8", "ignore")
    return kept + marker, True


def bounded_json(value: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """``value`` as stored: itself when its JSON fits ``limit`` bytes; else its long strings
    cut to a prefix; else a prefix of its JSON text under :data:`TRUNCATED_KEY`."""
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return value, False  # the sink refuses it and keeps it aside, as for any bad record
    if size <= limit:
        return value, False
    cut: dict[str, Any] = {
        key[:MAX_VALUE_CHARS]: _cut_value(item) for key, item in list(value.items())[:256]
    }
    cut[TRUNCATED_KEY] = {"bytes": size}
    if len(orjson.dumps(cut)) <= limit:
        return cut, True
    text = orjson.dumps(value).decode()
    return {TRUNCATED_KEY: {"bytes": size}, "prefix": text[: limit // 2]}, True


def _cut_value(item: Any) -> Any:
    if isinstance(item, str) and len(item) > MAX_VALUE_CHARS:
        return item[:MAX_VALUE_CHARS] + f"…(+{len(item) - MAX_VALUE_CHARS} chars)"
    if isinstance(item, dict | list):
        text = orjson.dumps(item).decode()
        if len(text) > MAX_VALUE_CHARS:
            return text[:MAX_VALUE_CHARS] + f"…(+{len(text) - MAX_VALUE_CHARS} chars)"
    return item
