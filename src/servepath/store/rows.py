"""How records become rows: a request's shared fields once, each instance on its own.

The sinks and the spool write a request's fields (ids, time, route, model, latency, who
sent it) once per request and its instances once each; the reader joins them back into
:class:`~servepath.store.base.PredictionRecord` values. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from servepath.store.base import PredictionRecord

#: Fields of a request (stored once per request); other truncated names are an instance's.
REQUEST_FIELDS = frozenset({"request_id", "client_addr", "client_ip", "forwarded", "api_key"})


def split_truncated(text: str | None) -> tuple[str | None, str | None]:
    """A record's ``truncated`` names as (the request's, the instance's)."""
    if not text:
        return None, None
    names = [n for n in text.split(",") if n]
    request = ",".join(n for n in names if n in REQUEST_FIELDS)
    instance = ",".join(n for n in names if n not in REQUEST_FIELDS)
    return request or None, instance or None


def join_truncated(request: str | None, instance: str | None) -> str | None:
    """The inverse of :func:`split_truncated`, as the reader gives it back."""
    return ",".join(filter(None, (request, instance))) or None


def first_of_each_request(records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
    """One record per request (its first in ``records``), in order: the request rows."""
    seen: set[str] = set()
    firsts: list[PredictionRecord] = []
    for record in records:
        key = record.key
        if key not in seen:
            seen.add(key)
            firsts.append(record)
    return firsts
