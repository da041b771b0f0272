"""The server's contract as its clients read it: the default routes, the ``x-servepath``
keys of its OpenAPI document, and which route and example a client sends.

`servepath request`, `doctor` and `load` all read a server through this module, so that on
the same server they pick the same predict route, the same example, the same batch limit and
the same request schema; no other client module walks the document's keys. Pure: the caller
fetches the document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from servepath.errors import ServepathError

__all__ = [
    "DEFAULT_BATCH_LIMIT",
    "DEFAULT_HEALTH_ROUTE",
    "DEFAULT_PATH_ECHO_ROUTE",
    "DEFAULT_PREDICT_ROUTE",
    "OPENAPI_ROUTE",
    "X_SERVEPATH",
    "NoExample",
    "RequestExample",
    "ServerContract",
    "batch_limit",
    "documented_routes",
    "example_for",
    "instances_of",
    "is_servepath_spec",
    "predict_url",
    "request_example",
    "request_schema",
    "v2_infer_body",
    "v2_metadata_route",
]

DEFAULT_HEALTH_ROUTE = "/"
DEFAULT_PREDICT_ROUTE = "/decisions"
DEFAULT_PATH_ECHO_ROUTE = "/_path"
OPENAPI_ROUTE = "/openapi.json"
#: The OpenAPI extension key under which servepath names its own routes and model.
X_SERVEPATH = "x-servepath"
#: Instances per Vertex request when the document states no ``maxItems``.
DEFAULT_BATCH_LIMIT = 1000


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


def predict_url(url: str, spec: Mapping[str, Any] | None) -> str:
    """Where a predict request for ``url`` goes: the route ``url`` names, or for a bare origin
    the predict route the server's document gives (the default one without a document)."""
    parts = urlsplit(url)
    route = ServerContract.from_spec(spec).route_for(parts.path, spec)
    if route == parts.path:
        return url
    return urlunsplit((parts.scheme, parts.netloc, route, parts.query, ""))


def documented_routes(spec: Mapping[str, Any] | None) -> list[str]:
    """Every ``METHOD /path`` the document lists, in its order (empty without a document)."""
    paths = spec.get("paths") if isinstance(spec, Mapping) else None
    if not isinstance(paths, Mapping):
        return []
    return [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        if isinstance(operations, Mapping)
        for method in operations
    ]


def batch_limit(spec: Mapping[str, Any] | None) -> int:
    """How many instances one Vertex request may carry: the document's ``maxItems``."""
    try:
        limit = spec["components"]["schemas"]["VertexRequest"]["properties"]["instances"][  # type: ignore[index]
            "maxItems"
        ]
    except (KeyError, TypeError):
        return DEFAULT_BATCH_LIMIT
    return int(limit) if isinstance(limit, int) and limit > 0 else DEFAULT_BATCH_LIMIT


def request_schema(spec: Mapping[str, Any] | None, route: str) -> Any:
    """The JSON Schema of ``POST route``'s JSON request body as documented (``$ref``s left
    for the caller to follow), or None."""
    media = _media(spec, route) if isinstance(spec, Mapping) else None
    return media.get("schema") if media is not None else None


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


def _media(spec: Mapping[str, Any], route: str) -> Mapping[str, Any] | None:
    try:
        media = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
    except (KeyError, TypeError):
        return None
    return media if isinstance(media, Mapping) else None


def _media_example(spec: Mapping[str, Any], route: str) -> Any:
    media = _media(spec, route)
    if media is None:
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


#: Why a document gives no body to send: no JSON body for the route, no example of one, or
#: an example that is neither an instance nor the Vertex form.
Missing = Literal["no_body", "no_example", "not_instances"]


class NoExample(ServepathError):
    """The document gives no example instance for ``POST route``; ``missing`` says why."""

    def __init__(self, route: str, missing: Missing, source: str) -> None:
        texts = {
            "no_body": f"{source} has no JSON request body for POST {route}",
            "no_example": f"{source} shows no example for POST {route}",
            "not_instances": f"the example {source} shows for POST {route} is not an instance "
            "(a JSON object of features) or a Vertex body",
        }
        super().__init__(texts[missing])
        self.route = route
        self.missing = missing


@dataclass(frozen=True)
class RequestExample:
    """The body the document shows for ``POST route``, and the instances it holds."""

    route: str
    body: Any  # as documented; None when the document shows none
    instances: list[dict[str, Any]] | None  # one instance, or the Vertex form's list
    has_body: bool  # the document describes a JSON body for the route

    def require(self, source: str = "the OpenAPI document") -> list[dict[str, Any]]:
        """The instances, or :class:`NoExample` naming what the document lacks.

        :param source: how the message names the document (its URL, say).
        """
        if self.instances is not None:
            return self.instances
        if self.body is not None:
            raise NoExample(self.route, "not_instances", source)
        raise NoExample(self.route, "no_example" if self.has_body else "no_body", source)


def request_example(spec: Mapping[str, Any] | None, route: str) -> RequestExample:
    """The example a client sends to ``POST route``, as :func:`example_for` finds it."""
    body = example_for(spec, route)
    has_body = (
        isinstance(spec, Mapping)
        and isinstance(spec.get("paths"), Mapping)
        and (route in spec["paths"])
    )
    instances = instances_of(body) if body is not None else None
    return RequestExample(route, body, instances, has_body)


# --- the V2 (Open Inference Protocol) route ------------------------------------------------

_V2_INFER = re.compile(r"^(/v2/models/[^/]+(?:/versions/[^/]+)?)/infer/?$")

#: How the V2 route wants its body, for a caller who sent another.
V2_FORM = (
    '{"inputs": [{"name": FIELD, "datatype": "FP64"|"BYTES"|"BOOL", "shape": [1], '
    '"data": [VALUE]}, ...]}, one tensor per input GET /v2/models/NAME lists'
)


def v2_metadata_route(path: str) -> str | None:
    """``/v2/models/NAME[/versions/V]`` for a V2 infer path (where its metadata is); None
    for any other path."""
    match = _V2_INFER.match(path)
    return match.group(1) if match else None


def _tensor_value(datatype: str, value: Any) -> Any:
    if datatype == "BYTES":
        return str(value)
    if datatype == "BOOL":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    return int(value) if datatype.startswith(("INT", "UINT")) else float(value)


def v2_infer_body(metadata: Any, instance: Mapping[str, Any]) -> dict[str, Any] | None:
    """The V2 request for one ``instance`` (the predict route's example): one tensor per
    input the model's metadata lists, typed as it says. None when the metadata names no
    inputs, or an input the instance lacks or cannot fill."""
    inputs = metadata.get("inputs") if isinstance(metadata, Mapping) else None
    if not isinstance(inputs, list) or not inputs:
        return None
    tensors = []
    for spec in inputs:
        name = spec.get("name") if isinstance(spec, Mapping) else None
        datatype = spec.get("datatype") if isinstance(spec, Mapping) else None
        if not isinstance(name, str) or not isinstance(datatype, str) or name not in instance:
            return None
        try:
            value = _tensor_value(datatype, instance[name])
        except ValueError:
            return None
        tensors.append({"name": name, "datatype": datatype, "shape": [1], "data": [value]})
    return {"inputs": tensors}
