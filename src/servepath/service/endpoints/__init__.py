"""The service's endpoint families, each a module that owns its route list.

``decisions`` (``POST /decisions`` and the Vertex AI form), ``v2`` (the Open Inference
Protocol), ``ops`` (health, metrics, the OpenAPI document and its docs page, the path echo),
``page`` (the live page) and ``login`` (a person's way in when the server takes keys). Each
family is a small class over the data plane whose ``routes()`` the ASGI shell
(:mod:`servepath.service.app`) assembles into one router; a handler is a thin delegate: read
the request, call the data plane, shape the answer.
"""

from __future__ import annotations

from collections.abc import Callable

from servepath.service.asgi import Scope
from servepath.service.request import RequestContext
from servepath.service.routes import Handler

#: Exact routes: path → method → handler.
Routes = dict[str, dict[str, Handler]]
#: Whether a request's caller may read the server's own details (see the shell's policy).
Insider = Callable[[Scope, RequestContext], bool]

__all__ = ["Insider", "Routes"]
