"""The Open Inference Protocol (V2) routes: server and model metadata, liveness, readiness,
and inference (the tensors' codec is :mod:`servepath.service.v2_codec`)."""

from __future__ import annotations

from servepath import __version__
from servepath.config import Settings
from servepath.errors import ModelNotReady, clip
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
from servepath.service.endpoints import Routes
from servepath.service.endpoints.decisions import annotate, request_meta
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

    def _model(self, scope: Scope) -> LoadedModel:
        name, version = v2_model_name(scope["path"])
        model = self.plane.ready_model()
        if name != model.name or (version is not None and version != model.version):
            wanted = clip(f"{name} version {version}" if version else name)
            raise UnknownModel(
                f"model {wanted!r} not found; this server serves {model.name!r}"
                f" version {model.version!r}"
            )
        return model

    async def metadata(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        try:
            return json_response(200, codec.metadata(self._model(scope)))
        except UnknownModel as exc:
            return json_response(404, {"error": str(exc)})

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
            model = self._model(scope)
        except UnknownModel as exc:
            return json_response(404, {"error": str(exc)})
        if ctx.ticket is None:  # not admitted on its head by the HTTP layer
            ctx.ticket = plane.admit(ctx.head.declared_length)
        binary_length = header(scope, b"inference-header-content-length")
        if binary_length is None:
            # JSON, or (with the binary tensor extension) raw bytes after a JSON header.
            check_content_type(scope)
        raw = await read_body(scope, receive, self.settings.max_body_bytes)
        body = codec.parse_request(raw, binary_length)
        instances = codec.instances_from_request(body, model)
        plane.check_count(len(instances))
        rows = codec.validate_rows(model, body, instances)
        prediction = await plane.predict(rows, "v2", request_meta(plane, scope, ctx))
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
        payload, header_length = codec.encode_response(result, codec.binary_outputs(body))
        if header_length is None:
            return Response(200, payload)
        return Response(
            200,
            payload,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(header_length).encode())],
        )
