"""The server's contract as its clients read it: the default routes, the ``x-servepath``
keys of its OpenAPI document, and which route and example a client sends.

`servepath request`, `doctor` and `load` all read a server through this module, so that on
the same server they pick the same predict route and the same example. Pure: the caller
fetches the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_HEALTH_ROUTE",
    "DEFAULT_PATH_ECHO_ROUTE",
    "DEFAULT_PREDICT_ROUTE",
    "OPENAPI_ROUTE",
    "X_SERVEPATH",
    "ServerContract",
    "example_for",
    "instances_of",
    "is_servepath_spec",
]

DEFAULT_HEALTH_ROUTE = "/"
DEFAULT_PREDICT_ROUTE = "/decisions"
DEFAULT_PATH_ECHO_ROUTE = "/_path"
OPENAPI_ROUTE = "/openapi.json"
#: The OpenAPI extension key under which servepath names its own routes and model.
X_SERVEPATH = "x-servepath"


@dataclass(frozen=True)
class ServerContract:
    """The routes a servepath server says it serves (defaults when it says nothing)."""

    predict_route: str = DEFAULT_PREDICT_ROUTE
    health_route: str = DEFAULT_HEALTH_ROUTE
    path_echo_route: str | None = DEFAULT_PATH_ECHO_ROUTE
    documented: bool = False  # the document carried x-servepath

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> ServerContract:
        marks = spec.get(X_SERVEPATH) if isinstance(spec, Mapping) else None
        if not isinstance(marks, Mapping):
            return cls()
        predict = marks.get("predict_route")
        health = marks.get("health_route")
        echo = marks.get("path_echo_route", DEFAULT_PATH_ECHO_ROUTE)
        return cls(
            predict_route=predict if isinstance(predict, str) else DEFAULT_PREDICT_ROUTE,
            health_route=health if isinstance(health, str) else DEFAULT_HEALTH_ROUTE,
            path_echo_route=echo if isinstance(echo, str) else None,
            documented=True,
        )

    def route_for(self, url_path: str, spec: Mapping[str, Any] | None = None) -> str:
        """The predict route a client sends to for a URL with ``url_path``.

        A URL that names a path other than ``/`` names the route (even one the server does
        not document: its answer, a 404 listing the routes, is what the user needs to see);
        a bare origin means the server's own predict route.
        """
        if url_path not in ("", "/"):
            return url_path
        return self.predict_route


def is_servepath_spec(spec: Mapping[str, Any] | None) -> bool:
    """Whether an OpenAPI document was written by servepath (it carries ``x-servepath``)."""
    return isinstance(spec, Mapping) and isinstance(spec.get(X_SERVEPATH), Mapping)


def example_for(spec: Mapping[str, Any] | None, route: str) -> Any:
    """The example request body the document gives for ``POST route``, or None.

    Reads ``example`` first, then the first of ``examples`` (OpenAPI 3 allows either). When
    ``route`` is not documented and the document is servepath's, its predict route's example
    stands in, so that a wrong route still gets a well-formed body (and a telling 404).
    """
    if not isinstance(spec, Mapping):
        return None
    found = _media_example(spec, route)
    if found is None:
        contract = ServerContract.from_spec(spec)
        if contract.documented and contract.predict_route != route:
            found = _media_example(spec, contract.predict_route)
    return found


def _media_example(spec: Mapping[str, Any], route: str) -> Any:
    try:
        media = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
    except (KeyError, TypeError):
        return None
    if not isinstance(media, Mapping):
        return None
    example = media.get("example")
    if example is None:
        examples = media.get("examples")
        if isinstance(examples, Mapping) and examples:
            first = next(iter(examples.values()))
            example = first.get("value") if isinstance(first, Mapping) else None
    return example


def instances_of(body: Any) -> list[dict[str, Any]] | None:
    """The instances of a predict body: one object, or the Vertex form's list; else None."""
    if isinstance(body, Mapping) and isinstance(body.get("instances"), list):
        items = body["instances"]
        if items and all(isinstance(i, Mapping) for i in items):
            return [dict(i) for i in items]
        return None
    if isinstance(body, Mapping):
        return [dict(body)]
    return None
