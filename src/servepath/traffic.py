"""Synthetic traffic: the header that marks a request as not a real caller's, and the closed
vocabulary the server keeps of it.

`servepath doctor` sends ``X-Servepath-Traffic: doctor`` and `servepath load` sends
``X-Servepath-Traffic: load`` with every request; anyone may mark their own synthetic
traffic (an uptime monitor, a smoke test) the same way. The server keeps the mark in the
prediction log's ``traffic`` column, where ``log stats`` and the live page's numbers leave it
out by default. Ordinary traffic carries no header and is stored as NULL.

A caller chooses the header's value, so the server never stores it as sent: a known word is
kept, anything else (an unknown word, a long value, control bytes) is stored as ``other``.
`servepath request` does not mark its request: a request sent by hand is usually a real
question to the model, and its answer belongs in the numbers. Pure.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

#: The request header, as the client tools send it and as documented.
TRAFFIC_HEADER: Final = "X-Servepath-Traffic"
#: The same, as the HTTP layer sees it (header names arrive in lower case).
TRAFFIC_HEADER_KEY: Final = b"x-servepath-traffic"

#: What a marked request is: sent by the doctor, by `load`, by a monitor, by a test, or
#: marked with a word the server does not know.
Traffic = Literal["doctor", "load", "monitor", "test", "other"]
TRAFFIC_KINDS: Final[tuple[Traffic, ...]] = get_args(Traffic)

#: Which traffic a reader asks for: ``ordinary`` (no mark), ``synthetic`` (any mark), ``all``,
#: or one kind.
TrafficFilter = Literal[
    "ordinary", "synthetic", "all", "doctor", "load", "monitor", "test", "other"
]
TRAFFIC_FILTERS: Final[tuple[TrafficFilter, ...]] = get_args(TrafficFilter)

_KNOWN: Final[dict[bytes, Traffic]] = {kind.encode(): kind for kind in TRAFFIC_KINDS}
_LONGEST: Final = max(len(kind) for kind in _KNOWN)


def traffic_of(value: bytes) -> Traffic:
    """The kind a header value marks: a known word (any case), else ``other``."""
    # One dict lookup on a value lowered in C, and a long value is not even lowered: the
    # work is bounded whatever a caller sends.
    if len(value) > _LONGEST:
        return "other"
    return _KNOWN.get(value.lower(), "other")


def traffic_kind(value: str | None) -> Traffic | None:
    """A stored value read back as a kind: None (ordinary) stays None; anything outside the
    vocabulary (a database written by hand) reads as ``other``."""
    if value is None:
        return None
    return _KNOWN.get(value.encode("utf-8", "replace").lower(), "other")


def header_for(kind: Traffic) -> dict[str, str]:
    """The header that marks a client tool's requests as ``kind``."""
    return {TRAFFIC_HEADER: kind}
