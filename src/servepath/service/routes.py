"""The route table: which handler answers a method and path, and what to say when none does.

Exact paths are one dict lookup; the V2 model routes (``/v2/models/{name}[/versions/{v}]``,
``…/ready``, ``…/infer``) one regular expression. The template a path resolved to (never
the path itself, which a caller controls) labels the metrics.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

from servepath.errors import clip
from servepath.service.asgi import Receive, Response, Scope, json_response
from servepath.service.request import RequestContext

V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")

#: The route template of a path that matched no route.
UNKNOWN = "unknown"
#: The V2 liveness route: answered by the HTTP layer itself when it can (never queued).
LIVE_ROUTE = "/v2/health/live"
#: What liveness answers, wherever it is answered.
LIVE_BODY = {"live": True}
#: The route template of V2 inference (the model's name is the caller's).
V2_INFER = "/v2/models/{name}/infer"


Handler = Callable[[Scope, Receive, RequestContext], Awaitable[Response]]
Resolved = tuple[Handler | None, str, list[str]]

#: The V2 model routes as ``(suffix, method)``: metadata, readiness, inference.
V2_MODEL_ROUTES = (("", "GET"), ("/ready", "GET"), ("/infer", "POST"))


class Router:
    """Exact routes (path → method → handler) and the V2 model routes (suffix → handler)."""

    def __init__(
        self, exact: Mapping[str, Mapping[str, Handler]], v2_model: Mapping[str, Handler]
    ) -> None:
        self._exact = {path: dict(methods) for path, methods in exact.items()}
        self._v2 = dict(v2_model)

    def resolve(self, method: str, path: str) -> Resolved:
        """The handler, the route template (for metrics), and the methods the path allows."""
        lookup = "GET" if method == "HEAD" else method
        methods = self._exact.get(path)
        if methods is None and len(path) > 1 and path.endswith("/"):
            # Trailing slashes are the route's own (``/metrics////`` is ``/metrics``), and so
            # is the label: one route is one template, whatever the caller appends.
            path = path.rstrip("/") or "/"
            methods = self._exact.get(path)
        if methods is not None:
            return methods.get(lookup), path, list(methods)
        match = V2_MODEL.match(path.rstrip("/"))
        if match:
            suffix = match.group(3) or ""
            allowed = dict(V2_MODEL_ROUTES)[suffix]
            handler = self._v2.get(suffix) if lookup == allowed else None
            return handler, "/v2/models/{name}" + suffix, [allowed]
        return None, UNKNOWN, []

    def route_list(self) -> list[str]:
        listed = [f"{m} {p}" for p, methods in self._exact.items() for m in methods]
        listed += [f"{m} /v2/models/{{name}}{suffix}" for suffix, m in V2_MODEL_ROUTES]
        return sorted(set(listed))

    def not_found(self, method: str, path: str, allowed: list[str]) -> Response:
        path = clip(path)
        if allowed:
            return json_response(
                405,
                {"error": f"{method} is not allowed on {path}", "allowed": allowed},
                [(b"allow", ", ".join(allowed).encode())],
            )
        return json_response(
            404, {"error": f"no route {method} {path}", "routes": self.route_list()}
        )


def v2_model_name(path: str) -> tuple[str, str | None]:
    """The model name and version (or None) a V2 model route names."""
    match = V2_MODEL.match(path.rstrip("/"))
    if match is None:
        raise ValueError(f"{path!r} is not a V2 model route")
    return match.group(1), match.group(2)
