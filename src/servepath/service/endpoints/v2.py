"""The Open Inference Protocol (V2) routes: server and model metadata, liveness, readiness,
and inference (the tensors' codec is :mod:`servepath.service.v2_codec`)."""

from __future__ import annotations

from servepath import __version__
from servepath.config import Settings
from servepath.errors import ModelNotReady, UnknownVersion, clip
from servepath.model.loaded import LoadedModel
from servepath.service import v2_codec as codec
from servepath.service.asgi import (
    Receive,
    Response,
    Scope,
    check_content_type,
    header,
    json_response,
    read_body,
)
from servepath.service.dataplane import DataPlane
from servepath.service.deployments import Deployment
from servepath.service.endpoints import Routes
from servepath.service.endpoints.decisions import annotate, request_meta, route_request
from servepath.service.request import RequestContext
from servepath.service.routes import LIVE_BODY, LIVE_ROUTE, Handler, v2_model_name

#: Probed by orchestrators: open unless --protect-health.
HEALTH_ROUTES = ("/v2", LIVE_ROUTE, "/v2/health/ready", "/v2/models/{name}/ready")


class UnknownModel(Exception):
    """A V2 route names a model (or version) this server does not serve: 404."""


class V2:
    """The V2 routes over the data plane."""

    def __init__(self, settings: Settings, plane: DataPlane) -> None:
        self.settings = settings
        self.plane = plane

    def routes(self) -> Routes:
        return {
            "/v2": {"GET": self.server},
            LIVE_ROUTE: {"GET": self.live},
            "/v2/health/ready": {"GET": self.ready},
        }

    def model_routes(self) -> dict[str, Handler]:
        """``/v2/models/{name}`` + suffix → handler."""
        return {"": self.metadata, "/ready": self.model_ready, "/infer": self.infer}

    async def server(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(
            200,
            {"name": "servepath", "version": __version__, "extensions": list(codec.EXTENSIONS)},
        )

    async def live(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        return json_response(200, LIVE_BODY)

    async def ready(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        ready, _ = self.plane.serving()
        return json_response(200 if ready else 503, {"ready": ready})

    def _deployment(self, scope: Scope, ctx: RequestContext | None = None) -> Deployment:
        """The version a V2 route names (``…/versions/{v}``: a label or the 12-hex version),
        else the one that answers this caller."""
        name, version = v2_model_name(scope["path"])
        plane = self.plane
        model = plane.ready_model()
        if name != model.name:
            raise UnknownModel(f"model {clip(name)!r} not found; this server serves {model.name!r}")
        if version is not None:
            try:
                return plane.route(None, version)
            except UnknownVersion:
                raise UnknownModel(
                    f"model {clip(f'{name} version {version}')!r} not found; "
                    f"{plane.known_versions()}"
                ) from None
        if ctx is None:
            return plane.route(None)
        return route_request(plane, scope, ctx)

    def _model(self, scope: Scope) -> LoadedModel:
        return self._deployment(scope).model

    async def metadata(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        try:
            deployment = self._deployment(scope)
        except UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        document = codec.metadata(deployment.model)
        document["versions"] = [d.label for d in self.plane.serving_versions()
                                if d.role != "shadow"]  # fmt: skip
        return json_response(200, document)

    async def model_ready(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        try:
            model = self._model(scope)
        except UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        except ModelNotReady:
            return json_response(503, {"ready": False})
        return json_response(200, {"name": model.name, "ready": True})

    async def infer(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        plane = self.plane
        try:
            deployment = self._deployment(scope, ctx)
        except UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        model = deployment.model
        if ctx.ticket is None:  # not admitted on its head by the HTTP layer
            ctx.ticket = plane.admit(ctx.head.declared_length)
        binary_length = header(scope, b"inference-header-content-length")
        if binary_length is None:
            # JSON, or (with the binary tensor extension) raw bytes after a JSON header.
            check_content_type(scope)
        raw = await read_body(scope, receive, self.settings.max_body_bytes)
        ctx.ticket = plane.received(ctx.ticket)
        body = codec.parse_request(raw, binary_length)
        instances = codec.instances_from_request(body, model)
        plane.check_count(len(instances))
        rows = codec.validate_rows(model, body, instances)
        prediction = await plane.predict(rows, "v2", request_meta(plane, scope, ctx), deployment)
        annotate(ctx, prediction)
        requested = None
        if isinstance(body.get("outputs"), list):
            requested = [
                o["name"]
                for o in body["outputs"]
                if isinstance(o, dict) and isinstance(o.get("name"), str)
            ]
        request_id = body.get("id") if isinstance(body.get("id"), str) else None
        result = codec.response(model, prediction.outputs, request_id, requested)
        result["model_version"] = deployment.label
        payload, header_length = codec.encode_response(result, codec.binary_outputs(body))
        if header_length is None:
            return Response(200, payload)
        return Response(
            200,
            payload,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(header_length).encode())],
        )
