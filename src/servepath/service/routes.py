"""The route table: which handler answers a method and path, and what to say when none does.

Exact paths are one dict lookup; the V2 model routes (``/v2/models/{name}[/versions/{v}]``,
``…/ready``, ``…/infer``) one regular expression. The template a path resolved to (never
the path itself, which a caller controls) labels the metrics. A path that matches nothing is
answered with the closest route a caller would call and the list of them (static assets left
out).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Mapping

from servepath.errors import clip
from servepath.service.asgi import Receive, Response, Scope, json_response
from servepath.service.request import RequestContext

V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
#: The model repository extension's per-model routes (with --model-control explicit).
V2_REPOSITORY = re.compile(r"^/v2/repository/models/([^/]+)/([a-z]+)$")
#: Their actions: the extension's load and unload, and servepath's promote and rollback.
REPOSITORY_ACTIONS = ("load", "unload", "promote", "rollback")

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

#: Files a page loads (the live page's and Swagger UI's); no caller asks for them by hand.
STATIC_SUFFIXES = (".css", ".js", ".map", ".png", ".svg", ".ico", ".woff", ".woff2")
#: How close (difflib's ratio) an asked path must be to a route of its method to be suggested:
#: a POST is sent to be answered, and the POST routes are few, so the closest of them is
#: nearly always what was meant; a GET is suggested only when it is plainly a near miss.
SUGGEST_SAME_METHOD = {"GET": 0.55}
SUGGEST_SAME_METHOD_OTHERWISE = 0.3
#: How close a route of another method must be (a GET of /decision means POST /decisions).
SUGGEST_OTHER_METHOD = 0.6


def closest_route(method: str, path: str, routes: list[str]) -> str | None:
    """The route (``"METHOD /path"``) a request for ``path`` most likely meant, if any is close.

    Routes of the request's own method come first; one of another method only when its path
    is close.
    """
    method = "GET" if method == "HEAD" else method

    def best(candidates: list[str], cutoff: float) -> str | None:
        scored = [
            (difflib.SequenceMatcher(None, path, route.split(" ", 1)[1]).ratio(), route)
            for route in candidates
        ]
        scored = [(ratio, route) for ratio, route in scored if ratio >= cutoff]
        return max(scored, key=lambda pair: pair[0])[1] if scored else None

    same = [r for r in routes if r.split(" ", 1)[0] == method]
    cutoff = SUGGEST_SAME_METHOD.get(method, SUGGEST_SAME_METHOD_OTHERWISE)
    return best(same, cutoff) or best(routes, SUGGEST_OTHER_METHOD)


class Router:
    """Exact routes (path → method → handler) and the V2 model routes (suffix → handler)."""

    def __init__(
        self,
        exact: Mapping[str, Mapping[str, Handler]],
        v2_model: Mapping[str, Handler],
        repository: Mapping[str, Handler] | None = None,
    ) -> None:
        self._exact = {path: dict(methods) for path, methods in exact.items()}
        self._v2 = dict(v2_model)
        #: action → handler for ``POST /v2/repository/models/{name}/{action}``.
        self._repository = dict(repository or {})

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
        if self._repository:
            found = V2_REPOSITORY.match(path.rstrip("/"))
            if found and found.group(2) in self._repository:
                action = found.group(2)
                handler = self._repository[action] if lookup == "POST" else None
                return handler, f"/v2/repository/models/{{name}}/{action}", ["POST"]
        return None, UNKNOWN, []

    def route_list(self) -> list[str]:
        """The routes a caller would call (not the static files pages load), sorted."""
        listed = [
            f"{m} {p}"
            for p, methods in self._exact.items()
            if not p.endswith(STATIC_SUFFIXES)
            for m in methods
        ]
        listed += [f"{m} /v2/models/{{name}}{suffix}" for suffix, m in V2_MODEL_ROUTES]
        listed += [f"POST /v2/repository/models/{{name}}/{a}" for a in self._repository]
        return sorted(set(listed))

    def not_found(self, method: str, path: str, allowed: list[str]) -> Response:
        path = clip(path)
        if allowed:
            return json_response(
                405,
                {"error": f"{method} is not allowed on {path}", "allowed": allowed},
                [(b"allow", ", ".join(allowed).encode())],
            )
        routes = self.route_list()
        suggestion = closest_route(method, path, routes)
        if suggestion is None:
            return json_response(404, {"error": f"no route {method} {path}", "routes": routes})
        return json_response(
            404,
            {
                "error": f"no route {method} {path}: did you mean {suggestion}?",
                "did_you_mean": suggestion,
                "routes": routes,
            },
        )


def repository_model_name(path: str) -> str:
    """The model name a repository route names."""
    match = V2_REPOSITORY.match(path.rstrip("/"))
    if match is None:
        raise ValueError(f"{path!r} is not a model repository route")
    return match.group(1)


def v2_model_name(path: str) -> tuple[str, str | None]:
    """The model name and version (or None) a V2 model route names."""
    match = V2_MODEL.match(path.rstrip("/"))
    if match is None:
        raise ValueError(f"{path!r} is not a V2 model route")
    return match.group(1), match.group(2)
