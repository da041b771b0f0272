"""The one table that maps servepath errors to HTTP status codes and JSON error bodies."""

from __future__ import annotations

import json
import logging
from typing import Any

from servepath.errors import (
    ControlForbidden,
    ControlRefused,
    InvalidInput,
    MalformedJSON,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    PredictionFailed,
    RequestError,
    ServiceUnavailable,
    TooManyInstances,
    UnknownVersion,
    UnsupportedMediaType,
    VersionRefused,
)
from servepath.service.asgi import Response, json_response

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (MalformedJSON, 400),
    (UnsupportedMediaType, 415),
    (PayloadTooLarge, 413),
    (TooManyInstances, 413),
    (InvalidInput, 422),
    (UnknownVersion, 404),
    (ControlRefused, 409),
    (ControlForbidden, 403),
    (RequestError, 400),
    (ModelNotReady, 503),
    (ServiceUnavailable, 503),
    (PredictionFailed, 500),
)


def error_response(exc: Exception, *, v2: bool = False, shed_status: int = 503) -> Response:
    """A JSON error for ``exc``. V2 routes answer bad input with 400, as the protocol says;
    a request shed for the load gets ``shed_status`` (``--shed-status``: 503 or 429)."""
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if isinstance(exc, Overloaded):
        status = shed_status
    body: dict[str, Any]
    if isinstance(exc, InvalidInput):
        body = {"error": exc.summary(), "detail": [e.to_json() for e in exc.errors]}
        if exc.more or exc.stopped:
            # At most MAX_ERRORS listed: the rest is a count, "+" when validation stopped.
            body["more_errors"] = exc.more
            body["validation_stopped"] = exc.stopped
        if v2:
            status = 400
    elif status == 500 and not isinstance(exc, PredictionFailed):
        log.exception("unhandled error while serving a request", exc_info=exc)
        body = {"error": "internal server error"}
    elif isinstance(exc, VersionRefused):
        body = {"error": str(exc), "reason": exc.reason, "version": exc.label}
    elif isinstance(exc, ServiceUnavailable):
        body = {"error": str(exc), "reason": exc.reason, "retry_after": exc.retry_after}
    else:
        body = {"error": str(exc)}
    headers: list[tuple[bytes, bytes]] = []
    if status in (429, 503):
        retry = exc.retry_after if isinstance(exc, ServiceUnavailable) else 1
        headers.append((b"retry-after", str(retry).encode()))
    try:
        return json_response(status, body, headers)
    except TypeError:
        # A message quoting what orjson cannot write (a lone surrogate): the standard
        # library escapes it. An error answer must never fail itself.
        return Response(status, json.dumps(body).encode(), b"application/json", headers)
