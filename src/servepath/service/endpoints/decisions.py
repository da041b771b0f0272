"""``POST /decisions`` (and ``AIP_PREDICT_ROUTE``): one instance, or the Vertex AI form.

One instance is a JSON object of features and is answered with one prediction; the Vertex AI
form, ``{"instances": [...], "parameters": {...}}``, with ``{"predictions": [...]}``. Also the
request's view for the pipeline (:func:`request_meta`) and the prediction's headers
(:func:`annotate`), which the V2 inference route shares.
"""

from __future__ import annotations

from typing import Any

from servepath.config import Settings
from servepath.contract import DEFAULT_PREDICT_ROUTE
from servepath.errors import FieldError, InvalidInput, clip
from servepath.service.asgi import (
    Receive,
    Response,
    Scope,
    check_content_type,
    header,
    json_response,
    parse_json,
    read_body,
)
from servepath.service.dataplane import DataPlane
from servepath.service.deployments import Deployment
from servepath.service.endpoints import Routes
from servepath.service.pathecho import caller_view, meta_for_log
from servepath.service.predict import Prediction
from servepath.service.request import RequestContext, RequestMeta

#: A caller names a version with it; every prediction's answer carries the one that answered.
VERSION_HEADER = b"x-model-version"


class Decisions:
    """The predict route in both its forms."""

    def __init__(self, settings: Settings, plane: DataPlane) -> None:
        self.settings = settings
        self.plane = plane

    def routes(self) -> Routes:
        return {
            DEFAULT_PREDICT_ROUTE: {"POST": self.predict},
            self.settings.predict_route: {"POST": self.predict},
        }

    async def predict(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        plane = self.plane
        deployment = route_request(plane, scope, ctx)
        model = deployment.model
        if ctx.ticket is None:  # not admitted on its head by the HTTP layer
            ctx.ticket = plane.admit(ctx.head.declared_length)
        check_content_type(scope)
        raw = await read_body(scope, receive, self.settings.max_body_bytes)
        ctx.ticket = plane.received(ctx.ticket)
        body = parse_json(raw)
        if isinstance(body, dict) and "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise InvalidInput([FieldError(("instances",), "expected an array", "type")])
            if not instances:
                raise InvalidInput(
                    [FieldError(("instances",), "at least one instance required", "min_items")]
                )
            check_vertex_envelope(body)
            plane.check_count(len(instances))
            rows = model.schema.validate_many(instances)
            meta = request_meta(plane, scope, ctx)
            prediction = await plane.predict(rows, "vertex", meta, deployment)
            annotate(ctx, prediction)
            return json_response(
                200,
                versioned({"predictions": prediction.outputs}, deployment),
            )
        row = model.schema.validate_one(body)
        meta = request_meta(plane, scope, ctx)
        prediction = await plane.predict([row], "decisions", meta, deployment)
        annotate(ctx, prediction)
        return json_response(200, versioned(dict(prediction.outputs[0]), deployment))


def route_request(plane: DataPlane, scope: Scope, ctx: RequestContext) -> Deployment:
    """The version that answers this request (see :meth:`DataPlane.route`), noted in the
    answer's ``X-Model-Version``."""
    wanted = header(scope, VERSION_HEADER)
    identity = None
    if plane.candidate is not None and wanted is None:
        identity = ctx.caller or caller_view(scope, ctx, plane.settings.trusted_proxies).client
    deployment = plane.route(identity, wanted)
    ctx.headers.append((VERSION_HEADER, deployment.label.encode()))
    return deployment


def versioned(body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """An answer's body with the version that made it: always its 12-hex content version,
    and its label too when the label is another name (a repository's folder)."""
    body["model_version"] = deployment.version
    if deployment.label != deployment.version:
        body["model_label"] = deployment.label
    return body


def request_meta(plane: DataPlane, scope: Scope, ctx: RequestContext) -> RequestMeta:
    """The pipeline's view of a request: no ASGI beyond this point."""
    settings = plane.settings
    timeout = settings.request_timeout
    given = ctx.head.timeout
    if given is not None and given < timeout:
        timeout = given
    meta = RequestMeta(ctx.request_id, ctx.start, deadline=ctx.start + timeout, gone=ctx.gone)
    if plane.store.enabled:
        meta_for_log(meta, scope, ctx, settings.trusted_proxies)
    meta.api_key = ctx.caller
    meta.traffic = ctx.head.traffic
    return meta


def annotate(ctx: RequestContext, prediction: Prediction) -> None:
    """Note a prediction's timings (``Server-Timing``) and cache headers on ``ctx``."""
    n = len(prediction.outputs)
    ctx.timings.insert(0, ("cache", prediction.cache_ms, prediction.cache_desc))
    if prediction.model_ms is not None:
        ctx.timings.append(("model", prediction.model_ms, None))
    ctx.headers.append((b"x-cache", b"HIT" if prediction.hits == n else b"MISS"))
    if n > 1:
        ctx.headers.append((b"x-cache-hits", f"{prediction.hits}/{n}".encode()))


def check_vertex_envelope(body: dict[str, Any]) -> None:
    """The Vertex AI form holds ``instances`` and, optionally, an object of ``parameters``."""
    errors = [
        FieldError((clip(str(key)),), "not a field of the Vertex AI form", "extra_forbidden")
        for key in body
        if key not in ("instances", "parameters")
    ]
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        errors.append(FieldError(("parameters",), "expected an object", "type"))
    if errors:
        raise InvalidInput(errors[:20])
